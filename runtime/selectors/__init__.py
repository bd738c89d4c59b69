"""Selectors: choose novel candidates from a stream of encodings."""

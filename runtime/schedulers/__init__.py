"""Scheduler adapters: submit, poll and cancel one job at a time."""

"""Jinja2 templates for the compiler, shipped as package data."""

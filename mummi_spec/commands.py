"""Subcommands beyond validate: each a small function over the compiler and runtime APIs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(sub: Any, profile_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the compile/dry-run/diff/run/status/simulate subcommands to ``sub``."""

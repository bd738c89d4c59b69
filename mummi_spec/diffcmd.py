"""`mummi diff`: the semantic difference of two campaigns, as text or JSON."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cmd_diff(args: argparse.Namespace) -> int:
    """Compare two campaigns; exit 0 when they are the same, 1 when they differ."""
    from mummi_spec.errors import UsageError

    raise UsageError("mummi diff is not implemented yet")


def register(sub: Any, profile_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the ``diff`` subcommand to ``sub``."""
    p = sub.add_parser("diff", help="what changed between two campaigns, and what it does")
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    profile_args(p)
    p.set_defaults(func=cmd_diff)

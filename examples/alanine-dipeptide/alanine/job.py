"""How each job of the example ends: its exit status, and one line for an error of input."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mummi_spec import app

USER_ERROR = 2  # bad input or environment: a retry would fail the same way


def finish(name: str, job: Callable[[], int]) -> int:
    """Run ``job``; an ``AppError`` (what is wrong and how to fix it) is one line on stderr
    and exit status 2, never a traceback. Anything else is a real failure, worth a retry."""
    try:
        return job()
    except app.AppError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return USER_ERROR

"""Bounded exponential back-off: a call tried again through a transient fault, then given up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The waits double from FIRST_DELAY up to MAX_DELAY: a fault of a second costs little, and a
# long one is polled every few seconds rather than hammered.
FIRST_DELAY = 0.1
MAX_DELAY = 5.0


def retrying(fn: Callable[[], T], *, transient: Callable[[Exception], bool], retry_for: float,
             warn: Callable[[Exception, float], None]) -> T:
    """``fn()``, called again while it raises an error ``transient`` accepts, after 0.1, 0.2 …
    5 s (``warn(error, wait)`` before each wait), for up to ``retry_for`` seconds; then that
    error is raised. ``fn`` must be safe to repeat."""
    deadline = time.monotonic() + retry_for
    delay = FIRST_DELAY
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > deadline:
                raise
            warn(exc, delay)
        time.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)

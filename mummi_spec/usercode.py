"""The campaign's own Python code: ``module:function`` aggregates, found on its pythonpath."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mummi_spec.errors import MummiError

# What a user aggregate is called with, as the spec reference and docs/applications.md say.
AGGREGATE_CALL = ("(values, weights, previous): the new items, their weights and the "
                  "aggregate reported before (None the first time), returning the aggregate "
                  "of every item so far")


class UserCodeError(MummiError):
    """A ``module:function`` that cannot be imported or does not take what it is given."""


@contextmanager
def on_path(paths: Sequence[str]) -> Iterator[None]:
    """``paths`` first on ``sys.path`` while inside (the spec's pythonpath, for a check)."""
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)


def import_function(spec: str, arity: int, call: str) -> Callable[..., Any]:
    """The function ``module:function``, checked to accept ``arity`` positional arguments
    (``call`` spells them for the message)."""
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except Exception as exc:  # an ImportError, or whatever the module raises as it loads
        raise UserCodeError(f"cannot import {spec!r} ({type(exc).__name__}: {exc})") from None
    if not callable(fn):
        raise UserCodeError(f"{spec!r} is not a function")
    try:
        inspect.signature(fn).bind(*([None] * arity))
    except TypeError:
        raise UserCodeError(f"{spec!r} must take {call}") from None
    except ValueError:
        pass  # no signature to read (a builtin): trust it
    return fn  # type: ignore[no-any-return]

"""Hostile data values for the security tests, and the canary files they try to create."""

from __future__ import annotations

import os
from pathlib import Path

# Each tries to run `touch CANARY_<x>` (or redirect into it) if it ever reaches a shell
# unquoted; the rest are quotes, globs, spaces and the tokens our scripts substitute.
HOSTILE: tuple[str, ...] = (
    "; touch CANARY_semi",
    "$(touch CANARY_dollar)",
    "`touch CANARY_tick`",
    "| touch CANARY_pipe",
    "& touch CANARY_amp &",
    "> CANARY_redirect",
    "x' ; touch CANARY_squote ; '",
    'x" ; touch CANARY_dquote ; "',
    "*",
    "two  spaces and\ttab",
    "$(LAUNCHER)launch",
    "$(LAUNCHER)[1,2]",
    "${HOME}$PATH",
    "-rf",
    "x\ntouch CANARY_newline",
)
CANARY_NAMES = frozenset(
    word for value in HOSTILE for word in value.replace("`", " ").replace(")", " ").split()
    if word.startswith("CANARY_"))


def canaries(*roots: Path) -> list[Path]:
    """Every canary file under ``roots`` (none may exist after a run)."""
    found = []
    for root in roots:
        for folder, _, files in os.walk(root):
            found += [Path(folder) / f for f in files if f in CANARY_NAMES]
    return found

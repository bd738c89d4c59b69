"""What the toy applications share: seeded randomness, their context, SIGTERM and output files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mummi_spec import app
from mummi_spec.errors import MummiError

TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a job ended by SIGTERM


class ToyFailureError(MummiError):
    """The application failed the way a real one would (exit 1, the manager may retry)."""


class TerminatedError(MummiError):
    """SIGTERM arrived; the application stops without claiming success."""


def seed_of(*parts: object) -> int:
    """A 64-bit seed from names and numbers, identical in every process (unlike ``hash``)."""
    text = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def rng(*parts: object) -> np.random.Generator:
    """A generator seeded by ``parts``: the same parts give the same draws on any retry."""
    return np.random.default_rng(seed_of(*parts))


def uniform(*parts: object) -> float:
    """One deterministic draw in [0, 1) from ``parts``."""
    return seed_of(*parts) / 2.0**64


def projection(rows: int, cols: int, *parts: object) -> np.ndarray:
    """A fixed random linear map from ``cols`` to ``rows`` dimensions, scaled to keep norms."""
    matrix: np.ndarray = rng("projection", rows, cols, *parts).standard_normal((rows, cols))
    matrix /= np.sqrt(cols)
    return matrix


class StopFlag:
    """SIGTERM through the application interface, and the toys' way to wait for it."""

    def __init__(self) -> None:
        self.stop = app.Stop.install()

    @classmethod
    def install(cls) -> StopFlag:
        return cls()

    @property
    def requested(self) -> bool:
        return self.stop.requested

    def check(self) -> None:
        """Raise ``TerminatedError`` if SIGTERM has arrived."""
        if self.stop.requested:
            raise TerminatedError("terminated by SIGTERM")

    def sleep_until(self, deadline: float) -> None:
        """Sleep until ``time.monotonic()`` reaches ``deadline``, unless SIGTERM comes first."""
        self.stop.wait(max(deadline - time.monotonic(), 0.0))
        self.check()


def job_context(plan: Path, **given: Any) -> app.Context:
    """The job's context: the manager's variables, what the command line gives winning."""
    return app.Context.from_env(plan_path=plan, **given)


def success_name(ctx: app.Context, override: str | None) -> str | None:
    """The success file to write: ``--success-file`` if given, else the plan's, possibly none."""
    if override is not None:
        return override or None  # --success-file '' asks for none
    return ctx.success_file


def write_file(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, so the manager never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, value: Mapping[str, Any]) -> None:
    write_file(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())


def write_success(workdir: Path, name: str | None, info: Mapping[str, Any]) -> None:
    """The success file, last of all: its presence means every other output is complete."""
    if name is not None:
        write_json(workdir / name, info)

"""What the toy applications share: seeded randomness, plan look-ups, SIGTERM and output files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from mummi_spec.errors import MummiError, UsageError
from mummi_spec.plan import CouplingPlan, Plan, StreamPlan

TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a job ended by SIGTERM
_NAP = 0.05  # longest sleep between looks at the stop flag: how promptly SIGTERM is obeyed


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


@dataclass(frozen=True, slots=True)
class JobEnv:
    """What the manager tells every job it launches; all absent when a job is run by hand."""

    job_type: str | None
    coupling: str | None
    sim: str | None
    candidate: str | None
    attempt: int

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> JobEnv:
        raw = environ.get("MUMMI_ATTEMPT") or "1"
        try:
            attempt = int(raw)
        except ValueError:
            raise UsageError(f"MUMMI_ATTEMPT={raw!r} is not a whole number") from None
        return cls(environ.get("MUMMI_JOB_TYPE") or None, environ.get("MUMMI_COUPLING") or None,
                   environ.get("MUMMI_SIM") or None, environ.get("MUMMI_CANDIDATE") or None,
                   attempt)


class StopFlag:
    """Set by SIGTERM; every wait looks at it often, so a job stops within ``_NAP`` seconds.

    The handler only sets a flag: raising from it could cut a store write in half, and
    setting a ``threading.Event`` from a handler can deadlock on the event's own lock.
    """

    def __init__(self) -> None:
        self.requested = False

    @classmethod
    def install(cls) -> StopFlag:
        flag = cls()
        signal.signal(signal.SIGTERM, flag._handle)
        return flag

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def check(self) -> None:
        """Raise ``TerminatedError`` if SIGTERM has arrived."""
        if self.requested:
            raise TerminatedError("terminated by SIGTERM")

    def sleep_until(self, deadline: float) -> None:
        """Sleep until ``time.monotonic()`` reaches ``deadline``, unless SIGTERM comes first."""
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _NAP))


def stream_key(name: str, stream: StreamPlan, *, n: int, sim: str) -> str:
    """The key of item ``n`` of a stream, from its template (fields ``id``, ``n``, ``sim``)."""
    template = stream.key
    try:
        return str(template.format_map({"id": f"{n:06d}", "n": n, "sim": sim}))
    except (KeyError, ValueError, IndexError, AttributeError) as exc:
        raise UsageError(f"stream {name!r}: cannot fill key template {template!r} "
                         f"({type(exc).__name__}: {exc}); the toy applications provide "
                         "the fields id, n and sim") from None


def find_coupling(plan: Plan, role: str, *, name: str | None = None,
                  job: str | None = None) -> tuple[str, CouplingPlan]:
    """The coupling a ``role`` job ("setup" or "simulation") serves: named, by job, or the sole."""
    couplings = plan.couplings
    known = ", ".join(sorted(couplings)) or "none"
    if name:
        if name not in couplings:
            raise UsageError(f"no coupling {name!r} in the plan; known: {known}")
        return name, couplings[name]
    if job:
        matches = sorted(c for c, v in couplings.items() if getattr(v, role) == job)
        if len(matches) == 1:
            return matches[0], couplings[matches[0]]
        if matches:
            raise UsageError(f"job {job!r} is the {role} of couplings {', '.join(matches)}; "
                             "set MUMMI_COUPLING or pass --coupling to choose")
        raise UsageError(f"job {job!r} is the {role} of no coupling; couplings: {known}")
    if len(couplings) == 1:
        return next(iter(couplings.items()))
    raise UsageError(f"cannot tell which coupling this {role} job serves: set MUMMI_COUPLING "
                     f"or MUMMI_JOB_TYPE, or pass --coupling (couplings: {known})")


def success_name(plan: Plan, job: str, override: str | None) -> str | None:
    """The success file to write: ``--success-file`` if given, else the plan's, possibly none."""
    if override is not None:
        return override or None  # --success-file '' asks for none
    return plan.job(job).success.file


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

"""Job outcomes and retries: the pure decisions of the tracker, kept apart from any I/O loop.

A job instance moves ``submitting -> queued -> running -> completed | failed | timedout |
cancelled | lost``; a simulation (one selection) moves ``selected -> setup -> ready ->
simulating -> done | failed``. The manager applies these functions; tests drive them alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mummi_spec.runtime.schedulers.base import JobState, JobStatus

_STATE_NAMES = {
    JobState.PENDING: "queued", JobState.RUNNING: "running", JobState.COMPLETED: "completed",
    JobState.FAILED: "failed", JobState.TIMEDOUT: "timedout", JobState.CANCELLED: "cancelled",
}

SIM_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "selected": frozenset({"setup", "ready", "failed"}),
    "setup": frozenset({"setup", "ready", "failed", "selected"}),
    "ready": frozenset({"simulating", "failed"}),
    "simulating": frozenset({"simulating", "done", "failed", "ready"}),
    "done": frozenset(),
    "failed": frozenset(),
}


# What a shell exits with when it cannot run the command at all (POSIX 2.8.2). The same
# command line fails the same way on every node and every attempt, so such a failure is
# never retried: it is the user's to fix (install the program, fix PATH or the spec), and
# retrying would only burn selections and scheduler slots.
NOT_RUNNABLE: Mapping[int, str] = {
    126: "the program was found but cannot be executed",
    127: "command not found",
}
_LAUNCHER = re.compile(r"^\s*\$\(LAUNCHER\)(\[[^\]]*\])?\s*")


def not_runnable(job: Mapping[str, Any], code: int | None) -> bool:
    """Whether ``code`` says the job's program could not be started at all (and the job
    does not declare it a success code of its own)."""
    return code in NOT_RUNNABLE and code not in ((job.get("success") or {}).get("exit_codes")
                                                 or [0])


def program(job: Mapping[str, Any]) -> str:
    """The program a job's command starts (its first word after ``$(LAUNCHER)``)."""
    words = _LAUNCHER.sub("", str(job.get("command", ""))).split()
    return words[0] if words else ""


class TransitionError(RuntimeError):
    """A state change the pipeline never makes: a bug, reported with both states."""


def check_transition(sim: str, old: str, new: str) -> None:
    if new not in SIM_TRANSITIONS.get(old, frozenset()):
        raise TransitionError(f"simulation {sim}: no transition {old} -> {new}")


def outcome(job: Mapping[str, Any], status: JobStatus, workdir: Path) -> tuple[str, str]:
    """The ledger state and reason for a scheduler status, applying the job's success rule.

    An exit code outside ``success.exit_codes`` is a failure even if the scheduler says
    completed; so is a missing ``success.file`` (how createsims report a failed minimisation
    without a non-zero exit).
    """
    state = _STATE_NAMES.get(status.state)
    if state is None:  # UNKNOWN: never a verdict
        return "unknown", status.reason
    if state in ("queued", "running", "timedout", "cancelled"):
        return state, status.reason
    rule = job.get("success") or {}
    codes = rule.get("exit_codes") or [0]
    code = status.exit_code
    if code is not None and code not in codes:
        if not_runnable(job, code):
            return "failed", (f"exit code {code}: {NOT_RUNNABLE[code]} ({program(job)!r}: is it "
                              "installed, executable and on PATH where the jobs run?)")
        return "failed", status.reason or f"exit code {code}"
    if state == "failed" and code is None:
        return "failed", status.reason or "the scheduler reports a failure"
    marker = rule.get("file")
    if marker and not (Path(workdir) / marker).exists():
        return "failed", f"exit code {code} but no success file {marker!r}"
    return "completed", ""


def should_retry(job: Mapping[str, Any], state: str, history: Sequence[str],
                 exit_code: int | None = None) -> bool:
    """Whether an instance that ended in ``state`` (with ``exit_code``) is resubmitted.

    ``history`` holds the end states of the earlier attempts of the same simulation and job
    type. Only outcomes listed in ``retry.on`` are retried, and only ``retry.limit`` times; a
    job lost because the manager itself stopped does not use up the limit. A program that
    could not be started (``NOT_RUNNABLE``) is never retried.
    """
    if state == "failed" and not_runnable(job, exit_code):
        return False
    retry = job.get("retry") or {}
    if state not in retry.get("on", ("failed", "timedout", "lost")):
        return False
    charged = sum(1 for s in history if s in ("failed", "timedout"))
    return charged < int(retry.get("limit", 2))


def job_name(sim: str | None, job_type: str, attempt: int) -> str:
    """``<sim>.<job type>.<attempt>``, or ``<job type>.<attempt>`` for persistent jobs."""
    return f"{sim}.{job_type}.{attempt}" if sim else f"{job_type}.{attempt}"


def sim_cap(plan: Mapping[str, Any]) -> dict[str, int]:
    """Each coupling's part of ``manager.max_simulations`` by GPU share (largest remainder)."""
    total = plan["manager"].get("max_simulations")
    couplings = sorted(plan["couplings"])
    if total is None:
        return dict.fromkeys(couplings, 1 << 62)
    shares = [float(plan["couplings"][c]["share"].get("gpus", 1.0)) or 0.0 for c in couplings]
    norm = sum(shares) or 1.0
    exact = [total * s / norm for s in shares]
    parts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return dict(zip(couplings, parts, strict=True))

"""Job outcomes and retries: the pure decisions of the tracker, kept apart from any I/O loop.

The manager's book applies these functions; tests drive them alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mummi_spec.plan import JobPlan
from mummi_spec.runtime.schedulers.base import JobState, JobStatus
from mummi_spec.runtime.states import CHARGED, AttemptState
from mummi_spec.units import program

_STATES = {
    JobState.PENDING: AttemptState.QUEUED, JobState.RUNNING: AttemptState.RUNNING,
    JobState.COMPLETED: AttemptState.COMPLETED, JobState.FAILED: AttemptState.FAILED,
    JobState.TIMEDOUT: AttemptState.TIMEDOUT, JobState.CANCELLED: AttemptState.CANCELLED,
}

# What a shell exits with when it cannot run the command at all (POSIX 2.8.2). The same
# command line fails the same way on every node and every attempt, so such a failure is
# never retried: it is the user's to fix (install the program, fix PATH or the spec), and
# retrying would only burn selections and scheduler slots.
NOT_RUNNABLE: Mapping[int, str] = {
    126: "the program was found but cannot be executed",
    127: "command not found",
}


def not_runnable(job: JobPlan, code: int | None) -> bool:
    """Whether ``code`` says the job's program could not be started at all (and the job
    does not declare it a success code of its own)."""
    return code in NOT_RUNNABLE and code not in job.success.exit_codes


def outcome(job: JobPlan, status: JobStatus, workdir: Path
            ) -> tuple[AttemptState | None, str]:
    """The attempt's state and reason for a scheduler status (None: no verdict yet),
    applying the job's success rule.

    An exit code outside ``success.exit_codes`` is a failure even if the scheduler says
    completed; so is a missing ``success.file`` (how createsims report a failed minimisation
    without a non-zero exit).
    """
    state = _STATES.get(status.state)
    if state is None:  # UNKNOWN: never a verdict
        return None, status.reason
    if state not in (AttemptState.COMPLETED, AttemptState.FAILED):
        return state, status.reason
    code = status.exit_code
    if code is not None and code not in job.success.exit_codes:
        if not_runnable(job, code):
            return AttemptState.FAILED, (
                f"exit code {code}: {NOT_RUNNABLE[code]} ({program(job.command)!r}: is it "
                "installed, executable and on PATH where the jobs run?)")
        return AttemptState.FAILED, status.reason or f"exit code {code}"
    if state == AttemptState.FAILED and code is None:
        return AttemptState.FAILED, status.reason or "the scheduler reports a failure"
    marker = job.success.file
    if marker and not (Path(workdir) / marker).exists():
        return AttemptState.FAILED, f"exit code {code} but no success file {marker!r}"
    return AttemptState.COMPLETED, ""


def should_retry(job: JobPlan, state: AttemptState, history: Sequence[AttemptState],
                 exit_code: int | None = None) -> bool:
    """Whether an attempt that ended in ``state`` (with ``exit_code``) is followed by another.

    ``history`` holds the end states of the earlier attempts of the same simulation and job
    type. Only outcomes listed in ``retry.on`` are retried, and only ``retry.limit`` times; a
    job lost because the manager itself stopped does not use up the limit. A program that
    could not be started (``NOT_RUNNABLE``) is never retried. A job that ``checkpoints``
    continues after every walltime kill, and those never count against the limit.
    """
    if state == AttemptState.FAILED and not_runnable(job, exit_code):
        return False
    if continues(job, state):
        return True
    if state.value not in job.retry.on:
        return False
    return sum(1 for s in history if s in CHARGED and not continues(job, s)) < job.retry.limit


def continues(job: JobPlan, state: AttemptState) -> bool:
    """Whether an attempt that ended in ``state`` is a segment its next attempt continues."""
    return job.checkpoints and state == AttemptState.TIMEDOUT


def job_name(sim: str | None, job_type: str, attempt: int) -> str:
    """``<sim>.<job type>.<attempt>``, or ``<job type>.<attempt>`` for persistent jobs."""
    return f"{sim}.{job_type}.{attempt}" if sim else f"{job_type}.{attempt}"

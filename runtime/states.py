"""The states of a campaign, a simulation, a job attempt and the workspace's lease; legal moves.

A campaign is ``running`` until its manager ends it ``complete``, ``stopped`` or ``failed``
(``Manager.run``). A simulation (one selection) moves ``selected -> setup -> ready ->
simulating -> done | failed``; a job attempt ``submitting -> queued -> running -> completed |
failed | timedout | cancelled | lost``. ``Book`` (book.py) makes every change of these two and
writes it to the ledger. The lease passes ``launcher -> manager`` (lease.py makes those changes).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class _Text(str, enum.Enum):
    """A state that prints as the word ``status.json`` and the ledger store, on every Python
    (3.11 changed f-strings of str-mixin enums to print ``CampaignState.STOPPED``)."""

    def __str__(self) -> str:
        return str(self.value)


class CampaignState(_Text):
    """What ``status.json`` says of the whole campaign."""

    RUNNING = "running"
    """Its manager is at work (or was, until it died: ``mummi status`` tells which)."""
    COMPLETE = "complete"
    """It ended: its caps were reached, its sources ran dry, or ``stop_after`` came."""
    STOPPED = "stopped"
    """Stopped on request or at the end of its allocation; ``mummi run`` resumes it."""
    FAILED = "failed"
    """Its manager could not go on (the workspace refused writes); ``why`` says what, and
    ``mummi run`` resumes it once that is fixed."""


class SimState(_Text):
    """Where one selected candidate is in its coupling's pipeline."""

    SELECTED = "selected"
    """Chosen by its selector; waits for a setup slot."""
    SETUP = "setup"
    """Its setup job is submitted or running."""
    READY = "ready"
    """Set up (or needing no setup); waits for a simulation slot."""
    SIMULATING = "simulating"
    """Its simulation job is submitted or running."""
    DONE = "done"
    """Its simulation completed."""
    FAILED = "failed"
    """A job failed after its retries (or could not be started); the reason is recorded."""


SIM_TERMINAL = frozenset({SimState.DONE, SimState.FAILED})

SIM_TRANSITIONS: Mapping[SimState, frozenset[SimState]] = {
    # back to SELECTED / READY: a job lost or refused waits for its slot again, uncharged
    SimState.SELECTED: frozenset({SimState.SETUP, SimState.READY, SimState.FAILED}),
    SimState.SETUP: frozenset({SimState.SETUP, SimState.READY, SimState.FAILED,
                               SimState.SELECTED}),
    SimState.READY: frozenset({SimState.SIMULATING, SimState.FAILED}),
    SimState.SIMULATING: frozenset({SimState.SIMULATING, SimState.DONE, SimState.FAILED,
                                    SimState.READY}),
    SimState.DONE: frozenset(),
    SimState.FAILED: frozenset(),
}


class AttemptState(_Text):
    """Where one attempt of a job is (a row of the ledger's ``jobs`` table)."""

    SUBMITTING = "submitting"
    """Recorded, being handed to the scheduler. A crash here leaves it for recovery, which
    asks the scheduler for its job by its unique name: queued if found, else lost."""
    QUEUED = "queued"
    """Accepted by the scheduler, not started."""
    RUNNING = "running"
    """Started."""
    COMPLETED = "completed"
    """Ended and passed the job's success rule."""
    FAILED = "failed"
    """Ended with a failing exit code, or without its success file."""
    TIMEDOUT = "timedout"
    """Killed at its walltime."""
    CANCELLED = "cancelled"
    """Cancelled by the manager at a stop, or by an operator."""
    LOST = "lost"
    """Refused by the scheduler, or gone with an earlier manager: never charged to retry."""


LIVE_ATTEMPTS = frozenset({AttemptState.SUBMITTING, AttemptState.QUEUED, AttemptState.RUNNING})
TERMINAL_ATTEMPTS = frozenset(AttemptState) - LIVE_ATTEMPTS
# The outcomes that use up a job's retry.limit; the others are not the job's fault.
CHARGED = frozenset({AttemptState.FAILED, AttemptState.TIMEDOUT})


class TransitionError(RuntimeError):
    """A state change the pipeline never makes: a bug, reported with both states."""


def check_transition(sim: str, old: SimState, new: SimState) -> None:
    """Refuse a simulation state change the pipeline never makes."""
    if new not in SIM_TRANSITIONS.get(old, frozenset()):
        raise TransitionError(f"simulation {sim}: no transition {old.value} -> {new.value}")


class Holder(_Text):
    """Who holds a workspace's lease (runtime/lease.py)."""

    LAUNCHER = "launcher"
    """A `mummi run` that started Maestro and waits for its manager step (a Slurm queue wait,
    say): it keeps the workspace for the manager its run token names."""
    MANAGER = "manager"
    """The workflow manager."""

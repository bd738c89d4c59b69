"""The scheduler interface: one job per submission, polled by id, cancellable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from mummi_spec.errors import SchedulerError


class JobState(IntEnum):
    """Where a submitted job is, as far as the scheduler can tell."""

    PENDING = 0
    """Accepted, not started."""
    RUNNING = 1
    """Started and not yet ended."""
    COMPLETED = 2
    """Ended with exit code 0 (the success rule may still reject it)."""
    FAILED = 3
    """Ended with a non-zero exit code, or the scheduler reports a failure."""
    TIMEDOUT = 4
    """Killed at its walltime."""
    CANCELLED = 5
    """Cancelled by us or by an operator."""
    UNKNOWN = 6
    """The scheduler has no word on it now; ask again later, never treat as done."""


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.TIMEDOUT,
                             JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job to submit. ``script`` is a bash body whose data-derived values are quoted."""

    name: str
    job_type: str
    script: str
    workdir: Path
    nodes: int = 1
    tasks: int = 1
    cores_per_task: int = 1
    gpus: int = 0
    walltime: int = 3600  # seconds
    env: Mapping[str, str] = field(default_factory=dict)
    nested: bool = False  # in a scheduler instance of its own, where $(LAUNCHER) starts tasks
    sched_name: str = ""
    """The name the scheduler knows the job by, unique over every campaign on the machine so
    that ``find`` can look it up after a crash (empty: ``name``, which also names the job's
    script and logs in ``workdir``)."""


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's state with its exit code when it has ended."""

    state: JobState
    exit_code: int | None = None
    reason: str = ""


@runtime_checkable
class SchedulerAdapter(Protocol):
    """Submits and tracks jobs. Built as ``cls(settings)`` from the plan's ``SchedulerPlan``.

    Some abilities are optional; ``SchedulerBase`` gives an adapter without them the
    defaults.
    """

    key: ClassVar[str]
    jobs_survive_manager: ClassVar[bool]
    """Whether jobs outlive the manager process and are found again by id after a restart;
    the manager then leaves them running when it stops instead of cancelling them."""
    nested_instances: ClassVar[bool]
    """Whether a job can run in a scheduler instance of its own (``JobRequest.nested``);
    an adapter without it refuses such a job (mummi_spec.plan.NESTED_INSTANCES agrees)."""
    paths_unquoted: ClassVar[bool]
    """Whether Maestro's adapter pastes paths in the workspace unquoted into the scheduler's
    command line (``sbatch -D <dir> <script>``), so that a workspace path with a space or
    shell syntax cannot run there; ``mummi run`` then refuses one up front."""
    finds_by_name: ClassVar[bool]
    """Whether ``find`` can say which jobs the scheduler holds under given names. Without it,
    an attempt a crash left between its ledger row and the scheduler's answer is counted
    lost and submitted again, and the job, if the scheduler did take it, runs twice."""

    def submit(self, job: JobRequest) -> str:
        """Submit one job and return its id; raise ``SchedulerError`` if refused."""
        ...

    def submit_many(self, jobs: Sequence[JobRequest]) -> list[str | SchedulerError | OSError]:
        """Submit several jobs; for each, in order, its id, the ``SchedulerError`` that
        refused it, or the ``OSError`` that kept its files from being written (it never
        reached the scheduler, so submitting it again runs it once). An adapter whose
        scheduler answers many requests sent together faster than one by one sends them so
        (default: ``submit`` one after another)."""
        ...

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        """Current status of each id (``UNKNOWN`` for ids the scheduler cannot place)."""
        ...

    def changed(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        """``status`` with the ids whose state has not moved since the last call left out,
        which spares the manager thousands of unchanged answers (default: ``status``)."""
        ...

    def find(self, names: Sequence[str], since: float) -> dict[str, str]:
        """The id of each job the scheduler holds, queued, running or ended, under one of
        ``names`` (``JobRequest.sched_name``); names it does not know are left out. ``since``
        (epoch seconds) is a time before any of them was submitted, which bounds the search
        of a history. Raises ``SchedulerError`` when the scheduler cannot be asked."""
        ...

    def cancel(self, ids: Sequence[str]) -> None:
        """Cancel the given jobs; ids that already ended are ignored."""
        ...

    def close(self) -> None:
        """Release resources; running jobs are left alone unless cancelled."""
        ...


class SchedulerBase:
    """The defaults of the protocol's optional abilities: jobs end with the manager, no job
    runs in an instance of its own, submissions go one by one, any workspace path will do,
    every poll answers for every id, and no job can be looked up by name."""

    jobs_survive_manager: ClassVar[bool] = False
    nested_instances: ClassVar[bool] = False
    paths_unquoted: ClassVar[bool] = False
    finds_by_name: ClassVar[bool] = False

    def submit(self, job: JobRequest) -> str:
        raise NotImplementedError

    def submit_many(self, jobs: Sequence[JobRequest]) -> list[str | SchedulerError | OSError]:
        out: list[str | SchedulerError | OSError] = []
        for job in jobs:
            try:
                out.append(self.submit(job))
            except (SchedulerError, OSError) as exc:
                out.append(exc)
        return out

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        raise NotImplementedError

    def changed(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        return self.status(ids)

    def find(self, names: Sequence[str], since: float) -> dict[str, str]:
        return {}

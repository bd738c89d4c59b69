"""The simulated scheduler adapter: jobs queue, start, run and end on the virtual machine."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from mummi_spec.plan import Plan, Role
from mummi_spec.runtime.schedulers._common import SubmitThrottle, check_name
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus, SchedulerBase
from mummi_spec.runtime.simulate.expect import JobExpect, job_expect, uniform
from mummi_spec.runtime.simulate.world import Engine, Machine, Producers

_PENDING = JobStatus(JobState.PENDING)
_RUNNING = JobStatus(JobState.RUNNING)
_COMPLETED = JobStatus(JobState.COMPLETED, 0)
_FAILED = JobStatus(JobState.FAILED, 1, "simulated failure")
_TIMEDOUT = JobStatus(JobState.TIMEDOUT, reason="walltime reached")
_CANCELLED = JobStatus(JobState.CANCELLED, reason="cancelled")
_UNKNOWN = JobStatus(JobState.UNKNOWN, reason="not submitted through this adapter")
_END_NAMES = {JobState.COMPLETED: "completed", JobState.FAILED: "failed",
              JobState.TIMEDOUT: "timedout", JobState.CANCELLED: "cancelled"}


@dataclass(eq=False, slots=True)
class SimJob:
    """One submitted job as the simulated scheduler sees it."""

    id: str
    name: str
    job_type: str
    sim: str | None
    shape: tuple[int, int, int, bool]  # nodes, GPUs per node, cores per node, persistent
    submitted: float
    status: JobStatus = _PENDING
    nodes: list[int] = field(default_factory=list)
    started: float | None = None


class SimulatedScheduler(SchedulerBase):
    """A scheduler for ``mummi simulate``: the same protocol as Slurm's or Flux's adapter.

    ``submit`` passes the submission throttle in virtual time (the caller blocks, as it would
    on a real throttle, while the world runs on), then the job becomes eligible after the
    start-up delay and starts when the machine has room, first come first served per job
    shape. Its run time, failure and walltime kill come from the plan's ``expect`` blocks.
    A job type that ``checkpoints`` has one run time per simulation, worked off attempt by
    attempt: a walltime kill, a cancel or the end of an allocation keeps what was done, and
    the next attempt runs the rest. ``carried`` (simulation, job type) pairs were cut short by
    an allocation before this one: they start part done.
    """

    key: ClassVar[str] = "simulated"
    jobs_survive_manager: ClassVar[bool] = False

    def __init__(self, plan: Plan, *, engine: Engine, machine: Machine,
                 producers: Producers, seed: int = 0, startup: float = 0.0,
                 carried: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.engine = engine
        self.machine = machine
        self.producers = producers
        self.seed = seed
        self.startup = startup
        self.checkpoints = frozenset(n for n, j in plan.jobs.items() if j.checkpoints)
        # (simulation, job type) -> seconds of its run time already done, for checkpoint jobs
        self.done: dict[tuple[str, str], float] = {}
        self._carried = set(carried)
        self.throttle = SubmitThrottle(plan.scheduler.per_second, plan.scheduler.burst,
                                       clock=lambda: engine.now, sleep=engine.sleep)
        self.expect: dict[str, JobExpect] = {n: job_expect(n, j) for n, j in plan.jobs.items()}
        self.persistent = frozenset(n for n, j in plan.jobs.items() if j.role == Role.PERSISTENT)
        self.jobs: dict[str, SimJob] = {}
        self._queues: dict[tuple[int, int, int, bool], deque[SimJob]] = {}
        self.running: Counter[str] = Counter()
        self.started: Counter[str] = Counter()
        self.ended: dict[str, Counter[str]] = {}
        self.waiting = 0  # submitted, not started, not cancelled
        self._moved: set[str] = set()  # ids whose state changed since ``changed`` said so

    # ------------------------------------------------------------ protocol
    def submit(self, job: JobRequest) -> str:
        check_name(job.name)  # what a real adapter refuses, this one refuses too
        self.throttle.acquire()
        job_id = f"sim-{len(self.jobs) + 1}"
        nodes = max(job.nodes, 1)
        shape = (nodes, -(-job.gpus // nodes), -(-job.tasks * job.cores_per_task // nodes),
                 job.job_type in self.persistent)
        rec = SimJob(job_id, job.name, job.job_type, job.env.get("MUMMI_SIM"), shape,
                     self.engine.now)
        self.jobs[job_id] = rec
        self.waiting += 1
        self.engine.at(self.engine.now + self.startup, self._eligible, rec)
        return job_id

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        jobs = self.jobs
        return {i: jobs[i].status if i in jobs else _UNKNOWN for i in ids}

    def changed(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        """``status`` of only those ``ids`` whose state changed since they were last reported
        here (the manager's fast path: most of thousands of jobs are still running)."""
        if not self._moved:
            return {}
        wanted = self._moved.intersection(ids)
        self._moved -= wanted
        jobs = self.jobs
        return {i: jobs[i].status for i in sorted(wanted, key=lambda i: int(i[4:]))}

    def cancel(self, ids: Sequence[str]) -> None:
        for i in ids:
            rec = self.jobs.get(i)
            if rec is None or rec.status not in (_PENDING, _RUNNING):
                continue
            self._finish(rec, _CANCELLED)  # a pending one is skipped when its turn comes
        self._dispatch()

    def close(self) -> None:
        """Nothing held outside this object."""

    # ------------------------------------------------------------- the machine
    def _eligible(self, rec: SimJob) -> None:
        if rec.status is not _PENDING:
            return
        self._queues.setdefault(rec.shape, deque()).append(rec)
        self._dispatch()

    def _dispatch(self) -> None:
        queues = [q for q in self._queues.values() if q]
        if not queues:
            return
        queues.sort(key=lambda q: int(q[0].id[4:]))  # oldest head first
        for q in queues:
            while q:
                rec = q[0]
                if rec.status is not _PENDING:
                    q.popleft()
                    continue
                nodes = self.machine.place(*rec.shape)
                if nodes is None:
                    break
                q.popleft()
                self._start(rec, nodes)

    def _start(self, rec: SimJob, nodes: list[int]) -> None:
        now = self.engine.now
        rec.status, rec.nodes, rec.started = _RUNNING, nodes, now
        self._moved.add(rec.id)
        self.waiting -= 1
        self.running[rec.job_type] += 1
        self.started[rec.job_type] += 1
        exp = self.expect[rec.job_type]
        duration = self._remaining(rec, exp)
        if uniform(self.seed, rec.name, "fails") < exp.failure_rate:
            end, outcome = now + min(duration, exp.walltime) * uniform(
                self.seed, rec.name, "fails at"), _FAILED
        elif duration > exp.walltime:
            end, outcome = now + exp.walltime, _TIMEDOUT
        else:
            end, outcome = now + duration, _COMPLETED
        if math.isfinite(end):
            self.engine.at(end, self._end, rec, outcome)
        self.producers.start(rec.id, rec.job_type, rec.sim)

    def _end(self, rec: SimJob, outcome: JobStatus) -> None:
        if rec.status is not _RUNNING:
            return  # cancelled meanwhile
        self._finish(rec, outcome)
        self._dispatch()

    def _remaining(self, rec: SimJob, exp: JobExpect) -> float:
        """The run time this attempt needs: all of a fresh draw, or what its simulation has
        left to do if the job type checkpoints."""
        key = (rec.sim or "", rec.job_type)
        if rec.job_type not in self.checkpoints:
            return exp.duration(uniform(self.seed, rec.name, "duration"))
        total = exp.duration(uniform(self.seed, *key, "duration"))
        if key in self._carried:  # cut short by the allocation before the simulated ones
            self._carried.discard(key)
            self.done[key] = total * (1.0 - uniform(self.seed, *key, "remaining"))
        return max(total - self.done.get(key, 0.0), 0.0)

    def _finish(self, rec: SimJob, outcome: JobStatus) -> None:
        if rec.status is _RUNNING and rec.job_type in self.checkpoints:
            key = (rec.sim or "", rec.job_type)
            self.done[key] = self.done.get(key, 0.0) + self.engine.now - (rec.started or 0.0)
        if rec.status is _RUNNING:
            _, gpus, cores, _ = rec.shape
            self.machine.release(rec.nodes, gpus, cores)
            self.running[rec.job_type] -= 1
            self.producers.stop(rec.id)
        elif rec.status is _PENDING:
            self.waiting -= 1
        rec.status = outcome
        self._moved.add(rec.id)
        self.ended.setdefault(rec.job_type, Counter())[_END_NAMES[outcome.state]] += 1


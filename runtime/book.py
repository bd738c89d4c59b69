"""The book: the one owner of every simulation and job-attempt transition, written to the ledger.

Everything the manager knows about sims and jobs lives here, beside the ledger row it mirrors:
the coupling pipelines (selected sims waiting for a setup, set-up sims waiting for a slot), the
live attempts with the resources they hold, and the end states per job. Each method changes the
ledger first and the counts in the same call, so no other part keeps state of its own.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mummi_spec.errors import SchedulerError
from mummi_spec.plan import CouplingPlan, Plan, Pool, Role
from mummi_spec.runtime import tracker
from mummi_spec.runtime.ledger import CallRow, JobRow, Ledger
from mummi_spec.runtime.schedulers.base import JobState, SchedulerAdapter
from mummi_spec.runtime.states import (
    LIVE_ATTEMPTS,
    AttemptState,
    SimState,
    check_transition,
)

log = logging.getLogger("mummi.manager")

UNCAPPED = 1 << 62


@dataclass
class Sim:
    """One selection: its candidate, where it is, and its setup's directory once set up."""

    name: str
    coupling: str
    candidate: str
    state: SimState
    setup_dir: str = ""


@dataclass
class Live:
    """A job attempt not ended yet, and the coupling whose budget it holds (None: persistent)."""

    row: JobRow
    coupling: str | None
    role: Role


@dataclass
class Pipeline:
    """One coupling's queues: selected sims waiting for setup, set-up sims waiting for a slot."""

    plan: CouplingPlan
    cap: int
    waiting: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    selected: int = 0
    chosen: set[str] = field(default_factory=set)  # candidates it ever selected

    @property
    def name(self) -> str:
        return self.plan.name


class Book:
    """Sims, live attempts and their counts, kept in step with the ledger."""

    def __init__(self, plan: Plan, ledger: Ledger, workspace: Path) -> None:
        self.plan = plan
        self.ledger = ledger
        self.workspace = workspace
        self.prefix = ""  # of each attempt's name at the scheduler; the manager's claim sets it
        self.sims: dict[str, Sim] = {}
        self.pipes = {name: Pipeline(c, c.max_simulations if c.max_simulations is not None
                                     else UNCAPPED)
                      for name, c in sorted(plan.couplings.items())}
        self.live: dict[str, Live] = {}
        self.by_sched_id: dict[str, str] = {}  # scheduler id -> name, of live attempts
        self.history: dict[tuple[str, str], list[AttemptState]] = defaultdict(list)
        self.attempts: Counter[tuple[str, str]] = Counter()  # highest attempt number used
        self.ran: set[tuple[str, str]] = set()  # (sim or "", job type) an attempt of which ran
        self.persistent_retry: set[str] = set()  # persistent job types to submit again
        self.unrunnable: dict[str, str] = {}  # job type -> why its program cannot start
        self.stopping = False  # no persistent job is resubmitted once the campaign stops
        self.count: Counter[str] = Counter()  # live attempts per job type
        self.live_by: Counter[tuple[str | None, str]] = Counter()  # per (coupling, job type)
        self.used: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # coupling: gpus, cores
        self.running = [0, 0, 0]  # GPUs, cores and number of the running attempts

    # ============================================================ selection
    def select(self, pipe: Pipeline, candidates: Iterable[str], now: float,
               call: CallRow | None = None) -> list[str]:
        """Record new selections (durable before anything is submitted for them), with the
        selector ``call`` they came from."""
        fresh = [c for c in candidates if c not in pipe.chosen]
        if not fresh:
            if call is not None:
                self.ledger.record_call(call)
            return []
        seq = self.ledger.next_seq()
        rows = [(f"{pipe.plan.to}-{seq + i:06d}", pipe.name, cand, seq + i, now)
                for i, cand in enumerate(fresh)]
        self.ledger.add_sims(rows, call)
        for sim, _, cand, _, _ in rows:
            self.sims[sim] = Sim(sim, pipe.name, cand, SimState.SELECTED)
            pipe.waiting.append(sim)
            pipe.chosen.add(cand)
        pipe.selected += len(rows)
        return [r[0] for r in rows]

    def start_setup(self, pipe: Pipeline, now: float) -> JobRow:
        """The oldest waiting sim goes to its setup job: a new attempt, its resources held."""
        sim = pipe.waiting.pop(0)
        self._set_sim(sim, SimState.SETUP)
        assert pipe.plan.setup is not None
        return self.new_attempt(pipe.plan.setup, sim, now)

    def skip_setup(self, pipe: Pipeline) -> None:
        """The oldest waiting sim of a coupling without setup jobs is ready at once."""
        sim = pipe.waiting.pop(0)
        self._set_sim(sim, SimState.READY)
        pipe.ready.append(sim)

    def start_simulation(self, pipe: Pipeline, now: float) -> JobRow:
        """The oldest ready sim goes to its simulation job."""
        sim = pipe.ready.pop(0)
        self._set_sim(sim, SimState.SIMULATING)
        return self.new_attempt(pipe.plan.simulation, sim, now)

    # ============================================================ attempts
    def new_attempt(self, job_type: str, sim: str | None, now: float) -> JobRow:
        """Record the next attempt of ``job_type`` (for ``sim``, or persistent) as submitting.

        Every attempt gets its own name and directory, even one that never ran: a job
        orphaned by a killed manager may still be writing into the old one. Its name at the
        scheduler, recorded with it, adds the campaign's prefix: ``recover`` looks it up.
        """
        key = (sim or "", job_type)
        self.attempts[key] += 1
        attempt = self.attempts[key]
        res = self.plan.job(job_type).resources  # gpus and cores over all its nodes
        workdir = self.workspace / "runs" / (sim or "persistent") / f"{job_type}.{attempt}"
        name = tracker.job_name(sim, job_type, attempt)
        row = JobRow(name, job_type, sim, attempt, AttemptState.SUBMITTING, None, str(workdir),
                     res.gpus, res.cores,
                     sched_name=f"{self.prefix}.{name}" if self.prefix else name)
        self.ledger.add_job(row, now)
        self._hold(row)
        return row

    def accepted(self, name: str, sched_id: str) -> None:
        """The scheduler took the attempt under ``sched_id``."""
        self.ledger.set_job(name, AttemptState.QUEUED, sched_id=sched_id)
        self._restate(self.live[name], state=AttemptState.QUEUED, sched_id=sched_id)

    def refused(self, name: str, reason: str, now: float) -> None:
        """The scheduler refused the attempt: not the job's fault, so not charged."""
        self.ledger.set_job(name, AttemptState.LOST, reason=f"submission refused: {reason}", t=now)
        live = self._release(name)
        if live is not None:
            self._requeue(live.row)

    def observe(self, name: str, state: AttemptState, now: float) -> None:
        """A live attempt is queued or running now."""
        running = state == AttemptState.RUNNING
        self.ledger.set_job(name, state, started=now if running else None)
        live = self.live[name]
        if running:
            self.ran.add((live.row.sim or "", live.row.job_type))
        self._restate(live, state=state)

    def restarts(self, row: JobRow) -> bool:
        """Whether an earlier attempt of this job for this simulation ran (and may have left
        the checkpoints this one continues from)."""
        return (row.sim or "", row.job_type) in self.ran

    def ended(self, row: JobRow, state: AttemptState, reason: str, now: float, *,
              exit_code: int | None = None, track: bool = True) -> None:
        """An attempt ended in ``state``: record it, free what it held, move its sim on.

        ``track=False``: an end the job is not answerable for (a restart found it gone).
        """
        if row.name in self.live:
            self.ledger.set_job(row.name, state, exit_code=exit_code, reason=reason or None,
                                t=now)
            self._release(row.name)
        key = (row.sim or "", row.job_type)
        job = self.plan.job(row.job_type)
        history = self.history[key]
        if track and state != AttemptState.LOST:
            history.append(state)
        if tracker.continues(job, state):
            log.info("job %s reached its walltime; the next attempt continues it", row.name)
        elif state != AttemptState.COMPLETED:
            log.info("job %s ended %s%s", row.name, state.value, f": {reason}" if reason else "")
        if state == AttemptState.FAILED and tracker.not_runnable(job, exit_code):
            self._mark_unrunnable(row.job_type, reason)
        again = state in (AttemptState.LOST, AttemptState.CANCELLED) or (
            state != AttemptState.COMPLETED
            and tracker.should_retry(job, state, history[:-1], exit_code))
        if row.sim is None:  # a persistent job
            if again and not self.stopping:
                self.persistent_retry.add(row.job_type)
            return
        pipe = self.pipes[self.sims[row.sim].coupling]
        if state == AttemptState.COMPLETED:
            if row.job_type == pipe.plan.setup:
                self._set_sim(row.sim, SimState.READY, setup_dir=row.workdir)
                pipe.ready.append(row.sim)
            else:
                self._set_sim(row.sim, SimState.DONE, t=now)
        elif again:
            self._requeue(row)  # it competes for resources like any other instance
        else:
            self._set_sim(row.sim, SimState.FAILED, t=now,
                          reason=f"{row.job_type}: {state.value} {reason}".strip())

    def cancel_live(self, names: Iterable[str], reason: str, now: float) -> None:
        """Attempts cancelled by the manager (at the end of a campaign, or at a stop)."""
        for name in list(names):
            live = self._release(name)
            if live is None:
                continue
            self.ledger.set_job(name, AttemptState.CANCELLED, reason=reason, t=now)
            self.history[(live.row.sim or "", live.row.job_type)].append(AttemptState.CANCELLED)

    def persistent_due(self, *, start: bool = False, resumed_stop: bool = False) -> list[str]:
        """Persistent job types to submit now: those refused or ended early, and at a
        ``start`` those not running whose last end allows another attempt (after a stopped
        campaign, ``resumed_stop``, also those its stop cancelled)."""
        due = set(self.persistent_retry)
        self.persistent_retry.clear()
        for name, job in sorted(self.plan.jobs.items()) if start else ():
            if job.role != Role.PERSISTENT or self.count[name] or name in due:
                continue
            ends = self.history[("", name)]
            if not ends or (ends[-1] in (AttemptState.CANCELLED, AttemptState.LOST)
                            and resumed_stop) or tracker.should_retry(job, ends[-1], ends[:-1]):
                due.add(name)
        return sorted(due)

    # ============================================================ queries
    def slots(self, pipe: Pipeline, job_type: str) -> int:
        """How many more attempts of ``job_type`` its coupling's budget and cap allow now."""
        job = self.plan.job(job_type)
        budget = pipe.plan.budget
        gpus, cores = self.used[pipe.name]
        if job.pool == Pool.GPU:
            free = (budget.gpus - gpus) // max(job.resources.gpus, 1)
        else:
            free = (budget.cores - cores) // max(job.resources.cores, 1)
        return max(0, min(free, job.max_concurrent - self.count[job_type]))

    def stalled(self, pipe: Pipeline) -> bool:
        """Whether a job type the coupling needs cannot be started at all."""
        return bool(self.unrunnable.keys() & {pipe.plan.simulation, pipe.plan.setup})

    # ============================================================ recovery
    def recover(self, sched: SchedulerAdapter, now: float) -> None:
        """Rebuild the queues from the ledger; finish what a crash interrupted."""
        for row in self.ledger.sims():
            self.sims[row.sim] = Sim(row.sim, row.coupling, row.candidate, row.state,
                                     row.setup_dir or "")
            pipe = self.pipes.get(row.coupling)
            if pipe is None:
                continue
            pipe.selected += 1
            pipe.chosen.add(row.candidate)
            if row.state == SimState.SELECTED:
                pipe.waiting.append(row.sim)
            elif row.state == SimState.READY:
                pipe.ready.append(row.sim)
        latest: dict[tuple[str | None, str], JobRow] = {}
        for j in self.ledger.jobs():
            key = (j.sim or "", j.job_type)
            self.attempts[key] = max(self.attempts[key], j.attempt)
            if j.started:
                self.ran.add(key)
            if j.state not in LIVE_ATTEMPTS:
                self.history[key].append(j.state)
            latest[(j.sim, j.job_type)] = j
        for j in self._found_by_name(sched, latest.values()):
            latest[(j.sim, j.job_type)] = j
        live = [j for j in latest.values() if j.state in LIVE_ATTEMPTS]
        status = sched.status([j.sched_id for j in live if j.sched_id]) if live else {}
        for j in live:
            st = status.get(j.sched_id or "")
            if st is None or st.state == JobState.UNKNOWN:
                # Submitted by an earlier manager whose jobs this scheduler cannot re-attach.
                self.ledger.set_job(j.name, AttemptState.LOST, reason="manager restarted",
                                    t=now)
                self.ended(j, AttemptState.LOST, "manager restarted", now, track=False)
            else:
                self._hold(j)
        # Sims whose last job ended (or was cancelled at a stop) without the sim moving on.
        for sim in sorted(self.sims.values(), key=lambda s: s.name):
            if sim.state not in (SimState.SETUP, SimState.SIMULATING):
                continue
            cp = self.pipes[sim.coupling].plan
            job_type = cp.setup if sim.state == SimState.SETUP else cp.simulation
            assert job_type is not None
            last = latest.get((sim.name, job_type))
            if last is None or last.state in (AttemptState.CANCELLED, AttemptState.LOST,
                                              AttemptState.SUBMITTING):
                gone = last or JobRow("", job_type, sim.name, 0, AttemptState.LOST, None, "",
                                      0, 0)
                self.ended(gone, AttemptState.LOST, "never ran to an end", now, track=False)
            elif last.state not in LIVE_ATTEMPTS:
                self.ended(last, last.state, last.reason or "", now, track=False)

    def _found_by_name(self, sched: SchedulerAdapter, rows: Iterable[JobRow]) -> list[JobRow]:
        """The attempts a crash left ``submitting`` that the scheduler holds under their
        unique name: submitted, their id never recorded. Each takes that job's id, queued,
        so it is tracked like any other; the others stay for recovery to count as lost."""
        pending = {j.sched_name: j for j in rows
                   if j.state == AttemptState.SUBMITTING and j.sched_name}
        if not pending or not sched.finds_by_name:
            return []
        try:
            found = sched.find(sorted(pending), self.ledger.oldest_submitting() or 0.0)
        except SchedulerError as exc:
            log.warning("cannot ask the scheduler for the %d attempts a crash left mid-"
                        "submission (%s): they count as lost and are submitted again, and any "
                        "the scheduler had taken runs twice", len(pending), exc)
            return []
        adopted = []
        for name in sorted(pending.keys() & found.keys()):
            j, sched_id = pending[name], found[name]
            self.ledger.set_job(j.name, AttemptState.QUEUED, sched_id=sched_id)
            log.info("attempt %s was submitted before the crash, as job %s: tracking it",
                     j.name, sched_id)
            adopted.append(replace(j, state=AttemptState.QUEUED, sched_id=sched_id))
        return adopted

    # ============================================================ internals
    def _hold(self, row: JobRow) -> None:
        coupling = self.sims[row.sim].coupling if row.sim else None
        self.live[row.name] = Live(row, coupling, self.plan.job(row.job_type).role)
        self.live_by[(coupling, row.job_type)] += 1
        if row.sched_id:
            self.by_sched_id[row.sched_id] = row.name
        self._count_running(row, +1)
        self._reserve(coupling, row.job_type, +1)

    def _release(self, name: str) -> Live | None:
        live = self.live.pop(name, None)
        if live is not None:
            self.live_by[(live.coupling, live.row.job_type)] -= 1
            self.by_sched_id.pop(live.row.sched_id or "", None)
            self._count_running(live.row, -1)
            self._reserve(live.coupling, live.row.job_type, -1)
        return live

    def _restate(self, live: Live, **changes: object) -> None:
        """Change a live attempt's row; every change goes through here, so the counts stay
        right without a pass over all live attempts each iteration."""
        self._count_running(live.row, -1)
        live.row = replace(live.row, **changes)  # type: ignore[arg-type]
        self._count_running(live.row, +1)
        if live.row.sched_id:
            self.by_sched_id[live.row.sched_id] = live.row.name

    def _count_running(self, row: JobRow, sign: int) -> None:
        if row.state == AttemptState.RUNNING:
            self.running[0] += sign * row.gpus
            self.running[1] += sign * row.cores
            self.running[2] += sign

    def _reserve(self, coupling: str | None, job_type: str, sign: int) -> None:
        """Count an attempt (and its GPUs or cores against its coupling's budget) in or out."""
        self.count[job_type] += sign
        if coupling is None:
            return
        job = self.plan.job(job_type)
        if job.pool == Pool.GPU:
            self.used[coupling][0] += sign * job.resources.gpus
        else:
            self.used[coupling][1] += sign * job.resources.cores

    def _requeue(self, row: JobRow) -> None:
        """Put a sim whose job must run again at the front of the queue it came from."""
        if row.sim is None:
            if not self.stopping:
                self.persistent_retry.add(row.job_type)
            return
        sim = self.sims[row.sim]
        pipe = self.pipes[sim.coupling]
        if sim.state == SimState.SETUP:
            self._set_sim(row.sim, SimState.SELECTED)
            pipe.waiting.insert(0, row.sim)
        elif sim.state == SimState.SIMULATING:
            self._set_sim(row.sim, SimState.READY)
            pipe.ready.insert(0, row.sim)

    def _set_sim(self, name: str, state: SimState, *, setup_dir: str | None = None,
                 reason: str | None = None, t: float | None = None) -> None:
        sim = self.sims[name]
        if sim.state != state:
            check_transition(name, sim.state, state)
        self.ledger.set_sim(name, state, setup_dir=setup_dir, reason=reason, t=t)
        sim.state = state
        if setup_dir is not None:
            sim.setup_dir = setup_dir

    def _mark_unrunnable(self, job_type: str, reason: str) -> None:
        """Start no more jobs of a type whose program is missing: every instance would fail
        the same way. Its couplings stop; their queued selections stay for a resumed run."""
        if job_type not in self.unrunnable:
            self.unrunnable[job_type] = reason
            log.error("job type %s cannot run: %s; no more %s jobs are started and the "
                      "couplings that need it stop (`mummi run` again resumes them once the "
                      "program is there)", job_type, reason, job_type)

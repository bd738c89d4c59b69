"""Benchmark one workflow-manager tick (poll + schedule + observe) with many tracked jobs.

    python benchmarks/bench_manager.py [--quick] [--json out.json]

The manager runs the plan of ``specs/rasraf-3scale.yaml`` (no profile: Summit) with its budgets
and concurrency limits scaled so that 1,000 / 6,000 / 24,000 jobs are live, split between the
two couplings by their GPU shares; each coupling also holds half its ready buffer in set-up
jobs and half in selected simulations waiting for one. The scheduler is a stand-in that answers
``status`` from a dict: the row measures the manager's bookkeeping (tracker, ledger, queues,
resource accounting, requests), not a scheduler. Selection uses the random selector, whose
cost is nil: the selectors have rows of their own.

Between iterations (untimed) 1 % of the live jobs end, half of them simulations and half
set-ups, each with its success file written, and every job submitted by the previous iteration
starts running. One timed iteration then polls (every status change goes to the ledger), moves
the pipelines on and schedules: set-up simulations onto the freed GPUs, new set-ups, new
selections, and submits them (ledger first, through the submit thread pool).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any, ClassVar

import numpy as np
from benchlib import clock, main, peak_mb, reset_peak, row, times

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.plan import BudgetPlan, Plan, Role, SelectorPlan, StorePlan
from mummi_spec.runtime.book import Live
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ledger import JobRow, Ledger
from mummi_spec.runtime.manager import Clock, Manager
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus, SchedulerBase
from mummi_spec.runtime.states import AttemptState, SimState
from mummi_spec.runtime.status import write_status

SPEC = Path(__file__).resolve().parent.parent / "specs" / "rasraf-3scale.yaml"
TARGET_S = 0.5
CHURN = 0.01  # share of the live jobs that end between two iterations
_PENDING = JobStatus(JobState.PENDING)
_RUNNING = JobStatus(JobState.RUNNING)
_DONE = JobStatus(JobState.COMPLETED, 0)
_UNKNOWN = JobStatus(JobState.UNKNOWN)


class FakeScheduler(SchedulerBase):
    """Accepts everything; ``status`` answers from a dict the benchmark sets."""

    key: ClassVar[str] = "fake"

    def __init__(self) -> None:
        self.state: dict[str, JobStatus] = {}
        self._ids = itertools.count(1)
        self.submitted: list[str] = []

    def submit(self, job: JobRequest) -> str:
        job_id = f"fake-{next(self._ids)}"
        self.state[job_id] = _PENDING
        self.submitted.append(job_id)
        return job_id

    def adopt(self) -> str:
        """The id of a job already running when the benchmark starts."""
        job_id = f"fake-{next(self._ids)}"
        self.state[job_id] = _RUNNING
        return job_id

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        state = self.state
        return {i: state.get(i, _UNKNOWN) for i in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.state[i] = JobStatus(JobState.CANCELLED)

    def close(self) -> None:
        """Nothing held."""


def _plan(jobs: int) -> tuple[Plan, dict[str, tuple[int, int]]]:
    """The Summit plan scaled to ``jobs`` live jobs; per coupling (simulations, set-ups).

    Stores are in memory and the selectors random: the row is the manager's bookkeeping.
    """
    plan = compile_loaded(load_spec(SPEC, profile=NO_PROFILE)).plan
    shares = {c: cp.share_gpus for c, cp in plan.couplings.items()}
    split = {}
    couplings = dict(plan.couplings)
    job_types = dict(plan.jobs)
    for c, cp in sorted(plan.couplings.items()):
        total = round(jobs * shares[c] / sum(shares.values()))
        setups = cp.ready_buffer // 2
        split[c] = (total - setups, setups)
        assert cp.setup is not None
        sim, setup = plan.jobs[cp.simulation], plan.jobs[cp.setup]
        job_types[cp.simulation] = replace(sim, max_concurrent=jobs)
        job_types[cp.setup] = replace(setup, max_concurrent=jobs)
        couplings[c] = replace(cp, max_simulations=None, budget=BudgetPlan(
            gpus=(total - setups) * sim.resources.gpus,
            cores=setups * setup.resources.cores))
    plan = replace(
        plan, couplings=couplings, jobs=job_types,
        stores={n: StorePlan(n, "memory", n) for n in plan.stores},
        selectors={n: SelectorPlan(n, "random", s.dim) for n, s in plan.selectors.items()},
        manager=replace(plan.manager, max_simulations=None))
    return plan, split


class _Bench:
    """A manager tracking ``jobs`` live jobs in a temporary workspace, resumed from a ledger
    that holds them (as after a restart), so it is built through its public ``start``."""

    def __init__(self, jobs: int, ws: Path) -> None:
        plan, split = _plan(jobs)
        (ws / "plan.json").write_text(plan.to_json())
        self.plan = plan
        self.sched = FakeScheduler()
        self.rng = random.Random(0)
        self.now = 1_000.0
        self._populate(Ledger(ws / "ledger.sqlite"), split, ws)
        clock = _Clock(self)
        self.m = Manager(Campaign(plan, ws / "plan.json", ws), self.sched, clock=clock,
                         threads=False, status_every=math.inf)
        self.m.start()
        for name, g in self.m.selectors.items():  # ample candidates, free to select
            n = max(10_000, jobs)
            g.selector.add([f"{name}-{i:08d}" for i in range(n)],
                           np.zeros((n, g.selector.dim), dtype=np.float32))

    def _populate(self, ledger: Ledger, split: dict[str, tuple[int, int]], ws: Path) -> None:
        sims: list[tuple[str, str, str, int, float]] = []
        states: list[tuple[str, str]] = []
        jobs: list[JobRow] = []
        for c, (n_sim, n_setup) in split.items():
            cp = self.plan.couplings[c]
            waiting = n_setup
            for i in range(n_sim + n_setup + waiting):
                sim = f"{cp.to}-{len(sims) + 1:06d}"
                sims.append((sim, c, f"{cp.selector}-x{len(sims):08d}", len(sims) + 1, 0.0))
                if i < n_sim + n_setup:
                    job_type = cp.simulation if i < n_sim else cp.setup
                    assert job_type is not None
                    states.append((SimState.SIMULATING if i < n_sim else SimState.SETUP, sim))
                    jobs.append(self._row(sim, job_type, ws))
        ledger.add_sims(sims)
        with ledger.transaction() as db:  # in bulk: a manager got here one job at a time
            db.executemany("UPDATE sims SET state = ? WHERE sim = ?", states)
            db.executemany(
                "INSERT INTO jobs (name, job_type, sim, attempt, state, sched_id, workdir, gpus,"
                " cores, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                [(r.name, r.job_type, r.sim, r.attempt, r.state, r.sched_id, r.workdir, r.gpus,
                  r.cores) for r in jobs])
        ledger.close()

    def _row(self, sim: str, job_type: str, ws: Path) -> JobRow:
        res = self.plan.jobs[job_type].resources
        return JobRow(f"{sim}.{job_type}.1", job_type, sim, 1, AttemptState.RUNNING,
                      self.sched.adopt(), str(ws / "runs" / sim / f"{job_type}.1"),
                      res.gpus, res.cores)

    def churn(self) -> int:
        """Untimed: some running jobs end (success file written), new ones start."""
        m, st = self.m, self.sched.state
        for job_id in self.sched.submitted:
            st[job_id] = _RUNNING
        self.sched.submitted.clear()
        running = [lj for lj in m.book.live.values() if lj.row.state == AttemptState.RUNNING]
        by_role: dict[Role, list[Live]] = {Role.SIMULATION: [], Role.SETUP: []}
        for lj in running:
            by_role.get(lj.role, []).append(lj)
        ending = 0
        for group in by_role.values():
            k = min(len(group), max(1, round(len(m.book.live) * CHURN / 2)))
            for lj in self.rng.sample(group, k):
                marker = self.plan.jobs[lj.row.job_type].success.file
                if marker:
                    Path(lj.row.workdir).mkdir(parents=True, exist_ok=True)
                    (Path(lj.row.workdir) / marker).touch()
                st[lj.row.sched_id or ""] = _DONE
                ending += 1
        self.now += self.plan.scheduler.poll + 1
        return ending

    def iteration(self) -> None:
        self.m.tick(self.now)

    def observe(self) -> None:
        write_status(self.m.ws, self.m.snapshot("running", self.now))

    def close(self) -> None:
        self.m.submitter.close()
        self.m.ledger.close()


class _Clock(Clock):
    """The benchmark's own time, moved on by ``churn``."""

    def __init__(self, bench: _Bench) -> None:
        super().__init__()
        self.bench = bench

    def now(self) -> float:
        return self.bench.now


def _size(jobs: int, repeats: int) -> tuple[list[float], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-manager-",
                                     dir=os.environ.get("BENCH_DIR")) as tmp:
        reset_peak()
        setup_s, bench = clock(_Bench, jobs, Path(tmp))
        try:
            bench.churn()
            bench.iteration()  # warm-up: first poll of every job, thread pool start
            live = len(bench.m.book.live)
            ended: list[int] = []
            took = times(bench.iteration, repeats,
                         before=lambda: ended.append(bench.churn()))
            observe = median(times(bench.observe, 3))
            info = {"live_before": live, "live_after": len(bench.m.book.live),
                    "ended_per_iteration": round(median(ended)),
                    "submitted_last": sum(1 for lj in bench.m.book.live.values()
                                          if lj.row.state == AttemptState.QUEUED),
                    "observe_s": round(observe, 4), "setup_s": round(setup_s, 2),
                    "peak": peak_mb()}
        finally:
            bench.close()
    return took, info


def run(quick: bool) -> list[dict[str, Any]]:
    """One tick at 1,000 / 6,000 / 24,000 tracked jobs (``quick``: 1,000 and 6,000)."""
    sizes = (1_000, 6_000) if quick else (1_000, 6_000, 24_000)
    rows = []
    per_job: list[float] = []
    for jobs in sizes:
        took, info = _size(jobs, 5 if quick else 9)
        mid = median(took)
        per_job.append(mid / jobs)
        # ~linear: per tracked job, no dearer than at the smaller size (25 % for noise)
        linear = len(per_job) == 1 or per_job[-1] <= 1.25 * per_job[-2]
        peak = info.pop("peak")
        rows.append(row("manager", "manager tick (poll + schedule + observe)",
                        f"{jobs:,} tracked jobs", took, n=jobs, unit="jobs/s",
                        met=mid < TARGET_S and linear, peak=peak,
                        us_per_job=round(mid / jobs * 1e6, 2), **info))
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

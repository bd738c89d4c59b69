"""Benchmark one workflow-manager iteration (poll + schedule) with many tracked jobs.

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
import json
import os
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any, ClassVar

import numpy as np
from benchlib import clock, main, peak_mb, reset_peak, row, times

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ingest import Guarded
from mummi_spec.runtime.ledger import JobRow
from mummi_spec.runtime.manager import Live, Manager
from mummi_spec.runtime.registry import SELECTORS
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus

SPEC = Path(__file__).resolve().parent.parent / "specs" / "rasraf-3scale.yaml"
TARGET_S = 0.5
CHURN = 0.01  # share of the live jobs that end between two iterations
_PENDING = JobStatus(JobState.PENDING)
_RUNNING = JobStatus(JobState.RUNNING)
_DONE = JobStatus(JobState.COMPLETED, 0)
_UNKNOWN = JobStatus(JobState.UNKNOWN)


class FakeScheduler:
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


def _plan(jobs: int) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    """The Summit plan scaled to ``jobs`` live jobs; per coupling (simulations, set-ups)."""
    plan: dict[str, Any] = json.loads(
        compile_loaded(load_spec(SPEC, profile=NO_PROFILE)).files["plan.json"])
    couplings = plan["couplings"]
    shares = {c: float(cfg["share"]["gpus"]) for c, cfg in couplings.items()}
    split = {}
    for c, cfg in sorted(couplings.items()):
        total = round(jobs * shares[c] / sum(shares.values()))
        setups = int(cfg["ready_buffer"]) // 2
        split[c] = (total - setups, setups)
        sim, setup = plan["jobs"][cfg["simulation"]], plan["jobs"][cfg["setup"]]
        sim["max_concurrent"] = setup["max_concurrent"] = jobs
        plan["resources"]["budgets"][c] = {
            "gpus": (total - setups) * sim["resources"]["gpus"] * sim["resources"]["nodes"],
            "cores": setups * setup["resources"]["cores"] * setup["resources"]["nodes"]}
    plan["manager"]["max_simulations"] = None
    return plan, split


class _Bench:
    """A manager tracking ``jobs`` live jobs in a temporary workspace."""

    def __init__(self, jobs: int, ws: Path) -> None:
        plan, split = _plan(jobs)
        (ws / "plan.json").write_text(json.dumps(plan))
        self.sched = FakeScheduler()
        self.m = Manager(Campaign(plan, ws / "plan.json", ws), self.sched, threads=False)
        self.rng = random.Random(0)
        self.now = 1_000.0
        for name, cfg in plan["selectors"].items():  # ample candidates, free to select
            sel = SELECTORS.get("random")({"kind": "random", "dim": cfg["dim"]}, seed=0)
            n = max(10_000, jobs)
            sel.add([f"{name}-{i:08d}" for i in range(n)],
                    np.zeros((n, cfg["dim"]), dtype=np.float32))
            self.m.selectors[name] = Guarded(sel)
        self._populate(split)

    def _populate(self, split: dict[str, tuple[int, int]]) -> None:
        m = self.m
        sims: list[tuple[str, str, str, int, float]] = []
        states: list[tuple[str, str]] = []
        jobs: list[tuple[JobRow, str, str]] = []
        for c, (n_sim, n_setup) in split.items():
            pipe = m.pipes[c]
            cfg = pipe.config
            waiting = n_setup
            for i in range(n_sim + n_setup + waiting):
                sim = f"{cfg['to']}-{len(sims) + 1:06d}"
                sims.append((sim, c, f"{cfg['selector']}-x{len(sims):08d}", len(sims) + 1, 0.0))
                if i < n_sim + n_setup:
                    job_type = cfg["simulation"] if i < n_sim else cfg["setup"]
                    state = "simulating" if i < n_sim else "setup"
                    states.append((state, sim))
                    m.sims[sim] = (c, sims[-1][2], state)
                    jobs.append((self._row(sim, job_type), c, m.plan["jobs"][job_type]["role"]))
                else:
                    m.sims[sim] = (c, sims[-1][2], "selected")
                    pipe.waiting.append(sim)
            pipe.selected = n_sim + n_setup + waiting
        m.ledger.add_sims(sims)
        with m.ledger.transaction() as db:  # bulk: the manager got here one job at a time
            db.executemany("UPDATE sims SET state = ? WHERE sim = ?", states)
            db.executemany(
                "INSERT INTO jobs (name, job_type, sim, attempt, state, sched_id, workdir, gpus,"
                " cores, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                [(r.name, r.job_type, r.sim, r.attempt, r.state, r.sched_id, r.workdir, r.gpus,
                  r.cores) for r, _, _ in jobs])
        for r, c, role in jobs:
            m._hold(r, c, role)
        m.last_poll = 0.0

    def _row(self, sim: str, job_type: str) -> JobRow:
        res = self.m.plan["jobs"][job_type]["resources"]
        return JobRow(f"{sim}.{job_type}.1", job_type, sim, 1, "running",
                      self.sched.adopt(),
                      str(self.m.ws / "runs" / sim / f"{job_type}.1"),
                      res["gpus"] * res["nodes"], res["cores"] * res["nodes"])

    def churn(self) -> int:
        """Untimed: some running jobs end (success file written), new ones start."""
        m, st = self.m, self.sched.state
        for job_id in self.sched.submitted:
            st[job_id] = _RUNNING
        self.sched.submitted.clear()
        running = [lj for lj in m.live.values() if lj.row.state == "running"]
        by_role: dict[str, list[Live]] = {"simulation": [], "setup": []}
        for lj in running:
            by_role.get(lj.role, []).append(lj)
        ending = 0
        for group in by_role.values():
            k = min(len(group), max(1, round(len(m.live) * CHURN / 2)))
            for lj in self.rng.sample(group, k):
                marker = m.plan["jobs"][lj.row.job_type]["success"].get("file")
                if marker:
                    Path(lj.row.workdir).mkdir(parents=True, exist_ok=True)
                    (Path(lj.row.workdir) / marker).touch()
                st[lj.row.sched_id or ""] = _DONE
                ending += 1
        self.now += float(m.plan["scheduler"]["poll"]) + 1
        return ending

    def iteration(self) -> None:
        self.m._poll(self.now)
        self.m._schedule(self.now)

    def observe(self) -> None:
        self.m._observe(self.now)

    def close(self) -> None:
        self.m._pool.shutdown(wait=True)
        self.m.ledger.close()


def _size(jobs: int, repeats: int) -> tuple[list[float], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-manager-",
                                     dir=os.environ.get("BENCH_DIR")) as tmp:
        reset_peak()
        setup_s, bench = clock(_Bench, jobs, Path(tmp))
        try:
            bench.churn()
            bench.iteration()  # warm-up: first poll of every job, thread pool start
            live = len(bench.m.live)
            ended: list[int] = []
            took = times(bench.iteration, repeats,
                         before=lambda: ended.append(bench.churn()))
            observe = median(times(bench.observe, 3))
            info = {"live_before": live, "live_after": len(bench.m.live),
                    "ended_per_iteration": round(median(ended)),
                    "submitted_last": sum(1 for lj in bench.m.live.values()
                                          if lj.row.state == "queued"),
                    "observe_s": round(observe, 4), "setup_s": round(setup_s, 2),
                    "peak": peak_mb()}
        finally:
            bench.close()
    return took, info


def run(quick: bool) -> list[dict[str, Any]]:
    """poll + schedule at 1,000 / 6,000 / 24,000 tracked jobs (``quick``: 1,000 and 6,000)."""
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
        rows.append(row("manager", "manager iteration (poll + schedule)",
                        f"{jobs:,} tracked jobs", took, n=jobs, unit="jobs/s",
                        met=mid < TARGET_S and linear, peak=peak,
                        us_per_job=round(mid / jobs * 1e6, 2), **info))
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

"""The workflow manager against a fake scheduler and clock: budgets, queues, retries, restarts."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.errors import LedgerError, SchedulerError, UsageError
from mummi_spec.frontend import load_spec_text
from mummi_spec.plan import Plan, RetryPolicy
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.manager import END_WAIT, Manager
from mummi_spec.runtime.periodic import Task, guarded
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.schedulers.base import (
    TERMINAL_STATES,
    JobRequest,
    JobState,
    JobStatus,
    SchedulerAdapter,
    SchedulerBase,
)
from mummi_spec.runtime.states import CampaignState
from mummi_spec.runtime.status import read_status
from tests.conftest import fill, mounted

COUPLING = "gen-to-cg"
SPEC = """
spec: mummi/v1
name: manager-test
workspace: ./ws
machine: {name: test, nodes: 1, walltime: "01:00:00", node: {cores: 8, gpus: 4},
          reserved: {manager: 0}}
scheduler: {type: local, poll: 1s}
stores:
  latent: {backend: filesystem}
scales:
  gen:
    jobs:
      generator: {role: persistent, command: gen, walltime: "01:00:00",
                  resources: {cores_per_task: 1, gpus: 0}}
    emits: {latent: {kind: candidates, dim: 2, store: latent, key: "c_{id}"}}
  cg:
    jobs:
      createsim: {role: setup, command: "setup $(CANDIDATE)", walltime: "00:01:00",
                  resources: {cores_per_task: 1, gpus: 1}, success: {file: setup.ok},
                  retry: {limit: 2, on: [failed, timedout]}}
      cganalysis: {role: simulation, command: "sim $(SIM) $(SETUP_DIR)", walltime: "00:02:00",
                   resources: {cores_per_task: 1, gpus: 1}, retry: {limit: 1, on: [failed]}}
selectors: {pick: {kind: random, dim: 2}}
couplings:
  gen-to-cg: {from: gen.latent, to: cg, selector: pick, setup: createsim,
              simulation: cganalysis, ready_buffer: 2, max_pending: 8,
              max_selections_per_iteration: 50, share: {gpus: 1.0, cores: 1.0}}
manager: {tick: 1s, checkpoint_every: 10m, max_simulations: 12}
"""


@pytest.fixture(scope="module")
def compiled() -> Plan:
    return compile_loaded(load_spec_text(SPEC)).plan


def patched(plan: Plan, *, budget: int, sim_max: int, cap: int, **coupling: Any) -> Plan:
    """``plan`` with the coupling's GPU budget, the simulations' concurrency, the campaign
    cap and coupling settings changed, as a compiler would have resolved them."""
    c = plan.couplings[COUPLING]
    c = dataclasses.replace(c, budget=dataclasses.replace(c.budget, gpus=budget),
                            max_simulations=cap, **coupling)
    sim = dataclasses.replace(plan.jobs["cganalysis"], max_concurrent=sim_max)
    return dataclasses.replace(
        plan, couplings={**plan.couplings, COUPLING: c}, jobs={**plan.jobs, "cganalysis": sim},
        manager=dataclasses.replace(plan.manager, max_simulations=cap))


class FakeScheduler(SchedulerBase):
    """Accepts jobs and reports what the test says happened to them; sees only its own ids."""

    key: ClassVar[str] = "fake"
    _instances = itertools.count(1)

    def __init__(self) -> None:
        self.prefix = f"f{next(self._instances)}-"
        self.requests: dict[str, JobRequest] = {}
        self.states: dict[str, JobStatus] = {}
        self.refuse = 0  # refuse this many of the next submissions
        self.refused: list[str] = []
        self.cancelled: list[str] = []
        self.closed = False
        self._lock = threading.Lock()  # the manager submits from a small thread pool

    def submit(self, job: JobRequest) -> str:
        with self._lock:
            if self.refuse:
                self.refuse -= 1
                self.refused.append(job.name)
                raise SchedulerError(f"{job.name}: queue is full")
            sched_id = f"{self.prefix}{len(self.requests) + 1}"
            self.requests[sched_id] = job
            self.states[sched_id] = JobStatus(JobState.PENDING)
            return sched_id

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        unknown = JobStatus(JobState.UNKNOWN, reason="not ours")
        return {i: self.states.get(i, unknown) for i in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.cancelled.append(i)
            if i in self.states and self.states[i].state not in TERMINAL_STATES:
                self.states[i] = JobStatus(JobState.CANCELLED, reason="cancelled")

    def close(self) -> None:
        self.closed = True

    # ------------------------------------------------------------ the test's side
    def live(self, job_type: str | None = None) -> list[str]:
        """Ids of jobs not ended, by job name (not by id: the pool submits in any order)."""
        ids = [i for i, st in self.states.items() if st.state not in TERMINAL_STATES
               and job_type in (None, self.requests[i].job_type)]
        return sorted(ids, key=lambda i: self.requests[i].name)

    def complete_all(self) -> None:
        """Every live job but the persistent generator ends well."""
        for i in self.live():
            if self.requests[i].job_type != "generator":
                self.end(i)

    def names(self) -> list[str]:
        return [r.name for r in self.requests.values()]

    def start(self, sched_id: str) -> None:
        self.states[sched_id] = JobStatus(JobState.RUNNING)

    def end(self, sched_id: str, state: JobState = JobState.COMPLETED, code: int | None = 0,
            success_file: bool = True) -> None:
        job = self.requests[sched_id]
        if state == JobState.COMPLETED and success_file:
            job.workdir.mkdir(parents=True, exist_ok=True)
            (job.workdir / "setup.ok").write_text("ok")  # read only for createsim
        self.states[sched_id] = JobStatus(state, code)


class FakeClock:
    """Time moves only when the test (or the manager's ``sleep``) says so."""

    def __init__(self, on_sleep: Callable[[], None] = lambda: None) -> None:
        self.t = 1000.0
        self.on_sleep = on_sleep

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.on_sleep()

    def wake(self) -> None:
        """Nothing to interrupt."""


class Rig:
    """One campaign directory; managers come and go on it as processes would."""

    def __init__(self, root: Path, plan: Plan) -> None:
        self.plan_path = root / "build" / "plan.json"
        self.plan_path.parent.mkdir(parents=True)
        self.write(plan)
        self.ws = root / "ws"
        self.clock = FakeClock()
        self.managers: list[Manager] = []

    def write(self, plan: Plan) -> None:
        self.plan_path.write_text(plan.to_json())

    def plan(self) -> Plan:
        return Plan.read(self.plan_path)

    def manager(self, sched: FakeScheduler, *, start: bool = True,
                run_token: str | None = None) -> Manager:
        """A new manager process on the campaign reopened from disk, started unless not."""
        m = Manager(Campaign.open(self.plan_path, self.ws), sched, clock=self.clock,
                    threads=False, run_token=run_token)
        self.managers.append(m)
        if start:
            m.start()
        return m

    def candidates(self, n: int, seed: int = 0) -> None:
        c = Campaign.open(self.plan_path, self.ws)
        try:
            points = np.random.default_rng(seed).normal(size=(n, 2))
            c.store("latent").put_many("latent", {f"c_{i:06d}": encode(Record(p))
                                                  for i, p in enumerate(points)})
        finally:
            c.close()

    def tick(self, m: Manager, dt: float = 1.0) -> str | None:
        """One pass of the manager's loop, ``dt`` seconds after the previous one."""
        self.clock.t += dt
        return m.tick(self.clock.now())

    def crash(self, m: Manager) -> None:
        """The process dies: no shutdown, nothing cancelled, nothing checkpointed; its lease
        is left as a dead holder's is once its heartbeat is past the bound."""
        if m.lease is not None:
            with m.ledger.transaction() as db:
                db.execute("UPDATE lease SET heartbeat = 0")
        m.submitter.close()
        m.ledger.close()
        m.campaign.close()
        self.managers.remove(m)

    def close(self) -> None:
        for m in list(self.managers):
            self.crash(m)


@pytest.fixture
def make_rig(tmp_path: Path, compiled: Plan) -> Iterator[Callable[..., Rig]]:
    """``make_rig(budget=..., sim_max=..., ...)`` -> a Rig for the test plan so patched."""
    rigs: list[Rig] = []

    def make(budget: int = 4, sim_max: int = 4, cap: int = 12, **coupling: Any) -> Rig:
        plan = patched(compiled, budget=budget, sim_max=sim_max, cap=cap, **coupling)
        rig = Rig(tmp_path / f"rig{len(rigs)}", plan)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def launch(make_rig: Callable[..., Rig], candidates: int, **plan: Any
           ) -> tuple[Rig, FakeScheduler, Manager]:
    """A rig with ``candidates`` written and a manager started on a fresh fake scheduler."""
    rig = make_rig(**plan)
    rig.candidates(candidates)
    sched = FakeScheduler()
    return rig, sched, rig.manager(sched)


def queues(m: Manager) -> tuple[int, int, int]:
    """(waiting, setting up, ready) of the one coupling, as the manager sees them."""
    pipe = m.book.pipes[COUPLING]
    in_setup = sum(1 for lj in m.book.live.values() if lj.row.job_type == "createsim")
    return len(pipe.waiting), in_setup, len(pipe.ready)


def play(sched: FakeScheduler, rng: random.Random, setup_failure: float = 0.25) -> None:
    """A random step of the cluster: jobs start, simulations finish, some setups fail."""
    for i in sched.live():
        job_type = sched.requests[i].job_type
        if job_type == "generator":
            continue
        if sched.states[i].state == JobState.PENDING:
            if rng.random() < 0.7:
                sched.start(i)
        elif rng.random() < 0.4:
            failed = job_type == "createsim" and rng.random() < setup_failure
            sched.end(i, JobState.FAILED if failed else JobState.COMPLETED, 1 if failed else 0)


def sim_states(m: Manager) -> dict[str, str]:
    return {s.sim: s.state for s in m.ledger.sims()}


def assert_each_candidate_once(m: Manager) -> None:
    sims = m.ledger.sims()
    assert len({s.candidate for s in sims}) == len(sims)


@pytest.mark.parametrize("seed", [1, 2])
def test_gpu_budget_and_max_concurrent_hold_at_every_tick(make_rig: Callable[..., Rig],
                                                         seed: int) -> None:
    rig, sched, m = launch(make_rig, 40, budget=3, sim_max=2)
    rng = random.Random(seed)
    most = {"sims": 0, "gpus": 0}
    for _ in range(400):
        play(sched, rng)
        rig.tick(m)
        sims = len(sched.live("cganalysis"))
        gpus = sum(sched.requests[i].gpus for i in sched.live())  # the generator has none
        assert sims <= 2
        assert gpus <= 3
        most = {"sims": max(most["sims"], sims), "gpus": max(most["gpus"], gpus)}
        done = set(sim_states(m).values()) <= {"done", "failed"}
        if done and m.book.pipes[COUPLING].selected == 12:
            break
    else:
        pytest.fail(f"the campaign did not finish: {sim_states(m)}")
    assert most == {"sims": 2, "gpus": 3}  # both limits were reached, so both were tested
    assert len(sim_states(m)) == 12
    assert_each_candidate_once(m)


def test_setups_fill_the_ready_buffer_and_stop(make_rig: Callable[..., Rig]) -> None:
    rig, sched, m = launch(make_rig, 40, budget=4, sim_max=2, ready_buffer=2, max_pending=50)
    for _ in range(6):  # setups succeed at once; simulations run for ever
        for i in sched.live("createsim"):
            sched.end(i)
        rig.tick(m)
    submitted = len(sched.requests)
    for _ in range(10):
        rig.tick(m)
        assert queues(m) == (0, 0, 2)  # exactly the buffer, nothing more being set up
    assert len(sched.live("cganalysis")) == 2
    assert len(sched.requests) == submitted
    assert m.book.pipes[COUPLING].selected == 4  # two running, two ready: no selection beyond


def test_max_pending_bounds_selections_ahead(make_rig: Callable[..., Rig]) -> None:
    rig, sched, m = launch(make_rig, 40, budget=4, sim_max=4, ready_buffer=6, max_pending=3)
    rng = random.Random(4)
    highest = 0
    for _ in range(60):
        play(sched, rng, setup_failure=0.0)
        rig.tick(m)
        pending = sum(queues(m))
        assert pending <= 3
        highest = max(highest, pending)
    assert highest == 3
    assert m.book.pipes[COUPLING].selected > 3  # selection went on as sims left the queues


def test_a_failing_setup_is_retried_to_its_limit_then_the_sim_fails(
        make_rig: Callable[..., Rig]) -> None:
    rig, sched, m = launch(make_rig, 5, cap=1)
    # Three different failures; the plan allows two retries.
    ends: list[dict[str, Any]] = [{"state": JobState.TIMEDOUT, "code": None},
                                  {"code": 0, "success_file": False},
                                  {"state": JobState.FAILED, "code": 1}]
    for _ in range(20):
        for i in sched.live("createsim"):
            sched.end(i, **ends.pop(0))
        rig.tick(m)
    assert ends == []
    (sim,) = m.ledger.sims()
    assert (sim.state, sim.reason) == ("failed", "createsim: failed exit code 1")
    jobs = [(j.name, j.state) for j in m.ledger.jobs() if j.sim == sim.sim]
    assert jobs == [(f"{sim.sim}.createsim.1", "timedout"), (f"{sim.sim}.createsim.2", "failed"),
                    (f"{sim.sim}.createsim.3", "failed")]
    assert sched.live("createsim") == []
    assert m.book.pipes[COUPLING].selected == 1


def test_a_refused_submission_backs_off_and_costs_the_sim_nothing(
        make_rig: Callable[..., Rig]) -> None:
    rig, sched, m = launch(make_rig, 5, cap=2)
    rig.tick(m)  # selects two
    sched.refuse = 1
    rig.tick(m)  # submits two setups, one refused
    (refused,) = sched.refused
    sim = refused.split(".")[0]
    assert sim_states(m)[sim] == "selected"
    assert m.book.pipes[COUPLING].waiting == [sim]
    assert next(j for j in m.ledger.jobs() if j.name == refused).state == "lost"
    assert m.submitter.backoff_until == rig.clock.now() + 1.0
    submitted = len(sched.requests)
    for _ in range(3):
        rig.tick(m, dt=0.25)
        assert len(sched.requests) == submitted  # backing off
    rig.tick(m, dt=0.25)
    # A new attempt (its own name and directory) but not a charged one: the sim carries on.
    assert sched.names()[-1] == refused.replace(".1", ".2")
    assert m.book.history[(sim, "createsim")] == []
    finish(rig, m, sched)
    assert m.submitter.backoff == 1.0  # reset by the first accepted submission
    assert [j.attempt for j in m.ledger.jobs() if j.sim == sim][:2] == [1, 2]


def test_a_refused_persistent_job_is_submitted_again(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    sched = FakeScheduler()
    sched.refuse = 1
    m = rig.manager(sched)
    assert sched.refused == ["generator.1"]
    for _ in range(5):
        rig.tick(m)
    assert sched.live("generator") != []


def drive_to_a_mixed_state(rig: Rig, m: Manager, sched: FakeScheduler) -> list[str]:
    """Play until sims are in every stage and jobs are in flight; the live job names."""
    rng = random.Random(11)
    for _ in range(200):
        play(sched, rng)
        rig.tick(m)
        states = set(sim_states(m).values())
        if {"done", "setup", "simulating"} <= states and sched.live("createsim") \
                and sched.live("cganalysis"):
            return [sched.requests[i].name for i in sched.live()]
    pytest.fail(f"never reached a mixed state: {sim_states(m)}")


def finish(rig: Rig, m: Manager, sched: FakeScheduler) -> None:
    for _ in range(100):
        sched.complete_all()
        rig.tick(m)
        pipe = m.book.pipes[COUPLING]
        if set(sim_states(m).values()) == {"done"} and pipe.selected == pipe.cap:
            return
    pytest.fail(f"the campaign did not finish: {sim_states(m)}")


def test_after_a_crash_unseen_jobs_are_resubmitted_and_nothing_is_selected_twice(
        make_rig: Callable[..., Rig]) -> None:
    rig, old, m = launch(make_rig, 30, cap=6)
    in_flight = drive_to_a_mixed_state(rig, m, old)
    before = {s.sim: s.candidate for s in m.ledger.sims()}
    rig.crash(m)
    new = FakeScheduler()  # e.g. the local adapter: the old manager's jobs died with it
    m = rig.manager(new)
    assert "generator.2" in new.names()  # persistent: resubmitted while recovering
    lost = {j.name for j in m.ledger.jobs(["lost"])}
    assert lost == set(in_flight)  # every attempt keeps its own row
    assert all(j.reason == "manager restarted" for j in m.ledger.jobs(["lost"]))
    assert {s.sim: s.candidate for s in m.ledger.sims()} == before
    rig.tick(m)
    # Each resubmitted under the next attempt number; a restart charges no attempt.
    def bump(name: str) -> str:
        head, _, n = name.rpartition(".")
        return f"{head}.{int(n) + 1}"

    assert {bump(n) for n in in_flight} <= set(new.names())
    history = m.book.history
    assert all(history[(j.sim or "", j.job_type)].count("lost") == 0 for j in m.ledger.jobs())
    finish(rig, m, new)
    assert_each_candidate_once(m)
    assert len(m.ledger.sims()) == 6


def test_after_a_crash_jobs_the_scheduler_still_sees_are_tracked_not_resubmitted(
        make_rig: Callable[..., Rig]) -> None:
    # The same scheduler after the restart, e.g. Slurm: jobs outlive the manager, ids stay.
    rig, sched, m = launch(make_rig, 30, cap=6)
    in_flight = drive_to_a_mixed_state(rig, m, sched)
    rig.crash(m)
    m = rig.manager(sched)
    assert sorted(m.book.live) == sorted(in_flight)
    assert m.ledger.jobs(["lost"]) == []
    finish(rig, m, sched)
    names = sched.names()
    assert len(names) == len(set(names))  # no job submitted twice
    assert_each_candidate_once(m)


def test_a_job_lost_to_a_restart_does_not_use_up_its_retries(
        make_rig: Callable[..., Rig]) -> None:
    rig, sched, m = launch(make_rig, 3, cap=1)
    while len(sched.requests) < 4:  # the generator, then three setups: two fail
        for i in sched.live("createsim"):
            sched.end(i, JobState.FAILED, 1)
        rig.tick(m)
    (last,) = (sched.requests[i].name for i in sched.live("createsim"))
    assert last.endswith(".createsim.3")  # the last attempt the limit allows
    rig.crash(m)
    sched = FakeScheduler()
    m = rig.manager(sched)
    finish(rig, m, sched)
    # Resubmitted under the next number, and the limit still allows it to run.
    assert last.replace(".createsim.3", ".createsim.4") in sched.names()


def test_a_crash_during_submission_is_resubmitted(make_rig: Callable[..., Rig],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rig, sched, m = launch(make_rig, 5, cap=1)
    rig.tick(m)

    def die(job: JobRequest) -> str:
        raise KeyboardInterrupt  # the process is going down mid-submit

    monkeypatch.setattr(sched, "submit", die)
    with pytest.raises(KeyboardInterrupt):
        rig.tick(m)
    (row,) = (j for j in m.ledger.jobs() if j.job_type == "createsim")
    assert row.state == "submitting"
    rig.crash(m)
    monkeypatch.undo()
    m = rig.manager(sched)
    rig.tick(m)
    assert [sched.requests[i].name for i in sched.live("createsim")] == [
        row.name.replace(".createsim.1", ".createsim.2")]
    finish(rig, m, sched)


def test_selections_after_the_last_checkpoint_are_not_repeated(
        make_rig: Callable[..., Rig]) -> None:
    rig, sched, m = launch(make_rig, 12, cap=12)
    m.periodic.run_due(rig.clock.now())  # ingest
    m.checkpoint()
    rig.tick(m)  # selects after the checkpoint
    assert 0 < m.book.pipes[COUPLING].selected < 12
    rig.crash(m)
    m = rig.manager(sched)
    finish(rig, m, sched)
    assert_each_candidate_once(m)


def test_a_workspace_refuses_a_different_plan(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    m = rig.manager(FakeScheduler())
    rig.crash(m)
    rig.manager(FakeScheduler())  # the same plan resumes
    rig.close()
    plan = rig.plan()
    rig.write(dataclasses.replace(plan, manager=dataclasses.replace(
        plan.manager, max_simulations=(plan.manager.max_simulations or 0) + 1)))
    m = rig.manager(FakeScheduler(), start=False)
    digest = m.ledger.meta("plan_sha256")
    with pytest.raises(UsageError, match=r"different plan\.json"):
        m.start()
    assert m.ledger.meta("plan_sha256") == digest  # still the plan that started it


def test_run_completes_on_the_fake_scheduler(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(budget=3, sim_max=2)
    rig.candidates(30)
    sched = FakeScheduler()

    rig.clock.on_sleep = sched.complete_all  # between the manager's ticks
    m = rig.manager(sched, start=False)
    assert m.run() == "complete"
    rig.managers.remove(m)  # run() closed everything itself
    assert isinstance(sched, SchedulerAdapter)
    assert sched.closed
    assert [sched.requests[i].name for i in sched.cancelled] == ["generator.1"]
    assert set(sim_states(m).values()) == {"done"}
    assert len(sim_states(m)) == 12
    assert (rig.ws / "checkpoints" / "pick.npz").exists()
    status = json.loads((rig.ws / "status.json").read_text())
    assert status["state"] == "complete"
    assert status["sims"] == {"done": 12}
    # The generator was running at the end: the final status counts it cancelled, holding nothing.
    assert status["jobs"]["generator"] == {"cancelled": 1}
    assert status["busy"] == {"gpus": 0, "cores": 0}


def test_a_disk_that_stays_full_ends_the_run_failed_and_a_later_run_resumes(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(budget=2, sim_max=2)
    rig.ws.mkdir()
    # Room for SQLite's write-ahead log to grow to its checkpoint size (1,000 pages).
    with mounted("-t", "tmpfs", "-o", "size=8m", "tmpfs", at=rig.ws):
        rig.candidates(30)
        sched = FakeScheduler()
        filled: list[Path] = []

        def fill_once() -> None:  # between two ticks, once jobs run, the disk fills for good
            if not filled and len(sched.live()) >= 3:
                filled.append(fill(rig.ws))

        rig.clock.on_sleep = fill_once
        m = rig.manager(sched, start=False)
        m.writes.retry_for = 0.2
        assert m.run() == "failed"
        rig.managers.remove(m)  # run() closed everything itself
        assert m.why.startswith(f"cannot write {rig.ws}/")
        assert "(still after 0.2 s of retries, manager.write_retry_for)" in m.why
        # The space the manager held was enough to record why, on the full disk.
        status = read_status(rig.ws)
        assert status is not None  # and in the shape `mummi status` reads
        assert status["state"] == "failed" and status["why"] == m.why
        assert status["writes"]["retried"] >= 1
        # Jobs this scheduler cannot find again are cancelled, and recorded so.
        assert sched.live() == [] and sched.cancelled
        assert status["busy"] == {"gpus": 0, "cores": 0}
        filled[0].unlink()
        m.release()  # as the manager step does last (a crashed one's lease is free at once)
        again = FakeScheduler()
        m = rig.manager(again)
        assert "generator.2" in again.names()  # cancelled by the failure: started again
        for _ in range(5):
            again.complete_all()
            rig.tick(m)
        assert "done" in set(sim_states(m).values())
        assert_each_candidate_once(m)


def test_a_ledger_found_damaged_mid_run_ends_it_failed_with_the_reason(
        make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    rig = make_rig()
    rig.candidates(30)
    sched = FakeScheduler()
    m = rig.manager(sched, start=False)
    damaged = LedgerError(f"{m.ledger.path}: the ledger is damaged (database disk image is "
                          "malformed); restore it from a copy")

    def occupancy(*_: object) -> None:
        raise damaged

    monkeypatch.setattr(m.ledger, "record_occupancy", occupancy)
    assert m.run() == "failed"
    rig.managers.remove(m)
    assert m.why == str(damaged)
    status = read_status(rig.ws)
    assert status is not None and status["state"] == "failed" and status["why"] == m.why
    assert sched.live() == []  # nothing left running that no manager tracks


def test_a_timed_out_simulation_is_retried_and_no_gpu_waits_a_tick(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(budget=2, sim_max=2, cap=4, ready_buffer=1)
    plan = rig.plan()
    sim = dataclasses.replace(plan.jobs["cganalysis"],
                              retry=RetryPolicy(1, ("failed", "timedout")))
    rig.write(dataclasses.replace(plan, jobs={**plan.jobs, "cganalysis": sim}))
    rig.candidates(10)
    sched = FakeScheduler()
    m = rig.manager(sched)

    def held() -> int:
        return sum(sched.requests[i].gpus for i in sched.live())

    while len(sched.live("cganalysis")) < 2:  # setups succeed at once
        for i in sched.live("createsim"):
            sched.end(i)
        rig.tick(m)
    assert m.book.pipes[COUPLING].waiting  # work is waiting for a GPU
    hung = sched.live("cganalysis")[0]
    sim = sched.requests[hung].name.split(".")[0]
    for attempt in (1, 2):
        assert sched.requests[hung].name == f"{sim}.cganalysis.{attempt}"
        sched.end(hung, JobState.TIMEDOUT, None)
        rig.tick(m)
        assert held() == 2  # the freed GPU was taken in the tick that noticed the timeout
        retry = [i for i in sched.live("cganalysis") if sched.requests[i].name.startswith(sim)]
        hung = retry[0] if retry else ""
    assert hung == ""  # the limit allowed one retry
    (row,) = (s for s in m.ledger.sims() if s.sim == sim)
    assert (row.state, row.reason) == ("failed", "cganalysis: timedout")
    assert m.book.history[(sim, "cganalysis")] == ["timedout", "timedout"]


def test_a_failing_periodic_task_is_logged_once_per_period_traceback_only_for_bugs(
        caplog: pytest.LogCaptureFixture) -> None:
    from mummi_spec.errors import StoreError

    def outage() -> None:
        raise StoreError("redis store 127.0.0.1:1: connection refused")

    def bug() -> None:
        raise KeyError("oops")

    with caplog.at_level("WARNING", logger="mummi"):
        guarded(Task("feedback rdfs", 1.0, outage))
        guarded(Task("ingest cg", 1.0, bug))
    known, unknown = caplog.records
    assert known.levelname == "WARNING" and known.exc_info is None
    assert "feedback rdfs failed: redis store 127.0.0.1:1: connection refused" in known.message
    assert unknown.levelname == "ERROR" and unknown.exc_info is not None


def test_a_checkpointing_simulation_continues_uncharged_and_is_told_it_restarts(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(budget=2, sim_max=2, cap=1, ready_buffer=1)
    plan = rig.plan()
    # retry.on [failed], limit 1: without checkpoints, the first timeout would fail the sim.
    sim_job = dataclasses.replace(plan.jobs["cganalysis"], checkpoints=True)
    rig.write(dataclasses.replace(plan, jobs={**plan.jobs, "cganalysis": sim_job}))
    rig.candidates(5)
    sched = FakeScheduler()
    m = rig.manager(sched)
    while not sched.live("cganalysis"):
        for i in sched.live("createsim"):
            sched.end(i)
        rig.tick(m)
    env = []
    for _ in range(4):  # four allocations' worth of walltime kills
        (i,) = sched.live("cganalysis")
        env.append(sched.requests[i].env["MUMMI_RESTART"])
        sched.start(i)
        rig.tick(m)
        sched.end(i, JobState.TIMEDOUT, None)
        rig.tick(m)
    (i,) = sched.live("cganalysis")
    env.append(sched.requests[i].env["MUMMI_RESTART"])
    sched.start(i)
    rig.tick(m)
    sched.end(i)
    rig.tick(m)
    assert env == ["0", "1", "1", "1", "1"]  # only the first attempt starts afresh
    (sim,) = m.ledger.sims()
    assert sim.state == "done"
    segments = [j.state for j in m.ledger.jobs() if j.job_type == "cganalysis"]
    assert segments == ["timedout"] * 4 + ["completed"]  # the ledger keeps every segment
    assert all(j.started for j in m.ledger.jobs() if j.job_type == "cganalysis")


def test_a_selector_rebuilt_without_a_checkpoint_gets_its_selections_back(
        make_rig: Callable[..., Rig]) -> None:
    rig, sched, m = launch(make_rig, 30, cap=6)
    drive_to_a_mixed_state(rig, m, sched)
    chosen = [s.candidate for s in m.ledger.sims()]
    assert chosen
    rig.crash(m)
    for path in (rig.ws / "checkpoints").glob("*.npz"):
        path.unlink()  # never written, or lost: the selector starts from nothing
    m = rig.manager(sched)
    stats = m.selectors["pick"].selector.stats()
    assert stats.selected == len(chosen)  # what the ledger says it chose, as selected
    finish(rig, m, sched)
    assert_each_candidate_once(m)


class SlowToEnd(FakeScheduler):
    """Cancelled jobs take ``polls`` status calls to end (a producer between its SIGTERM and
    its exit); ``None``: they never do."""

    def __init__(self, polls: int | None) -> None:
        super().__init__()
        self.polls = polls
        self.ending: dict[str, int] = {}

    def cancel(self, ids: Sequence[str]) -> None:
        for i in ids:
            if self.states[i].state not in TERMINAL_STATES:
                self.ending[i] = 0

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        for i in ids:
            if i in self.ending:
                self.ending[i] += 1
                if self.polls is not None and self.ending[i] >= self.polls:
                    self.states[i] = JobStatus(JobState.CANCELLED, reason="cancelled")
        return super().status(ids)


@pytest.mark.parametrize("polls", [3, None])
def test_the_end_of_a_run_waits_boundedly_for_the_jobs_it_cancelled(
        make_rig: Callable[..., Rig], polls: int | None, caplog: pytest.LogCaptureFixture
        ) -> None:
    """A complete campaign cancels its persistent producer and waits for it to end before
    its last status and report: what they count is what the stores hold. A job that never
    ends is waited for ``END_WAIT`` seconds, then named in a warning."""
    rig = make_rig(cap=2)
    rig.candidates(10)
    sched = SlowToEnd(polls)
    m = rig.manager(sched)
    finish(rig, m, sched)
    (generator,) = sched.live("generator")
    start = rig.clock.now()
    with caplog.at_level(logging.WARNING, logger="mummi.manager"):  # whatever ran before
        m.stop(CampaignState.COMPLETE)
    waited = rig.clock.now() - start
    if polls is None:
        assert END_WAIT <= waited < END_WAIT + 1
        assert "1 cancelled job(s) had not ended 15 s after the cancel" in caplog.text
    else:
        assert sched.states[generator].state == JobState.CANCELLED
        assert sched.ending[generator] == polls  # asked until it ended, then no more
        assert 0 < waited < 1
    assert read_status(rig.ws)["state"] == "complete"

"""`mummi simulate`: SC'21's occupancy from the reference spec, determinism, located errors, and
the simulated machine, scheduler and expectations on their own."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path

import pytest

from mummi_spec.cli import main
from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.errors import UsageError
from mummi_spec.frontend import NO_PROFILE, load_spec_text
from mummi_spec.plan import Expectation, JobPlan, JobResources, Pool, Role, StreamPlan
from mummi_spec.runtime.schedulers.base import JobRequest, JobState
from mummi_spec.runtime.simulate.expect import JobExpect, job_expect, stream_expect, uniform
from mummi_spec.runtime.simulate.run import check_machine
from mummi_spec.runtime.simulate.scheduler import SimulatedScheduler
from mummi_spec.runtime.simulate.world import Engine, Machine, Producers
from tests import plans

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "rasraf-3scale.yaml"
# A day, as SC'21 measured: the ~1 h load at ~100 jobs/min, then 23 hours of steady state.
HOURS = "24"


def _simulate(out: Path, *extra: str) -> int:
    return main(["simulate", str(SPEC), "--no-profile", "--nodes", "1000", "--throttle",
                 "--hours", HOURS, "-o", str(out), *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    assert _simulate(a) == 0
    assert _simulate(b) == 0
    return a, b


def _rows(out: Path) -> list[dict[str, float]]:
    with (out / "occupancy.csv").open() as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def test_rasraf_at_1000_nodes_lands_in_sc21_ranges(runs: tuple[Path, Path]) -> None:
    rows = _rows(runs[0])
    assert rows[-1]["hours"] == pytest.approx(float(HOURS))
    full = next(r["hours"] for r in rows if r["gpu_pct"] >= 98.0)
    assert 0.5 <= full <= 2.0  # Fig. 6: "a typical 1000-node run took only an hour to load"
    steady = [r for r in rows if r["hours"] >= full]
    gpu = sum(r["gpu_pct"] for r in steady) / len(steady)
    cpu = sum(r["cpu_pct"] for r in steady) / len(steady)
    assert gpu > 95.0  # Fig. 5: mean 93.7 % over all runs, median 99.9 %
    assert 35.0 <= cpu <= 70.0  # Fig. 5: CPU mean 54 %
    whole_day = sum(r["gpu_pct"] for r in rows) / len(rows)
    assert whole_day >= 93.0
    assert sum(r["gpu_pct"] >= 98.0 for r in rows) / len(rows) > 0.83  # "> 83 % of the time"
    # Loading is bound by the throttle: ~100 GPU jobs a minute, not faster.
    assert rows[30]["busy_gpus"] <= 1.05 * 30 * 100 + 100
    summary = (runs[0] / "summary.txt").read_text()
    assert "GPUs full (>= 98 % busy) after" in summary
    for job in ("createsim", "cg", "backmapping", "aa", "continuum"):
        assert f"\n{job} " in summary
    assert "feedback: aa-to-cg" in summary and "selections: cg-to-aa" in summary
    assert "node-hours: 24,000 (1000 nodes x 24 h)" in summary
    # The campaign goes on selecting all day (it stopped at the carried-over ones once:
    # ingest never saw the simulated producers' items), on both couplings.
    made = dict(re.findall(r"([\w-]+) (\d+) \(\+\d+ carried over\)", summary))
    assert set(made) == {"cg-to-aa", "macro-to-cg"}
    assert int(made["macro-to-cg"]) > 1000 and int(made["cg-to-aa"]) > 500, made


def test_same_seed_gives_identical_files(runs: tuple[Path, Path]) -> None:
    a, b = runs
    for name in ("occupancy.csv", "summary.txt", "occupancy.png", "jobs.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    text = (a / "summary.txt").read_text() + (a / "occupancy.csv").read_text()
    assert str(a) not in text and "/tmp" not in text


def test_another_seed_gives_another_campaign(tmp_path: Path) -> None:
    assert main(["simulate", str(SPEC), "--no-profile", "--hours", "2", "--seed", "1",
                 "-o", str(tmp_path / "s1")]) == 0
    assert main(["simulate", str(SPEC), "--no-profile", "--hours", "2", "--seed", "2",
                 "-o", str(tmp_path / "s2")]) == 0
    assert (tmp_path / "s1" / "occupancy.csv").read_bytes() != \
        (tmp_path / "s2" / "occupancy.csv").read_bytes()


def test_bad_spec_exits_2_with_the_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    text = SPEC.read_text().replace("    ready_buffer: 200\n", "    ready_bufer: 200\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    line = text.splitlines().index("    ready_bufer: 200") + 1
    assert main(["simulate", str(bad), "--no-profile", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{line}:5: error: unknown key 'ready_bufer'" in err
    assert "did you mean 'ready_buffer'?" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("nodes", "message"), [
    # the resource plan's: the continuum's 150 nodes do not fit in 100 - 21 reserved
    ("100", "rasraf-3scale.yaml:46:7: error: persistent job 'continuum' needs 150 node(s) "
            "with 0 GPU(s) and 24 core(s) free; 79 of the 79 compute nodes have room"),
    ("21", "--nodes 21 leaves no node for jobs"),
])
def test_a_machine_too_small_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     nodes: str, message: str) -> None:
    assert main(["simulate", str(SPEC), "--no-profile", "--nodes", nodes,
                 "-o", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_startup_delay_comes_from_the_spec() -> None:
    text = SPEC.read_text().replace("  poll: 60s\n", "  poll: 60s\n  expect: {startup: 45s}\n")
    plan = compile_loaded(load_spec_text(text, "x.yaml", profile=NO_PROFILE)).files["plan.json"]
    assert '"startup": 45.0' in plan


def test_a_job_wider_than_the_machine_is_refused() -> None:
    big = plans.job("big", role=Role.PERSISTENT, pool=Pool.PERSISTENT,
                    resources=JobResources(nodes=150, tasks=150, cores_per_task=24))
    plan = plans.plan(jobs=[big])
    with pytest.raises(UsageError, match=re.escape(
            "job type 'big' needs 150 node(s) with 0 GPU(s) and 24 core(s) each; the machine "
            "has 100 compute")):
        check_machine(plan, Machine(Engine(), 100, 42, 6, 3.0))


# ------------------------------------------------------------------ the parts on their own
def test_placement_keeps_cores_for_free_gpus() -> None:
    m = Machine(Engine(), 1, 42, 6, 3.0)
    assert m.place(1, 0, 18) == [0]  # 24 cores left: enough for 6 GPU jobs (18) besides
    assert m.place(1, 0, 18) is None  # would leave 6 cores for 6 free GPUs
    for _ in range(6):
        assert m.place(1, 1, 3) == [0]
    assert m.busy_gpus == 6 and m.full_at == 0.0
    assert m.place(1, 0, 6) == [0]  # no free GPU left to protect
    assert m.place(1, 1, 3) is None
    m.release([0], 1, 3)
    assert m.busy_gpus == 5 and m.busy_cores == 18 + 15 + 6


def test_multi_node_jobs_take_whole_shares_of_several_nodes() -> None:
    m = Machine(Engine(), 4, 42, 6, 3.0)
    assert m.place(3, 0, 24) == [0, 1, 2]
    assert m.place(2, 0, 24) is None
    assert m.busy_cores == 72


def _scheduler(plan_jobs: list[JobPlan], rate: float | None = 2.0,
               nodes: int = 2) -> tuple[SimulatedScheduler, Engine, Machine]:
    engine = Engine()
    machine = Machine(engine, nodes, 42, 6, 3.0)
    plan = plans.plan(jobs=plan_jobs, scheduler=plans.scheduler(per_second=rate))
    producers = Producers(engine, plan, lambda name: None, 0, 1000.0)  # type: ignore[arg-type,return-value]
    sched = SimulatedScheduler(plan, engine=engine, machine=machine, producers=producers,
                               startup=5.0)
    return sched, engine, machine


def _job(name: str, duration: float, walltime: float = 3600.0, failure_rate: float = 0.0
         ) -> JobPlan:
    return plans.job(name, walltime=walltime, resources=JobResources(gpus=1),
                     expect=Expectation(duration, 0.0, failure_rate))


def test_simulated_scheduler_throttles_starts_ends_and_cancels_in_virtual_time() -> None:
    sched, engine, machine = _scheduler([_job("ok", 100.0), _job("long", 7200.0),
                                         _job("bad", 100.0, failure_rate=1.0)])

    def submit(name: str, job_type: str) -> str:
        return sched.submit(JobRequest(name, job_type, "true", Path("w"), gpus=1,
                                       cores_per_task=3))

    ids = [submit(f"ok{i}", "ok") for i in range(5)]
    assert engine.now == pytest.approx(2.0)  # 2/s, a burst of 1: the caller waited 2 s
    assert {s.state for s in sched.status(ids).values()} <= {JobState.PENDING,
                                                              JobState.RUNNING}
    long_id, bad_id = submit("long", "long"), submit("bad", "bad")
    engine.advance(engine.now + 10.0)
    running = sched.changed([*ids, long_id, bad_id])
    assert {s.state for s in running.values()} == {JobState.RUNNING}
    assert sched.changed([*ids, long_id, bad_id]) == {}  # nothing moved since
    assert machine.busy_gpus == 7
    engine.advance(engine.now + 200.0)
    ended = sched.status([*ids, long_id, bad_id])
    assert [ended[i].state for i in ids] == [JobState.COMPLETED] * 5
    assert ended[bad_id].state == JobState.FAILED and ended[bad_id].exit_code == 1
    assert ended[long_id].state == JobState.RUNNING
    sched.cancel([long_id])
    assert sched.status([long_id])[long_id].state == JobState.CANCELLED
    assert machine.busy_gpus == 0 and sched.waiting == 0
    assert sched.status(["nope"])["nope"].state == JobState.UNKNOWN


def test_jobs_longer_than_their_walltime_are_killed_at_it() -> None:
    sched, engine, _ = _scheduler([_job("slow", 7200.0, walltime=3600.0)], rate=None)
    job_id = sched.submit(JobRequest("slow", "slow", "true", Path("w"), gpus=1))
    engine.advance(3600.0 + 5.0 - 1.0)
    assert sched.status([job_id])[job_id].state == JobState.RUNNING
    engine.advance(3600.0 + 5.0)
    assert sched.status([job_id])[job_id].state == JobState.TIMEDOUT


def test_jobs_wait_for_free_gpus() -> None:
    sched, engine, machine = _scheduler([_job("ok", 100.0)], rate=None, nodes=1)
    ids = [sched.submit(JobRequest(f"j{i}", "ok", "true", Path("w"), gpus=1)) for i in range(8)]
    engine.advance(10.0)
    assert machine.busy_gpus == 6 and sched.waiting == 2
    engine.advance(200.0)
    assert sum(s.state == JobState.COMPLETED for s in sched.status(ids).values()) == 6
    assert machine.busy_gpus == 2


def test_expected_durations_are_truncated_normals_with_paper_defaults() -> None:
    e = JobExpect(5400.0, 1200.0, 0.1, 14400.0)
    draws = [e.duration(uniform(0, "job", i)) for i in range(4000)]
    assert min(draws) >= 0.05 * 5400
    assert abs(sum(draws) / len(draws) - 5400) < 100
    setup = plans.job(role=Role.SETUP, walltime=14400.0)
    assert job_expect("createsim", setup).mean == 1.5 * 3600
    assert job_expect("backmapping", setup).mean == 2 * 3600
    assert math.isinf(job_expect("x", plans.job(role=Role.PERSISTENT, walltime=60.0)).mean)
    assert uniform(3, "a") == uniform(3, "a") != uniform(4, "a")


def _stream(every: float | None, count: int) -> StreamPlan:
    return dataclasses.replace(plans.stream("s.x", "data", "x", "{id}", 3), every=every,
                               count=count)


def test_fast_streams_are_thinned_to_the_item_budget() -> None:
    frames = stream_expect(_stream(240.0, 1), Role.SIMULATION, 4112, 1000.0)
    assert frames.stands_for == pytest.approx(4112 * 15 / 1000)
    assert 4112 * frames.count * 3600 / frames.every == pytest.approx(1000.0)
    patches = stream_expect(_stream(90.0, 330), Role.PERSISTENT, 1, 1000.0)
    assert patches.every == 90.0 and patches.count == 25
    slow = stream_expect(_stream(None, 1), Role.PERSISTENT, 1, 1e6)
    assert (slow.every, slow.count, slow.stands_for) == (90.0, 330, 1.0)  # SC'21's snapshots


ALLOCATIONS = """
spec: mummi/v1
name: long-sims
machine: {nodes: 3, walltime: "02:00:00", node: {cores: 16, gpus: 4}}
scheduler: {type: slurm, poll: 60s}
stores: {data: {backend: filesystem}}
scales:
  coarse:
    jobs: {model: {role: persistent, command: m, walltime: "02:00:00",
                   resources: {cores_per_task: 4}}}
    emits: {points: {kind: candidates, dim: 2, store: data, expect: {every: 60s, count: 10}}}
  fine:
    jobs:
      sim: {role: simulation, command: s, walltime: "02:00:00", checkpoints: CHECKPOINTS,
            resources: {gpus: 1, cores_per_task: 2}, retry: {limit: 1, on: [failed]},
            expect: {duration: 5h, duration_sd: 0s}}
selectors: {pick: {kind: random, dim: 2}}
couplings:
  c: {from: coarse.points, to: fine, selector: pick, simulation: sim, ready_buffer: 0,
      share: {gpus: 1.0}}
manager: {tick: 30s, max_simulations: 8}
"""


@pytest.mark.parametrize("checkpoints", [True, False])
def test_simulations_longer_than_an_allocation_continue_in_the_next(checkpoints: bool) -> None:
    from mummi_spec.runtime.simulate.run import Options, simulate

    text = ALLOCATIONS.replace("CHECKPOINTS", "true" if checkpoints else "false")
    plan = compile_loaded(load_spec_text(text, "x.yaml")).plan
    result = simulate(plan, Options(hours=11.0, start="cold"))
    sim = result.ended["sim"]
    if checkpoints:
        # 8 simulations of 5 h on 8 GPUs, each cut at the end of two 2 h allocations and
        # continued: done in the third allocation, which ends the campaign (its cap is 8).
        assert result.allocations == 3 and result.outcome == "complete"
        assert sim == {"cancelled": 16, "completed": 8}
    else:
        # Without checkpoints every attempt starts over and is cut at its allocation's end.
        assert result.allocations == 6  # 11 h of 2 h allocations, one after the other
        assert sim.get("completed", 0) == 0 and sim.get("failed", 0) == 0

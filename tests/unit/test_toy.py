"""The toy applications as the manager runs them: subprocesses reading and writing plan stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.compiler.emit import write
from mummi_spec.frontend import load_spec
from mummi_spec.plan import Plan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.records import Record, decode, encode
from mummi_spec.runtime.toy import cli
from mummi_spec.runtime.toy.simulate import hangs, steps_of

ROOT = Path(__file__).resolve().parents[2]
TOY = [sys.executable, "-m", "mummi_spec.runtime.toy"]
TERMINATED = 128 + signal.SIGTERM


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both example specs compiled with their default (local) profile."""
    out = {}
    for name, spec in [("mini", "mini.yaml"), ("rasraf", "rasraf-3scale.yaml")]:
        build = tmp_path_factory.mktemp(name) / "build"
        write(build, compile_loaded(load_spec(ROOT / "specs" / spec)).files)
        out[name] = build / "plan.json"
    return out


def _env(ws: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUMMI_")}
    return {**env, "MUMMI_WORKSPACE": str(ws), **(extra or {})}


def toy(cmd: str, plan: Path, ws: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOY, cmd, "--plan", str(plan), *args], env=_env(ws, env),
                          capture_output=True, text=True, timeout=60, check=False)


def start(cmd: str, plan: Path, ws: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen[str]:
    """Start a toy app and return once it has printed its first line (its handler is set)."""
    proc = subprocess.Popen([*TOY, cmd, "--plan", str(plan), *args], env=_env(ws, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(f"toy {cmd}:")
    return proc


def terminate(proc: subprocess.Popen[str]) -> None:
    """SIGTERM ``proc``; it must exit within a moment, saying so, with the SIGTERM exit code."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == TERMINATED, err
    assert time.monotonic() - sent < 1.5
    assert "terminated" in err and "Traceback" not in err


def raw(plan: Path, ws: Path, stream: str) -> dict[str, bytes]:
    """Every item of a stream, by key, as stored."""
    campaign = Campaign.open(plan, workspace=ws)
    try:
        s = campaign.stream(stream)
        store = campaign.store(s.store)
        keys = store.keys(s.namespace)
        return dict(zip(keys, store.get_many(s.namespace, keys), strict=True))
    finally:
        campaign.close()


def records(plan: Path, ws: Path, stream: str) -> dict[str, Record]:
    """Every record of a stream, by key, checked against the stream's dim."""
    dim = Plan.read(plan).stream(stream).dim
    return {k: decode(v, dim) for k, v in raw(plan, ws, stream).items()}


def write_feedback(plan: Path, ws: Path, loop: str, values: np.ndarray, iteration: int) -> None:
    """What the manager does after aggregating: one record at the loop's target."""
    campaign = Campaign.open(plan, workspace=ws)
    try:
        target = campaign.plan.feedback[loop].target
        record = Record(values, meta={"iteration": iteration, "items": 7})
        campaign.store(target.store).put(target.namespace, target.key, encode(record))
    finally:
        campaign.close()


def generate(plan: Path, ws: Path, stream: str, count: int) -> None:
    proc = toy("generator", plan, ws, "--stream", stream, "--count", str(count), "--every", "0")
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def mini_ws(plans: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mini workspace holding 12 candidates."""
    ws = tmp_path_factory.mktemp("mini-ws")
    generate(plans["mini"], ws, "structures.latent", 12)
    return ws


@pytest.fixture(scope="module")
def rasraf_ws(plans: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rasraf workspace holding 10 patches (in an indexed tar)."""
    ws = tmp_path_factory.mktemp("rasraf-ws")
    generate(plans["rasraf"], ws, "macro.patches", 10)
    return ws


# generator


def test_generator_writes_candidates_with_keys_dim_and_meta(plans, mini_ws):
    got = records(plans["mini"], mini_ws, "structures.latent")
    assert sorted(got) == [f"structure_{i:06d}" for i in range(12)]
    for i, (_, rec) in enumerate(sorted(got.items())):
        assert rec.values.shape == (8,)
        assert rec.meta == {"n": i, "model": 0}
        assert rec.tag is None and rec.sim is None
    points = np.stack([r.values for r in got.values()])
    assert len(np.unique(points, axis=0)) == 12


def test_generator_gives_every_selector_queue_its_tag(plans, rasraf_ws):
    got = records(plans["rasraf"], rasraf_ws, "macro.patches")
    assert len(got) == 10 and all(r.values.shape == (9,) for r in got.values())
    queues = Plan.read(plans["rasraf"]).selectors["patch-selector"].queues
    wanted = {q.name for q in queues if q.ratio > 0}
    tags = {r.tag for r in got.values()}
    assert wanted <= tags <= {q.name for q in queues}


def test_generator_follows_feedback_and_never_rewrites_on_retry(plans, tmp_path):
    plan, stream = plans["mini"], "structures.latent"
    plain, steered = tmp_path / "plain", tmp_path / "steered"
    generate(plan, plain, stream, 20)
    generate(plan, steered, stream, 10)
    first = raw(plan, steered, stream)
    write_feedback(plan, steered, "cg-to-sampler", np.linspace(-3, 3, 8), iteration=3)
    generate(plan, steered, stream, 20)  # a retry with more to do

    after = raw(plan, steered, stream)
    assert len(after) == 20
    assert {k: after[k] for k in first} == first  # what existed was not rewritten
    base = records(plan, plain, stream)
    assert {k: base[k].values.tobytes() for k in first} == {
        k: decode(v).values.tobytes() for k, v in first.items()}  # same seed, same points
    moved = records(plan, steered, stream)
    new = sorted(set(after) - set(first))
    assert all(moved[k].meta["model"] == 3 for k in new)
    shifts = np.stack([moved[k].values - base[k].values for k in new])
    # The same noise, other centres: every new point moved by one common shift.
    np.testing.assert_allclose(shifts, np.broadcast_to(shifts[0], shifts.shape), atol=1e-5)
    assert np.linalg.norm(shifts[0]) > 1.0
    mean_move = np.stack([moved[k].values for k in new]).mean(0) - np.stack(
        [base[k].values for k in new]).mean(0)
    assert np.linalg.norm(mean_move) > 1.0


def test_generator_stops_promptly_on_sigterm(plans, tmp_path):
    proc = start("generator", plans["mini"], tmp_path, "--stream", "structures.latent",
                 "--count", "1000", "--every", "0.2")
    terminate(proc)
    assert len(records(plans["mini"], tmp_path, "structures.latent")) < 1000


# setup


def test_setup_prepares_the_system_and_the_plans_success_file(plans, mini_ws, tmp_path):
    key = "structure_000004"
    proc = toy("setup", plans["mini"], mini_ws, "--candidate", key, "--workdir", str(tmp_path),
               env={"MUMMI_JOB_TYPE": "createsim", "MUMMI_COUPLING": "structures-to-cg"})
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "system.npz") as npz:
        np.testing.assert_array_equal(
            npz["encoding"], records(plans["mini"], mini_ws, "structures.latent")[key].values)
        assert str(npz["candidate"]) == key
    info = json.loads((tmp_path / "system.json").read_text())
    assert (info["candidate"], info["coupling"], info["dim"]) == (key, "structures-to-cg", 8)
    assert (tmp_path / "createsims.success").is_file()  # the plan's success file


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, mini_ws: Path):
    """Run ``cli.main`` here (fast), with the SIGTERM handler put back afterwards."""
    for name in list(os.environ):
        if name.startswith("MUMMI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MUMMI_WORKSPACE", str(mini_ws))
    monkeypatch.setenv("MUMMI_JOB_TYPE", "createsim")
    previous = signal.getsignal(signal.SIGTERM)
    yield monkeypatch
    signal.signal(signal.SIGTERM, previous)


def test_setup_failures_follow_the_rate_deterministically(plans, in_process, tmp_path, capsys):
    def attempt(n: int, rate: str) -> bool:
        in_process.setenv("MUMMI_ATTEMPT", str(n))
        workdir = tmp_path / f"{rate}-{n}-{time.monotonic_ns()}"
        code = cli.main(["setup", "--plan", str(plans["mini"]), "--candidate",
                         "structure_000001", "--workdir", str(workdir), "--fail-rate", rate,
                         "--seconds", "0"])
        assert code in (0, 1)
        assert (workdir / "createsims.success").is_file() == (code == 0)
        return code == 0

    outcomes = [attempt(n, "0.5") for n in range(1, 13)]
    assert outcomes == [attempt(n, "0.5") for n in range(1, 13)]  # same attempt, same fate
    assert True in outcomes and False in outcomes  # a retry can succeed
    assert "failed" in capsys.readouterr().err
    assert all(attempt(n, "0") for n in (1, 2)) and not any(attempt(n, "1") for n in (1, 2))


def test_setup_fails_clearly_on_a_missing_candidate(plans, mini_ws, tmp_path):
    proc = toy("setup", plans["mini"], mini_ws, "--candidate", "structure_999999",
               "--workdir", str(tmp_path), "--seconds", "0")
    assert proc.returncode == 1
    assert "stream structures.latent: cannot read 'structure_999999'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "createsims.success").exists()


def test_setup_asks_which_coupling_when_the_plan_has_several(plans, rasraf_ws, tmp_path):
    proc = toy("setup", plans["rasraf"], rasraf_ws, "--candidate", "pfpatch_000001",
               "--workdir", str(tmp_path))
    assert proc.returncode == 2
    assert "MUMMI_COUPLING" in proc.stderr and "cg-to-aa, macro-to-cg" in proc.stderr


# simulate


def test_simulate_writes_feedback_items_and_result(plans, mini_ws, tmp_path):
    plan = plans["mini"]
    setup_dir, run_dir = tmp_path / "setup", tmp_path / "run"
    proc = toy("setup", plan, mini_ws, "--candidate", "structure_000002", "--workdir",
               str(setup_dir), "--seconds", "0", env={"MUMMI_JOB_TYPE": "createsim"})
    assert proc.returncode == 0, proc.stderr
    proc = toy("simulate", plan, mini_ws, "--setup", str(setup_dir), "--workdir", str(run_dir),
               "--stop", "20 steps", "--feedback", "cg.feedback", "--step-seconds", "0",
               env={"MUMMI_JOB_TYPE": "cganalysis", "MUMMI_SIM": "simA"})
    assert proc.returncode == 0, proc.stderr
    items = {k: r for k, r in records(plan, mini_ws, "cg.feedback").items() if "simA" in k}
    assert sorted(items) == [f"fb_simA_{n:06d}" for n in range(4)]  # steps 5, 10, 15, 20
    assert all(r.sim == "simA" and r.values.shape == (8,) for r in items.values())
    assert [items[k].meta["step"] for k in sorted(items)] == [5, 10, 15, 20]
    assert {p.name for p in run_dir.iterdir()} == {"result.json"}  # the plan names no file
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["steps"], result["feedback"], result["candidate"]) == (
        20, 4, "structure_000002")


def test_simulate_frames_land_in_the_binned_selectors_bounds(plans, rasraf_ws, tmp_path):
    plan = plans["rasraf"]
    setup_dir, run_dir = tmp_path / "setup", tmp_path / "run"
    proc = toy("setup", plan, rasraf_ws, "--candidate", "pfpatch_000003", "--workdir",
               str(setup_dir), "--seconds", "0", "--success-file", "createsims_success",
               env={"MUMMI_JOB_TYPE": "createsim"})
    assert proc.returncode == 0, proc.stderr
    assert (setup_dir / "createsims_success").is_file()
    proc = toy("simulate", plan, rasraf_ws, "--sim", "cg7", "--setup", str(setup_dir),
               "--workdir", str(run_dir), "--stop", "20 steps", "--frames", "cg.frames",
               "--feedback", "cg.rdfs", "--success-file", "cg_success", "--step-seconds", "0")
    assert proc.returncode == 0, proc.stderr
    frames = records(plan, rasraf_ws, "cg.frames")
    assert sorted(frames) == [f"cg7_f{n:012d}" for n in range(20)]
    values = np.stack([r.values for r in frames.values()])
    bounds = np.array(Plan.read(plan).selectors["frame-selector"].bounds)
    assert ((values >= bounds[:, 0]) & (values < bounds[:, 1])).all()
    assert len(np.unique(values, axis=0)) == 20  # the walk moves
    rdfs = records(plan, rasraf_ws, "cg.rdfs")
    assert sorted(rdfs) == [f"rdf_sim_cg7_{n:08d}" for n in range(4)]
    assert all(r.values.shape == (240,) and r.sim == "cg7" for r in rdfs.values())
    assert (run_dir / "cg_success").is_file() and (run_dir / "result.json").is_file()


def start_simulation(plan: Path, ws: Path, tmp_path: Path, candidate: str, sim: str,
                     stop: str, *args: str) -> tuple[subprocess.Popen[str], Path]:
    """Set ``candidate`` up, then start its simulation ``sim``; the process and its workdir."""
    setup_dir, run_dir = tmp_path / "setup", tmp_path / "run"
    assert toy("setup", plan, ws, "--candidate", candidate, "--workdir", str(setup_dir),
               "--seconds", "0").returncode == 0
    proc = start("simulate", plan, ws, "--sim", sim, "--setup", str(setup_dir), "--workdir",
                 str(run_dir), "--stop", stop, "--feedback", "cg.feedback", "--success-file",
                 "done", *args)
    return proc, run_dir


def test_simulate_stops_on_sigterm_without_success(plans, mini_ws, tmp_path):
    proc, run_dir = start_simulation(plans["mini"], mini_ws, tmp_path, "structure_000005",
                                     "simT", "200 steps", "--step-seconds", "0.2")
    terminate(proc)
    assert not (run_dir / "done").exists() and not (run_dir / "result.json").exists()


def test_simulate_hangs_follow_the_rate_until_sigterm(plans, mini_ws, tmp_path):
    draws = [hangs(0, "structure_000006", n, 0.5) for n in range(1, 13)]
    assert draws == [hangs(0, "structure_000006", n, 0.5) for n in range(1, 13)]
    assert True in draws and False in draws  # a retry can get through
    proc, run_dir = start_simulation(plans["mini"], mini_ws, tmp_path, "structure_000006",
                                     "simH", "1 step", "--step-seconds", "0", "--hang-rate", "1")
    # One step of no time would exit 0 at once; a hang exits only on SIGTERM, with 143.
    terminate(proc)
    assert not run_dir.exists()
    assert not [k for k in raw(plans["mini"], mini_ws, "cg.feedback") if "simH" in k]


# command line


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["setup", "--plan", "{missing}", "--candidate", "x", "--workdir", "w"], 2, "no such plan"),
        (["setup", "--plan", "{plan}", "--candidate", "x", "--workdir", "w",
          "--fail-rate", "2"], 2, "between 0 and 1"),
        (["simulate", "--plan", "{plan}", "--sim", "s", "--setup", "w", "--workdir", "w",
          "--hang-rate", "-0.5"], 2, "between 0 and 1"),
        (["generator", "--plan", "{plan}", "--stream", "cg.feedback"], 2, "not candidates"),
        (["simulate", "--plan", "{plan}", "--sim", "s", "--setup", "{missing}",
          "--workdir", "w"], 1, "no usable system"),
    ],
    ids=["missing-plan", "bad-rate", "bad-hang-rate", "not-a-candidate-stream",
         "missing-setup"],
)
def test_bad_invocations_exit_with_a_message(plans, tmp_path, args, code, message):
    argv = [a.format(plan=plans["mini"], missing=tmp_path / "nothing") for a in args]
    proc = subprocess.run([*TOY, *argv], env=_env(tmp_path, None), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == code
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("stop", "steps"), [("20 steps", 20), ("1 step", 1), ("600 ns", 20),
                                             ("", 20), ("10steps", 10)])
def test_stop_gives_the_number_of_steps(stop, steps):
    assert steps_of(stop) == steps

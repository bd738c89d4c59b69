"""`mummi app`: emit, candidate, target and env on a compiled spec, on every store a spec
can name; bad input exits 2 with one line naming the stream, and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.app import Context
from mummi_spec.cli import main
from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import load_spec_text
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import FeedbackLoop
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.stores.redis import RedisStore

SPEC = """
spec: mummi/v1
name: app-cli
workspace: ./ws
machine: {name: laptop, nodes: 1, walltime: "00:10:00",
          node: {cores: 2, oversubscribe: 3}, reserved: {manager: 0}}
scheduler: {type: local, poll: 0.2s}
stores: {@STORE@: @SETTINGS@}
scales:
  coarse:
    jobs:
      gen: {role: persistent, walltime: "00:10:00", resources: {cores_per_task: 1},
            command: "true"}
    emits: {points: {kind: candidates, dim: 3, store: @STORE@, tags: [a, b]}}
  fine:
    jobs:
      prep: {role: setup, walltime: "00:01:00", resources: {cores_per_task: 1}, command: "true"}
      md: {role: simulation, walltime: "00:01:00", resources: {cores_per_task: 1},
           stop: "5 steps", command: "true"}
    emits: {rdfs: {kind: feedback, dim: 2, store: @STORE@, key: "fb_{sim}_{n:06d}"}}
selectors: {pick: {kind: random, dim: 3}}
couplings:
  c: {from: coarse.points, to: fine, selector: pick, setup: prep, simulation: md,
      share: {cores: 1.0}}
feedback:
  fine-to-coarse: {from: fine.rdfs, to: coarse, period: 1s, aggregate: mean,
                   target: {store: @STORE@, namespace: targets, key: main}}
manager: {tick: 0.2s, checkpoint_every: 10s, max_simulations: 4}
"""
POINTS, RDFS, LOOP = "coarse.points", "fine.rdfs", "fine-to-coarse"


def compile_plan(root: Path, store: str, settings: str) -> Path:
    """plan.json of SPEC with this store, in root/build (the workspace is root/ws)."""
    text = SPEC.replace("@STORE@", store).replace("@SETTINGS@", settings)
    compiled = compile_loaded(load_spec_text(text, str(root / "spec.yaml")))
    path = root / "build" / "plan.json"
    path.parent.mkdir(parents=True)
    path.write_text(compiled.files["plan.json"])
    return path


@dataclass
class Rig:
    plan: Path
    store: str

    def keys(self, namespace: str) -> list[str]:
        with Context(self.plan) as ctx:
            return ctx.campaign.store(self.store).keys(namespace)


@pytest.fixture(params=["filesystem", "taridx", pytest.param("redis", marks=pytest.mark.redis)])
def rig(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[Rig]:
    for name in list(os.environ):
        if name.startswith("MUMMI_"):
            monkeypatch.delenv(name)
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        store = f"r{uuid.uuid4().hex[:12]}"  # the key prefix: apart from every other test's
        settings = f"{{backend: redis, host: '{server['host']}', port: {server['port']}}}"
    else:
        store, settings = "data", f"{{backend: {request.param}}}"
    rig = Rig(compile_plan(tmp_path, store, settings), store)
    yield rig
    if request.param == "redis":
        with Context(rig.plan) as ctx:
            opened = ctx.campaign.store(store)
            assert isinstance(opened, RedisStore)
            opened.purge()


def mummi(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def job_env(monkeypatch: pytest.MonkeyPatch, rig: Rig, **env: str) -> None:
    """The variables the manager sets for a job (attempt_request)."""
    monkeypatch.setenv("MUMMI_PLAN", str(rig.plan))
    for name, value in env.items():
        monkeypatch.setenv(f"MUMMI_{name.upper()}", value)


def test_emit_from_npy_and_json_files_prints_the_keys(rig: Rig, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "one.npy", np.array([1.0, 2.0, 3.0]))
    np.save(tmp_path / "rows.npy", np.array([[4, 5, 6], [7, 8, 9]], dtype=np.float32))
    (tmp_path / "one.json").write_text("[0.1, 0.2, 0.3]")
    code, out, err = mummi(capsys, "app", "emit", "--plan", str(rig.plan), POINTS,
                           str(tmp_path / "one.npy"), str(tmp_path / "rows.npy"),
                           str(tmp_path / "one.json"), "--tag", "b", "--meta", '{"src": "t"}')
    assert (code, err) == (0, "")
    keys = out.split()
    assert keys == [f"a1-{i:06d}" for i in range(4)]
    assert rig.keys("points") == keys
    with Context(rig.plan) as ctx:
        got = [ctx.stream(POINTS).read(k) for k in keys]
    np.testing.assert_array_equal([c.values for c in got],
                                  np.float32([[1, 2, 3], [4, 5, 6], [7, 8, 9], [.1, .2, .3]]))
    assert {(c.tag, json.dumps(c.meta)) for c in got} == {("b", '{"src": "t"}')}


def test_emit_with_ids_and_from_stdin(rig: Rig, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mummi_spec", "app", "emit", "--plan", str(rig.plan), POINTS,
         "-", "--id", "first", "--id", "second"],
        input="[[1, 2, 3], [4, 5, 6]]", capture_output=True, text=True, timeout=120,
        check=False, env={k: v for k, v in os.environ.items() if not k.startswith("MUMMI_")})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "first\nsecond\n", "")
    assert rig.keys("points") == ["first", "second"]


def test_numbering_goes_on_from_one_call_to_the_next_in_a_job(
        rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    job_env(monkeypatch, rig, job_type="md", sim="c_0001", attempt="1", coupling="c",
            state_dir=str(tmp_path / "ws" / "runs" / "c_0001" / "md.state"))
    (tmp_path / "fb.json").write_text("[1, 2]")
    first = mummi(capsys, "app", "emit", RDFS, str(tmp_path / "fb.json"))
    second = mummi(capsys, "app", "emit", RDFS, str(tmp_path / "fb.json"))
    assert (first[1], second[1]) == ("fb_c_0001_000000\n", "fb_c_0001_000001\n")
    assert rig.keys("rdfs") == ["fb_c_0001_000000", "fb_c_0001_000001"]


BAD = [
    ("wrong dim", [POINTS, "@[1, 2]"], f"stream {POINTS}, item 0: 2 values, the stream is 3-D"),
    ("NaN", [POINTS, "@[1, NaN, 3]"], f"stream {POINTS}, item 0: values hold NaN"),
    ("unknown stream", ["coarse.pts", "@[1, 2, 3]"],
     "no stream 'coarse.pts' in the plan; known: coarse.points, fine.rdfs"),
    ("path id", [POINTS, "@[1, 2, 3]", "--id", "../x"], "unsafe candidate id '../x'"),
    ("hidden id", [POINTS, "@[1, 2, 3]", "--id", ".x"], "unsafe candidate id '.x'"),
    ("too few ids", [POINTS, "@[[1, 2, 3], [4, 5, 6]]", "--id", "x"], "1 ids for 2 items"),
    ("unknown tag", [POINTS, "@[1, 2, 3]", "--tag", "c"], "tag 'c' is none of the stream's"),
    ("second item bad", [POINTS, "@[[1, 2, 3], [4, 5]]"], "is neither a .npy array nor"),
    ("3-D", [POINTS, "@[[[1, 2, 3]]]"], "holds a 3-D array; give one item"),
    ("not numbers", [POINTS, '@["a", "b", "c"]'], "neither a .npy array nor a JSON array"),
    ("bad meta", [POINTS, "@[1, 2, 3]", "--meta", "[1]"], "--meta must be a JSON object"),
    ("missing file", [POINTS, "no-such.npy"], "cannot read no-such.npy"),
]


@pytest.mark.parametrize(("case", "args", "message"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_emit_exits_2_with_one_line_and_writes_nothing(
        rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], case: str, args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    files = []
    for i, arg in enumerate(args):  # "@text" is a file holding text
        if arg.startswith("@"):
            (tmp_path / f"in{i}.json").write_text(arg[1:])
            files.append(f"in{i}.json")
        else:
            files.append(arg)
    code, out, err = mummi(capsys, "app", "emit", "--plan", str(rig.plan), *files)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("mummi: error: ")
    assert message in err
    assert rig.keys("points") == []


def test_outside_a_campaign_says_to_give_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MUMMI_PLAN", raising=False)
    (tmp_path / "x.json").write_text("[1, 2, 3]")
    for args in (["emit", POINTS, str(tmp_path / "x.json")], ["candidate"], ["target", LOOP],
                 ["env"]):
        code, out, err = mummi(capsys, "app", *args)
        assert (code, out) == (2, "")
        assert err == ("mummi: error: not in a campaign: MUMMI_PLAN is not set (the manager "
                       "sets it for every job); outside one, give --plan build/plan.json\n")


def test_candidate_prints_the_selected_one(rig: Rig, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.json").write_text("[0.1, -2.5, 3e6]")
    assert mummi(capsys, "app", "emit", "--plan", str(rig.plan), POINTS, str(tmp_path / "c.json"),
                 "--id", "cand", "--tag", "a", "--meta", '{"model": 2}')[0] == 0
    job_env(monkeypatch, rig, job_type="md", sim="c_0001", candidate="cand", coupling="c")
    assert mummi(capsys, "app", "candidate") == (0, "0.1 -2.5 3e+06\n", "")
    code, out, _ = mummi(capsys, "app", "candidate", "--json")
    assert (code, json.loads(out)) == (0, {"id": "cand", "stream": POINTS, "tag": "a",
                                           "meta": {"model": 2}, "values": [0.1, -2.5, 3e6]})
    assert mummi(capsys, "app", "candidate", "--out", str(tmp_path / "c.bin")) == (0, "", "")
    saved = np.load(tmp_path / "c.bin")
    assert saved.dtype == np.float32
    np.testing.assert_array_equal(saved, np.float32([0.1, -2.5, 3e6]))
    monkeypatch.setenv("MUMMI_CANDIDATE", "gone")
    code, _, err = mummi(capsys, "app", "candidate")
    assert code == 2 and f"stream {POINTS}: cannot read 'gone'" in err
    monkeypatch.setenv("MUMMI_JOB_TYPE", "gen")
    monkeypatch.delenv("MUMMI_CANDIDATE")
    code, _, err = mummi(capsys, "app", "candidate")
    assert code == 2 and "this job has no candidate: only setup and simulation jobs do" in err


def test_target_now_and_waiting_for_a_newer_one(rig: Rig, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    job_env(monkeypatch, rig, job_type="gen")
    code, out, err = mummi(capsys, "app", "target", LOOP)
    assert (code, out, err) == (1, "", f"mummi app: feedback loop {LOOP} has reported nothing "
                                       "yet\n")
    campaign = Campaign.open(rig.plan)
    loop = FeedbackLoop(LOOP, campaign, Ledger(tmp_path / "ledger.sqlite"))
    with Context(rig.plan, job_type="md", sim="c_0001") as sim:
        sim.stream(RDFS).emit_many([[1, 2], [3, 4]])
    loop.iterate()
    assert mummi(capsys, "app", "target", LOOP) == (0, "2.0 3.0\n", "")
    code, out, _ = mummi(capsys, "app", "target", LOOP, "--wait", "0", "--json")
    assert json.loads(out) == {"loop": LOOP, "iteration": 1, "items": 2, "meta": {"loop": LOOP},
                               "values": [2.0, 3.0]}
    code, out, err = mummi(capsys, "app", "target", LOOP, "--wait", "1", "--timeout", "0")
    assert (code, out) == (1, "")
    assert err == f"mummi app: feedback loop {LOOP} has reported nothing newer than iteration 1\n"
    # A waiting process gets the next iteration once the loop reports it.
    waiter = subprocess.Popen(
        [sys.executable, "-m", "mummi_spec", "app", "target", LOOP, "--wait", "1", "--poll",
         "0.05", "--out", str(tmp_path / "t.npy")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    with Context(rig.plan, job_type="md", sim="c_0002") as sim:
        sim.stream(RDFS).emit([8, 9])
    loop.iterate()
    _, err = waiter.communicate(timeout=120)
    assert (waiter.returncode, err) == (0, "")
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), [4, 5])
    code, _, err = mummi(capsys, "app", "target", "nope")
    assert code == 2 and f"no feedback loop 'nope' in the plan; known: {LOOP}" in err
    campaign.close()


def test_env_prints_the_context(rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    job_env(monkeypatch, rig, job_type="md", sim="c_0003", candidate="x", coupling="c",
            attempt="2", restart="1", state_dir=str(tmp_path / "st"))
    code, out, err = mummi(capsys, "app", "env")
    assert (code, err) == (0, "")
    info = json.loads(out)
    assert {k: info[k] for k in ("job_type", "role", "stop", "attempt", "restart", "sim",
                                 "candidate", "coupling", "state_dir", "targets")} == {
        "job_type": "md", "role": "simulation", "stop": "5 steps", "attempt": 2,
        "restart": True, "sim": "c_0003", "candidate": "x", "coupling": "c",
        "state_dir": str(tmp_path / "st"), "targets": []}
    assert info["workspace"] == str(tmp_path / "ws")
    assert info["variables"]["MUMMI_SIM"] == "c_0003"
    assert info["variables"]["MUMMI_PLAN"] == str(rig.plan)
    # --plan wins over $MUMMI_PLAN; a persistent job has no candidate but feedback targets.
    monkeypatch.setenv("MUMMI_PLAN", "/nowhere/plan.json")
    monkeypatch.setenv("MUMMI_JOB_TYPE", "gen")
    code, out, _ = mummi(capsys, "app", "env", "--plan", str(rig.plan))
    assert code == 0
    assert (json.loads(out)["role"], json.loads(out)["targets"]) == ("persistent", [LOOP])

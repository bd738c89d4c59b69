"""Both example specs end to end through `mummi run` (Maestro, local adapter), ledger-checked."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import CONSUMED_SUFFIX
from mummi_spec.runtime.records import decode
from tests.conftest import SPECS


def run_cli(*args: str, cwd: Path, timeout: float = 300, **extra: str
            ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, USER=os.environ.get("USER", "root"), **extra)
    env.pop("MUMMI_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "mummi_spec", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@contextlib.contextmanager
def running(*args: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """``mummi ARGS`` started in ``cwd`` in a session of its own, output piped, for a test to
    act on meanwhile; whatever of that session still runs at the end is killed."""
    env = dict(os.environ, USER=os.environ.get("USER", "root"))
    env.pop("MUMMI_WORKSPACE", None)
    proc = subprocess.Popen([sys.executable, "-m", "mummi_spec", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):  # Maestro and the manager with it
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def run_spec(factory: pytest.TempPathFactory, spec: str, **env: str) -> Path:
    cwd = factory.mktemp(spec.split(".")[0])
    proc = run_cli("run", str(SPECS / spec), cwd=cwd, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_spec(tmp_path_factory, "mini.yaml")


@pytest.fixture(scope="module")
def rasraf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_spec(tmp_path_factory, "rasraf-3scale.yaml")


def _db(ws: Path) -> sqlite3.Connection:
    return sqlite3.connect(ws / "ledger.sqlite")


def _campaign(cwd: Path) -> Campaign:
    return Campaign.open(cwd / "build" / "plan.json")


def check_campaign(cwd: Path) -> Campaign:
    """What every finished campaign must satisfy, read from its ledger and stores."""
    c = _campaign(cwd)
    ws = c.workspace
    assert ws == (cwd / c.plan.workspace).resolve()  # relative to where it was compiled
    db = _db(ws)
    plan = c.plan
    # Every selection is unique per coupling and within its share of max_simulations.
    sims = db.execute("SELECT sim, coupling, candidate, state FROM sims").fetchall()
    assert len(sims) == plan.manager.max_simulations
    assert len({(cp, cand) for _, cp, cand, _ in sims}) == len(sims)
    assert Counter(s for *_, s in sims) == {"done": len(sims)}
    # No selection got two successful jobs of a type; each done sim has its simulation job.
    done = Counter((sim, jt) for sim, jt in db.execute(
        "SELECT sim, job_type FROM jobs WHERE state = 'completed' AND sim IS NOT NULL"))
    assert set(done.values()) == {1}
    for sim, coupling, _, _ in sims:
        assert done[(sim, plan.couplings[coupling].simulation)] == 1
    # Never more GPU jobs running than GPUs.
    busy = [r[0] for r in db.execute("SELECT busy_gpus FROM occupancy")]
    assert max(busy) <= plan.pools.gpu_pool
    assert max(busy) >= 1
    # Feedback: every item written was consumed exactly once, nothing left live.
    for name, loop in plan.feedback.items():
        stream = c.stream(loop.source)
        store = c.store(stream.store)
        ns = stream.namespace
        assert store.keys(ns) == []
        moved = store.keys(ns + CONSUMED_SUFFIX)
        consumed = [k for (k,) in db.execute("SELECT key FROM consumed WHERE loop = ?", (name,))]
        assert sorted(consumed) == moved and moved
        (items,) = db.execute("SELECT items FROM feedback WHERE loop = ?", (name,)).fetchone()
        assert items == len(moved)
        target = decode(c.store(loop.target.store).get(loop.target.namespace, loop.target.key))
        assert target.meta["items"] == len(moved)
    for name in ("summary.txt", "occupancy.png", "coverage.png", "status.json"):
        assert (ws / name).stat().st_size > 0
    status = json.loads((ws / "status.json").read_text())
    assert status["state"] == "complete"
    # Nothing is left running once it ends (persistent jobs are cancelled, and counted so).
    assert not [t for t, s in status["jobs"].items() if s.get("running") or s.get("queued")]
    assert status["busy"] == {"gpus": 0, "cores": 0}
    return c


def test_mini_campaign_end_to_end(mini: Path) -> None:
    c = check_campaign(mini)
    stream = c.stream("structures.latent")
    store = c.store(stream.store)
    keys = store.keys(stream.namespace)
    # The generator writes 400 over ~20 s and is stopped when the campaign completes, which on
    # a busy machine can come first: never more, and always more than were selected.
    selected = _db(c.workspace).execute("SELECT COUNT(*) FROM sims").fetchone()[0]
    assert selected < len(keys) <= 400
    # The coarse model really changed: late candidates were drawn after feedback arrived.
    models = [decode(b).meta["model"] for b in store.get_many(stream.namespace, keys)]
    assert max(models) >= 1 and min(models) == 0
    db = _db(c.workspace)
    # createsim fails 10 % of the time in the toy: failures were retried, not fatal.
    failed = db.execute("SELECT COUNT(*) FROM jobs WHERE job_type = 'createsim' AND "
                        "state = 'failed'").fetchone()[0]
    retried = db.execute("SELECT COUNT(*) FROM jobs WHERE job_type = 'createsim' AND "
                         "attempt > 1").fetchone()[0]
    assert retried == failed


def test_rasraf_all_three_scales(rasraf: Path) -> None:
    c = check_campaign(rasraf)
    db = _db(c.workspace)
    per = dict(db.execute("SELECT coupling, COUNT(*) FROM sims GROUP BY coupling"))
    assert per == {"macro-to-cg": 6, "cg-to-aa": 6}
    # The fine scale's candidates are frames the middle scale's simulations wrote.
    frames = [cand for (cand,) in db.execute(
        "SELECT candidate FROM sims WHERE coupling = 'cg-to-aa'")]
    cg_sims = {s for (s,) in db.execute("SELECT sim FROM sims WHERE coupling = 'macro-to-cg'")}
    assert all(f.split("_f")[0] in cg_sims for f in frames)
    # Patches were routed to the tagged queues; the 'invalid' queue (ratio 0) is never chosen.
    tags = {decode(c.store("patches").get(c.stream("macro.patches").namespace, cand)).tag
            for (cand,) in db.execute(
                "SELECT candidate FROM sims WHERE coupling = 'macro-to-cg'")}
    assert "invalid" not in tags


def test_status_command_reads_a_finished_campaign(mini: Path) -> None:
    ws = _campaign(mini).workspace
    proc = run_cli("status", str(ws), cwd=mini)
    assert proc.returncode == 0, proc.stderr
    assert "campaign mini-mummi: complete" in proc.stdout
    assert "simulations: done 12" in proc.stdout


def test_rerunning_a_finished_campaign_does_nothing_twice(mini: Path) -> None:
    ws = _campaign(mini).workspace
    before = _db(ws).execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    proc = run_cli("run", "build", cwd=mini)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    db = _db(ws)
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == before
    assert db.execute("SELECT COUNT(*) FROM sims").fetchone()[0] == 12


def test_a_workspace_refuses_another_plan(mini: Path, tmp_path: Path) -> None:
    ws = _campaign(mini).workspace
    proc = run_cli("run", str(SPECS / "rasraf-3scale.yaml"), "-o", str(tmp_path / "build"),
                   "--workspace", str(ws), cwd=tmp_path)
    assert proc.returncode == 2
    assert "different plan.json" in proc.stderr


def test_status_of_a_directory_that_is_no_workspace(tmp_path: Path) -> None:
    proc = run_cli("status", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no status.json" in proc.stderr and "Traceback" not in proc.stderr


def test_coverage_numbers_are_in_the_summary(mini: Path) -> None:
    text = (_campaign(mini).workspace / "summary.txt").read_text()
    found = re.search(r"coverage structures\.latent: covering radius ([\d.]+), mean distance "
                      r"to nearest selected ([\d.]+)", text)
    assert found, text
    radius, mean = (float(v) for v in found.groups())
    assert 0 < mean <= radius and np.isfinite(radius)

"""The alanine dipeptide example end to end: real OpenMM under `mummi run`, steered by feedback.

Runs examples/alanine-dipeptide/campaign.yaml (local profile) once, then checks what it is
for: every selected conformation was minimised and simulated with OpenMM; every frame of
every simulation reached the explorer's target exactly once; the target changed what the
explorer proposed (against the same explorer replayed without it); and the explorer, stopped
by SIGTERM, resumes its trajectory exactly.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import CONSUMED_SUFFIX
from mummi_spec.runtime.records import decode
from tests.conftest import REQUIRE_SERVICES, ROOT
from tests.integration.test_campaign import run_cli

EXAMPLE = ROOT / "examples" / "alanine-dipeptide"
SPEC = EXAMPLE / "campaign.yaml"
STREAM = "explorer.conformations"
GRACE = 5.0  # the local scheduler's kill_grace: SIGTERM, then SIGKILL after this long

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def example() -> Iterator[None]:
    """OpenMM, and the example's own code importable here as the spec's pythonpath makes it
    for the jobs."""
    if importlib.util.find_spec("openmm") is None:
        why = "openmm is not installed: pip install -e '.[openmm]' (scripts/setup does)"
        if REQUIRE_SERVICES:  # CI installs it (scripts/setup): there, its absence fails
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    sys.path.insert(0, str(EXAMPLE))
    yield
    sys.path.remove(str(EXAMPLE))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, example: None) -> Campaign:
    cwd = tmp_path_factory.mktemp("alanine")
    proc = run_cli("run", str(SPEC), cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Campaign.open(cwd / "build" / "plan.json")


def _db(c: Campaign) -> sqlite3.Connection:
    return sqlite3.connect(c.workspace / "ledger.sqlite")


def _proposals(c: Campaign) -> list[tuple[str, dict[str, Any], np.ndarray]]:
    stream = c.stream(STREAM)
    store = c.store(stream.store)
    keys = sorted(store.keys(stream.namespace))
    records = [decode(b) for b in store.get_many(stream.namespace, keys)]
    return [(k, r.meta, np.asarray(r.values)) for k, r in zip(keys, records, strict=True)]


def _completed(c: Campaign, job: str) -> dict[str, Path]:
    rows = _db(c).execute("SELECT sim, workdir FROM jobs WHERE job_type = ? AND "
                          "state = 'completed'", (job,)).fetchall()
    assert len({s for s, _ in rows}) == len(rows)  # never two successes for one simulation
    return {s: Path(w) for s, w in rows}


def test_every_selected_conformation_was_simulated_with_openmm(run: Campaign) -> None:
    import openmm
    from alanine.molecule import angles

    c = run
    sims = _db(c).execute("SELECT sim, candidate, state FROM sims").fetchall()
    assert len(sims) == c.plan.manager.max_simulations
    assert Counter(s for *_, s in sims) == {"done": len(sims)}
    setups, mds = _completed(c, "minimise"), _completed(c, "simulate")
    stream = c.stream(STREAM)
    for sim, candidate, _ in sims:
        cand = decode(c.store(stream.store).get(stream.namespace, candidate))
        setup = json.loads((setups[sim] / "setup.json").read_text())
        assert setup["candidate"] == candidate
        assert (c.workspace / cand.meta["pdb"]).is_file()  # the explorer's structure
        result = json.loads((mds[sim] / "result.json").read_text())
        assert (result["engine"], result["platform"]) == ("OpenMM", "CPU")
        assert result["openmm"] == openmm.version.version
        assert result["candidate"] == candidate
        assert (result["steps"], result["frames"], result["ps"]) == (10_000, 200, 20.0)
        # It started from the selected conformation: (φ, ψ) held through the minimisation.
        wrap = (np.array(result["start_phi_psi"]) - np.array(angles(cand.values)) + 180) % 360
        assert np.abs(wrap - 180).max() < 5.0, (sim, result["start_phi_psi"], cand.meta)
        assert (mds[sim] / "trajectory.dcd").stat().st_size > 0
        assert np.isfinite(result["final_energy_kj_mol"])


def test_the_ledger_is_complete_and_every_frame_counts_once(run: Campaign) -> None:
    from alanine.molecule import histogram

    c = run
    db = _db(c)
    loop = c.plan.feedback["visits"]
    stream = c.stream(loop.source)
    store = c.store(stream.store)
    assert store.keys(stream.namespace) == []  # nothing left unconsumed
    moved = store.keys(stream.namespace + CONSUMED_SUFFIX)
    consumed = sorted(k for (k,) in db.execute("SELECT key FROM consumed WHERE loop = 'visits'"))
    sims = [s for (s,) in db.execute("SELECT sim FROM sims")]
    assert consumed == moved and len(moved) == 4 * len(sims)  # 20 ps in stretches of 5 ps
    (items,) = db.execute("SELECT items FROM feedback WHERE loop = 'visits'").fetchone()
    target = decode(c.store(loop.target.store).get(loop.target.namespace, loop.target.key))
    assert target.meta["items"] == items == len(moved)
    # The target is the sum of every simulation's (φ, ψ) frames, each once.
    frames = sum(histogram(t["phi"], t["psi"]) for t in (
        np.load(d / "torsions.npz") for d in _completed(c, "simulate").values()))
    assert np.array_equal(np.asarray(target.values), frames)
    assert float(np.sum(target.values)) == 200 * len(sims)
    status = json.loads((c.workspace / "status.json").read_text())
    assert status["state"] == "complete"
    assert status["busy"] == {"gpus": 0, "cores": 0}
    # The explorer was told to stop (SIGTERM) and said so: state saved, exit 0 in the grace.
    (workdir,) = [Path(w) for (w,) in db.execute(
        "SELECT workdir FROM jobs WHERE job_type = 'explore'")]
    log = "".join(p.read_text() for p in workdir.glob("*.out"))
    assert "explorer: stopped after SIGTERM" in log, log
    assert (c.workspace / "runs" / "persistent" / "explore.state" / "explorer.npz").is_file()


def test_the_feedback_changed_what_the_explorer_proposed(run: Campaign) -> None:
    from alanine.explore import alone, arguments
    from alanine.molecule import cells

    proposals = _proposals(run)
    used = [meta["feedback"] for _, meta, _ in proposals]
    assert used == sorted(used) and used[-1] >= 1  # it read newer and newer targets
    assert [k for k, _, _ in proposals] == [f"conf-{i:06d}" for i in range(len(proposals))]
    # The control: the same explorer, same seed and settings, never given the target.
    control = alone(arguments(run.plan.job("explore").command), len(proposals))
    ours = [(meta["phi"], meta["psi"]) for _, meta, _ in proposals]
    before = used.count(0)
    assert before >= 1 and ours[:before] == control[:before]  # identical until the first flood
    assert ours[before:] != control[before:]
    # Flooded, it leaves the basins the MD has sampled: its proposals reach cells the
    # explorer alone never does, the left-handed side (φ > 0) among them.
    mine = set(cells(*np.array(ours).T).tolist())
    alone_cells = set(cells(*np.array(control).T).tolist())
    assert len(mine - alone_cells) > len(alone_cells - mine), (mine, alone_cells)


def test_the_ramachandran_plot_of_the_campaign(run: Campaign, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(EXAMPLE))
    out = tmp_path / "map.png"
    proc = subprocess.run([sys.executable, "-m", "alanine.plot", str(run.workspace), "-o",
                           str(out)], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
    empty = subprocess.run([sys.executable, "-m", "alanine.plot", str(tmp_path)], env=env,
                           capture_output=True, text=True, check=False)
    assert empty.returncode == 2 and "no simulation results" in empty.stderr


def _until(proc: subprocess.Popen[str], c: Campaign, n: int) -> int:
    """Wait until the explorer has proposed ``n`` items (or has died); how many there are."""
    stream = c.stream(STREAM)
    store = c.store(stream.store)
    while True:
        count = len(store.keys(stream.namespace))
        if count >= n or proc.poll() is not None:
            return count
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.05)  # returns at once if the explorer dies


def _explorer(ws: Path, plan: Path, attempt: int, argv: list[str]) -> subprocess.Popen[str]:
    path = os.pathsep.join(filter(None, [str(EXAMPLE), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, MUMMI_PLAN=str(plan), MUMMI_WORKSPACE=str(ws),
               MUMMI_JOB_TYPE="explore", MUMMI_ATTEMPT=str(attempt),
               MUMMI_RESTART="1" if attempt > 1 else "0", MUMMI_STATE_DIR=str(ws / "state"),
               PYTHONPATH=path)
    return subprocess.Popen([sys.executable, "-m", "alanine.explore", *argv], env=env,
                            cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _terminate(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, as the manager sends it; the explorer must be gone within the grace period."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=GRACE)
    assert proc.returncode == 0, out
    return out


def test_the_explorer_saves_its_state_on_sigterm_and_resumes_from_it(
        tmp_path: Path, example: None) -> None:
    from alanine.explore import alone

    assert run_cli("compile", str(SPEC), "-o", str(tmp_path / "build"),
                   cwd=tmp_path).returncode == 0
    plan, ws = tmp_path / "build" / "plan.json", tmp_path / "ws"
    ws.mkdir()
    c = Campaign.open(plan, ws)
    argv = ["--stream", STREAM, "--out", str(ws / "conformations"), "--every", "0.02",
            "--seed", "3"]
    first = _explorer(ws, plan, 1, argv)
    assert _until(first, c, 5) >= 5
    out = _terminate(first)
    assert "stopped after SIGTERM" in out and (ws / "state" / "explorer.npz").is_file()
    stopped_at = len(_proposals(c))
    second = _explorer(ws, plan, 2, argv)
    _until(second, c, stopped_at + 5)
    out = _terminate(second)
    assert f"resumed at proposal {stopped_at}" in out
    proposals = _proposals(c)
    # One trajectory, as if never stopped: every id once, in order, each the conformation
    # an uninterrupted explorer proposes at that point.
    assert [k for k, _, _ in proposals] == [f"conf-{i:06d}" for i in range(len(proposals))]
    assert len(proposals) >= stopped_at + 5
    ours = [(meta["phi"], meta["psi"]) for _, meta, _ in proposals]
    assert ours == alone(argv, len(proposals))
    c.close()


@pytest.mark.parametrize("module", ["alanine.explore", "alanine.prepare", "alanine.simulate"])
def test_a_job_run_outside_a_campaign_says_so_in_one_line(module: str) -> None:
    args = {"alanine.explore": ["--stream", STREAM, "--out", "x"],
            "alanine.simulate": ["--feedback", "md.visits"]}.get(module, [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUMMI_")}
    env["PYTHONPATH"] = str(EXAMPLE)
    proc = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 2
    assert "not run by a campaign: MUMMI_PLAN is not set" in proc.stderr
    assert "Traceback" not in proc.stderr

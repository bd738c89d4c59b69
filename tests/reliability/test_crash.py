"""kill -9 the manager at moments spread over its work, restart it: nothing lost or done twice.

CI runs one trial per moment, and one inside the submit window on Slurm and on Flux;
``MUMMI_CRASH_TRIALS=20 pytest tests/reliability/test_crash.py`` runs the full set (four at
each moment, four in the window on each scheduler).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.compiler.emit import write
from mummi_spec.frontend import load_spec
from mummi_spec.runtime.campaign import Campaign
from tests.conftest import SPECS
from tests.integration.test_campaign import check_campaign
from tests.reliability.window import _manager, kill_inside_the_window, restart_and_check

TRIALS = int(os.environ.get("MUMMI_CRASH_TRIALS", "5"))  # one per moment
WINDOW_TRIALS = max(1, TRIALS // 5)  # per scheduler


def _count(ws: Path, sql: str) -> int:
    try:
        db = sqlite3.connect(f"file:{ws / 'ledger.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute(sql).fetchone()[0] or 0)
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet


def _checkpointed(ws: Path) -> int:
    return sum(1 for _ in (ws / "checkpoints").glob("*.prev.npz")) if ws.exists() else 0


# Moments to kill at, each reached by waiting on the ledger or the workspace (never a sleep):
# while ingesting, right after selections, mid-submission, after feedback, after a checkpoint.
MOMENTS: list[tuple[str, Callable[[Path, int], bool]]] = [
    ("ingest", lambda ws, i: _count(ws, "SELECT COUNT(*) FROM jobs") >= 1 + i % 3),
    ("selection", lambda ws, i: _count(ws, "SELECT COUNT(*) FROM sims") >= 1 + i % 5),
    ("submission", lambda ws, i: _count(
        ws, "SELECT COUNT(*) FROM jobs WHERE sim IS NOT NULL") >= 2 + i % 7),
    ("feedback", lambda ws, i: _count(ws, "SELECT MAX(iteration) FROM feedback") >= 1 + i % 2),
    ("checkpoint", lambda ws, i: _checkpointed(ws) >= 1),
]


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_and_restart_loses_nothing(trial: int, tmp_path: Path) -> None:
    build = tmp_path / "build"
    write(build, compile_loaded(load_spec(SPECS / "mini.yaml")).files)
    ws = Campaign.open(build / "plan.json").workspace
    name, reached = MOMENTS[trial % len(MOMENTS)]
    proc = _manager(build)
    deadline = time.monotonic() + 120
    while not reached(ws, trial) and proc.poll() is None:
        assert time.monotonic() < deadline, f"moment {name} never reached"
        time.sleep(0.02)  # polling the ledger for the moment, not waiting for an outcome
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The jobs the dead manager started carry on as orphans, as on a real machine.
    restart = _manager(build)
    assert restart.wait(timeout=240) == 0
    check_campaign(tmp_path)
    status = json.loads((ws / "status.json").read_text())
    assert status["state"] == "complete"


@pytest.mark.parametrize("trial", range(WINDOW_TRIALS))
@pytest.mark.parametrize("scheduler", [pytest.param("slurm", marks=pytest.mark.slurm),
                                       pytest.param("flux", marks=pytest.mark.flux)])
def test_kill_9_inside_the_submit_window(scheduler: str, trial: int, tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    """After the scheduler took an attempt's job, before its id reached the ledger: a setup,
    a simulation or the persistent generator, of a different selection each trial."""
    request.getfixturevalue("slurm_cluster" if scheduler == "slurm" else "flux_instance")
    sim = f"cg-{1 + 5 * trial % 12:06d}"
    attempt = (f"{sim}.createsim.1", f"{sim}.cganalysis.1", "generator.1")[trial % 3]
    restart_and_check(kill_inside_the_window(tmp_path, scheduler, attempt))


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    build = tmp_path / "build"
    write(build, compile_loaded(load_spec(SPECS / "mini.yaml")).files)
    ws = Campaign.open(build / "plan.json").workspace
    assert _manager(build).wait(timeout=240) == 0
    ck = ws / "checkpoints"
    assert (ck / "sampler.prev.npz").exists()
    (ck / "sampler.npz").write_bytes(b"half a checkpoint")
    assert _manager(build).wait(timeout=240) == 0
    assert "trying the previous checkpoint" in (ws / "manager.log").read_text()
    # Both unreadable: a clear refusal, never a silent fresh start.
    (ck / "sampler.npz").write_bytes(b"garbage")
    (ck / "sampler.prev.npz").write_bytes(b"garbage")
    env = dict(os.environ)
    env.pop("MUMMI_WORKSPACE", None)
    proc = subprocess.run([sys.executable, "-m", "mummi_spec", "manager", "--plan",
                           str(build / "plan.json")], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2
    assert "refusing to restart it from nothing" in proc.stderr


def test_sigterm_stops_checkpoints_and_a_rerun_resumes(tmp_path: Path) -> None:
    build = tmp_path / "build"
    write(build, compile_loaded(load_spec(SPECS / "mini.yaml")).files)
    ws = Campaign.open(build / "plan.json").workspace
    proc = _manager(build)
    deadline = time.monotonic() + 120
    while _count(ws, "SELECT COUNT(*) FROM jobs WHERE state = 'completed' AND sim IS NOT NULL"
                 ) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)  # polling the ledger for the moment, not waiting for an outcome
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    status = json.loads((ws / "status.json").read_text())
    assert status["state"] == "stopped"
    assert (ws / "checkpoints" / "sampler.npz").exists()
    # The local adapter cannot re-attach, so nothing it ran is left running or unaccounted.
    live = _count(ws, "SELECT COUNT(*) FROM jobs WHERE state IN ('submitting', 'queued', "
                      "'running')")
    assert live == 0
    done_before = _count(ws, "SELECT COUNT(*) FROM sims WHERE state = 'done'")
    assert _manager(build).wait(timeout=240) == 0
    check_campaign(tmp_path)
    assert _count(ws, "SELECT COUNT(*) FROM sims WHERE state = 'done'") >= done_before

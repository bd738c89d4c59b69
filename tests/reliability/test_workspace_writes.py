"""A workspace that stops taking writes mid-run (a full disk, `runs/` turned read-only): the
manager rides out a short outage, and past `manager.write_retry_for` ends `failed`, saying
where and why; `mummi run` exits 1 (never 130, never an internal error) and resumes later."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mummi_spec.runtime.status import read_status
from tests.conftest import SPECS, fill, mounted
from tests.integration.test_campaign import check_campaign, running

OUTAGE = 10.0  # how long the disk stays full: the fault's length, well inside 60 s
LOCAL_MANAGER = "manager: {tick: 0.2s, checkpoint_every: 10s, max_simulations: 12}"


@pytest.fixture
def campaign(tmp_path: Path) -> tuple[Path, Path]:
    """mini.yaml (local profile) whose refused writes are retried for 2 s, and its workspace
    directory (where mini's local profile puts it, relative to ``tmp_path``)."""
    text = (SPECS / "mini.yaml").read_text()
    assert LOCAL_MANAGER in text
    spec = tmp_path / "mini.yaml"
    spec.write_text(text.replace(LOCAL_MANAGER, LOCAL_MANAGER[:-1] + ", write_retry_for: 2s}"))
    ws = tmp_path / "workspace" / "mini-mummi-local"
    ws.mkdir(parents=True)
    return spec, ws


def _wait_for(proc: subprocess.Popen[str], reached: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 180
    while not reached():
        assert proc.poll() is None, f"mummi run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)  # polling the workspace for the moment, not waiting for an outcome


def _under_way(ws: Path) -> Callable[[], bool]:
    """The first simulation is done: the manager is busy, 11 more to go."""
    return lambda: (read_status(ws) or {}).get("sims", {}).get("done", 0) >= 1


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mummi:")]


DISK = "size=16m"  # room for the campaign (a peak of 4.3 MB measured) and its ledger's log


def test_a_disk_full_for_10_s_under_the_ledger_is_ridden_out(campaign, tmp_path):
    spec, ws = campaign
    spec.write_text(spec.read_text().replace(", write_retry_for: 2s}", "}"))  # 60 s
    with mounted("-t", "tmpfs", "-o", DISK, "tmpfs", at=ws), \
            running("run", str(spec), cwd=tmp_path) as proc:
        _wait_for(proc, _under_way(ws), "the first simulation")
        filler = fill(ws)
        time.sleep(OUTAGE)  # the outage itself
        filler.unlink()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
        assert "campaign mini-mummi: complete" in out
        # Said on the console once the disk took the status again, and in the log.
        assert f"the workspace refused a write: cannot write {ws}/" in out
        assert "workspace writes retried: " in out
        log = (ws / "manager.log").read_text()
        assert "; retrying in " in log and "; carrying on" in log
        assert "Traceback" not in log and "internal error" not in err
        check_campaign(tmp_path)  # nothing lost, nothing done twice


def test_runs_turning_read_only_fails_the_campaign_saying_where_and_why(campaign, tmp_path):
    spec, ws = campaign
    runs = ws / "runs"
    with running("run", str(spec), cwd=tmp_path) as proc:
        _wait_for(proc, lambda: (runs / "cg-000001").is_dir(), "the first setup")
        with mounted("--bind", "-o", "ro", str(runs), at=runs):
            out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    (line,) = _error_lines(err)
    assert line.startswith(f"mummi: error: campaign mini-mummi failed: cannot write {runs}/")
    assert ": Read-only file system (still after 2 s of retries, manager.write_retry_for); " \
        "free space or make it writable, then `mummi run` again resumes the campaign" in line
    assert "internal error" not in err and "Traceback" not in err
    status = json.loads((ws / "status.json").read_text())
    assert status["state"] == "failed" and status["why"] in line
    # Nothing is left running: the local jobs were cancelled and recorded so.
    assert not [t for t, s in status["jobs"].items() if s.get("running") or s.get("queued")]
    with running("run", str(tmp_path / "build"), cwd=tmp_path) as rerun:
        out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out + err
    check_campaign(tmp_path)


def test_a_disk_that_stays_full_fails_the_campaign_and_says_so(campaign, tmp_path):
    spec, ws = campaign
    with mounted("-t", "tmpfs", "-o", DISK, "tmpfs", at=ws):
        with running("run", str(spec), cwd=tmp_path) as proc:
            _wait_for(proc, _under_way(ws), "the first simulation")
            filler = fill(ws)
            out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, out + err
        (line,) = _error_lines(err)
        assert line.startswith(f"mummi: error: campaign mini-mummi failed: cannot write {ws}/")
        assert "full" in line or "No space left on device" in line
        assert "internal error" not in err
        # The space it held for the purpose let it record why, on the full disk.
        assert json.loads((ws / "status.json").read_text())["state"] == "failed"
        filler.unlink()
        with running("run", str(tmp_path / "build"), cwd=tmp_path) as rerun:
            out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, out + err
        check_campaign(tmp_path)

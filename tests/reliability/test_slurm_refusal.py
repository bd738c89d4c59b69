"""A real Slurm that refuses every sbatch: the manager backs off exponentially, then catches up."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mummi_spec.runtime.campaign import Campaign
from tests.conftest import SPECS
from tests.integration.test_campaign import check_campaign, run_cli
from tests.reliability.test_crash import _manager

ROUNDS = 5  # refused rounds to watch: 1 + 2 + 4 + 8 s of back-off between them
REFUSED = "SELECT submitted_at FROM jobs WHERE reason LIKE 'submission refused:%' ORDER BY 1"


def _scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def drained_partition(slurm_cluster: dict[str, str]) -> Iterator[str]:
    """A partition of our own over the cluster's node, drained: sbatch to it fails at once
    ("Required partition not available"). Ours, so tests using the shared one run on."""
    nodes = subprocess.run(["sinfo", "-h", "-p", slurm_cluster["partition"], "-o", "%N"],
                           capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    name = f"mummi-refuse-{os.getpid()}"
    _scontrol("create", f"PartitionName={name}", f"Nodes={nodes}", "State=DRAIN")
    try:
        yield name
    finally:
        subprocess.run(["scancel", "-p", name], capture_output=True, timeout=30, check=False)
        _scontrol("delete", f"PartitionName={name}")


def _refused(ws: Path) -> list[float]:
    try:
        db = sqlite3.connect(f"file:{ws / 'ledger.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return [t for (t,) in db.execute(REFUSED)]
        finally:
            db.close()
    except sqlite3.Error:
        return []  # not created yet


def test_a_refusing_slurm_is_backed_off_from_then_the_campaign_completes(
        drained_partition: str, tmp_path: Path) -> None:
    proc = run_cli("compile", str(SPECS / "mini.yaml"), "-o", "build", cwd=tmp_path,
                   MUMMI_SCHEDULER="slurm", MUMMI_QUEUE=drained_partition)
    assert proc.returncode == 0, proc.stderr
    build = tmp_path / "build"
    ws = Campaign.open(build / "plan.json").workspace
    manager = _manager(build)
    try:
        deadline = time.monotonic() + 60
        while len(_refused(ws)) < ROUNDS:
            assert manager.poll() is None, "manager ended while Slurm refused everything"
            assert time.monotonic() < deadline, f"refused so far: {_refused(ws)}"
            time.sleep(0.05)  # polling the ledger for the moment
        times = _refused(ws)
        # The manager ticks every 0.2 s: a tight loop would have tried ~75 times by now.
        assert len(times) == ROUNDS
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
        assert gaps[-1] >= 8  # the fourth wait: 1, 2, 4, 8 s
        _scontrol("update", f"PartitionName={drained_partition}", "State=UP")
        assert manager.wait(timeout=150) == 0
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait()
    check_campaign(tmp_path)  # every sim done once, feedback exactly once: nothing lost
    log = (ws / "manager.log").read_text()
    assert "Required partition not available" in log and "Traceback" not in log
    db = sqlite3.connect(ws / "ledger.sqlite")
    # Refused attempts are recorded as lost and cost nothing; the real ones ran on Slurm.
    assert {s for (s,) in db.execute("SELECT state FROM jobs WHERE reason LIKE "
                                     "'submission refused:%'")} == {"lost"}
    ids = [i for (i,) in db.execute("SELECT sched_id FROM jobs WHERE state = 'completed'")]
    assert ids and all(i.isdigit() for i in ids)

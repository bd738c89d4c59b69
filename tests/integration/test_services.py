"""scripts/services: the local Slurm it starts is up, hands out fake GPUs, and refuses too many."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm
SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=cwd,
                          check=False)


def services(*args: str) -> subprocess.CompletedProcess[str]:
    """``scripts/services`` with this interpreter (the project's venv), as scripts/test runs it."""
    return run(sys.executable, str(SERVICES), *args)


@pytest.fixture
def own_slurm(slurm_cluster):
    """The running Slurm, when this checkout's scripts/services started it (its state dir
    holds slurmctld's pid file); one another checkout started is not this script's to report."""
    state = Path(os.environ.get("MUMMI_SERVICES_DIR") or SERVICES.parents[1] / ".services")
    if not (state / "pids" / "slurmctld.pid").exists():
        pytest.skip(f"the running Slurm was started from another state directory than {state}")
    return slurm_cluster


def test_status_reports_slurm_up(own_slurm):
    proc = services("status", "slurm")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert set(lines) == {"munge", "slurmctld", "slurmd"}
    assert all(state.startswith("up") for state in lines.values()), lines


def test_second_start_changes_nothing(own_slurm):
    proc = services("start", "slurm")
    assert proc.returncode == 0, proc.stderr
    assert "started" not in proc.stdout and "config changed" not in proc.stdout


def test_another_state_dirs_start_leaves_the_running_slurms_config_alone(slurm_cluster, tmp_path):
    # A second checkout (a CI clone beside a working one) must not point the running
    # slurmctld's clients at its own jobcomp file and fake GPUs.
    confs = [Path("/etc/slurm/slurm.conf"), Path("/etc/slurm/gres.conf")]
    before = [c.read_bytes() for c in confs]
    try:
        proc = subprocess.run([sys.executable, str(SERVICES), "start", "slurm"], text=True,
                              capture_output=True, timeout=60, check=False,
                              env={**os.environ, "MUMMI_SERVICES_DIR": str(tmp_path / "other")})
        assert proc.returncode == 1 and "did not start" in proc.stderr, proc.stderr
        assert [c.read_bytes() for c in confs] == before
    finally:
        for conf, data in zip(confs, before, strict=True):
            conf.write_bytes(data)


def test_gpu_job_sees_cuda_visible_devices(slurm_cluster, tmp_path):
    out = tmp_path / "gpu.out"
    proc = run("sbatch", "--wait", "--gpus=1", "-o", str(out), "--wrap",
               'echo "CVD=$CUDA_VISIBLE_DEVICES"', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().strip() in {f"CVD={i}" for i in range(4)}


def test_more_gpus_than_the_node_has_is_rejected(slurm_cluster, tmp_path):
    proc = run("sbatch", "--gpus=5", "-o", "/dev/null", "--wrap", "true", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Requested node configuration is not available" in proc.stderr

"""What a spec says of Slurm reaches the jobs the manager submits to a real Slurm."""

from __future__ import annotations

import subprocess

import pytest

from mummi_spec.runtime.schedulers._common import wait_terminal
from mummi_spec.runtime.schedulers.base import JobRequest, JobState
from mummi_spec.runtime.schedulers.slurm import SlurmScheduler
from tests import plans

pytestmark = pytest.mark.slurm


def _scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                          check=True, timeout=10).stdout


def test_no_queue_means_the_default_partition_and_options_are_directives(slurm_cluster,
                                                                         tmp_path):
    # The spec names no queue (the adapter sent `debug` before) and asks for a nice value
    # and a comment through scheduler.options (before, options reached study.yaml only).
    settings = plans.scheduler("slurm", batch={"nice": 7, "comment": "from-the-spec",
                                               "hold": False})
    sched = SlurmScheduler(settings)
    try:
        job_id = sched.submit(JobRequest("opts", "test", "sleep 1", tmp_path))
        info = _scontrol(job_id)
        assert "Nice=7" in info
        assert "Comment=from-the-spec" in info
        assert f"Partition={slurm_cluster['partition']}" in info  # the cluster's default
        script = (tmp_path / "opts.slurm.sh").read_text()
        assert "#SBATCH --nice=7\n" in script and "hold" not in script
        assert "--partition" not in script
        states = wait_terminal(sched, [job_id], timeout=120)
        assert states[job_id].state == JobState.COMPLETED
    finally:
        sched.close()

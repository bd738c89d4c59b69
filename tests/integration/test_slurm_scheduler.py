"""The slurm adapter against the real local Slurm, beyond the shared contract
(tests/integration/test_scheduler_contract.py): squeue/sacct, time limits, log levels."""

from __future__ import annotations

import logging

import pytest

from mummi_spec.errors import SchedulerError
from mummi_spec.runtime.schedulers import slurm as slurm_adapter
from mummi_spec.runtime.schedulers._common import wait_terminal
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus
from mummi_spec.runtime.schedulers.slurm import SlurmScheduler
from tests import plans

pytestmark = pytest.mark.slurm
FAKE_GPUS = 4


@pytest.fixture(scope="module")
def adapter(slurm_cluster):
    scheduler = SlurmScheduler(plans.scheduler("slurm", queue=slurm_cluster["partition"]))
    yield scheduler
    scheduler.close()


@pytest.fixture(scope="module")
def timeout_job(adapter, tmp_path_factory):
    """Submitted first: Slurm enforces time limits in whole minutes, checked about every 30 s,
    so this job overlaps the rest of the module instead of adding its ~75 s to the run."""
    workdir = tmp_path_factory.mktemp("timeout")
    return adapter.submit(JobRequest("overtime", "test", "sleep 600", workdir, walltime=1))


def test_time_limit_job_is_submitted(timeout_job):
    assert timeout_job.isdigit()


def test_cpu_only_job_gets_its_cores_and_no_gres(adapter, tmp_path):
    job_id = adapter.submit(JobRequest(
        "cpu", "test", 'echo "$SLURM_CPUS_PER_TASK" > seen', tmp_path, cores_per_task=3))
    assert wait_terminal(adapter, [job_id], 60)[job_id].state is JobState.COMPLETED
    assert (tmp_path / "seen").read_text().split() == ["3"]
    assert "--gres" not in (tmp_path / "cpu.slurm.sh").read_text()


def test_launcher_starts_the_instances_tasks_with_srun(adapter, tmp_path):
    """$(LAUNCHER) is srun with the instance's tasks, nodes and cores per task
    (docs/applications.md): each task runs once, inside the job's allocation."""
    job_id = adapter.submit(JobRequest(
        "mpi", "test", '$(LAUNCHER) sh -c \'echo "$SLURM_PROCID $SLURM_CPUS_PER_TASK"\' > ranks',
        tmp_path, tasks=2, cores_per_task=2))
    assert wait_terminal(adapter, [job_id], 60)[job_id].state is JobState.COMPLETED
    assert sorted((tmp_path / "ranks").read_text().splitlines()) == ["0 2", "1 2"]
    assert "srun -n 2 -N 1 -c 2 sh -c" in (tmp_path / "mpi.slurm.sh").read_text()


def test_failing_job_says_why_in_squeue_and_sacct(adapter, tmp_path):
    job_id = adapter.submit(JobRequest("fails", "test", "exit 7", tmp_path))
    status = wait_terminal(adapter, [job_id], 60)[job_id]
    assert (status.state, status.exit_code, status.reason) == (
        JobState.FAILED, 7, "NonZeroExitCode")
    # The jobcomp file (sacct -c) is the fallback once squeue has forgotten a job.
    assert slurm_adapter._sacct([job_id])[job_id] == JobStatus(JobState.FAILED, 7, "")


@pytest.mark.parametrize("count", [3, 1000])
def test_status_of_many_ids_is_one_squeue_call(adapter, monkeypatch, count):
    calls = []
    real = slurm_adapter._query
    monkeypatch.setattr(slurm_adapter, "_query", lambda cmd: calls.append(cmd) or real(cmd))
    adapter.status([str(i) for i in range(1, count + 1)])
    assert [c[0] for c in calls].count("squeue") == 1


@pytest.mark.slow
def test_time_limit_ends_as_timedout(adapter, timeout_job):
    status = wait_terminal(adapter, [timeout_job], timeout=150)[timeout_job]
    assert status.state is JobState.TIMEDOUT


def test_refused_submission_says_why_whatever_the_logging_level(adapter, tmp_path):
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.CRITICAL)  # e.g. an in-process Maestro conductor raised it
    try:
        with pytest.raises(SchedulerError, match="node configuration is not available"):
            adapter.submit(JobRequest("toomany2", "test", "true", tmp_path, gpus=FAKE_GPUS + 1))
    finally:
        root.setLevel(old)

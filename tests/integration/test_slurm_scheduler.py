"""The slurm adapter against the real local Slurm: fake GPUs, bursts, failures, cancel, timeout."""

from __future__ import annotations

import logging
import time

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


def test_one_job_per_fake_gpu(adapter, tmp_path):
    script = ('echo "$CUDA_VISIBLE_DEVICES" > devices; s=$(date +%s.%N); sleep 1.5; '
              'echo "$s $(date +%s.%N)" > times')
    ids = [adapter.submit(JobRequest(f"gpu{i}", "test", script, tmp_path / f"gpu{i}", gpus=1))
           for i in range(2 * FAKE_GPUS)]
    states = wait_terminal(adapter, ids, timeout=120)
    assert {s.state for s in states.values()} == {JobState.COMPLETED}
    spans, devices = [], []
    for i in range(2 * FAKE_GPUS):
        start, end = map(float, (tmp_path / f"gpu{i}" / "times").read_text().split())
        spans.append((start, end))
        devices.append((tmp_path / f"gpu{i}" / "devices").read_text().strip())
    assert all(d in {str(g) for g in range(FAKE_GPUS)} for d in devices), devices
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 1 < peak <= FAKE_GPUS


def test_cpu_only_job_gets_no_gpu_and_its_cores(adapter, tmp_path):
    job_id = adapter.submit(JobRequest(
        "cpu", "test", 'echo "${CUDA_VISIBLE_DEVICES:-none} $SLURM_CPUS_PER_TASK" > seen',
        tmp_path, cores_per_task=3))
    assert wait_terminal(adapter, [job_id], 60)[job_id].state is JobState.COMPLETED
    assert (tmp_path / "seen").read_text().split() == ["none", "3"]
    assert "--gres" not in (tmp_path / "cpu.slurm.sh").read_text()


def test_burst_of_200_jobs_all_complete(adapter, tmp_path):
    ids = [adapter.submit(JobRequest(f"tiny{i}", "test", "true", tmp_path))
           for i in range(200)]
    assert len(set(ids)) == 200
    states = wait_terminal(adapter, ids, timeout=180)
    assert {s.state for s in states.values()} == {JobState.COMPLETED}
    assert {s.exit_code for s in states.values()} == {0}


def test_failing_job_reports_exit_code(adapter, tmp_path):
    job_id = adapter.submit(JobRequest("fails", "test", "exit 7", tmp_path))
    status = wait_terminal(adapter, [job_id], 60)[job_id]
    assert (status.state, status.exit_code, status.reason) == (
        JobState.FAILED, 7, "NonZeroExitCode")
    # The jobcomp file (sacct -c) is the fallback once squeue has forgotten a job.
    assert slurm_adapter._sacct([job_id])[job_id] == JobStatus(JobState.FAILED, 7, "")


def test_cancel_running_and_pending(adapter, tmp_path):
    running = adapter.submit(JobRequest("runner", "test", "sleep 300", tmp_path))
    deadline = time.monotonic() + 30
    while adapter.status([running])[running].state is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # Asking for more GPUs than are free keeps this one pending behind a full GPU set.
    hogs = [adapter.submit(JobRequest(f"hog{i}", "test", "sleep 300", tmp_path, gpus=1))
            for i in range(FAKE_GPUS)]
    pending = adapter.submit(JobRequest("waiter", "test", "sleep 300", tmp_path, gpus=1))
    adapter.cancel([running, pending, *hogs])
    states = wait_terminal(adapter, [running, pending, *hogs], timeout=30)
    assert {s.state for s in states.values()} == {JobState.CANCELLED}


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


def test_refused_submission_says_why(adapter, tmp_path):
    with pytest.raises(SchedulerError, match="node configuration is not available"):
        adapter.submit(JobRequest("toomany", "test", "true", tmp_path, gpus=FAKE_GPUS + 1))


def test_refused_submission_says_why_whatever_the_logging_level(adapter, tmp_path):
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.CRITICAL)  # e.g. an in-process Maestro conductor raised it
    try:
        with pytest.raises(SchedulerError, match="node configuration is not available"):
            adapter.submit(JobRequest("toomany2", "test", "true", tmp_path, gpus=FAKE_GPUS + 1))
    finally:
        root.setLevel(old)

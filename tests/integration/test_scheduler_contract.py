"""What every real scheduler adapter does, against the local Slurm and Flux (4 fake GPUs each):
GPU binding, bursts, exit codes, cancel, refusals, threads, and jobs outliving the manager."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from mummi_spec.errors import SchedulerError
from mummi_spec.plan import SchedulerPlan, to_data
from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers._common import wait_terminal
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, SchedulerAdapter
from tests import plans

FAKE_GPUS = 4
# What each scheduler says when a request can never be met (more GPUs than the node has).
NEVER_FITS = {"slurm": "node configuration is not available", "flux": "unsatisfiable request"}
# The process that plays a manager: submits one job, prints its id, then waits to be killed.
MANAGER = """
import json, sys, threading
from pathlib import Path
from mummi_spec.plan import FluxOptions, SchedulerPlan, to_data
from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers.base import JobRequest
from mummi_spec.plan import SchedulerPlan, from_data
adapter = SCHEDULERS.get(sys.argv[1])(from_data(SchedulerPlan, json.loads(sys.argv[2]), "settings"))
script = "for i in $(seq 600); do [ -e go ] && break; sleep 0.1; done; echo survived > out"
print(adapter.submit(JobRequest("survivor", "test", script, Path(sys.argv[3]))), flush=True)
threading.Event().wait()
"""


@dataclass(frozen=True)
class Real:
    """An adapter on a live scheduler, with what that scheduler can run at once."""

    key: str
    adapter: Any
    settings: SchedulerPlan
    gpu_slots: int  # GPU jobs that can run side by side (Flux also needs a free core each)


@pytest.fixture(scope="module", params=[pytest.param("slurm", marks=pytest.mark.slurm),
                                        pytest.param("flux", marks=pytest.mark.flux)])
def real(request: pytest.FixtureRequest) -> Iterator[Real]:
    if request.param == "slurm":
        cluster = request.getfixturevalue("slurm_cluster")
        settings = plans.scheduler("slurm", queue=cluster["partition"])
        slots = FAKE_GPUS
    else:
        instance = request.getfixturevalue("flux_instance")
        assert instance["gpus"] == FAKE_GPUS
        settings, slots = plans.scheduler("flux"), min(FAKE_GPUS, int(instance["cores"]))
    adapter = SCHEDULERS.get(request.param)(settings)
    assert isinstance(adapter, SchedulerAdapter)
    yield Real(request.param, adapter, settings, slots)
    adapter.close()


def test_one_job_per_fake_gpu(real, tmp_path):
    script = ('echo "$CUDA_VISIBLE_DEVICES" > devices; s=$(date +%s.%N); sleep 1.5; '
              'echo "$s $(date +%s.%N)" > times')
    ids = [real.adapter.submit(JobRequest(f"gpu{i}", "test", script, tmp_path / f"gpu{i}",
                                          gpus=1))
           for i in range(2 * FAKE_GPUS)]
    states = wait_terminal(real.adapter, ids, timeout=120)
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
    assert 1 < peak <= real.gpu_slots


def test_cpu_only_job_sees_no_gpu(real, tmp_path):
    job_id = real.adapter.submit(JobRequest(
        "cpu", "test", 'echo "${CUDA_VISIBLE_DEVICES:-none}" > seen', tmp_path))
    assert wait_terminal(real.adapter, [job_id], 60)[job_id].state is JobState.COMPLETED
    # Slurm leaves the variable unset; Flux sets -1, which CUDA reads as "no device".
    assert (tmp_path / "seen").read_text().strip() in {"none", "-1"}


def test_burst_of_200_jobs_all_complete(real, tmp_path):
    adapter = real.adapter
    ids = [adapter.submit(JobRequest(f"tiny{i}", "test", "true", tmp_path)) for i in range(200)]
    assert len(set(ids)) == 200
    states = wait_terminal(adapter, ids, timeout=180)
    assert {s.state for s in states.values()} == {JobState.COMPLETED}
    assert {s.exit_code for s in states.values()} == {0}


@pytest.mark.parametrize(("script", "code"), [
    ("exit 7", 7),
    ("touch tool; ./tool", 126),  # not executable
    ("no-such-program-for-mummi", 127),
    ("kill -KILL $$", 137),  # killed by a signal: 128 + 9, as a shell reports it
])
def test_failing_job_reports_its_exit_code(real, tmp_path, script, code):
    job_id = real.adapter.submit(JobRequest("fails", "test", script, tmp_path))
    status = wait_terminal(real.adapter, [job_id], 60)[job_id]
    assert (status.state, status.exit_code) == (JobState.FAILED, code)


def test_cancel_running_and_pending(real, tmp_path):
    running = real.adapter.submit(JobRequest("runner", "test", "sleep 300", tmp_path))
    _wait_running(real.adapter, running)
    # More GPU jobs than free GPUs keeps the last ones pending behind a full set.
    hogs = [real.adapter.submit(JobRequest(f"hog{i}", "test", "sleep 300", tmp_path, gpus=1))
            for i in range(FAKE_GPUS)]
    pending = real.adapter.submit(JobRequest("waiter", "test", "sleep 300", tmp_path, gpus=1))
    assert real.adapter.status([pending])[pending].state is JobState.PENDING
    real.adapter.cancel([running, pending, *hogs])
    states = wait_terminal(real.adapter, [running, pending, *hogs], timeout=30)
    assert {s.state for s in states.values()} == {JobState.CANCELLED}


def test_a_request_that_never_fits_is_refused_with_the_reason(real, tmp_path):
    with pytest.raises(SchedulerError, match=NEVER_FITS[real.key]):
        real.adapter.submit(JobRequest("toomany", "test", "true", tmp_path,
                                       gpus=FAKE_GPUS + 1))


def test_a_batch_is_answered_job_by_job_in_order(real, tmp_path):
    """``submit_many`` (the manager's way): a refusal in the middle spoils nothing else."""
    results = real.adapter.submit_many([
        JobRequest("first", "test", "true", tmp_path),
        JobRequest("toomany", "test", "true", tmp_path, gpus=FAKE_GPUS + 1),
        JobRequest("third", "test", "true", tmp_path)])
    first, refused, third = results
    assert isinstance(refused, SchedulerError) and NEVER_FITS[real.key] in str(refused)
    assert "toomany" in str(refused)
    assert isinstance(first, str) and isinstance(third, str) and first != third
    states = wait_terminal(real.adapter, [first, third], timeout=60)
    assert {s.state for s in states.values()} == {JobState.COMPLETED}


def test_submissions_from_many_threads_at_once(real, tmp_path):
    """The manager submits from a thread pool; each submission must get its own job."""
    ids: list[str] = []
    errors: list[BaseException] = []

    def submit(worker: int) -> None:
        for k in range(5):
            try:
                ids.append(real.adapter.submit(JobRequest(
                    f"th{worker}-{k}", "test", "sleep 300", tmp_path)))
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

    # Daemon threads: a submission that hangs fails the join below, never the whole run.
    threads = [threading.Thread(target=submit, args=(w,), daemon=True) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a submission hung"
    assert not errors and len(set(ids)) == 40
    assert JobState.UNKNOWN not in {s.state for s in real.adapter.status(ids).values()}
    real.adapter.cancel(ids)
    wait_terminal(real.adapter, ids, timeout=60)


def test_jobs_outlive_a_killed_manager_and_a_new_adapter_finds_them(real, tmp_path):
    assert type(real.adapter).jobs_survive_manager
    with subprocess.Popen(
            [sys.executable, "-c", MANAGER, real.key, json.dumps(to_data(real.settings)),
             str(tmp_path)],
            stdout=subprocess.PIPE, text=True) as manager:
        assert manager.stdout is not None
        job_id = manager.stdout.readline().strip()
        manager.kill()  # SIGKILL: no clean-up of any kind
    assert job_id, "the manager process submitted nothing"
    fresh = SCHEDULERS.get(real.key)(real.settings)
    assert fresh.status([job_id])[job_id].state in {JobState.PENDING, JobState.RUNNING}
    (tmp_path / "go").touch()
    status = wait_terminal(fresh, [job_id], timeout=60)[job_id]
    assert (status.state, status.exit_code) == (JobState.COMPLETED, 0)
    assert (tmp_path / "out").read_text() == "survived\n"
    fresh.close()


def test_a_job_is_found_by_its_unique_name_queued_and_ended(real, tmp_path):
    """What a restarted manager asks about an attempt whose id it never recorded."""
    assert type(real.adapter).finds_by_name
    since = time.time()
    unique = f"mummi-test.{uuid.uuid4().hex[:10]}"
    script = "for i in $(seq 600); do [ -e go ] && break; sleep 0.1; done"
    job_id = real.adapter.submit(JobRequest("named", "test", script, tmp_path,
                                            sched_name=f"{unique}.a"))
    fresh = SCHEDULERS.get(real.key)(real.settings)  # another process would hold another
    wanted = [f"{unique}.a", f"{unique}.b"]
    assert fresh.find(wanted, since) == {f"{unique}.a": job_id}
    (tmp_path / "go").touch()
    assert wait_terminal(fresh, [job_id], timeout=60)[job_id].state is JobState.COMPLETED
    assert fresh.find(wanted, since) == {f"{unique}.a": job_id}  # ended, still found
    assert (tmp_path / "named.out").exists()  # its files keep the attempt's own name
    fresh.close()


def _wait_running(adapter: Any, job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while adapter.status([job_id])[job_id].state is not JobState.RUNNING:
        assert time.monotonic() < deadline, f"{job_id} did not start within {timeout} s"
        time.sleep(0.05)

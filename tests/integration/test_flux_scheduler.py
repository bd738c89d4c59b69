"""The flux adapter against the real broker, beyond the shared contract
(tests/integration/test_scheduler_contract.py): queues, nesting, reasons, ids, connection."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.errors import SchedulerError
from mummi_spec.frontend import load_spec
from mummi_spec.plan import FluxOptions, SchedulerPlan
from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers._common import wait_terminal
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus
from mummi_spec.runtime.schedulers.flux import import_flux
from mummi_spec.runtime.schedulers.fluxspec import JobspecTexts, build_jobspec, environment_json
from tests import plans
from tests.conftest import SPECS

pytestmark = pytest.mark.flux
ADAPTER_LOGGER = "mummi.schedulers.flux"


@pytest.fixture
def flux(flux_instance):
    """A fresh adapter per test: the queue decision is made when one is built."""
    adapters = []

    def make(settings: SchedulerPlan | None = None, **flux_options: Any):
        settings = settings or plans.scheduler("flux")
        if flux_options:
            settings = dataclasses.replace(
                settings, flux=dataclasses.replace(settings.flux, **flux_options))
        adapters.append(SCHEDULERS.get("flux")(settings))
        return adapters[-1]

    yield make
    for adapter in adapters:
        adapter.close()


def _json(cmd: list[str]) -> Any:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


def _jobspec(job_id: str) -> dict[str, object]:
    return _json(["flux", "job", "info", job_id, "jobspec"])  # type: ignore[no-any-return]


def test_a_queue_on_a_queueless_broker_is_dropped_with_one_warning(flux, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=ADAPTER_LOGGER)
    adapter = flux(plans.scheduler("flux", queue="debug", bank="chem"))
    ids = [adapter.submit(JobRequest(f"q{i}", "test", "true", tmp_path)) for i in range(3)]
    states = wait_terminal(adapter, ids)
    assert {s.state for s in states.values()} == {JobState.COMPLETED}
    warnings = [r.getMessage() for r in caplog.records if r.name == ADAPTER_LOGGER]
    assert len(warnings) == 1 and "only the anonymous queue: ignoring queue 'debug'" in \
        warnings[0]
    system = _jobspec(ids[0])["attributes"]["system"]  # type: ignore[index]
    assert "queue" not in system and system["bank"] == "chem"  # the bank is passed through


def test_no_queue_configured_sends_none_and_warns_nothing(flux, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=ADAPTER_LOGGER)
    adapter = flux()
    job_id = adapter.submit(JobRequest("noq", "test", "true", tmp_path))
    assert wait_terminal(adapter, [job_id])[job_id].state is JobState.COMPLETED
    assert "queue" not in _jobspec(job_id)["attributes"]["system"]  # type: ignore[index]
    assert not [r for r in caplog.records if r.name == ADAPTER_LOGGER]


def test_the_mini_specs_scheduler_block_runs_jobs_on_flux(flux, tmp_path):
    """specs/mini.yaml's local profile asks for queue 'debug' (the local Slurm's partition):
    on Flux that refused every job ("'debug' is not a valid queue") before it was dropped."""
    env = {**os.environ, "MUMMI_SCHEDULER": "flux"}
    env.pop("MUMMI_QUEUE", None)
    plan = compile_loaded(load_spec(SPECS / "mini.yaml", "local", env)).plan
    assert (plan.scheduler.type, plan.scheduler.queue) == ("flux", "debug")
    adapter = flux(plan.scheduler)
    job_id = adapter.submit(JobRequest("mini", "test", "true", tmp_path))
    assert wait_terminal(adapter, [job_id])[job_id].state is JobState.COMPLETED


@pytest.mark.parametrize("nested", [True, False])
def test_launcher_runs_the_program_with_one_bound_gpu(flux, tmp_path, nested):
    adapter = flux()
    job_id = adapter.submit(JobRequest(
        "launch", "test", '$(LAUNCHER) sh -c \'echo "$CUDA_VISIBLE_DEVICES" > gpu\'', tmp_path,
        gpus=1, nested=nested))
    assert wait_terminal(adapter, [job_id], 60)[job_id].state is JobState.COMPLETED
    assert (tmp_path / "gpu").read_text().strip() in {"0", "1", "2", "3"}


@pytest.mark.parametrize("nested", [True, False])
def test_tasks_share_the_instances_gpus(flux, tmp_path, nested):
    """resources are per instance: 2 tasks with 1 GPU hold one GPU, which both tasks see
    (per-task slots asked for one GPU each, 2 in all)."""
    adapter = flux()
    job_id = adapter.submit(JobRequest(
        "share", "test", '$(LAUNCHER) sh -c \'echo "$CUDA_VISIBLE_DEVICES" >> seen\'', tmp_path,
        tasks=2, gpus=1, nested=nested))
    assert wait_terminal(adapter, [job_id], 120)[job_id].state is JobState.COMPLETED
    allocated = _json(["flux", "job", "info", job_id, "R"])["execution"]["R_lite"]
    assert [r["children"]["gpu"] for r in allocated] == [
        (tmp_path / "seen").read_text().split()[0]]  # one GPU, the one the tasks saw
    assert len(set((tmp_path / "seen").read_text().split())) == 1
    assert len((tmp_path / "seen").read_text().split()) == 2  # both tasks ran


def test_walltime_kill_is_timedout_with_flux_reason(flux, tmp_path):
    adapter = flux()
    job_id = adapter.submit(JobRequest("slow", "test", "sleep 60", tmp_path, walltime=1))
    status = wait_terminal(adapter, [job_id], timeout=30)[job_id]
    # The job shell gets SIGALRM at the limit: 128 + 14, and flux's note on why.
    assert status == JobStatus(JobState.TIMEDOUT, 142, "timeout: resource allocation expired")


def test_a_job_cancelled_before_it_ran_has_no_exit_code(flux, tmp_path):
    adapter = flux()
    hogs = [adapter.submit(JobRequest(f"hog{i}", "test", "sleep 300", tmp_path, gpus=4))
            for i in range(2)]  # the second waits for the first's GPUs
    adapter.cancel(list(reversed(hogs)))
    states = wait_terminal(adapter, hogs, timeout=30)
    assert states[hogs[1]] == JobStatus(JobState.CANCELLED, None, "cancel")


def test_ids_flux_cannot_parse_are_unknown_and_not_cancellable(flux):
    adapter = flux()
    assert adapter.status(["not-a-job", "999999999"]) == {
        "not-a-job": JobStatus(JobState.UNKNOWN, None, "flux does not list it"),
        "999999999": JobStatus(JobState.UNKNOWN, None, "flux does not list it")}
    with pytest.raises(SchedulerError, match="not Flux job ids: 'not-a-job'"):
        adapter.cancel(["not-a-job"])


def test_an_unreachable_broker_is_a_scheduler_error_naming_it(flux_instance, tmp_path):
    adapter = SCHEDULERS.get("flux")(plans.scheduler(
        "flux", flux=FluxOptions(uri=f"local://{tmp_path}/nobody-here")))
    with pytest.raises(SchedulerError, match=f"cannot connect to the Flux broker at "
                                             f"local://{tmp_path}/nobody-here"):
        adapter.submit(JobRequest("lost", "test", "true", tmp_path))


@pytest.mark.parametrize("request_", [
    JobRequest("plain", "t", "true", Path("/w/a")),
    JobRequest("gpus", "t", "true", Path("/w/b"), nodes=2, tasks=3, cores_per_task=2, gpus=3,
               walltime=90),
    JobRequest("nested", "t", "true", Path("/w/c"), tasks=2, gpus=1, nested=True),
    JobRequest("odd", "t", "true", Path('/w/d "quoted" \\ back\\slash ünï'), tasks=2),
    JobRequest("named", "t", "true", Path("/w/e"), sched_name="mini.0a1b2c3d4e.cg-1.sim.1"),
], ids=lambda r: r.name)
def test_each_jobs_text_is_the_jobspec_flux_python_builds(flux_instance, request_):
    """Jobspecs are built once per shape and each job's values put into a copy of the text:
    what is sent must be what flux-python would have built for the job itself."""
    flux_module = import_flux()
    environment = dict(os.environ, ODD='a "b" \\ c\nd')
    texts = JobspecTexts(flux_module.job, queue="q", bank="b", kill_timeout=lambda: 4.0)
    body = 'export A=\'x "y" \\ z\'\necho "ü $0" > "$A"\n'
    for job in (request_, dataclasses.replace(request_, name=f"{request_.name}2")):  # 2nd: copy
        built = build_jobspec(flux_module.job, job, job.workdir, body, queue="q", bank="b",
                              kill_timeout=4.0, environment=environment)
        sent = texts.text(job, job.workdir, body, environment_json(environment))
        assert json.loads(sent) == json.loads(built.dumps())
        # find() looks the job up by its unique name; its files keep the attempt's own.
        assert json.loads(sent)["attributes"]["system"]["job"]["name"] == (
            job.sched_name or job.name)


MANY = """
import os
import sys
import threading
import time
from pathlib import Path
from mummi_spec.plan import FluxOptions
from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers.base import JobRequest, JobState
from tests import plans
peak = 0
def count():  # open files, sampled while the adapter works
    global peak
    while True:
        peak = max(peak, len(os.listdir("/proc/self/fd")))
        time.sleep(0.001)
threading.Thread(target=count, daemon=True).start()
adapter = SCHEDULERS.get("flux")(plans.scheduler("flux", flux=FluxOptions(urgency=0)))
jobs = [JobRequest(f"held{i}", "test", "true", Path(sys.argv[1])) for i in range(2000)]
ids = adapter.submit_many(jobs)
try:
    assert all(isinstance(i, str) for i in ids), [i for i in ids if not isinstance(i, str)][:3]
    states = adapter.status(ids)
    assert {s.state for s in states.values()} == {JobState.PENDING}, set(states.values())
finally:
    adapter.cancel([i for i in ids if isinstance(i, str)])
states = adapter.status(ids)  # by id: they are no longer active
assert {s.state for s in states.values()} == {JobState.CANCELLED}, set(states.values())
print(peak)
"""


def test_thousands_of_requests_at_once_hold_few_open_files(flux_instance, tmp_path):
    """2,000 held jobs submitted, listed, cancelled and asked about by id, one call each:
    awaiting flux-python futures one by one gave each a file descriptor until collected
    (2,000 open at once here; with 5,000 cancels libev aborted the process, hence a child)."""
    proc = subprocess.run([sys.executable, "-c", MANY, str(tmp_path)], capture_output=True,
                          text=True, timeout=600, check=False, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) < 50  # open files at the most, whatever the number of requests

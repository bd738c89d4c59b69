"""Contract suite for the scheduler adapters, plus their state tables, throttle and helpers."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

import pytest
from maestrowf.abstracts.enums import State

from mummi_spec.errors import OptionalDependencyError, SchedulerError
from mummi_spec.plan import FluxOptions
from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers import flux as flux_adapter
from mummi_spec.runtime.schedulers import fluxlist, fluxspec
from mummi_spec.runtime.schedulers import slurm as slurm_adapter
from mummi_spec.runtime.schedulers._common import SubmitThrottle, hms, wait_terminal
from mummi_spec.runtime.schedulers._maestro import MAESTRO_STATES, from_maestro
from mummi_spec.runtime.schedulers.base import (
    JobRequest,
    JobState,
    JobStatus,
    SchedulerAdapter,
)
from mummi_spec.runtime.schedulers.lsf import render_batch_script
from tests import plans

ADAPTERS = [
    pytest.param("local", id="local"),
    pytest.param("dryrun", id="dryrun"),
    pytest.param("slurm", id="slurm", marks=pytest.mark.slurm),
    pytest.param("flux", id="flux", marks=pytest.mark.flux),
]
SERVICE_FIXTURES = {"slurm": "slurm_cluster", "flux": "flux_instance"}
# squeue(1), "JOB STATE CODES": every name Slurm may report.
SLURM_STATE_NAMES = (
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "CONFIGURING", "COMPLETING", "DEADLINE", "FAILED",
    "NODE_FAIL", "OUT_OF_MEMORY", "PENDING", "PREEMPTED", "RUNNING", "RESV_DEL_HOLD",
    "REQUEUE_FED", "REQUEUE_HOLD", "REQUEUED", "RESIZING", "REVOKED", "SIGNALING",
    "SPECIAL_EXIT", "STAGE_OUT", "STOPPED", "SUSPENDED", "TIMEOUT",
)
NASTY = """$(touch pwned); `touch pwned2` ; echo 'single' "double" \\ and  spaces $HOME"""
# flux.constants (RFC 21 states, job results), and what flux-jobs(1) abbreviates them to.
FLUX_CONSTANTS = types.SimpleNamespace(
    FLUX_JOB_STATE_ACTIVE=62, FLUX_JOB_STATE_RUN=16, FLUX_JOB_STATE_INACTIVE=64,
    FLUX_JOB_RESULT_COMPLETED=1, FLUX_JOB_RESULT_FAILED=2, FLUX_JOB_RESULT_CANCELED=4,
    FLUX_JOB_RESULT_TIMEOUT=8)
INACTIVE = FLUX_CONSTANTS.FLUX_JOB_STATE_INACTIVE
_ABBREVS = {2: "D", 4: "P", 8: "S", 16: "R", 32: "C"}
_RESULTS = {1: "CD", 2: "F", 4: "CA", 8: "TO"}


@pytest.fixture(params=ADAPTERS)
def scheduler(request: pytest.FixtureRequest):
    if request.param in SERVICE_FIXTURES:
        request.getfixturevalue(SERVICE_FIXTURES[request.param])
    adapter = SCHEDULERS.get(request.param)(plans.scheduler(request.param))
    yield adapter
    adapter.close()


def job(tmp_path: Path, name: str, script: str, **kw) -> JobRequest:
    return JobRequest(name=name, job_type="test", script=script, workdir=tmp_path / name, **kw)


def expect(adapter, state: JobState, code: int | None) -> tuple[JobState, int | None]:
    """What ``adapter`` reports for a job that really ends in ``state`` with ``code``."""
    return (JobState.COMPLETED, 0) if adapter.key == "dryrun" else (state, code)


# --- the contract ---------------------------------------------------------------------------


def test_is_a_scheduler_adapter(scheduler):
    assert isinstance(scheduler, SchedulerAdapter)
    assert SCHEDULERS.get(scheduler.key) is type(scheduler)


def test_success_completes_with_exit_code_zero(scheduler, tmp_path):
    job_id = scheduler.submit(job(tmp_path, "ok", "echo hello > result.txt"))
    status = wait_terminal(scheduler, [job_id])[job_id]
    assert (status.state, status.exit_code) == (JobState.COMPLETED, 0)
    if scheduler.key != "dryrun":
        assert (tmp_path / "ok" / "result.txt").read_text() == "hello\n"


def test_failure_reports_its_exit_code(scheduler, tmp_path):
    job_id = scheduler.submit(job(tmp_path, "bad", "echo oops >&2; exit 3"))
    status = wait_terminal(scheduler, [job_id])[job_id]
    assert (status.state, status.exit_code) == expect(scheduler, JobState.FAILED, 3)


def test_cancel_ends_as_cancelled(scheduler, tmp_path):
    job_id = scheduler.submit(job(tmp_path, "long", "sleep 300"))
    scheduler.cancel([job_id])
    status = wait_terminal(scheduler, [job_id], timeout=30)[job_id]
    assert status.state is expect(scheduler, JobState.CANCELLED, None)[0]


def test_cancel_of_a_finished_job_is_ignored(scheduler, tmp_path):
    job_id = scheduler.submit(job(tmp_path, "quick", "true"))
    wait_terminal(scheduler, [job_id])
    scheduler.cancel([job_id])
    assert scheduler.status([job_id])[job_id].state is JobState.COMPLETED


def test_walltime_ends_as_timedout(scheduler, tmp_path):
    if scheduler.key == "slurm":
        pytest.skip("Slurm time limits count in minutes; tests/integration covers TIMEOUT")
    job_id = scheduler.submit(job(tmp_path, "slow", "sleep 60", walltime=1))
    status = wait_terminal(scheduler, [job_id], timeout=20)[job_id]
    assert status.state is expect(scheduler, JobState.TIMEDOUT, None)[0]


def test_env_values_are_data_never_code(scheduler, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job_id = scheduler.submit(job(tmp_path, "quoted", 'printf "%s" "$NASTY" > value.txt',
                                  env={"NASTY": NASTY, "PLAIN": "x"}))
    wait_terminal(scheduler, [job_id])
    workdir = tmp_path / "quoted"
    if scheduler.key == "dryrun":
        assert not workdir.exists()  # a dry run writes nothing
        return
    assert (workdir / "value.txt").read_text() == NASTY
    assert not list(tmp_path.rglob("pwned*"))


@pytest.mark.parametrize("name", ["", ".hidden", "..", "-flag", "a b", "a/b", "a;b", "x$(y)"])
def test_unsafe_names_are_refused(scheduler, tmp_path, name):
    with pytest.raises(SchedulerError, match="not usable as a file name"):
        scheduler.submit(JobRequest(name, "test", "true", tmp_path / "x"))


def test_env_names_must_be_identifiers(scheduler, tmp_path):
    with pytest.raises(SchedulerError, match="not a shell identifier"):
        scheduler.submit(job(tmp_path, "envkey", "true", env={"A=B; rm": "x"}))


def test_only_an_adapter_with_nested_instances_takes_a_nested_job(scheduler, tmp_path):
    request = job(tmp_path, "nest", "true", nested=True)
    if type(scheduler).nested_instances:  # flux: it runs in a sub-instance of its own
        job_id = scheduler.submit(request)
        assert wait_terminal(scheduler, [job_id], 60)[job_id].state is JobState.COMPLETED
    else:  # the dry run stands in for the plan's scheduler: local here
        with pytest.raises(SchedulerError, match="job nest asks for a nested instance of its "
                                                 "own, which only a flux scheduler gives"):
            scheduler.submit(request)
        assert not (tmp_path / "nest").exists()  # refused before anything was written


def test_unknown_ids_are_unknown(scheduler):
    assert scheduler.status(["999999999"])["999999999"].state is JobState.UNKNOWN


# --- local only -----------------------------------------------------------------------------


def test_local_jobs_run_concurrently(tmp_path):
    """Four jobs that each wait for the others' marker files can only finish together."""
    adapter = SCHEDULERS.get("local")(plans.local(max_workers=8))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    script = ("touch {me}; for i in $(seq 200); do "
              "[ $(ls {dir} | wc -l) -ge 4 ] && exit 0; sleep 0.05; done; exit 1")
    ids = [adapter.submit(job(tmp_path, f"peer{i}",
                              script.format(me=barrier / f"m{i}", dir=barrier)))
           for i in range(4)]
    states = wait_terminal(adapter, ids, timeout=30)
    assert {s.state for s in states.values()} == {JobState.COMPLETED}
    adapter.close()


def test_local_pending_job_cancelled_before_start(tmp_path):
    adapter = SCHEDULERS.get("local")(plans.local(max_workers=1))
    first = adapter.submit(job(tmp_path, "blocker", "sleep 300"))
    queued = adapter.submit(job(tmp_path, "queued", "touch ran"))
    assert adapter.status([queued])[queued].state is JobState.PENDING
    adapter.cancel([queued, first])
    states = wait_terminal(adapter, [first, queued], timeout=30)
    assert {s.state for s in states.values()} == {JobState.CANCELLED}
    assert not (tmp_path / "queued" / "ran").exists()
    adapter.close()


def test_local_cancel_kills_the_whole_process_group(tmp_path):
    adapter = SCHEDULERS.get("local")(plans.local())
    job_id = adapter.submit(job(tmp_path, "tree", "sleep 300 & echo $! > child.pid; wait"))
    child = tmp_path / "tree" / "child.pid"
    deadline = time.monotonic() + 10
    while not child.exists() or not child.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    adapter.cancel([job_id])
    wait_terminal(adapter, [job_id], timeout=15)
    pid = int(child.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    adapter.close()


def test_local_strips_launcher_token(tmp_path):
    adapter = SCHEDULERS.get("local")(plans.local())
    job_id = adapter.submit(job(tmp_path, "launch", "$(LAUNCHER) echo ran > out.txt"))
    assert wait_terminal(adapter, [job_id])[job_id].state is JobState.COMPLETED
    assert (tmp_path / "launch" / "out.txt").read_text() == "ran\n"
    adapter.close()


def test_dryrun_records_requests_and_starts_nothing(tmp_path):
    adapter = SCHEDULERS.get("dryrun")(plans.scheduler("dryrun"))
    request = job(tmp_path, "dry", "exit 1")
    job_id = adapter.submit(request)
    assert adapter.submitted == [request]
    assert adapter.status([job_id])[job_id] == JobStatus(JobState.COMPLETED, 0)
    assert not (tmp_path / "dry").exists()


# --- state tables ---------------------------------------------------------------------------


def test_every_maestro_state_is_mapped():
    assert set(MAESTRO_STATES) == {state.name for state in State}
    assert from_maestro(State.FINISHED) is JobState.COMPLETED
    assert from_maestro(State.TIMEDOUT) is JobState.TIMEDOUT
    assert from_maestro(None) is JobState.UNKNOWN


def test_every_slurm_state_is_mapped():
    assert set(slurm_adapter.SLURM_STATES) == set(SLURM_STATE_NAMES)
    assert slurm_adapter.SLURM_STATES["TIMEOUT"] is JobState.TIMEDOUT
    assert slurm_adapter.SLURM_STATES["COMPLETING"] is JobState.RUNNING


@pytest.mark.parametrize(("name", "reason", "expected"), [
    ("NODE_FAIL", "None", JobStatus(JobState.FAILED, 1, "NODE_FAIL")),
    ("FAILED", "NonZeroExitCode", JobStatus(JobState.FAILED, 1, "NonZeroExitCode")),
    ("PENDING", "Resources", JobStatus(JobState.PENDING, None, "Resources")),
    ("COMPLETED", "None", JobStatus(JobState.COMPLETED, 0, "")),
])
def test_slurm_failures_carry_their_reason(name, reason, expected):
    assert slurm_adapter._status(name, 1, reason) == expected


@pytest.mark.parametrize(("raw", "code"), [("0", 0), ("768", 3), ("15", 143), ("9", 137)])
def test_squeue_wait_status_decoding(raw, code):
    assert slurm_adapter._from_wait_status(raw) == code


@pytest.mark.parametrize(("raw", "code"), [("0:0", 0), ("3:0", 3), ("0:15", 143), ("", None)])
def test_sacct_exit_pair_decoding(raw, code):
    assert slurm_adapter._from_exit_pair(raw) == code


def test_flux_table_covers_every_status_abbreviation():
    assert set(fluxlist.FLUX_STATES) == {"D", "P", "S", "R", "C", "I", "CD", "F", "CA", "TO"}


@pytest.mark.parametrize(("raw", "code"), [
    (0, 0), (3, 3), (137, 137),  # a task killed by SIGKILL: the job shell exits 128 + 9
    (-9, 137), (-15, 143),  # the job shell itself killed by a signal
    (-128, None),  # cancelled before it ran
    (None, None),  # still active
])
def test_flux_returncode_decoding(raw, code):
    assert fluxlist.exit_code(raw) == code


@pytest.mark.parametrize(("record", "code"), [
    ({"waitstatus": 3 << 8}, 3),  # exited 3
    ({"waitstatus": 9}, -9),  # the job shell killed by SIGKILL
    ({"result": FLUX_CONSTANTS.FLUX_JOB_RESULT_CANCELED}, -128),  # cancelled before it ran
    ({"result": FLUX_CONSTANTS.FLUX_JOB_RESULT_FAILED}, 1),  # failed before it ran
    ({"result": FLUX_CONSTANTS.FLUX_JOB_RESULT_TIMEOUT}, None),
])
def test_flux_returncode_from_a_job_list_record(record, code):
    flux = types.SimpleNamespace(constants=FLUX_CONSTANTS)
    assert fluxlist.returncode(flux, record) == code


def test_flux_failure_carries_flux_exception_note(fake_flux):
    """A broker without the feasibility validator accepts a job it can never run and fails
    it when scheduling: the reason must say so, not only "exit 1"."""
    note = "unsatisfiable request: need 1 slot(s) with 5 GPU(s) each, only 0 available"
    record = {"id": 1, "state": INACTIVE, "result": FLUX_CONSTANTS.FLUX_JOB_RESULT_FAILED,
              "exception_occurred": True, "exception_type": "alloc", "exception_note": note}
    assert fluxlist.status_of(fake_flux.module, record) == JobStatus(
        JobState.FAILED, 1, f"alloc: {note}")


# --- throttle and helpers -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_throttle_spaces_submissions_by_one_over_rate():
    clock = FakeClock()
    throttle = SubmitThrottle(10.0, clock=clock, sleep=clock.sleep)
    waits = [throttle.acquire() for _ in range(4)]
    assert [round(w, 6) for w in waits] == [0.0, 0.1, 0.1, 0.1]


def test_throttle_waits_only_for_the_shortfall():
    clock = FakeClock()
    throttle = SubmitThrottle(4.0, burst=2, clock=clock, sleep=clock.sleep)
    assert throttle.acquire() == throttle.acquire() == 0.0  # the burst
    clock.now += 0.1  # 0.4 of a token earned
    assert round(throttle.acquire(), 6) == 0.15
    clock.now += 10  # idle: the bucket refills to its burst, never beyond
    assert throttle.acquire() == throttle.acquire() == 0.0
    assert throttle.acquire() > 0


def test_unthrottled_and_invalid_rates():
    assert SubmitThrottle(None).acquire() == 0.0
    with pytest.raises(SchedulerError):
        SubmitThrottle(0)


def test_throttle_applies_through_an_adapter(tmp_path):
    adapter = SCHEDULERS.get("dryrun")(plans.scheduler("dryrun", per_second=50))
    assert adapter.settings.per_second == 50  # dry runs ignore the throttle
    local = SCHEDULERS.get("local")(plans.scheduler("local", per_second=50))
    start = time.monotonic()
    ids = [local.submit(job(tmp_path, f"t{i}", "true")) for i in range(6)]
    assert time.monotonic() - start >= 5 / 50
    wait_terminal(local, ids)
    local.close()


def test_walltime_format():
    assert [hms(s) for s in (1, 59, 3600, 5400, 90061)] == [
        "00:00:01", "00:00:59", "01:00:00", "01:30:00", "25:01:01"]


@pytest.mark.parametrize("key", ["bank", "queue", "qos", "reservation", "host"])
def test_slurm_options_cannot_inject_script_lines(key):
    with pytest.raises(SchedulerError, match=key):
        SCHEDULERS.get("slurm")(plans.scheduler("slurm", **{key: "x\n#SBATCH --uid=0"}))


def test_slurm_refuses_workdirs_its_shell_command_would_misread(tmp_path):
    adapter = SCHEDULERS.get("slurm")(plans.scheduler("slurm"))
    with pytest.raises(SchedulerError, match="work directory"):
        adapter.submit(JobRequest("w", "t", "true", tmp_path / "a b; touch pwned"))
    assert not list(tmp_path.rglob("pwned"))


# --- LSF (compile only here) ----------------------------------------------------------------


def test_lsf_script_is_rendered_deterministically():
    request = JobRequest("cg_sim-1", "cg sim", "$(LAUNCHER) ./cg --frame 'a b'", Path("/w"),
                         tasks=2, cores_per_task=3, gpus=1, walltime=5400, env={"A": "x y"})
    settings = plans.scheduler("lsf", bank="chem", queue="pbatch")
    text = render_batch_script(request, settings)
    assert text == render_batch_script(request, settings)
    assert text.splitlines()[:8] == [
        "#!/bin/bash", "#BSUB -nnodes 1", "#BSUB -q pbatch", "#BSUB -G chem", "#BSUB -W 01:30",
        "#BSUB -J cg_sim-1", "#BSUB -o cg_sim-1.%J.out", "#BSUB -e cg_sim-1.%J.err"]
    assert "export A='x y'" in text
    assert "jsrun --nrs 2 -b rs -g 1 -a 1 -r 2 -c 3 ./cg --frame 'a b'" in text


def test_lsf_header_drops_empty_directives():
    # No bank, no queue: no directive, so LSF's own default queue takes the job.
    text = render_batch_script(JobRequest("j", "t", "true", Path("/w")), plans.scheduler("lsf"))
    assert "#BSUB -G" not in text and "#BSUB -q" not in text
    assert "#BSUB -J j" in text


@pytest.mark.skipif(shutil.which("bsub") is not None, reason="LSF is installed here")
def test_lsf_submit_says_bsub_is_missing(tmp_path):
    with pytest.raises(SchedulerError, match="bsub not found"):
        SCHEDULERS.get("lsf")(plans.scheduler("lsf")).submit(job(tmp_path, "l", "true"))


# --- Flux (jobspec on a fake flux module; the real broker is in the contract above) -------


class FakeJobspec:
    def __init__(self, kind: str, command: list[str], **resources) -> None:
        self.kind, self.command, self.resources = kind, command, resources
        self.attributes: dict[str, object] = {}
        self.jobspec = {"tasks": [{"count": {"per_slot": 1}}]}

    @classmethod
    def from_command(cls, command, **kw):
        return cls("command", command, **kw)

    @classmethod
    def from_nest_command(cls, command, **kw):
        return cls("nest", command, **kw)

    def setattr(self, key, value):
        self.attributes[key] = value

    def dumps(self) -> str:
        return json.dumps(vars(self))


class FakeJobID(int):
    """Ids written f1, f2, ... (flux's own are f58, 'ƒ2oeYJij')."""

    def __new__(cls, value):
        if isinstance(value, str):
            if not (value.startswith("f") and value[1:].isdigit()):
                raise ValueError(f"not a job id: {value!r}")
            value = int(value[1:])
        return super().__new__(cls, value)

    @property
    def f58(self) -> str:
        return f"f{int(self)}"


def _future(value=None, error=None):
    def get():
        if error is not None:
            raise error
        return value

    future = types.SimpleNamespace(get=get, get_job=get, get_id=get, get_jobs=get)
    future.then = lambda callback, arg: callback(future, arg)  # answered at once
    return future


@pytest.fixture
def fake_flux(monkeypatch):
    """A stand-in ``flux`` package: enough API for the adapter, recording every call."""
    flux = types.ModuleType("flux")
    flux_job = types.ModuleType("flux.job")
    calls: dict[str, list] = {"submit": [], "cancel": [], "list": [], "list-id": []}
    jobs: dict[int, dict] = {}

    def submit_async(handle, spec, urgency=16, waitable=False):
        job_id = FakeJobID(len(calls["submit"]) + 1)
        calls["submit"].append((spec, urgency))
        jobs[job_id] = {"id": int(job_id), "state": FLUX_CONSTANTS.FLUX_JOB_STATE_RUN}
        return _future(job_id)

    def cancel_async(handle, job_id):
        calls["cancel"].append(FakeJobID(job_id).f58)
        jobs[job_id].update(state=INACTIVE, result=FLUX_CONSTANTS.FLUX_JOB_RESULT_CANCELED,
                            waitstatus=15)  # the job shell killed by SIGTERM
        return _future()

    def job_list(handle, max_entries, attrs, states):
        calls["list"].append(states)
        return _future([dict(r) for r in jobs.values() if r["state"] & states])

    def job_list_id(handle, job_id, attrs):
        calls["list-id"].append(job_id)
        known = job_id in jobs
        return _future(dict(jobs[job_id]) if known else None,
                       None if known else OSError(errno.ENOENT, "unknown"))

    def statustostr(state, result, fmt):
        return _ABBREVS.get(state) or _RESULTS.get(result, "I")

    flux_job.JobspecV1, flux_job.JobID = FakeJobspec, FakeJobID
    flux_job.submit_async, flux_job.cancel_async = submit_async, cancel_async
    flux_job.job_list, flux_job.job_list_id = job_list, job_list_id
    flux_job.info = types.SimpleNamespace(statustostr=statustostr)
    flux.constants = FLUX_CONSTANTS
    class Handle:
        def reactor_run(self):
            """Every future has been answered already (``then`` calls back at once)."""

        def reactor_stop(self):
            pass

        def rpc(self, topic):
            answers = {"job-exec.stats-get": {"kill-timeout": 4.0}, "config.get": {}}
            return types.SimpleNamespace(get=lambda: answers[topic])

    flux.job, flux.Flux = flux_job, lambda *a: Handle()
    monkeypatch.setitem(sys.modules, "flux", flux)
    monkeypatch.setitem(sys.modules, "flux.job", flux_job)
    return types.SimpleNamespace(module=flux, calls=calls, jobs=jobs)


def test_flux_module_imports_without_flux():
    assert flux_adapter.FluxScheduler.key == "flux"


def test_flux_needs_flux_core(monkeypatch):
    monkeypatch.setitem(sys.modules, "flux", None)  # as if flux-python were absent
    with pytest.raises(OptionalDependencyError, match="libflux-core"):
        SCHEDULERS.get("flux")(plans.scheduler("flux"))


@pytest.mark.parametrize("nested", [True, False])
def test_flux_jobspec_maps_resources(fake_flux, tmp_path, nested):
    request = JobRequest("aa_sim-7", "aa", "true", tmp_path, nodes=1, tasks=2,
                         cores_per_task=6, gpus=2, walltime=5400, nested=nested)
    spec = fluxspec.build_jobspec(fake_flux.module.job, request, tmp_path, "true",
                                      queue="pdebug", kill_timeout=3)
    assert spec.kind == ("nest" if nested else "command")
    counts = ("num_slots", "cores_per_slot", "gpus_per_slot") if nested else (
        "num_tasks", "cores_per_task", "gpus_per_task")
    assert [spec.resources[k] for k in counts] == [1, 12, 2]  # one slot per node
    assert spec.resources["num_nodes"] == 1 and spec.resources["queue"] == "pdebug"
    if nested:  # it ends its jobs before the enclosing instance kills it
        assert spec.resources["conf"] == {"exec": {"kill-timeout": "1.5s"}}
    else:  # the script runs once per task, all in the node's slot
        assert spec.jobspec["tasks"][0]["count"] == {"total": 2}
    assert spec.duration == 5400
    assert spec.resources["cwd"] == str(tmp_path)
    assert spec.resources["environment"] == dict(os.environ)  # given, not copied afterwards
    assert spec.attributes["system.job.name"] == "aa_sim-7"
    assert (spec.stdout, spec.stderr) == ("aa_sim-7.out", "aa_sim-7.err")


@pytest.mark.parametrize(("nodes", "tasks", "gpus", "per_node"), [
    (1, 4, 1, (8, 1)),  # 4 tasks share 1 GPU: per-task slots asked for 4
    (2, 4, 2, (4, 1)),
    (2, 3, 3, (4, 2)),  # uneven: rounded up per node, as the fit check counts
    (1, 2, 0, (4, 0)),
])
def test_flux_asks_each_nodes_share_of_the_instance(fake_flux, tmp_path, nodes, tasks, gpus,
                                                     per_node):
    request = JobRequest("j", "t", "true", tmp_path, nodes=nodes, tasks=tasks,
                         cores_per_task=2, gpus=gpus)
    spec = fluxspec.build_jobspec(fake_flux.module.job, request, tmp_path, "true")
    asked = (spec.resources["cores_per_task"], spec.resources["gpus_per_task"] or 0)
    assert spec.resources["num_tasks"] == spec.resources["num_nodes"] == nodes
    assert asked == per_node  # cores and GPUs on each node (2 cores per task)


@pytest.mark.parametrize(("tasks", "gpus", "launcher"), [
    (4, 4, "flux run -N 1 -n 4 -c 1 -g 1"),
    (4, 1, "flux run -N 1 -n 4 -c 1 -o gpu-affinity=off"),  # they share the instance's GPU
    (2, 0, "flux run -N 1 -n 2 -c 1"),
])
def test_flux_launcher_inside_a_nested_instance(tasks, gpus, launcher, tmp_path):
    request = JobRequest("j", "t", "true", tmp_path, tasks=tasks, gpus=gpus, nested=True)
    assert fluxspec.launcher_for(request) == launcher
    assert fluxspec.launcher_for(dataclasses.replace(request, nested=False)) == ""


def test_flux_adapter_against_fake_broker(fake_flux, tmp_path):
    adapter = SCHEDULERS.get("flux")(plans.scheduler("flux", flux=FluxOptions(urgency=20)))
    job_id = adapter.submit(job(tmp_path, "fx", "$(LAUNCHER) ./app", tasks=4, gpus=4,
                                env={"K": "a b"}, nested=True))
    assert fake_flux.calls["submit"][0][1] == 20
    sent = json.loads(fake_flux.calls["submit"][0][0])
    # the script travels in the jobspec, its name as $0
    shell, flag, script, name = sent["command"]
    assert (shell, flag, name) == ("/bin/bash", "-c", "fx")
    assert "export K='a b'" in script and "flux run -N 1 -n 4 -c 1 -g 1 ./app" in script
    assert not list((tmp_path / "fx").iterdir())  # no script file
    # the sub-instance stops its jobs in half the broker's kill-timeout
    assert sent["resources"]["conf"] == {"exec": {"kill-timeout": "2s"}}
    # the job's own values in the template's place, the environment as it is
    assert (sent["stdout"], sent["resources"]["cwd"]) == ("fx.out", str(tmp_path / "fx"))
    assert sent["resources"]["environment"] == dict(os.environ)
    assert adapter.status([job_id])[job_id].state is JobState.RUNNING
    adapter.cancel([job_id])
    assert adapter.status([job_id, "nope"]) == {
        job_id: JobStatus(JobState.CANCELLED, 143, ""),
        "nope": JobStatus(JobState.UNKNOWN, None, "flux does not list it")}


@pytest.mark.parametrize("count", [3, fluxlist.FEW_IDS + 10])
def test_flux_status_lists_the_active_jobs_once_past_a_few_ids(fake_flux, tmp_path, count):
    adapter = SCHEDULERS.get("flux")(plans.scheduler("flux"))
    ids = adapter.submit_many([job(tmp_path, f"j{i}", "true") for i in range(count)])
    adapter.cancel(ids[:2])
    states = adapter.status([*ids, "f999"])
    assert [s.state for s in states.values()] == (
        [JobState.CANCELLED] * 2 + [JobState.RUNNING] * (count - 2) + [JobState.UNKNOWN])
    if count > fluxlist.FEW_IDS:  # one listing, then only the ended and unknown ids by id
        assert fake_flux.calls["list"] == [FLUX_CONSTANTS.FLUX_JOB_STATE_ACTIVE]
        assert fake_flux.calls["list-id"] == [1, 2, 999]
    else:
        assert fake_flux.calls["list"] == [] and fake_flux.calls["list-id"] == [
            *range(1, count + 1), 999]


def test_flux_status_asks_by_id_when_a_listing_would_hold_mostly_other_jobs(fake_flux,
                                                                            tmp_path):
    adapter = SCHEDULERS.get("flux")(plans.scheduler("flux"))
    ids = adapter.submit_many([job(tmp_path, f"j{i}", "true") for i in range(400)])
    asked = ids[:fluxlist.FEW_IDS + 10]  # 60 of 400 active jobs
    adapter.status(asked)  # the first call lists, and counts 400 active jobs
    assert len(fake_flux.calls["list"]) == 1 and fake_flux.calls["list-id"] == []
    for _ in range(fluxlist.RECOUNT - 2):
        assert {s.state for s in adapter.status(asked).values()} == {JobState.RUNNING}
    assert len(fake_flux.calls["list"]) == 1  # 60 x 4 < 400: by id since
    assert len(fake_flux.calls["list-id"]) == len(asked) * (fluxlist.RECOUNT - 2)
    adapter.status(asked)  # and every RECOUNT calls the count is taken again
    assert len(fake_flux.calls["list"]) == 2

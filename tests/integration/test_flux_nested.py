"""Jobs in Flux sub-instances of their own (a job type's ``nested: true``) on the real broker:
$(LAUNCHER) runs the tasks inside, a cancel ends them all and leaves nothing behind, and a
campaign runs one job type so."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers._common import wait_terminal
from mummi_spec.runtime.schedulers.base import JobRequest, JobState
from tests import plans
from tests.conftest import SPECS
from tests.integration.test_campaign import check_campaign, run_cli

pytestmark = pytest.mark.flux


@pytest.fixture
def adapter(flux_instance: dict[str, object]) -> Iterator[object]:
    made = SCHEDULERS.get("flux")(plans.scheduler("flux"))
    yield made
    made.close()


def _ids(text: str) -> set[int]:
    """An idset as flux writes it ("0-1,3") or CUDA_VISIBLE_DEVICES lists it ("0,1")."""
    out: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def _wait_for(what: str, ready: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"{what}: not so after {timeout} s"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_launcher_runs_the_tasks_in_the_jobs_own_instance(adapter, tmp_path):
    script = """flux getattr local-uri > inner-uri
flux resource list -s up -no '{ncores} {ngpus}' > inner-resources
$(LAUNCHER) sh -c 'echo "$FLUX_JOB_ID $FLUX_TASK_RANK $CUDA_VISIBLE_DEVICES" >> tasks'
"""
    job_id = adapter.submit(JobRequest("inner", "test", script, tmp_path, tasks=2, gpus=2,
                                       nested=True))
    status = wait_terminal(adapter, [job_id], timeout=180)[job_id]
    assert (status.state, status.exit_code) == (JobState.COMPLETED, 0)
    inner_uri = (tmp_path / "inner-uri").read_text().strip()
    assert inner_uri.startswith("local://") and inner_uri != os.environ["FLUX_URI"]
    # The sub-instance holds exactly what the job asked: 2 cores (2 tasks x 1), 2 GPUs.
    assert (tmp_path / "inner-resources").read_text().split() == ["2", "2"]
    tasks = [line.split() for line in (tmp_path / "tasks").read_text().splitlines()]
    assert sorted(rank for _, rank, _ in tasks) == ["0", "1"]
    inner_ids = {inner for inner, _, _ in tasks}
    assert len(inner_ids) == 1 and job_id not in inner_ids  # one job of the inner instance
    r_lite = json.loads(subprocess.run(
        ["flux", "job", "info", job_id, "R"], capture_output=True, text=True, timeout=30,
        check=True).stdout)["execution"]["R_lite"]
    assert all(_ids(gpus) == _ids(r_lite[0]["children"]["gpu"]) for _, _, gpus in tasks)


def test_a_cancel_ends_the_inner_tasks_and_leaves_no_rundir(adapter, tmp_path):
    """Tasks that ignore SIGTERM (an application saving its state) outlived the cancel,
    orphaned, and the sub-instance's rundir stayed in /tmp: the enclosing broker SIGKILLed
    the sub-instance before its own kill-timeout had ended them."""
    script = """flux getattr rundir > rundir
flux getattr broker.pid > broker-pid
$(LAUNCHER) sh -c 'trap "" TERM; echo $$ >> pids; exec sleep 300'
"""
    job_id = adapter.submit(JobRequest("stubborn", "test", script, tmp_path, tasks=2,
                                       nested=True, walltime=600))
    pids_file = tmp_path / "pids"
    _wait_for("both tasks started", lambda: pids_file.exists()
              and len(pids_file.read_text().split()) == 2)
    pids = [int(p) for p in pids_file.read_text().split()]
    pids.append(int((tmp_path / "broker-pid").read_text()))
    rundir = Path((tmp_path / "rundir").read_text().strip())
    assert rundir.is_dir() and all(_alive(p) for p in pids)
    try:
        adapter.cancel([job_id])
        assert wait_terminal(adapter, [job_id], 60)[job_id].state is JobState.CANCELLED
        _wait_for("the inner broker and tasks ended",
                  lambda: not any(_alive(p) for p in pids), timeout=60)
        _wait_for(f"{rundir} removed", lambda: not rundir.exists(), timeout=30)
    finally:  # only what this test's job made, should it have outlived the job
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(rundir, ignore_errors=True)


def test_a_campaign_with_one_job_type_nested(flux_instance, tmp_path):
    """specs/mini.yaml's local profile on Flux with cganalysis in sub-instances: each runs
    the toy simulation through $(LAUNCHER) in an instance of its own."""
    text = (SPECS / "mini.yaml").read_text()
    plain = "command: $(PYTHON) -m mummi_spec.runtime.toy simulate"
    block = "            resources: {cores_per_task: 1}\n            walltime: \"00:02:00\"\n"
    assert text.count(plain) == 1 and text.count(block) == 1
    text = text.replace(plain, 'command: echo "$FLUX_URI" > instance-uri; $(LAUNCHER) '
                               "$(PYTHON) -m mummi_spec.runtime.toy simulate")
    text = text.replace(block, block + "            nested: true\n")
    (tmp_path / "mini-nested.yaml").write_text(text)
    env = {"MUMMI_SCHEDULER": "flux"}
    proc = run_cli("run", "mini-nested.yaml", cwd=tmp_path, timeout=600, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c = check_campaign(tmp_path)  # ids unique, within caps, each sim once, GPUs <= pool...
    assert c.plan.jobs["cganalysis"].nested and not c.plan.jobs["createsim"].nested
    db = sqlite3.connect(c.workspace / "ledger.sqlite")
    workdirs = [Path(w) for (w,) in db.execute(
        "SELECT workdir FROM jobs WHERE job_type = 'cganalysis' AND state = 'completed'")]
    assert len(workdirs) == c.plan.manager.max_simulations
    uris = [(w / "instance-uri").read_text().strip() for w in workdirs]
    assert len(set(uris)) == len(uris) and os.environ["FLUX_URI"] not in uris
    for w in workdirs:
        gpus = json.loads((w / "result.json").read_text())["gpus"]
        assert len(_ids(gpus)) == 1  # the inner flux run bound one GPU
    for uri in uris:  # each sub-instance removed its rundir when it ended
        assert not Path(uri.removeprefix("local://")).parent.exists()

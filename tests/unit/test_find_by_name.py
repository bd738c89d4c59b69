"""Each adapter's ``find``: jobs looked up by their unique name. The parsing and the fallbacks
run against stand-in commands here; tests/integration/test_scheduler_contract.py asks the
real Slurm and Flux."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import pytest

from mummi_spec.errors import SchedulerError
from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers._common import ids_by_name
from mummi_spec.runtime.schedulers.base import JobRequest, SchedulerBase
from mummi_spec.runtime.schedulers.lsf import render_batch_script
from tests import plans

SINCE_TEXT = "2026-12-07T12:00:00"  # UTC
SINCE = 1796644800.0


def fake_command(bin_dir: Path, name: str, stdout: str, code: int = 0, stderr: str = "") -> Path:
    """``name`` on PATH printing ``stdout`` (and ``stderr``), exiting ``code``; it appends
    its arguments, one line per call, to ``<bin_dir>/<name>.args``."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!/bin/bash\necho "$*" >> {shlex.quote(str(bin_dir / name))}.args\n'
                    f"printf %s {shlex.quote(stdout)}\nprintf %s {shlex.quote(stderr)} >&2\n"
                    f"exit {code}\n")
    path.chmod(0o755)
    return bin_dir / f"{name}.args"


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{path}:/usr/bin:/bin")
    monkeypatch.setenv("TZ", "UTC")
    return path


def test_ids_by_name_keeps_the_wanted_names_and_the_first_of_each():
    listing = "12|c.a\n9|c.a\n13|c.b\n14|other\nnot a line\nx1|c.b\n\n 15|c.c \n"
    assert ids_by_name(listing, {"c.a", "c.b", "c.c", "c.d"}) == {
        "c.a": "9", "c.b": "13", "c.c": "15"}


def test_only_schedulers_whose_jobs_outlive_the_manager_find_by_name():
    assert not SchedulerBase.finds_by_name
    assert SchedulerBase().find(["x"], SINCE) == {}
    finds = {key for key in ("local", "dryrun", "slurm", "lsf", "flux")
             if SCHEDULERS.get(key).finds_by_name}
    assert finds == {key for key in ("local", "dryrun", "slurm", "lsf", "flux")
                     if SCHEDULERS.get(key).jobs_survive_manager}
    assert finds == {"slurm", "lsf", "flux"}


# --- Slurm ------------------------------------------------------------------------------


def test_slurm_finds_listed_jobs_and_asks_the_jobcomp_file_only_for_the_rest(bin_dir):
    squeue = fake_command(bin_dir, "squeue", "101|camp.x.a\n102|someone-else\n")
    sacct = fake_command(bin_dir, "sacct", "55|camp.x.b\n56|camp.x.z\n")
    adapter = SCHEDULERS.get("slurm")(plans.scheduler("slurm"))
    assert adapter.find(["camp.x.a", "camp.x.b", "camp.x.c"], SINCE) == {
        "camp.x.a": "101", "camp.x.b": "55"}
    assert squeue.read_text() == "-h -t all --me -O JobID:|,Name:\n"
    # From a day before `since` (SINCE_TEXT), for clock skew, in local time (UTC here).
    assert sacct.read_text() == "-c -S 2026-12-06T12:00:00 -o jobid,jobname -n -P\n"
    sacct.unlink()
    assert adapter.find(["camp.x.a"], SINCE) == {"camp.x.a": "101"}
    assert not sacct.exists()  # squeue knew them all


def test_slurm_find_fails_when_squeue_does_and_does_without_sacct(bin_dir, caplog):
    fake_command(bin_dir, "squeue", "", 1, "slurm_load_jobs error: Unable to contact slurm "
                                          "controller (connect failure)")
    adapter = SCHEDULERS.get("slurm")(plans.scheduler("slurm"))
    with pytest.raises(SchedulerError, match=r"squeue failed \(exit 1\): slurm_load_jobs"):
        adapter.find(["camp.x.a"], SINCE)
    fake_command(bin_dir, "squeue", "101|camp.x.a\n")
    fake_command(bin_dir, "sacct", "", 1, "sacct: error: jobcomp/none has no data")
    with caplog.at_level(logging.WARNING, logger="mummi.schedulers.slurm"):
        assert adapter.find(["camp.x.a", "camp.x.b"], SINCE) == {"camp.x.a": "101"}
    assert "jobcomp/none has no data" in caplog.text
    assert "1 names that squeue no longer lists" in caplog.text


# --- LSF ----------------------------------------------------------------------------------


def test_lsf_names_the_job_by_its_unique_name_and_its_logs_by_its_own():
    request = JobRequest("cg-1.sim.1", "sim", "true", Path("/w"), sched_name="camp.x.cg-1.sim.1")
    text = render_batch_script(request, plans.scheduler("lsf"))
    assert "#BSUB -J camp.x.cg-1.sim.1\n" in text
    assert "#BSUB -o cg-1.sim.1.%J.out\n" in text
    assert text.count("#BSUB -J") == 1


def test_lsf_refuses_a_unique_name_bjobs_would_read_as_a_pattern():
    request = JobRequest("j", "t", "true", Path("/w"), sched_name="camp*[1]")
    with pytest.raises(SchedulerError, match="not usable"):
        render_batch_script(request, plans.scheduler("lsf"))


def test_lsf_find_asks_bjobs_once_for_the_common_prefix(bin_dir):
    args = fake_command(bin_dir, "bjobs", "7|camp.x.cg-2.sim.1\n8|camp.x.cg-9.setup.1\n")
    adapter = SCHEDULERS.get("lsf")(plans.scheduler("lsf"))
    assert adapter.find(["camp.x.cg-2.sim.1", "camp.x.cg-3.sim.1"], SINCE) == {
        "camp.x.cg-2.sim.1": "7"}
    assert args.read_text() == "-a -noheader -o jobid job_name delimiter='|' -J camp.x.cg-*\n"


def test_lsf_find_tells_no_job_from_a_failure(bin_dir):
    adapter = SCHEDULERS.get("lsf")(plans.scheduler("lsf"))
    fake_command(bin_dir, "bjobs", "", 255, "No job found\n")
    assert adapter.find(["camp.x.a"], SINCE) == {}
    fake_command(bin_dir, "bjobs", "", 255, "LSF is down. Please wait ...\n")
    with pytest.raises(SchedulerError, match=r"bjobs failed \(exit 255\): LSF is down"):
        adapter.find(["camp.x.a"], SINCE)

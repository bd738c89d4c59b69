"""Data values (candidate ids, sims, paths) reach job scripts as literal words on every adapter."""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import pytest
from maestrowf.abstracts.enums import SubmissionCode

from mummi_spec.errors import SchedulerError, StoreError
from mummi_spec.plan import JobResources
from mummi_spec.runtime.jobs import make_request
from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers._common import (
    check_name,
    job_body,
    safe_path,
    substitute_launcher,
    wait_terminal,
)
from mummi_spec.runtime.schedulers.base import JobRequest, JobState
from mummi_spec.runtime.schedulers.lsf import render_batch_script
from mummi_spec.runtime.stores.common import check_name as check_store_name
from tests import plans
from tests.reliability.hostile import HOSTILE, canaries

# Every data-bearing token, then the same value through the environment, NUL-separated so
# that values holding newlines come back whole.
COMMAND = ("printf '%s\\0' $(CANDIDATE) $(SIM) $(SETUP_DIR) $(STOP) \"$MUMMI_CANDIDATE\" "
           "> out.bin")
OUT = "out.bin"


def _request(value: str, workdir: Path) -> JobRequest:
    plan = plans.plan(jobs=[plans.job("createsim", COMMAND, stop=value, walltime=60.0,
                                      resources=JobResources(nodes=1, tasks=1,
                                                             cores_per_task=1, gpus=0))])
    request = make_request(plan, "createsim", name="cg-000001.createsim.1", workdir=workdir,
                           values={"CANDIDATE": value, "SIM": value, "SETUP_DIR": value})
    return JobRequest(**{**{f: getattr(request, f) for f in request.__slots__},
                         "env": {"MUMMI_CANDIDATE": value}})


def _words(workdir: Path) -> list[str]:
    return (workdir / OUT).read_bytes().decode().split("\0")[:-1]


def _bash(script: Path | str, cwd: Path) -> None:
    args = ["bash", str(script)] if isinstance(script, Path) else ["bash", "-c", script]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("value", HOSTILE)
def test_rendered_body_passes_each_value_as_one_literal_word(value: str, tmp_path: Path) -> None:
    request = _request(value, tmp_path)
    _bash(substitute_launcher(job_body(request), "launcher-was-here"), tmp_path)
    assert _words(tmp_path) == [value] * 5
    assert canaries(tmp_path) == []


@pytest.mark.parametrize("value", HOSTILE)
def test_local_adapter_runs_hostile_values_literally(value: str, tmp_path: Path) -> None:
    local = SCHEDULERS.get("local")(plans.local())
    try:
        job_id = local.submit(_request(value, tmp_path / "job"))
        assert wait_terminal(local, [job_id])[job_id].state is JobState.COMPLETED
    finally:
        local.close()
    assert _words(tmp_path / "job") == [value] * 5
    assert canaries(tmp_path) == []


@pytest.mark.parametrize("value", HOSTILE)
def test_slurm_batch_script_quotes_hostile_values(value: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    slurm = SCHEDULERS.get("slurm")(plans.scheduler("slurm"))
    written: list[str] = []

    def keep(_step: object, script: str, _cwd: str) -> object:  # sbatch is never called
        written.append(script)
        return types.SimpleNamespace(submission_code=SubmissionCode.OK, job_identifier="1",
                                     return_code=0)

    monkeypatch.setattr(slurm._adapter, "submit", keep)
    assert slurm.submit(_request(value, tmp_path / "job")) == "1"
    script = Path(written[0])
    text = script.read_text()
    assert text.startswith("#!/bin/bash") and "#SBATCH --job-name=" in text
    assert "srun" not in text  # Maestro did not expand a $(LAUNCHER) hidden in the data
    _bash(script, tmp_path / "job")  # the #SBATCH lines are comments to bash
    assert _words(tmp_path / "job") == [value] * 5
    assert canaries(tmp_path) == []


@pytest.mark.parametrize("value", HOSTILE)
def test_lsf_batch_script_quotes_hostile_values(value: str, tmp_path: Path) -> None:
    text = render_batch_script(_request(value, tmp_path), plans.scheduler("lsf"))
    assert "jsrun" not in text
    _bash(text, tmp_path)
    assert _words(tmp_path) == [value] * 5
    assert canaries(tmp_path) == []


@pytest.mark.parametrize("value", [*HOSTILE, "../escape", "a/b", ".hidden", ""])
def test_hostile_job_names_are_refused(value: str) -> None:
    with pytest.raises(SchedulerError, match="not usable as a file name"):
        check_name(value)


@pytest.mark.parametrize("value", [v for v in HOSTILE if v not in ("*", "-rf")])
def test_slurm_refuses_work_directories_its_command_line_would_misread(value: str) -> None:
    with pytest.raises(SchedulerError, match="work directory"):
        safe_path(Path("/ws/runs") / value)


@pytest.mark.parametrize("value", ["../x", "a/../../b", "a/b", "..", ".x", "a\\b", "a\nb",
                                   "a\x00b", ""])
def test_store_names_that_could_act_as_paths_are_refused(value: str) -> None:
    with pytest.raises(StoreError, match="unsafe key"):
        check_store_name("key", value)

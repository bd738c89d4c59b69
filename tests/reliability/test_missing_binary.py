"""A job type whose program does not exist: exit 127, no retry, its coupling stops, the run ends.

Exit 126/127 is the shell saying it could not start the program; every retry would fail the
same way, so the failure is not retried, no more jobs of that type start, and the summary
names the job type and the program. Selections not yet run stay queued for a resumed run.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.compiler.emit import write
from mummi_spec.frontend import load_spec_text
from mummi_spec.plan import RetryPolicy, SuccessRule
from mummi_spec.runtime import tracker
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.schedulers.base import JobState, JobStatus
from mummi_spec.runtime.states import AttemptState
from tests import plans
from tests.conftest import SPECS
from tests.integration.test_campaign import run_cli

TOY = "$(PYTHON) -m mummi_spec.runtime.toy "
MISSING = {  # job type -> the toy application its local command runs
    "generator": "generator", "createsim": "setup", "cganalysis": "simulate"}


def _build(cwd: Path, job_type: str) -> tuple[Campaign, str]:
    program = f"/nonexistent/bin/{job_type}"
    text = (SPECS / "mini.yaml").read_text()
    old = TOY + MISSING[job_type]
    assert text.count(old) == 1
    loaded = load_spec_text(text.replace(old, program), "mini-missing.yaml")
    write(cwd / "build", compile_loaded(loaded).files)
    return Campaign.open(cwd / "build" / "plan.json"), program


@pytest.fixture(scope="module", params=sorted(MISSING))
def ended(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[str, str, Campaign, str]:
    job_type = request.param
    cwd = tmp_path_factory.mktemp(f"missing-{job_type}")
    c, program = _build(cwd, job_type)
    proc = run_cli("run", "build", cwd=cwd, timeout=240)  # ends by itself: never hangs
    assert proc.returncode == 1, proc.stdout + proc.stderr  # ran, but some work cannot be done
    return job_type, program, c, proc.stdout


def _rows(c: Campaign, sql: str, *args: object) -> list[tuple[object, ...]]:
    return sqlite3.connect(c.workspace / "ledger.sqlite").execute(sql, args).fetchall()


def test_the_failure_is_recorded_with_exit_127_and_not_retried(
        ended: tuple[str, str, Campaign, str]) -> None:
    job_type, program, c, _ = ended
    jobs = _rows(c, "SELECT attempt, state, exit_code, reason FROM jobs WHERE job_type = ?",
                 job_type)
    assert jobs
    for attempt, state, code, reason in jobs:
        assert (attempt, state, code) == (1, "failed", 127)
        assert "command not found" in str(reason) and program in str(reason)


def test_no_job_of_the_type_starts_after_the_first_failure(
        ended: tuple[str, str, Campaign, str]) -> None:
    job_type, _, c, _ = ended
    # Those already submitted may end too; none is submitted once one has ended.
    (first_end,) = _rows(c, "SELECT MIN(ended_at) FROM jobs WHERE job_type = ?", job_type)[0]
    (last_start,) = _rows(c, "SELECT MAX(submitted_at) FROM jobs WHERE job_type = ?",
                          job_type)[0]
    assert last_start <= first_end
    if job_type != "cganalysis":  # nothing downstream of a missing setup or generator runs
        assert _rows(c, "SELECT * FROM jobs WHERE job_type = 'cganalysis'") == []


def test_failed_selections_say_why_and_the_rest_wait_for_a_resume(
        ended: tuple[str, str, Campaign, str]) -> None:
    job_type, _, c, _ = ended
    sims = _rows(c, "SELECT state, reason FROM sims")
    if job_type == "generator":
        assert sims == []  # no candidate was ever written
        return
    failed = [reason for state, reason in sims if state == "failed"]
    assert failed and all(f"{job_type}: failed exit code 127" in str(r) for r in failed)
    assert {state for state, _ in sims} <= {"failed", "selected", "ready"}


def test_the_summary_names_the_job_type_and_its_program(
        ended: tuple[str, str, Campaign, str]) -> None:
    job_type, program, c, stdout = ended
    status = json.loads((c.workspace / "status.json").read_text())
    assert status["state"] == "complete"
    assert list(status["unrunnable"]) == [job_type]
    line = f"job type {job_type} cannot run: exit code 127: command not found ('{program}'"
    assert line in (c.workspace / "summary.txt").read_text()
    assert line in stdout
    log = (c.workspace / "manager.log").read_text()
    assert log.count(f"job type {job_type} cannot run") == 1


# --- the tracker's rules alone -----------------------------------------------------------

JOB = plans.job("createsim", "$(LAUNCHER)[1,2] /opt/app/bin/createsims --x",
                retry=RetryPolicy(limit=5))


@pytest.mark.parametrize(("code", "words"), [(127, "command not found"),
                                             (126, "cannot be executed")])
def test_exit_126_and_127_name_the_program_and_are_never_retried(code: int, words: str) -> None:
    state, reason = tracker.outcome(JOB, JobStatus(JobState.FAILED, code), Path("/w"))
    assert state is AttemptState.FAILED
    assert words in reason and "'/opt/app/bin/createsims'" in reason
    assert not tracker.should_retry(JOB, state, [], code)
    assert tracker.should_retry(JOB, state, [], 1)  # an ordinary failure still is


def test_a_job_that_declares_127_a_success_is_not_unrunnable() -> None:
    job = dataclasses.replace(JOB, success=SuccessRule(exit_codes=(0, 127)))
    assert tracker.outcome(job, JobStatus(JobState.COMPLETED, 127), Path("/w"))[0] is \
        AttemptState.COMPLETED
    assert not tracker.not_runnable(job, 127)
    assert tracker.should_retry(job, AttemptState.FAILED, [], 127)

"""Slurm: Maestro's slurm adapter writes and submits; status comes from one squeue call."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import ClassVar

from maestrowf.abstracts.enums import CancelCode, SubmissionCode

from mummi_spec.errors import SchedulerError
from mummi_spec.plan import SchedulerPlan
from mummi_spec.runtime.schedulers import _maestro
from mummi_spec.runtime.schedulers._common import (
    SubmitThrottle,
    batch_tokens,
    begin_submit,
    directives,
    ids_by_name,
    job_body,
    real_user,
    scheduler_name,
)
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus, SchedulerBase

# Every job state name Slurm reports (squeue(1) "JOB STATE CODES"); tests check coverage.
SLURM_STATES: Mapping[str, JobState] = {
    "PENDING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "CONFIGURING": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,  # still holds its allocation
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "TIMEOUT": JobState.TIMEDOUT,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,  # a federation sibling started it elsewhere
}
_JOB_ID = re.compile(r"[0-9]+")
_SQUEUE_FORMAT = "JobID:|,State:|,exit_code:|,Reason:"  # ':|' = no padding, '|' after
# `squeue -j` filters slowly (0.3 s for 1,000 ids); listing all our jobs is one RPC and
# takes 0.05 s for 6,000, so past a few ids list ours and pick locally.
_FEW_IDS = 100
_SACCT_CHUNK = 1000
_ADAPTER_LOGGER = "maestrowf.interfaces.script.slurmscriptadapter"
# `find` searches the jobcomp file from a day before `since`: names are unique, so a wide
# window costs nothing but covers a login node's clock running ahead of the controller's.
_FIND_MARGIN = 86400.0
log = logging.getLogger("mummi.schedulers.slurm")


class SlurmScheduler(SchedulerBase):
    """Submits with ``sbatch`` through Maestro, with the plan's batch block (queue, bank, qos,
    reservation, options) and throttle. Thread-safe: callers may submit from several threads
    at once (each submission is its own ``sbatch`` process)."""

    key: ClassVar[str] = "slurm"
    # Jobs outlive the manager and are found again by id when it restarts.
    jobs_survive_manager: ClassVar[bool] = True
    paths_unquoted: ClassVar[bool] = True  # Maestro joins its command line unquoted
    finds_by_name: ClassVar[bool] = True

    def __init__(self, settings: SchedulerPlan) -> None:
        # Maestro's adapter polls `squeue -u $USER`; an unset or wrong USER breaks it silently.
        os.environ["USER"] = real_user()
        block = batch_tokens(settings)
        block.setdefault("reservation", "")
        # `procs` in the batch block makes the header ask --ntasks=<step procs>; without it a
        # nodes+procs step gets a single CPU under CR_Core.
        self._adapter = _maestro.adapter("slurm", **block, procs=1)
        self._directives = directives(settings, "#SBATCH", "--", "=")
        self._throttle = SubmitThrottle.from_settings(settings)

    def submit(self, job: JobRequest) -> str:
        name, workdir = begin_submit(job, self._throttle, shell_safe=True)
        cwd = str(workdir)
        # Maestro's header has no --cpus-per-task nor the spec's options; #SBATCH lines right
        # after it still count. Its --job-name is the step's name, the stem of the script and
        # logs; the later one, the unique name `find` looks for, is the one sbatch keeps.
        extra = f"#SBATCH --job-name={scheduler_name(job)}\n"
        if job.cores_per_task > 1:
            extra += f"#SBATCH --cpus-per-task={job.cores_per_task}\n"
        step = _maestro.step_for(job, extra + self._directives + job_body(job))
        _, script, _ = self._adapter.write_script(cwd, step)
        with _maestro.captured_messages(_ADAPTER_LOGGER) as messages:
            record = self._adapter.submit(step, script, cwd)
        if record.submission_code != SubmissionCode.OK:
            why = " ".join(m.split("\n", 1)[-1].strip() for m in messages) or "no message"
            raise SchedulerError(f"sbatch refused job {name} (exit {record.return_code}): {why}")
        return str(record.job_identifier)

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        valid = [i for i in dict.fromkeys(ids) if _JOB_ID.fullmatch(i)]
        selector = ["-j", ",".join(valid)] if len(valid) <= _FEW_IDS else ["--me"]
        found = _squeue(selector) if valid else {}
        # Past MinJobAge squeue forgets a job; the jobcomp file (`sacct -c`) still knows it.
        lost = [i for i in valid if i not in found]
        for chunk in _chunks(lost, _SACCT_CHUNK):
            found.update(_sacct(chunk))
        unknown = JobStatus(JobState.UNKNOWN, reason="neither squeue nor sacct -c knows it")
        return {i: found.get(i, unknown) for i in ids}

    def find(self, names: Sequence[str], since: float) -> dict[str, str]:
        wanted = set(names)
        if not wanted:
            return {}
        # One listing of our jobs (squeue keeps ended ones for MinJobAge), then the jobcomp
        # file for the names it lacks. Names are matched here: `sacct -c` ignores --name.
        found = ids_by_name(_ask(["squeue", "-h", "-t", "all", "--me", "-O", "JobID:|,Name:"]),
                            wanted)
        missing = wanted - found.keys()
        if missing:
            start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - _FIND_MARGIN))
            try:
                ended = _ask(["sacct", "-c", "-S", start, "-o", "jobid,jobname", "-n", "-P"])
            except SchedulerError as exc:
                log.warning("%s; jobs of %d names that squeue no longer lists are not looked "
                            "for", exc, len(missing))
            else:
                found.update(ids_by_name(ended, missing))
        return found

    def cancel(self, ids: Sequence[str]) -> None:
        bad = [i for i in ids if not _JOB_ID.fullmatch(i)]
        if bad:
            raise SchedulerError(f"not Slurm job ids: {', '.join(map(repr, bad))}")
        if ids:
            record = self._adapter.cancel_jobs(list(ids))  # one `scancel --quiet` for all
            if record.cancel_status != CancelCode.OK:
                raise SchedulerError(f"scancel failed (exit {record.return_code})")

    def close(self) -> None:
        """Nothing held: every call is a short-lived client command."""


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _query(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""  # the caller falls back, and ids nobody knows end up UNKNOWN
    # squeue exits 1 when none of the ids is known any more: an empty answer, not an error.
    return proc.stdout if proc.returncode in (0, 1) else ""


def _ask(cmd: list[str]) -> str:
    """The output of a Slurm command that must answer; ``SchedulerError`` if it cannot."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SchedulerError(f"{cmd[0]} cannot be run: {exc}") from None
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise SchedulerError(f"{cmd[0]} failed (exit {proc.returncode}): {why[0]}")
    return proc.stdout


def _squeue(selector: list[str]) -> dict[str, JobStatus]:
    out = _query(["squeue", "-h", "-t", "all", *selector, "-O", _SQUEUE_FORMAT])
    found = {}
    for line in out.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4 and parts[1] in SLURM_STATES:
            job_id, name, raw_code, reason = parts
            found[job_id] = _status(name, _from_wait_status(raw_code), reason.strip())
    return found


def _sacct(ids: list[str]) -> dict[str, JobStatus]:
    out = _query(["sacct", "-c", "-j", ",".join(ids), "-o", "jobid,state,exitcode", "-n", "-P"])
    found = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            job_id, state, code = parts
            name = state.split()[0] if state else ""  # "CANCELLED by 0"
            if name in SLURM_STATES:
                found[job_id] = _status(name, _from_exit_pair(code), "")
    return found


def _status(name: str, code: int | None, reason: str) -> JobStatus:
    state = SLURM_STATES[name]
    if state in (JobState.PENDING, JobState.RUNNING):
        code = None
    elif state is JobState.COMPLETED:
        code = 0
    reason = "" if reason == "None" else reason
    if state is JobState.FAILED and name != "FAILED":
        reason = f"{name}: {reason}" if reason else name
    return JobStatus(state, code, reason)


def _from_wait_status(raw: str) -> int | None:
    """squeue's exit_code is a raw wait status: exit code << 8, or the signal number."""
    try:
        value = int(raw)
    except ValueError:
        return None
    signum = value & 0x7F
    return 128 + signum if signum else value >> 8


def _from_exit_pair(raw: str) -> int | None:
    """sacct's ExitCode is ``code:signal``."""
    code, _, signum = raw.partition(":")
    try:
        return 128 + int(signum) if signum and int(signum) else int(code)
    except ValueError:
        return None

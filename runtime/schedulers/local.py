"""Local processes through Maestro's local adapter, made non-blocking with a thread pool."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mummi_spec.errors import SchedulerError
from mummi_spec.plan import SchedulerPlan
from mummi_spec.runtime.schedulers import _maestro
from mummi_spec.runtime.schedulers._common import (
    SubmitThrottle,
    begin_submit,
    job_body,
    substitute_launcher,
)
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus, SchedulerBase

# GNU timeout exits 124 when it stopped the job at its walltime, 137 when it had to KILL it.
_TIMEOUT_CODES = frozenset({124, 137})

# Maestro runs this script and waits for it. Its first run starts a new session (so cancel
# can signal the whole process group, never ours) and re-executes itself under `timeout`,
# which enforces the walltime even if we die; the second run records the group id (field 5
# of /proc/<pid>/stat) once the group exists, with builtins only: every exec costs.
_WRAPPER = """\
if [ -z "${{MUMMI_JOB_INNER:-}}" ]; then
  export MUMMI_JOB_INNER=1
  exec setsid -w timeout -k {grace} {walltime} /bin/bash "$0" </dev/null >{out} 2>{err}
fi
unset MUMMI_JOB_INNER
read -r _ _ _ _ __mummi_pgid _ < /proc/$$/stat && echo "$__mummi_pgid" > {pidfile}
unset __mummi_pgid
"""


@dataclass
class _Job:
    future: Future[Any]
    workdir: Path
    name: str
    walltime: int
    started: float | None = None
    ended: float | None = None
    cancelled: bool = False
    killer: threading.Timer | None = field(default=None, repr=False)

    @property
    def pid_file(self) -> Path:
        return self.workdir / f".{self.name}.pid"


class LocalScheduler(SchedulerBase):
    """Runs each job as a local process group; many at once (``options.max_workers``)."""

    key: ClassVar[str] = "local"

    def __init__(self, settings: SchedulerPlan) -> None:
        self._adapter = _maestro.adapter("local")
        self._pool = ThreadPoolExecutor(settings.local.max_workers,
                                        thread_name_prefix="mummi-local")
        self._throttle = SubmitThrottle.from_settings(settings)
        self._grace = settings.local.kill_grace
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def submit(self, job: JobRequest) -> str:
        name, workdir = begin_submit(job, self._throttle)
        pid_file = workdir / f".{name}.pid"
        pid_file.unlink(missing_ok=True)  # a stale pid from an earlier attempt must never be hit
        wrapper = _WRAPPER.format(pidfile=f".{name}.pid", grace=self._grace,
                                  walltime=max(job.walltime, 1), out=f"{name}.out",
                                  err=f"{name}.err")
        # Maestro's local adapter leaves $(LAUNCHER) alone; on one machine the command runs bare.
        step = _maestro.step_for(job, wrapper + substitute_launcher(job_body(job), ""))
        _, script, _ = self._adapter.write_script(str(workdir), step)
        job_id = f"local-{uuid.uuid4().hex[:16]}"
        record = _Job(Future(), workdir, name, max(job.walltime, 1))
        record.future = self._pool.submit(self._run, record, step, script)
        with self._lock:
            self._jobs[job_id] = record
        return job_id

    def _run(self, job: _Job, step: Any, script: str) -> Any:
        job.started = time.monotonic()
        try:
            return self._adapter.submit(step, script, str(job.workdir))
        finally:
            job.ended = time.monotonic()
            if job.killer is not None:
                job.killer.cancel()
            _drop_empty_logs(job)

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        with self._lock:
            jobs = {job_id: self._jobs.get(job_id) for job_id in ids}
        return {job_id: _status_of(job) for job_id, job in jobs.items()}

    def cancel(self, ids: Sequence[str]) -> None:
        with self._lock:
            jobs = [self._jobs[job_id] for job_id in ids if job_id in self._jobs]
        for job in jobs:
            if job.future.done():
                continue
            job.cancelled = True
            if not job.future.cancel():
                self._kill(job)

    def close(self) -> None:
        """Stop accepting work; running and queued jobs carry on (cancel them first if not)."""
        self._pool.shutdown(wait=False)

    def _kill(self, job: _Job) -> None:
        pid = _wait_for_pid(job)
        if pid is None:
            return
        _signal_group(pid, signal.SIGTERM)

        def finish() -> None:
            if not job.future.done():
                _signal_group(pid, signal.SIGKILL)

        job.killer = threading.Timer(self._grace, finish)
        job.killer.daemon = True
        job.killer.start()


def _status_of(job: _Job | None) -> JobStatus:
    if job is None:
        return JobStatus(JobState.UNKNOWN, reason="not submitted through this adapter")
    future = job.future
    if future.cancelled():
        return JobStatus(JobState.CANCELLED, reason="cancelled before it started")
    if not future.done():
        return JobStatus(JobState.RUNNING if future.running() else JobState.PENDING)
    error = future.exception()
    if error is not None:
        return JobStatus(JobState.FAILED, reason=f"local submission failed: {error}")
    code = future.result().return_code
    code = code if code >= 0 else 128 - code  # Popen reports death by signal N as -N
    elapsed = (job.ended or 0.0) - (job.started or 0.0)
    if job.cancelled:
        return JobStatus(JobState.CANCELLED, code, "cancelled")
    if code in _TIMEOUT_CODES and elapsed >= job.walltime:
        return JobStatus(JobState.TIMEDOUT, code, f"walltime of {job.walltime} s reached")
    if code == 0:
        return JobStatus(JobState.COMPLETED, 0)
    return JobStatus(JobState.FAILED, code, f"exit code {code}")


def _wait_for_pid(job: _Job, timeout: float = 5.0) -> int | None:
    """The job's pid once its script has written it (a just-started job may not have yet)."""
    deadline = time.monotonic() + timeout
    while not job.future.done():
        try:
            return int(job.pid_file.read_text().strip())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise SchedulerError(f"job {job.name} never recorded its pid") from None
            time.sleep(0.005)
    return None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has already gone
        os.killpg(pid, sig)


def _drop_empty_logs(job: _Job) -> None:
    """Maestro also writes ``<name>.<pid>.out/.err`` from its pipes; ours went to files."""
    try:
        pid = int(job.pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    for suffix in ("out", "err"):
        path = job.workdir / f"{job.name}.{pid}.{suffix}"
        try:
            if path.stat().st_size == 0:
                path.unlink()
        except OSError:
            pass

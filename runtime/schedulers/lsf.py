"""LSF: ``#BSUB`` scripts rendered by Maestro's LSF adapter; submission only where bsub exists."""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from maestrowf.abstracts.enums import CancelCode, SubmissionCode

from mummi_spec.errors import SchedulerError
from mummi_spec.runtime.schedulers import _maestro
from mummi_spec.runtime.schedulers._common import (
    SubmitThrottle,
    begin_submit,
    check_name,
    job_body,
    option_token,
    per_node,
)
from mummi_spec.runtime.schedulers.base import JobRequest, JobStatus

# Maestro's LSF header writes every batch key, even empty ones ("#BSUB -G "): drop those.
_EMPTY_DIRECTIVE = re.compile(r"#BSUB -\w+\s*")


def render_batch_script(job: JobRequest, options: Mapping[str, Any]) -> str:
    """The complete ``#BSUB`` script for ``job``; same input, same text (golden-testable).

    Options: ``queue`` (default ``batch``), ``bank``, ``host``, ``reservation``.
    ``$(LAUNCHER)`` becomes ``jsrun`` with one resource set per task.
    """
    check_name(job.name)
    adapter = _adapter(options)
    step = _step(job)
    _, cmd, _ = adapter.get_scheduler_command(step)
    header = [line for line in adapter.get_header(step).splitlines()
              if not _EMPTY_DIRECTIVE.fullmatch(line)]
    return "\n".join(header) + f"\n\n{cmd}\n"


class LsfScheduler:
    """Submits with ``bsub`` through Maestro; refuses clearly on machines without LSF."""

    key: ClassVar[str] = "lsf"
    # Jobs outlive the manager and are found again by id when it restarts.
    jobs_survive_manager: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any]) -> None:
        self._options = dict(options)
        self._adapter = _adapter(options)
        self._throttle = SubmitThrottle.from_options(options)

    def submit(self, job: JobRequest) -> str:
        check_name(job.name)
        if shutil.which("bsub") is None:
            raise SchedulerError("LSF submission is not available on this machine: bsub not found")
        name, workdir = begin_submit(job, self._throttle, shell_safe=True)
        script = workdir / f"{name}.lsf.sh"
        script.write_text(render_batch_script(job, self._options))
        record = self._adapter.submit(_step(job), str(script), str(workdir))
        if record.submission_code != SubmissionCode.OK:
            raise SchedulerError(f"bsub refused job {name} (exit {record.return_code})")
        return str(record.job_identifier)

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        _, states = self._adapter.check_jobs(list(ids))
        return {i: JobStatus(_maestro.from_maestro(states.get(i))) for i in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        record = self._adapter.cancel_jobs(list(ids))
        if record.cancel_status != CancelCode.OK:
            raise SchedulerError(f"bkill failed (exit {record.return_code})")

    def close(self) -> None:
        """Nothing held."""


def _adapter(options: Mapping[str, Any]) -> Any:
    # No machine-dependent default for host: the rendered script must be reproducible.
    return _maestro.adapter(
        "lsf", host=option_token(options, "host"), bank=option_token(options, "bank"),
        queue=option_token(options, "queue", "batch"),
        reservation=option_token(options, "reservation"))


def _step(job: JobRequest) -> Any:
    step = _maestro.step_for(job, job_body(job))
    # jsrun counts in resource sets: one per task, with its cores and its share of GPUs.
    step.run.update({"rs per node": per_node(job.tasks, job.nodes), "tasks per rs": 1,
                     "cpus per rs": job.cores_per_task,
                     "gpus": per_node(job.gpus, job.tasks) if job.gpus > 0 else ""})
    return step

"""LSF: ``#BSUB`` scripts rendered by Maestro's LSF adapter; submission only where bsub exists."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from typing import Any, ClassVar

from maestrowf.abstracts.enums import CancelCode, SubmissionCode

from mummi_spec.errors import SchedulerError
from mummi_spec.plan import SchedulerPlan
from mummi_spec.runtime.schedulers import _maestro
from mummi_spec.runtime.schedulers._common import (
    SubmitThrottle,
    batch_tokens,
    begin_submit,
    check_name,
    directives,
    job_body,
    per_node,
)
from mummi_spec.runtime.schedulers.base import JobRequest, JobStatus, SchedulerBase

# Maestro's LSF header writes every batch key, even empty ones ("#BSUB -G "): drop those.
_EMPTY_DIRECTIVE = re.compile(r"#BSUB -\w+\s*")


def render_batch_script(job: JobRequest, settings: SchedulerPlan) -> str:
    """The complete ``#BSUB`` script for ``job``; same input, same text (golden-testable).

    The plan's batch block gives queue, bank, host and reservation (empty: no directive);
    ``scheduler.options`` add ``#BSUB -key value`` lines.
    ``$(LAUNCHER)`` becomes ``jsrun`` with one resource set per task.
    """
    check_name(job.name)
    adapter = _adapter(settings)
    step = _step(job)
    _, cmd, _ = adapter.get_scheduler_command(step)
    header = [line for line in adapter.get_header(step).splitlines()
              if not _EMPTY_DIRECTIVE.fullmatch(line)]
    return "\n".join(header) + "\n" + directives(settings, "#BSUB", "-", " ") + f"\n{cmd}\n"


class LsfScheduler(SchedulerBase):
    """Submits with ``bsub`` through Maestro; refuses clearly on machines without LSF."""

    key: ClassVar[str] = "lsf"
    # Jobs outlive the manager and are found again by id when it restarts.
    jobs_survive_manager: ClassVar[bool] = True
    paths_unquoted: ClassVar[bool] = True  # Maestro joins its command line unquoted

    def __init__(self, settings: SchedulerPlan) -> None:
        self._settings = settings
        self._adapter = _adapter(settings)
        self._throttle = SubmitThrottle.from_settings(settings)

    def submit(self, job: JobRequest) -> str:
        check_name(job.name)
        if shutil.which("bsub") is None:
            raise SchedulerError("LSF submission is not available on this machine: bsub not found")
        name, workdir = begin_submit(job, self._throttle, shell_safe=True)
        script = workdir / f"{name}.lsf.sh"
        script.write_text(render_batch_script(job, self._settings))
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


def _adapter(settings: SchedulerPlan) -> Any:
    block = batch_tokens(settings)
    block.setdefault("reservation", "")
    return _maestro.adapter("lsf", **block)


def _step(job: JobRequest) -> Any:
    step = _maestro.step_for(job, job_body(job))
    # jsrun counts in resource sets: one per task, with its cores and its share of GPUs.
    step.run.update({"rs per node": per_node(job.tasks, job.nodes), "tasks per rs": 1,
                     "cpus per rs": job.cores_per_task,
                     "gpus": per_node(job.gpus, job.tasks) if job.gpus > 0 else ""})
    return step

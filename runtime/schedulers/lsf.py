"""LSF: ``#BSUB`` scripts rendered by Maestro's LSF adapter; submission only where bsub exists."""

from __future__ import annotations

import re
import shutil
import subprocess
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
    ids_by_name,
    job_body,
    per_node,
    scheduler_name,
)
from mummi_spec.runtime.schedulers.base import JobRequest, JobStatus, SchedulerBase

# Maestro's LSF header writes every batch key, even empty ones ("#BSUB -G "): drop those.
_EMPTY_DIRECTIVE = re.compile(r"#BSUB -\w+\s*")


def render_batch_script(job: JobRequest, settings: SchedulerPlan) -> str:
    """The complete ``#BSUB`` script for ``job``; same input, same text (golden-testable).

    The plan's batch block gives queue, bank, host and reservation (empty: no directive);
    ``scheduler.options`` add ``#BSUB -key value`` lines.
    ``$(LAUNCHER)`` becomes ``jsrun`` with one resource set per task. The job is named
    ``-J`` by its unique name; its logs by its own.
    """
    check_name(job.name)
    named = f"#BSUB -J {scheduler_name(job)}"
    adapter = _adapter(settings)
    step = _step(job)
    _, cmd, _ = adapter.get_scheduler_command(step)
    header = [named if line.startswith("#BSUB -J ") else line
              for line in adapter.get_header(step).splitlines()
              if not _EMPTY_DIRECTIVE.fullmatch(line)]
    return "\n".join(header) + "\n" + directives(settings, "#BSUB", "-", " ") + f"\n{cmd}\n"


class LsfScheduler(SchedulerBase):
    """Submits with ``bsub`` through Maestro; refuses clearly on machines without LSF."""

    key: ClassVar[str] = "lsf"
    # Jobs outlive the manager and are found again by id when it restarts.
    jobs_survive_manager: ClassVar[bool] = True
    paths_unquoted: ClassVar[bool] = True  # Maestro joins its command line unquoted
    finds_by_name: ClassVar[bool] = True

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

    def find(self, names: Sequence[str], since: float) -> dict[str, str]:
        """One ``bjobs -a`` (ended jobs too, for LSF's CLEAN_PERIOD) for the names' common
        prefix as a ``-J`` pattern; the names themselves are matched here."""
        wanted = set(names)
        if not wanted:
            return {}
        # The common prefix of the first and last names in order is that of them all.
        first, last = min(wanted), max(wanted)
        same = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b),
                    len(first))
        pattern = first[:same] + "*"
        cmd = ["bjobs", "-a", "-noheader", "-o", "jobid job_name delimiter='|'", "-J", pattern]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SchedulerError(f"bjobs cannot be run: {exc}") from None
        # bjobs says "No job found" with the exit status of any other failure (255); its
        # words are the only way to tell an empty answer from none.
        none = not proc.stdout.strip() and "found" in proc.stderr.lower()
        if proc.returncode != 0 and not none:
            raise SchedulerError(f"bjobs failed (exit {proc.returncode}): "
                                 f"{proc.stderr.strip() or 'no message'}")
        return ids_by_name(proc.stdout, wanted)

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

"""Dry run: every submission is recorded and COMPLETED at once; nothing runs, nothing is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from mummi_spec.plan import NESTED_INSTANCES, SchedulerPlan
from mummi_spec.runtime.schedulers._common import check_name, check_nested, env_exports
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus, SchedulerBase

_DONE = JobStatus(JobState.COMPLETED, 0)
_UNKNOWN = JobStatus(JobState.UNKNOWN, reason="not submitted through this adapter")


class DryRunScheduler(SchedulerBase):
    """Accepts what a real adapter would accept; ``submitted`` keeps the requests for reports."""

    key: ClassVar[str] = "dryrun"

    def __init__(self, settings: SchedulerPlan) -> None:
        self.settings = settings
        self.submitted: list[JobRequest] = []
        self._ids: set[str] = set()

    def submit(self, job: JobRequest) -> str:
        # Same checks as the real adapters, so a dry run catches what a real run would refuse.
        check_name(job.name)
        check_nested(job, self.settings.type in NESTED_INSTANCES)
        env_exports(job.env)
        self.submitted.append(job)
        job_id = f"dryrun-{len(self.submitted)}"
        self._ids.add(job_id)
        return job_id

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        return {i: _DONE if i in self._ids else _UNKNOWN for i in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        """Nothing to do: every job has already ended."""

    def close(self) -> None:
        """Nothing held."""

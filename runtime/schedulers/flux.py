"""Flux through flux-python, imported only when the adapter is built (flux-core is rare)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from mummi_spec.errors import OptionalDependencyError, SchedulerError
from mummi_spec.plan import SchedulerPlan
from mummi_spec.runtime.schedulers._common import (
    SubmitThrottle,
    begin_submit,
    job_body,
    per_node,
    substitute_launcher,
)
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus, SchedulerBase

# flux-python's JobInfo.status_abbrev values (flux-jobs(1) "JOB STATUS"); tests check coverage.
FLUX_STATES: Mapping[str, JobState] = {
    "D": JobState.PENDING,  # DEPEND
    "P": JobState.PENDING,  # PRIORITY
    "S": JobState.PENDING,  # SCHED
    "R": JobState.RUNNING,
    "C": JobState.RUNNING,  # CLEANUP: still holds resources
    "I": JobState.UNKNOWN,  # INACTIVE without a result yet
    "CD": JobState.COMPLETED,
    "F": JobState.FAILED,
    "CA": JobState.CANCELLED,
    "TO": JobState.TIMEDOUT,
}
_TERMINAL_ABBREVS = frozenset({"CD", "F", "CA", "TO"})


def import_flux() -> Any:
    """The ``flux`` package with ``flux.job`` loaded, or a clear error saying what is missing."""
    try:
        import flux
        import flux.job
    except (ImportError, OSError) as exc:
        # flux-python's cffi modules load libflux-core.so.2, which no pip wheel bundles.
        raise OptionalDependencyError(
            "the flux scheduler (it needs flux-core, i.e. libflux-core.so.2, plus the "
            "flux-python release matching it)", "flux", "flux") from exc
    return flux


def build_jobspec(flux_job: Any, job: JobRequest, script: Path, *, nested: bool = True,
                  queue: str | None = None, bank: str | None = None) -> Any:
    """A ``JobspecV1`` for ``job``: its resources, walltime (seconds), cwd, name and logs.

    ``nested`` (Maestro's default) runs the script in a sub-instance owning the whole
    allocation, where ``$(LAUNCHER)`` = ``flux run``; otherwise Flux starts one copy per task.
    """
    gpus_per_task = per_node(job.gpus, job.tasks) if job.gpus > 0 else None
    if nested:
        spec = flux_job.JobspecV1.from_nest_command(
            ["/bin/bash", str(script)], num_slots=job.tasks, cores_per_slot=job.cores_per_task,
            gpus_per_slot=gpus_per_task, num_nodes=job.nodes, queue=queue, bank=bank)
    else:
        spec = flux_job.JobspecV1.from_command(
            ["/bin/bash", str(script)], num_tasks=job.tasks, cores_per_task=job.cores_per_task,
            gpus_per_task=gpus_per_task, num_nodes=job.nodes, queue=queue, bank=bank)
    spec.setattr("system.job.name", job.name)
    spec.cwd = str(Path(job.workdir).resolve())
    spec.environment = dict(os.environ)
    spec.duration = max(int(job.walltime), 1)  # seconds; 0 would mean unlimited
    spec.stdout = f"{job.name}.out"
    spec.stderr = f"{job.name}.err"
    return spec


def launcher_for(job: JobRequest, nested: bool) -> str:
    """What ``$(LAUNCHER)`` means inside the job's script."""
    if not nested:
        return ""  # Flux already runs the script once per task
    gpus = f" -g {per_node(job.gpus, job.tasks)}" if job.gpus > 0 else ""
    return f"flux run -N {job.nodes} -n {job.tasks} -c {job.cores_per_task}{gpus}"


class FluxScheduler(SchedulerBase):
    """Submits jobspecs to the broker at ``options.uri``, else ``FLUX_URI``; the plan gives
    the queue, bank, ``nested``, ``urgency`` and the throttle."""

    key: ClassVar[str] = "flux"
    # Jobs outlive the manager and are found again by id when it restarts.
    jobs_survive_manager: ClassVar[bool] = True

    def __init__(self, settings: SchedulerPlan) -> None:
        self._flux = import_flux()
        uri = settings.flux.uri
        self._handle = self._flux.Flux(uri) if uri else self._flux.Flux()
        self._nested = settings.flux.nested
        self._queue = settings.queue
        self._bank = settings.bank
        self._urgency = settings.flux.urgency
        self._throttle = SubmitThrottle.from_settings(settings)

    def submit(self, job: JobRequest) -> str:
        name, workdir = begin_submit(job, self._throttle)
        script = workdir / f"{name}.flux.sh"
        body = substitute_launcher(job_body(job), launcher_for(job, self._nested))
        script.write_text(f"#!/bin/bash\n\n{body}\n")
        script.chmod(0o755)
        spec = build_jobspec(self._flux.job, job, script, nested=self._nested,
                             queue=self._queue, bank=self._bank)
        try:
            job_id = self._flux.job.submit(self._handle, spec, urgency=self._urgency)
        except OSError as exc:
            raise SchedulerError(f"flux refused job {name}: {exc}") from exc
        return str(job_id.f58)  # JobID objects do not pickle; the f58 string round-trips

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        if ids:
            listing = self._flux.job.JobList(self._handle,
                                             ids=[self._flux.job.JobID(i) for i in ids])
            for info in listing.jobs():
                found[str(info.id.f58)] = _status(info)
        unknown = JobStatus(JobState.UNKNOWN, reason="flux does not list it")
        return {i: found.get(i, unknown) for i in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        for job_id in ids:
            with contextlib.suppress(OSError):  # already inactive: nothing to cancel
                self._flux.job.cancel(self._handle, self._flux.job.JobID(job_id))

    def close(self) -> None:
        self._handle = None


def _status(info: Any) -> JobStatus:
    abbrev = str(info.status_abbrev)
    state = FLUX_STATES.get(abbrev, JobState.UNKNOWN)
    code = None
    if abbrev in _TERMINAL_ABBREVS:
        raw = getattr(info, "returncode", None)
        if isinstance(raw, int):
            code = raw if raw >= 0 else 128 - raw  # flux reports death by signal N as -N
    return JobStatus(state, code, "" if state is not JobState.UNKNOWN else f"flux status {abbrev}")

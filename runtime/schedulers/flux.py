"""Flux through flux-python, imported only when the adapter is built (flux-core is rare)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import sys
import threading
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
    scheduler_name,
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
# flux-python's returncode for a job cancelled before it ran (flux-jobs(1)): no exit code.
_CANCELLED_BEFORE_RUN = -128
# What flux-python's cffi modules link against, in dependency order (the core last).
_LIBFLUX = ("libflux-idset.so.1", "libflux-hostlist.so.1", "libflux-core.so.2")
# `find` looks from an hour before `since`: names are unique, the margin covers clock skew.
_FIND_MARGIN = 3600.0
log = logging.getLogger("mummi.schedulers.flux")


def import_flux() -> Any:
    """The ``flux`` package with ``flux.job`` loaded, or a clear error saying what is missing.

    flux-python's cffi modules load libflux-core.so.2, which no pip wheel bundles. Where the
    dynamic linker cannot find it (flux-core built into its own prefix, as scripts/services
    does), the libraries beside the ``flux`` command on PATH are loaded first: this is the
    one place that makes ``import flux`` work without LD_LIBRARY_PATH.
    """
    try:
        return _import_flux()
    except (ImportError, OSError) as exc:
        error: BaseException = exc
    # A failed import leaves the subpackages it did load (flux.core) cached, and a second
    # import of ``flux`` would then lack them as attributes: forget them first (a None
    # entry is someone blocking the import on purpose, and stays).
    for name, module in list(sys.modules.items()):
        if module is not None and (name == "flux" or name.startswith("flux.")):
            del sys.modules[name]
    if _load_libflux_beside(shutil.which("flux")):
        try:
            return _import_flux()
        except (ImportError, OSError) as exc:
            error = exc
    raise OptionalDependencyError(
        "the flux scheduler (it needs flux-core, i.e. libflux-core.so.2 on the linker's path "
        "or beside the 'flux' command on PATH, plus the flux-python release matching it)",
        "flux", "flux") from error


def _import_flux() -> Any:
    import flux
    import flux.job

    return flux


def libflux_dir(command: str | None = None) -> Path | None:
    """The directory holding libflux-core beside ``<prefix>/bin/flux`` (default: the flux on
    PATH), for a process that imports flux itself (Maestro's conductor) to find it."""
    command = command or shutil.which("flux")
    if command is None:
        return None
    prefix = Path(command).resolve().parent.parent
    return next((d for d in (prefix / "lib", prefix / "lib64") if (d / _LIBFLUX[-1]).exists()),
                None)


def _load_libflux_beside(command: str | None) -> bool:
    """Load flux-core's libraries from ``<prefix>/lib`` of ``<prefix>/bin/flux``; True if the
    core library is now loaded (a later ``import flux`` then finds it by its soname)."""
    libdir = libflux_dir(command) if command else None
    if libdir is None:
        return False
    try:
        for name in _LIBFLUX:
            ctypes.CDLL(str(libdir / name), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


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
    spec.setattr("system.job.name", scheduler_name(job))
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
    the queue, bank, ``nested``, ``urgency`` and the throttle.

    Thread-safe: a flux handle must not be shared between threads, so each calling thread
    gets its own connection. A ``queue`` on a broker that has only the anonymous queue (a
    test instance, a user's own ``flux start``) is dropped with one warning, as Maestro's
    Flux adapter does; flux itself refuses a queue that a broker with queues lacks.
    """

    key: ClassVar[str] = "flux"
    # Jobs outlive the manager and are found again by id when it restarts.
    jobs_survive_manager: ClassVar[bool] = True
    finds_by_name: ClassVar[bool] = True

    def __init__(self, settings: SchedulerPlan) -> None:
        self._flux = import_flux()
        self._uri = settings.flux.uri
        self._local = threading.local()
        self._nested = settings.flux.nested
        self._bank = settings.bank
        self._urgency = settings.flux.urgency
        self._throttle = SubmitThrottle.from_settings(settings)
        self._queue = self._usable_queue(settings.queue)

    def _handle(self) -> Any:
        """This thread's connection to the broker, opened on first use."""
        handle = getattr(self._local, "handle", None)
        if handle is None:
            try:
                handle = self._flux.Flux(self._uri) if self._uri else self._flux.Flux()
            except OSError as exc:
                where = self._uri or os.environ.get("FLUX_URI") or "the default URI"
                raise SchedulerError(
                    f"cannot connect to the Flux broker at {where}: {exc}; run inside a Flux "
                    "instance, or set FLUX_URI (or the scheduler option 'uri') to its URI"
                ) from exc
            self._local.handle = handle
        return handle

    def _usable_queue(self, queue: str | None) -> str | None:
        """``queue``, or None when the broker has no named queues to put it in."""
        if queue is None:
            return None
        try:
            config = self._handle().rpc("config.get").get()
        except OSError:
            return queue  # config not readable here: let flux judge the queue at submission
        if config.get("queues"):
            return queue
        log.warning("the Flux instance at %s has only the anonymous queue: ignoring queue %r",
                    self._uri or os.environ.get("FLUX_URI", "the default URI"), queue)
        return None

    def submit(self, job: JobRequest) -> str:
        name, workdir = begin_submit(job, self._throttle)
        script = workdir / f"{name}.flux.sh"
        body = substitute_launcher(job_body(job), launcher_for(job, self._nested))
        script.write_text(f"#!/bin/bash\n\n{body}\n")
        script.chmod(0o755)
        spec = build_jobspec(self._flux.job, job, script, nested=self._nested,
                             queue=self._queue, bank=self._bank)
        try:
            job_id = self._flux.job.submit(self._handle(), spec, urgency=self._urgency)
        except OSError as exc:
            # Flux's own reason, e.g. "unsatisfiable request: need 1 slot(s) with 5 GPU(s) ..."
            raise SchedulerError(f"flux refused job {name}: {exc.strerror or exc}") from exc
        return str(job_id.f58)  # JobID objects do not pickle; the f58 string round-trips

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        parsed = self._job_ids(ids, strict=False)
        if parsed:
            listing = self._flux.job.JobList(self._handle(), ids=list(parsed.values()))
            for info in listing.jobs():
                found[str(info.id.f58)] = _status(info)
        unknown = JobStatus(JobState.UNKNOWN, reason="flux does not list it")
        return {i: found.get(str(parsed[i].f58), unknown) if i in parsed else unknown
                for i in ids}

    def find(self, names: Sequence[str], since: float) -> dict[str, str]:
        wanted = set(names)
        if not wanted:
            return {}
        # One job-list query for this user's jobs, active or ended since `since`, matched by
        # name here. A constraint naming them costs a comparison per name and job, which
        # job-list refuses past a limit (500 names over 10,000 jobs: "Excessive comparisons
        # made"); the plain listing took 0.55 s for those 10,000 jobs, and the dicts are read
        # directly: JobList's JobInfo objects took another 1.3 s. max_entries 0: no limit.
        rpc = self._flux.job.job_list(self._handle(), max_entries=0, attrs=["name"],
                                      since=max(since - _FIND_MARGIN, 0.0))
        try:
            jobs = rpc.get_jobs()
        except OSError as exc:
            raise SchedulerError(f"flux cannot list jobs: {exc.strerror or exc}") from exc
        found: dict[str, int] = {}
        for job in jobs:
            name, job_id = job.get("name"), int(job["id"])
            if name in wanted and (name not in found or job_id < found[name]):
                found[name] = job_id  # of several under one name, the first submitted
        return {name: str(self._flux.job.JobID(job_id).f58) for name, job_id in found.items()}

    def cancel(self, ids: Sequence[str]) -> None:
        for job_id in self._job_ids(ids, strict=True).values():
            with contextlib.suppress(OSError):  # already inactive: nothing to cancel
                self._flux.job.cancel(self._handle(), job_id)

    def close(self) -> None:
        """Drop every thread's connection (flux closes a handle when it is collected; an
        explicit close is refused); running jobs are left to the broker."""
        self._local = threading.local()

    def _job_ids(self, ids: Sequence[str], *, strict: bool) -> dict[str, Any]:
        """Each id that flux can parse, as a JobID; the others refused (``strict``) or left out."""
        parsed: dict[str, Any] = {}
        bad = []
        for text in dict.fromkeys(ids):
            try:
                parsed[text] = self._flux.job.JobID(text)
            except (ValueError, TypeError):
                bad.append(text)
        if bad and strict:
            raise SchedulerError(f"not Flux job ids: {', '.join(map(repr, bad))}")
        return parsed


def _status(info: Any) -> JobStatus:
    abbrev = str(info.status_abbrev)
    state = FLUX_STATES.get(abbrev, JobState.UNKNOWN)
    if state is JobState.UNKNOWN:
        return JobStatus(state, None, f"flux status {abbrev}")
    if abbrev not in _TERMINAL_ABBREVS:
        return JobStatus(state)
    return JobStatus(state, _exit_code(getattr(info, "returncode", None)), _exception(info))


def _exit_code(raw: object) -> int | None:
    """flux-python's ``returncode`` as a shell would report it.

    A task killed by signal N makes the job shell exit 128+N, which flux passes on as is
    (a timeout is SIGALRM: 142); only a job shell itself killed by N is reported as -N.
    """
    if not isinstance(raw, int) or isinstance(raw, bool) or raw == _CANCELLED_BEFORE_RUN:
        return None
    return raw if raw >= 0 else 128 - raw


def _exception(info: Any) -> str:
    """Flux's own words for why a job ended early ("alloc: unsatisfiable request: ...")."""
    exc = getattr(info, "exception", None)
    if exc is None or not getattr(exc, "occurred", False):
        return ""
    note = str(getattr(exc, "note", "") or "")
    return f"{exc.type}: {note}" if note else str(exc.type)

"""Flux through flux-python, imported only when the adapter is built (flux-core is rare)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from mummi_spec.errors import OptionalDependencyError, SchedulerError
from mummi_spec.plan import SchedulerPlan
from mummi_spec.runtime.schedulers import fluxlist
from mummi_spec.runtime.schedulers._common import (
    SubmitThrottle,
    begin_submit,
    job_body,
    substitute_launcher,
)
from mummi_spec.runtime.schedulers.base import JobRequest, JobState, JobStatus, SchedulerBase
from mummi_spec.runtime.schedulers.fluxspec import (
    KILL_TIMEOUT,
    JobspecTexts,
    environment_json,
    launcher_for,
)

# Parsed job ids kept at most (a dict of this size is a few MB).
_PARSED_IDS = 100_000
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


class FluxScheduler(SchedulerBase):
    """Submits jobspecs to the broker at ``options.uri``, else ``FLUX_URI``; the plan gives
    the queue, bank, ``urgency`` and the throttle, each job whether it is ``nested``.

    Thread-safe: a flux handle must not be shared between threads, so each calling thread
    gets its own connection. A ``queue`` on a broker that has only the anonymous queue (a
    test instance, a user's own ``flux start``) is dropped with one warning, as Maestro's
    Flux adapter does; flux itself refuses a queue that a broker with queues lacks.
    """

    key: ClassVar[str] = "flux"
    # Jobs outlive the manager and are found again by id when it restarts.
    jobs_survive_manager: ClassVar[bool] = True
    nested_instances: ClassVar[bool] = True
    finds_by_name: ClassVar[bool] = True

    def __init__(self, settings: SchedulerPlan) -> None:
        self._flux = import_flux()
        self._uri = settings.flux.uri
        self._local = threading.local()
        self._kill_timeout: float | None = None  # the broker's, read at the first nested job
        self._parsed: dict[str, int] = {}  # job id text -> number
        self._records = fluxlist.JobRecords(self._flux)
        self._bank = settings.bank
        self._urgency = settings.flux.urgency
        self._throttle = SubmitThrottle.from_settings(settings)
        self._queue = self._usable_queue(settings.queue)
        self._texts = JobspecTexts(self._flux.job, queue=self._queue, bank=self._bank,
                                   kill_timeout=self._broker_kill_timeout)

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

    def _broker_kill_timeout(self) -> float:
        """Seconds the broker's job-exec waits between SIGTERM and SIGKILL, as it runs."""
        if self._kill_timeout is None:
            try:
                stats = self._handle().rpc("job-exec.stats-get").get()
                self._kill_timeout = float(stats["kill-timeout"])
            except (OSError, KeyError, TypeError, ValueError):
                self._kill_timeout = KILL_TIMEOUT  # not ours to read (a guest of the system)
        return self._kill_timeout

    def submit(self, job: JobRequest) -> str:
        (result,) = self.submit_many([job])
        if isinstance(result, Exception):
            raise result
        return result

    def submit_many(self, jobs: Sequence[JobRequest]) -> list[str | SchedulerError | OSError]:
        """Every job sent before any answer is awaited: the broker's ingest takes ~30 ms or
        more to answer one submission here, and answers hundreds sent together about as
        fast."""
        handle = self._handle()
        environment = environment_json(os.environ)  # every job's: encoded once
        out: list[str | SchedulerError | OSError] = []
        sent: dict[int, tuple[str, Any]] = {}  # index in out -> the job's name, its future
        for job in jobs:
            try:
                name, spec = self._jobspec(job, environment)
            except (SchedulerError, OSError) as exc:  # OSError: its directory not made
                out.append(exc)
                continue
            try:
                future = self._flux.job.submit_async(handle, spec, urgency=self._urgency)
            except OSError as exc:
                out.append(_refused(name, exc))
                continue
            sent[len(out)] = name, future
            out.append("")  # its id, below
        names = [name for name, _ in sent.values()]
        got = fluxlist.answers(handle, [future for _, future in sent.values()], _job_id)
        for index, name, answer in zip(sent, names, got, strict=True):
            out[index] = answer if isinstance(answer, str) else _refused(name, answer)
        return out

    def _jobspec(self, job: JobRequest, environment: str) -> tuple[str, str]:
        """The job's name and jobspec text, its work directory made."""
        name, workdir = begin_submit(job, self._throttle, nests=self.nested_instances)
        body = substitute_launcher(job_body(job), launcher_for(job))
        return name, self._texts.text(job, workdir, body, environment)

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        parsed = self._job_ids(ids, strict=False)
        found = self._records.get(self._handle(), sorted(set(parsed.values())))
        unknown = JobStatus(JobState.UNKNOWN, reason="flux does not list it")
        return {i: fluxlist.status_of(self._flux, found[parsed[i]])
                if i in parsed and parsed[i] in found else unknown for i in ids}

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
        handle = self._handle()
        fluxlist.answers(handle, [self._flux.job.cancel_async(handle, number) for number
                                  in self._job_ids(ids, strict=True).values()], _answered)


    def close(self) -> None:
        """Drop every thread's connection (flux closes a handle when it is collected; an
        explicit close is refused); running jobs are left to the broker."""
        self._local = threading.local()

    def _job_ids(self, ids: Sequence[str], *, strict: bool) -> dict[str, int]:
        """Each id that flux can parse, as a number; the others refused (``strict``) or left
        out. Parsed once each: flux-python's JobID costs ~30 us, a poll asks for thousands."""
        parsed: dict[str, int] = {}
        bad = []
        for text in dict.fromkeys(ids):
            number = self._parsed.get(text)
            if number is None:
                try:
                    number = int(self._flux.job.JobID(text))
                except (ValueError, TypeError):
                    bad.append(text)
                    continue
                if len(self._parsed) >= _PARSED_IDS:
                    self._parsed.clear()
                self._parsed[text] = number
            parsed[text] = number
        if bad and strict:
            raise SchedulerError(f"not Flux job ids: {', '.join(map(repr, bad))}")
        return parsed


def _job_id(future: Any) -> str | OSError:
    """The id a submission's future answers, or why flux refused it."""
    try:
        return str(future.get_id().f58)  # JobID objects do not pickle; f58 text round-trips
    except OSError as exc:
        return exc


def _refused(name: str, exc: OSError) -> SchedulerError:
    # Flux's own reason, e.g. "unsatisfiable request: need 1 slot(s) with 5 GPU(s) ..."
    return SchedulerError(f"flux refused job {name}: {exc.strerror or exc}")


def _answered(future: Any) -> None:
    with contextlib.suppress(OSError):  # already inactive: nothing to cancel
        future.get()

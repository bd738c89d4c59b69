"""Job states from Flux's job-list service (the few attributes a status needs, one listing of
the active jobs when many ids are asked about), and many requests' answers awaited at once."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from mummi_spec.runtime.schedulers.base import JobState, JobStatus

R = TypeVar("R")

# flux-jobs(1) "JOB STATUS" abbreviations; tests check coverage.
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
# What a status is made of; asking job-list for all attributes took half again as long, and
# flux-python's JobInfo over them another 0.3 ms per job (it builds a class for each).
ATTRS = ("state", "result", "waitstatus", "exception_occurred", "exception_type",
         "exception_note")
# Past this many ids, and when they are a quarter or more of our active jobs, one listing of
# these, then each id missing from it on its own, beats one request per id: a listed job
# costs ~0.05 ms, a request ~0.2 ms here (1,000 active ids: ~0.05 s against ~0.25 s).
FEW_IDS = 50
LISTED_SHARE = 4
# How often (in calls) the count of our active jobs is taken again while asking by id.
RECOUNT = 20
# flux-jobs(1) RC of a job cancelled before it ran: it has no exit code.
_CANCELLED_BEFORE_RUN = -128


def answers(handle: Any, futures: Sequence[Any], receive: Callable[[Any], R]) -> list[R]:
    """``receive(future)`` for each of ``futures`` (requests already sent on ``handle``), in
    their order, called as the answers arrive on the handle's reactor; ``receive`` must not
    raise. Awaiting futures one by one gave each a reactor of its own, with a file
    descriptor, until it was collected: with 5,000 cancels so awaited, libev aborted the
    process ("I/O watcher with invalid fd found in epoll_ctl")."""
    out: list[R | None] = [None] * len(futures)
    left = len(futures)

    def answered(future: Any, index: int) -> None:
        nonlocal left
        out[index] = receive(future)
        left -= 1
        if left == 0:
            handle.reactor_stop()

    for index, future in enumerate(futures):
        future.then(answered, index)
    if futures:
        handle.reactor_run()
    return out  # type: ignore[return-value]  # every entry was answered


class JobRecords:
    """job-list's records of the ids asked about, asked for the cheaper way: one listing of
    our active jobs when the ids are a good part of them, else one request per id. Other
    campaigns of the same user make the listing longer; their count is taken again every
    ``RECOUNT`` calls."""

    def __init__(self, flux: Any) -> None:
        self._flux = flux
        self._active = 0  # our active jobs at the last listing
        self._calls = 0

    def get(self, handle: Any, ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
        """The record (``ATTRS`` and ``id``) of each of ``ids`` that job-list knows."""
        found: dict[int, Mapping[str, Any]] = {}
        rest = list(ids)
        self._calls += 1
        if len(rest) > FEW_IDS and (len(rest) * LISTED_SHARE >= self._active
                                    or self._calls % RECOUNT == 0):
            wanted = set(rest)
            active = self._flux.job.job_list(
                handle, max_entries=0, attrs=list(ATTRS),
                states=self._flux.constants.FLUX_JOB_STATE_ACTIVE).get_jobs()
            self._active = len(active)
            found = {r["id"]: r for r in active if r["id"] in wanted}
            rest = [i for i in rest if i not in found]  # ended, or too new for the listing
        attrs = list(ATTRS)
        futures = [self._flux.job.job_list_id(handle, i, attrs) for i in rest]
        for record in answers(handle, futures, _record):
            if record is not None:
                found[record["id"]] = record
        return found


def _record(future: Any) -> Mapping[str, Any] | None:
    try:
        record: Mapping[str, Any] = future.get_job()
    except OSError:  # ENOENT: never submitted here, or purged since
        return None
    return record


def status_of(flux: Any, record: Mapping[str, Any]) -> JobStatus:
    """The status a job-list record says."""
    abbrev = str(flux.job.info.statustostr(record["state"], record.get("result", ""), "S"))
    state = FLUX_STATES.get(abbrev, JobState.UNKNOWN)
    if state is JobState.UNKNOWN:
        return JobStatus(state, None, f"flux status {abbrev}")
    if abbrev not in _TERMINAL_ABBREVS:
        return JobStatus(state)
    return JobStatus(state, exit_code(returncode(flux, record)), _exception(record))


def returncode(flux: Any, record: Mapping[str, Any]) -> int | None:
    """flux-jobs(1) RC: the job shell's exit code, minus the signal that killed it, -128 for a
    job cancelled before it ran, 1 for one that failed before it ran."""
    status = record.get("waitstatus")
    if isinstance(status, int) and not isinstance(status, bool):
        return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    result = record.get("result")
    if result == flux.constants.FLUX_JOB_RESULT_CANCELED:
        return _CANCELLED_BEFORE_RUN
    return 1 if result == flux.constants.FLUX_JOB_RESULT_FAILED else None


def exit_code(raw: int | None) -> int | None:
    """A returncode as a shell would report it.

    A task killed by signal N makes the job shell exit 128+N, which flux passes on as is
    (a timeout is SIGALRM: 142); only a job shell itself killed by N is reported as -N.
    """
    if raw is None or raw == _CANCELLED_BEFORE_RUN:
        return None
    return raw if raw >= 0 else 128 - raw


def _exception(record: Mapping[str, Any]) -> str:
    """Flux's own words for why a job ended early ("alloc: unsatisfiable request: ...")."""
    if not record.get("exception_occurred"):
        return ""
    kind, note = record.get("exception_type", ""), record.get("exception_note", "")
    return f"{kind}: {note}" if note else str(kind)

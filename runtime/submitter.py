"""Submission: attempts the book recorded become scheduler jobs, a few at a time in parallel.

A refused round backs off (1, 2, 4 ... 60 s); the refused attempts are the book's to requeue.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from mummi_spec.errors import SchedulerError, WorkspaceError
from mummi_spec.runtime.book import Book
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.jobs import Selected, attempt_request
from mummi_spec.runtime.ledger import JobRow
from mummi_spec.runtime.schedulers.base import JobRequest, SchedulerAdapter
from mummi_spec.runtime.writes import Writes

log = logging.getLogger("mummi.manager")

_THREADS = 4  # batches at once: they hide sbatch's round trip; more only contend on slurmctld
_MAX_BACKOFF = 60.0
# Test hook (tests/reliability/test_submit_window.py): the attempt whose name matches this
# glob, once the scheduler has taken it, writes its job id to PAUSED in its work directory
# and hangs there, so that a test can kill the manager inside the submit window.
PAUSE_AFTER_SUBMIT = "MUMMI_TEST_PAUSE_AFTER_SUBMIT"
PAUSED = "paused-after-submit"


class _InlineExecutor(Executor):
    """Runs each call at once in the caller's thread: submissions one by one, in order."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


class Submitter:
    """Hands attempts to the scheduler; ``threads=False`` submits in order, in this thread."""

    def __init__(self, campaign: Campaign, scheduler: SchedulerAdapter, book: Book,
                 now: Callable[[], float], writes: Writes, *, threads: bool = True) -> None:
        self.campaign = campaign
        self.scheduler = scheduler
        self.book = book
        self.now = now
        self.writes = writes
        self._paths = campaign.python_paths()
        self.refused = 0  # submissions refused in all
        self.refusal = ""  # the scheduler's reason, the last time it refused
        self.backoff = 1.0  # the wait after the next refused round
        self.backoff_until = 0.0
        self._pool: Executor = ThreadPoolExecutor(
            _THREADS, thread_name_prefix="mummi-submit") if threads else _InlineExecutor()

    def ready(self, now: float) -> bool:
        """Whether submissions may go out now (not backing off)."""
        return now >= self.backoff_until

    def submit(self, rows: list[JobRow]) -> int:
        """Submit the attempts; returns how many the scheduler refused."""
        if not rows:
            return 0
        requests = [self.request(row) for row in rows]
        for req in requests:  # every attempt finds its job's state directory there
            state = Path(req.env["MUMMI_STATE_DIR"])
            self.writes.run(state, partial(state.mkdir, parents=True, exist_ok=True))
        # One batch per thread: an adapter sends a batch at once where its scheduler answers
        # that faster (Flux), or one job after another.
        size = -(-len(requests) // _THREADS)
        batches = [requests[i:i + size] for i in range(0, len(requests), size)]
        futures = [self._pool.submit(self._submit_batch, b) for b in batches]
        results: list[str | SchedulerError | WorkspaceError] = []
        for batch, fut in zip(batches, futures, strict=True):
            try:
                results += fut.result()
            except SchedulerError as exc:  # the whole batch: e.g. no connection
                results += [exc] * len(batch)
        refused = 0
        failed: WorkspaceError | None = None
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, WorkspaceError):  # the others of the round are recorded
                failed = failed or result
                continue
            if isinstance(result, SchedulerError):
                log.warning("submission of %s refused: %s; backing off %.0f s", row.name,
                            result, self.backoff)
                refused += 1
                self.refusal = str(result)
                self.book.refused(row.name, str(result), self.now())
                continue
            self.book.accepted(row.name, result)
        # Once per round, not per refused job: a refused batch of 500 would otherwise jump
        # straight to the longest wait.
        self.refused += refused
        if refused:
            self.backoff_until = self.now() + self.backoff
            self.backoff = min(self.backoff * 2, _MAX_BACKOFF)
        else:
            self.backoff = 1.0
        if failed is not None:
            raise failed
        return refused

    def _submit_batch(self, batch: list[JobRequest]
                      ) -> list[str | SchedulerError | WorkspaceError]:
        """Submit a batch; a job whose directory the disk refused is submitted again alone,
        through the write retries (it never reached the scheduler, so it runs once)."""
        results: list[str | SchedulerError | WorkspaceError] = []
        for req, result in zip(batch, self.scheduler.submit_many(batch), strict=True):
            if not isinstance(result, OSError):
                results.append(result)
                continue
            try:
                results.append(self.writes.run(req.workdir, partial(self.scheduler.submit, req)))
            except (SchedulerError, WorkspaceError) as exc:
                results.append(exc)
        self._pause_if_asked(batch, results)
        return results

    @staticmethod
    def _pause_if_asked(batch: list[JobRequest],
                        results: list[str | SchedulerError | WorkspaceError]) -> None:
        """The test hook ``PAUSE_AFTER_SUBMIT``: hang once the scheduler took the attempt."""
        pause = os.environ.get(PAUSE_AFTER_SUBMIT)
        if not pause:
            return
        for req, sched_id in zip(batch, results, strict=True):
            if isinstance(sched_id, str) and fnmatch.fnmatchcase(req.name, pause):
                marker = Path(req.workdir) / PAUSED
                marker.with_suffix(".tmp").write_text(f"{sched_id}\n")
                marker.with_suffix(".tmp").replace(marker)  # whole, for the test waiting on it
                threading.Event().wait()  # until the test kills the process

    def request(self, row: JobRow) -> JobRequest:
        """The job request of an attempt."""
        selected = None
        if row.sim is not None:
            sim = self.book.sims[row.sim]
            selected = Selected(sim.name, sim.candidate, sim.coupling, sim.setup_dir)
        c = self.campaign
        request = attempt_request(c.plan, row.job_type, name=row.name, attempt=row.attempt,
                                  workdir=row.workdir, workspace=c.workspace,
                                  plan_path=c.plan_path, python=sys.executable,
                                  selected=selected, restart=self.book.restarts(row),
                                  pythonpath=self._paths)
        return replace(request, sched_name=row.sched_name or "")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

"""Submission: attempts the book recorded become scheduler jobs, a few at a time in parallel.

A refused round backs off (1, 2, 4 ... 60 s); the refused attempts are the book's to requeue.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mummi_spec.errors import SchedulerError
from mummi_spec.runtime.book import Book
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.jobs import Selected, attempt_request
from mummi_spec.runtime.ledger import JobRow
from mummi_spec.runtime.schedulers.base import JobRequest, SchedulerAdapter

log = logging.getLogger("mummi.manager")

_THREADS = 4  # batches at once: they hide sbatch's round trip; more only contend on slurmctld
_MAX_BACKOFF = 60.0


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
                 now: Callable[[], float], *, threads: bool = True) -> None:
        self.campaign = campaign
        self.scheduler = scheduler
        self.book = book
        self.now = now
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
            Path(req.env["MUMMI_STATE_DIR"]).mkdir(parents=True, exist_ok=True)
        # One batch per thread: an adapter sends a batch at once where its scheduler answers
        # that faster (Flux), or one job after another.
        size = -(-len(requests) // _THREADS)
        batches = [requests[i:i + size] for i in range(0, len(requests), size)]
        futures = [self._pool.submit(self.scheduler.submit_many, b) for b in batches]
        results: list[str | SchedulerError] = []
        for batch, fut in zip(batches, futures, strict=True):
            try:
                results += fut.result()
            except SchedulerError as exc:  # the whole batch: e.g. no connection
                results += [exc] * len(batch)
        refused = 0
        for row, result in zip(rows, results, strict=True):
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
        return refused

    def request(self, row: JobRow) -> JobRequest:
        """The job request of an attempt."""
        selected = None
        if row.sim is not None:
            sim = self.book.sims[row.sim]
            selected = Selected(sim.name, sim.candidate, sim.coupling, sim.setup_dir)
        c = self.campaign
        return attempt_request(c.plan, row.job_type, name=row.name, attempt=row.attempt,
                               workdir=row.workdir, workspace=c.workspace,
                               plan_path=c.plan_path, python=sys.executable,
                               selected=selected, restart=self.book.restarts(row),
                               pythonpath=self._paths)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

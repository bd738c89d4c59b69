"""The poller: the scheduler's word on live attempts, judged by the job's success rule."""

from __future__ import annotations

from pathlib import Path

from mummi_spec.plan import Plan
from mummi_spec.runtime import tracker
from mummi_spec.runtime.book import Book
from mummi_spec.runtime.schedulers.base import SchedulerAdapter
from mummi_spec.runtime.states import AttemptState


class Poller:
    """Asks the scheduler every ``scheduler.poll`` seconds and tells the book what moved."""

    def __init__(self, plan: Plan, scheduler: SchedulerAdapter, book: Book) -> None:
        self.plan = plan
        self.scheduler = scheduler
        self.book = book
        self.last = -float("inf")

    def poll(self, now: float) -> None:
        book = self.book
        if now - self.last < self.plan.scheduler.poll or not book.live:
            return
        self.last = now
        ids = book.by_sched_id
        # ``changed`` leaves out the ids whose state has not moved since it last answered:
        # with thousands of long simulations, most polls then look at a few jobs.
        for sched_id, status in self.scheduler.changed(list(ids)).items():
            live = book.live.get(ids.get(sched_id, ""))
            if live is None:
                continue
            row = live.row
            state, reason = tracker.outcome(self.plan.job(row.job_type), status,
                                            Path(row.workdir))
            if state is None or state == row.state:
                continue
            if state in (AttemptState.QUEUED, AttemptState.RUNNING):
                book.observe(row.name, state, now)
            else:
                book.ended(row, state, reason, now, exit_code=status.exit_code)

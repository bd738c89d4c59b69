"""`mummi replay --when budget`: ask for selections when the new plan's policy would.

The real book and policy (book.py, policy.py) run on a virtual clock from the campaign's start
to its last recorded event, one tick every ``manager.tick`` of the new plan, over a ledger in
a temporary directory. Every job they start takes as long as the campaign's own job of that
type with the same start order (submission to end, so queue waits count), cycling when the
replay starts more than the campaign did; a job type the campaign never ran takes its plan's
``expect.duration``, else one tick. Every job succeeds: failures and retries are not modelled.
"""

from __future__ import annotations

import heapq
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from mummi_spec.plan import Plan
from mummi_spec.runtime.book import Book, Pipeline
from mummi_spec.runtime.history import History
from mummi_spec.runtime.ledger import JobRow, Ledger, pick_rows
from mummi_spec.runtime.policy import Policy
from mummi_spec.runtime.replay_feed import Asked, Feeder
from mummi_spec.runtime.selectors.base import Selector
from mummi_spec.runtime.states import AttemptState


def recorded_durations(history: History) -> dict[str, list[float]]:
    """Per job type, the campaign's completed spawned jobs' times, in submission order."""
    out: dict[str, list[float]] = {}
    for job_type, start, end in history.rows(
            "SELECT job_type, submitted_at, ended_at FROM jobs WHERE state = 'completed' "
            "AND sim IS NOT NULL AND submitted_at IS NOT NULL AND ended_at IS NOT NULL "
            "ORDER BY submitted_at, rowid"):
        out.setdefault(job_type, []).append(max(0.0, float(end) - float(start)))
    return out


def at_budget(plan: Plan, history: History, selectors: Mapping[str, Selector],
              feeder: Feeder) -> dict[str, list[Asked]]:
    """The select calls the new plan's policy makes over the recorded arrivals."""
    out: dict[str, list[Asked]] = {name: [] for name in plan.couplings}
    times = recorded_durations(history)
    started: Counter[str] = Counter()

    def duration(job_type: str) -> float:
        known = times.get(job_type)
        i = started[job_type]
        started[job_type] += 1
        if known:
            return known[i % len(known)]
        return plan.job(job_type).expect.duration or plan.manager.tick

    with tempfile.TemporaryDirectory(prefix="mummi-replay-") as tmp:
        ledger = Ledger(Path(tmp) / "ledger.sqlite")
        try:
            book = Book(plan, ledger, Path(tmp))

            def select(pipe: Pipeline, n: int, now: float) -> None:
                name = pipe.plan.selector
                feeder.feed(name, t=now)
                sel = selectors[name]
                ids = sel.select(n)
                out[pipe.name].append(Asked(now, n, pick_rows(ids, sel.last_picks())))
                book.select(pipe, ids, now)

            _run(plan, book, Policy(plan, book, select), history, duration)
        finally:
            ledger.close()
    return out


def _run(plan: Plan, book: Book, policy: Policy, history: History,
         duration: Callable[[str], float]) -> None:
    """Tick from the campaign's start to its end; jobs end when their time is up."""
    start, end, tick = history.started, history.end(), plan.manager.tick
    running: list[tuple[float, int, JobRow]] = []
    seq = 0
    for i in range(int((end - start) / tick) + 1):
        now = start + i * tick  # not a running sum: no drift over a long campaign
        while running and running[0][0] <= now:
            t, _, row = heapq.heappop(running)
            book.ended(row, AttemptState.COMPLETED, "", t, exit_code=0)
        for row in policy.decide(now):
            book.accepted(row.name, row.name)
            book.observe(row.name, AttemptState.RUNNING, now)
            seq += 1
            heapq.heappush(running, (now + duration(row.job_type), seq, row))
        if not running and all(p.selected >= p.cap and not (p.waiting or p.ready)
                               for p in book.pipes.values()):
            break

"""The policy: what to select and start each tick, and when a campaign has ended, from the book."""

from __future__ import annotations

from collections.abc import Callable

from mummi_spec.plan import Plan
from mummi_spec.runtime.book import Book, Pipeline
from mummi_spec.runtime.ledger import JobRow

# Ticks in a row with nothing to do and no source left, per candidate stream, before a
# campaign counts as ended: ingest runs on its own period and may still bring candidates.
_EXHAUSTED_TICKS = 3
_EXHAUSTED_GRACE = 10

SelectFn = Callable[[Pipeline, int, float], None]


class Policy:
    """Decides from the book and the plan; the book makes the changes, the manager submits."""

    def __init__(self, plan: Plan, book: Book, select: SelectFn) -> None:
        self.plan = plan
        self.book = book
        self.select = select
        self.streams = len({c.source for c in plan.couplings.values()})
        self._exhausted = 0

    def decide(self, now: float) -> list[JobRow]:
        """This tick's new attempts, in submission order (their resources are held already).

        Per coupling: set-up sims onto free simulation slots, oldest first; then setups, so
        that ready + setting-up covers the ready buffer and the free slots; then selections,
        bounded by back-pressure, the per-iteration cap and the campaign cap.
        """
        book = self.book
        per_iteration = self.plan.scheduler.per_iteration
        batch: list[JobRow] = []
        for pipe in book.pipes.values():
            if book.stalled(pipe):
                continue
            cp = pipe.plan
            while pipe.ready and len(batch) < per_iteration and \
                    book.slots(pipe, cp.simulation) > 0:
                batch.append(book.start_simulation(pipe, now))
            in_setup = book.live_by[(pipe.name, cp.setup)] if cp.setup else 0
            want = cp.ready_buffer + book.slots(pipe, cp.simulation)
            while pipe.waiting and len(batch) < per_iteration:
                if cp.setup is None:
                    book.skip_setup(pipe)
                    continue
                if len(pipe.ready) + in_setup >= want or book.slots(pipe, cp.setup) <= 0:
                    break
                batch.append(book.start_setup(pipe, now))
                in_setup += 1
            pending = len(pipe.waiting) + in_setup + len(pipe.ready)
            n = min(want - pending, cp.max_pending - pending,
                    cp.max_selections_per_iteration, pipe.cap - pipe.selected)
            if n > 0:
                self.select(pipe, n, now)
        return batch

    def finished(self) -> str | None:
        """Why the campaign has ended, or None while it has not."""
        book = self.book
        if any(lj.row.sim is not None for lj in book.live.values()):
            return None
        active = [p for p in book.pipes.values() if not book.stalled(p)]
        if any(p.waiting or p.ready for p in active):
            return None
        if all(p.selected >= p.cap for p in active):
            return ("every coupling reached its share of manager.max_simulations"
                    if active else "no coupling can run: a job type's program cannot start")
        # Sources exhausted: no persistent job left, no sim in flight, nothing to select. A
        # persistent job the scheduler refused is not gone: it is submitted again.
        if book.persistent_retry or any(lj.row.sim is None for lj in book.live.values()):
            self._exhausted = 0
            return None
        self._exhausted += 1
        if self._exhausted > _EXHAUSTED_TICKS * max(1, self.streams) + _EXHAUSTED_GRACE:
            return "the sources are exhausted: no persistent job runs and nothing is left to select"
        return None

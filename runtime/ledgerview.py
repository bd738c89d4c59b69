"""A read-only view of a campaign's ledger for the report, the live view and diff (never writes)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mummi_spec.errors import LedgerError
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.states import AttemptState, SimState


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row of the jobs table with its times (seconds since the campaign started)."""

    name: str
    job_type: str
    sim: str | None
    attempt: int
    state: AttemptState
    sched_id: str | None
    exit_code: int | None
    reason: str | None
    workdir: str
    gpus: int
    cores: int
    submitted: float | None
    started: float | None
    ended: float | None


@dataclass(frozen=True, slots=True)
class Selection:
    """One row of the sims table with its times (seconds since the campaign started)."""

    sim: str
    coupling: str
    candidate: str
    seq: int
    state: SimState
    reason: str | None
    selected: float
    ended: float | None


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, for the live view's last lines."""

    t: float
    text: str


class LedgerView:
    """Queries over one ledger through a read-only connection; ``snapshot()`` makes several
    of them see the same moment while the manager goes on writing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = Ledger.open_readonly(self.path)
        self.t0 = float(self.meta("started") or 0.0)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LedgerView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same committed state."""
        self._rows("BEGIN")
        try:
            yield
        finally:
            self._db.rollback()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger ({exc})") from None

    def _t(self, value: float | None) -> float | None:
        return None if value is None else float(value) - self.t0

    # ------------------------------------------------------------------ tables
    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return None if not rows else str(rows[0][0])

    def selections(self) -> list[Selection]:
        """Every selection, in the order it was made."""
        return [Selection(s, c, k, q, SimState(st), why, float(at) - self.t0, self._t(end))
                for s, c, k, q, st, why, at, end in self._rows(
                    "SELECT sim, coupling, candidate, seq, state, reason, selected_at, ended_at"
                    " FROM sims ORDER BY seq")]

    def attempts(self, where: str = "", args: tuple[Any, ...] = (), *, latest: int | None = None
                 ) -> list[Attempt]:
        """Job attempts (``where``: an SQL condition on the jobs table) as recorded, or the
        ``latest`` ones to end, latest first."""
        sql = ("SELECT name, job_type, sim, attempt, state, sched_id, exit_code, reason, workdir,"
               " gpus, cores, submitted_at, started_at, ended_at FROM jobs"
               + (f" WHERE {where}" if where else ""))
        if latest is None:
            sql += " ORDER BY rowid"
        else:
            sql += " ORDER BY ended_at DESC, rowid DESC LIMIT ?"
            args = (*args, latest)
        return [Attempt(n, jt, sim, a, AttemptState(st), sid, x, why, w, g, c, self._t(sub),
                        self._t(start), self._t(end))
                for n, jt, sim, a, st, sid, x, why, w, g, c, sub, start, end
                in self._rows(sql, args)]

    def pipelines(self) -> dict[str, Counter[str]]:
        """coupling -> sims in each state."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for coupling, state, n in self._rows(
                "SELECT coupling, state, COUNT(*) FROM sims GROUP BY coupling, state"):
            out[coupling][state] = n
        return dict(out)

    def attempt_counts(self) -> Counter[tuple[str, str]]:
        """(job type, state) -> attempts."""
        return Counter({(t, st): int(n) for t, st, n in self._rows(
            "SELECT job_type, state, COUNT(*) FROM jobs GROUP BY job_type, state")})

    def failed_attempts(self, latest: int) -> list[Attempt]:
        """The ``latest`` attempts to fail or time out, latest first."""
        return self.attempts("state IN ('failed', 'timedout')", latest=latest)

    def rejected(self) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
        """Candidates refused at ingest: count per stream, and the first few with the reason."""
        counts = {s: int(n) for s, n in self._rows(
            "SELECT stream, COUNT(*) FROM rejected GROUP BY stream ORDER BY stream")}
        examples = [(s, k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k), why)
                    for s, k, why in self._rows(
                        "SELECT stream, key, reason FROM rejected ORDER BY stream, key LIMIT 20")]
        return counts, examples

    def consumed(self, loop: str) -> dict[int, list[str]]:
        """iteration -> the feedback items it consumed."""
        out: dict[int, list[str]] = defaultdict(list)
        for key, iteration in self._rows(
                "SELECT key, iteration FROM consumed WHERE loop = ? ORDER BY iteration, key",
                (loop,)):
            out[int(iteration)].append(key)
        return dict(out)

    def feedback(self) -> dict[str, tuple[int, int, dict[str, Any]]]:
        """loop -> (iterations, items consumed, the aggregator's running state)."""
        return {loop: (int(i), int(n), json.loads(state)) for loop, i, n, state in self._rows(
            "SELECT loop, iteration, items, state FROM feedback ORDER BY loop")}

    def occupancy(self) -> list[tuple[float, int, int, int, int]]:
        return [(float(t), int(g), int(c), int(r), int(q)) for t, g, c, r, q in self._rows(
            "SELECT t, busy_gpus, busy_cores, running, queued FROM occupancy ORDER BY t")]

    # ------------------------------------------------------------------ events
    def events(self, limit: int) -> list[Event]:
        """The last ``limit`` things the ledger saw happen, oldest first: selections, jobs
        starting and ending, simulations given up on."""
        rows = self._rows(
            "SELECT t, what FROM ("
            " SELECT selected_at AS t, 'selected ' || candidate || ' as ' || sim AS what"
            "  FROM sims"
            " UNION ALL SELECT ended_at, sim || ' gave up: ' || COALESCE(reason, 'no reason')"
            "  FROM sims WHERE state = 'failed'"
            " UNION ALL SELECT started_at, name || ' started' FROM jobs"
            "  WHERE started_at IS NOT NULL"
            " UNION ALL SELECT ended_at, name || ' ' || state || CASE WHEN state = 'completed'"
            "  THEN '' ELSE COALESCE(' (exit ' || exit_code || ')', '') END"
            "  || COALESCE(': ' || reason, '') FROM jobs WHERE ended_at IS NOT NULL)"
            " ORDER BY t DESC, what DESC LIMIT ?", (limit,))
        return [Event(float(t) - self.t0, str(what)) for t, what in reversed(rows)]

"""The campaign's durable record (SQLite): selections, jobs, consumed feedback, occupancy."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mummi_spec.errors import LedgerError
from mummi_spec.runtime.states import AttemptState, SimState

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sims (
    sim TEXT PRIMARY KEY, coupling TEXT NOT NULL, candidate TEXT NOT NULL,
    seq INTEGER NOT NULL, state TEXT NOT NULL, setup_dir TEXT, reason TEXT,
    selected_at REAL NOT NULL, ended_at REAL,
    UNIQUE (coupling, candidate));
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY, job_type TEXT NOT NULL, sim TEXT, attempt INTEGER NOT NULL,
    state TEXT NOT NULL, sched_id TEXT, exit_code INTEGER, reason TEXT, workdir TEXT NOT NULL,
    gpus INTEGER NOT NULL, cores INTEGER NOT NULL, submitted_at REAL, started_at REAL,
    ended_at REAL,
    -- schema 3: the attempt's unique name at the scheduler, by which a restarted manager
    -- finds the job of an attempt a crash left 'submitting' (runtime/book.py, recover)
    sched_name TEXT);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS consumed (
    loop TEXT NOT NULL, key TEXT NOT NULL, iteration INTEGER NOT NULL,
    PRIMARY KEY (loop, key));
CREATE TABLE IF NOT EXISTS feedback (
    loop TEXT PRIMARY KEY, iteration INTEGER NOT NULL, items INTEGER NOT NULL,
    state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    stream TEXT NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (stream, key));
CREATE TABLE IF NOT EXISTS occupancy (
    t REAL NOT NULL, busy_gpus INTEGER NOT NULL, busy_cores INTEGER NOT NULL,
    running INTEGER NOT NULL, queued INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job attempt."""

    name: str
    job_type: str
    sim: str | None
    attempt: int
    state: AttemptState
    sched_id: str | None
    workdir: str
    gpus: int
    cores: int
    exit_code: int | None = None
    reason: str | None = None
    started: bool = False  # the scheduler started it (it may have left checkpoints)
    # schema 3
    sched_name: str | None = None  # its unique name at the scheduler (JobRequest.sched_name)


@dataclass(frozen=True, slots=True)
class SimRow:
    """One selection."""

    sim: str
    coupling: str
    candidate: str
    seq: int
    state: SimState
    setup_dir: str | None
    reason: str | None


class Ledger:
    """One SQLite file, one connection shared by the manager's threads under a lock.

    WAL mode with ``synchronous=NORMAL``: a committed transaction survives the process being
    killed (only a power cut can lose the last few), and readers such as ``mummi status`` never
    block the manager.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            found = self.meta("schema_version")
            if found is None:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            elif found != str(SCHEMA_VERSION):
                raise LedgerError(f"{self.path}: ledger schema {found}, this mummi writes "
                                  f"{SCHEMA_VERSION}; use a new workspace")
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot open the ledger ({exc})") from None

    @classmethod
    def open_readonly(cls, path: Path) -> sqlite3.Connection:
        """A read-only connection for ``mummi status`` (never creates or migrates anything)."""
        if not Path(path).exists():
            raise LedgerError(f"{path}: no ledger here; is this a campaign workspace?")
        return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ meta
    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ sims
    def add_sims(self, rows: Iterable[tuple[str, str, str, int, float]]) -> None:
        """Record new selections ``(sim, coupling, candidate, seq, t)`` in state ``selected``."""
        with self.transaction() as db:
            db.executemany("INSERT INTO sims (sim, coupling, candidate, seq, state, selected_at)"
                           " VALUES (?, ?, ?, ?, 'selected', ?)", rows)

    def set_sim(self, sim: str, state: SimState, *, setup_dir: str | None = None,
                reason: str | None = None, t: float | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE sims SET state = ?, setup_dir = COALESCE(?, setup_dir),"
                       " reason = COALESCE(?, reason), ended_at = COALESCE(?, ended_at)"
                       " WHERE sim = ?", (state, setup_dir, reason, t, sim))

    def sims(self, states: Sequence[SimState] | None = None) -> list[SimRow]:
        sql = "SELECT sim, coupling, candidate, seq, state, setup_dir, reason FROM sims"
        args: tuple[str, ...] = ()
        if states is not None:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args = tuple(states)
        return [SimRow(s, c, k, q, SimState(st), d, why)
                for s, c, k, q, st, d, why in self._rows(sql + " ORDER BY seq", args)]

    def selected_candidates(self, coupling: str) -> set[str]:
        return {r[0] for r in self._rows("SELECT candidate FROM sims WHERE coupling = ?",
                                         (coupling,))}

    def next_seq(self) -> int:
        return int(self._rows("SELECT COALESCE(MAX(seq), 0) FROM sims")[0][0]) + 1

    def sim_candidates(self) -> dict[str, tuple[str, str]]:
        """sim -> (coupling, candidate), for weighting feedback by selector weights."""
        return {s: (c, k) for s, c, k in self._rows("SELECT sim, coupling, candidate FROM sims")}

    # ------------------------------------------------------------------ jobs
    def add_job(self, job: JobRow, t: float) -> None:
        """Record a job before it is submitted, so a crash mid-submit leaves a trace."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO jobs (name, job_type, sim, attempt, state,"
                       " sched_id, workdir, gpus, cores, submitted_at, sched_name)"
                       " VALUES (?, ?, ?, ?, 'submitting', NULL, ?, ?, ?, ?, ?)",
                       (job.name, job.job_type, job.sim, job.attempt, job.workdir, job.gpus,
                        job.cores, t, job.sched_name))

    def set_job(self, name: str, state: AttemptState, *, sched_id: str | None = None,
                exit_code: int | None = None, reason: str | None = None,
                t: float | None = None, started: float | None = None) -> None:
        """A new state; ``t`` is when it ended, ``started`` when the scheduler started it."""
        with self.transaction() as db:
            db.execute("UPDATE jobs SET state = ?, sched_id = COALESCE(?, sched_id),"
                       " exit_code = COALESCE(?, exit_code), reason = COALESCE(?, reason),"
                       " ended_at = COALESCE(?, ended_at),"
                       " started_at = COALESCE(started_at, ?) WHERE name = ?",
                       (state, sched_id, exit_code, reason, t, started, name))

    def jobs(self, states: Sequence[AttemptState] | None = None) -> list[JobRow]:
        sql = ("SELECT name, job_type, sim, attempt, state, sched_id, workdir, gpus, cores,"
               " exit_code, reason, started_at IS NOT NULL, sched_name FROM jobs")
        args: tuple[str, ...] = ()
        if states is not None:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args = tuple(states)
        return [JobRow(n, t, s, a, AttemptState(st), i, w, g, c, x, why, bool(started), u)
                for n, t, s, a, st, i, w, g, c, x, why, started, u
                in self._rows(sql + " ORDER BY rowid", args)]

    def oldest_submitting(self) -> float | None:
        """When the oldest attempt still ``submitting`` (a crash left it so) was recorded."""
        (t,) = self._rows("SELECT MIN(submitted_at) FROM jobs WHERE state = 'submitting'")[0]
        return None if t is None else float(t)

    # -------------------------------------------------------------- feedback
    def consumed(self, loop: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` this loop has already aggregated."""
        out: set[str] = set()
        for i in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = list(keys[i:i + 500])
            out.update(r[0] for r in self._rows(
                f"SELECT key FROM consumed WHERE loop = ? AND key IN "
                f"({','.join('?' * len(chunk))})", (loop, *chunk)))
        return out

    def feedback_state(self, loop: str) -> tuple[int, int, dict[str, Any]]:
        """(iteration, items consumed so far, aggregator state) of a feedback loop."""
        rows = self._rows("SELECT iteration, items, state FROM feedback WHERE loop = ?", (loop,))
        if not rows:
            return 0, 0, {}
        return int(rows[0][0]), int(rows[0][1]), json.loads(rows[0][2])

    def commit_feedback(self, loop: str, iteration: int, items: int, state: dict[str, Any],
                        keys: Sequence[str]) -> None:
        """The consumed keys and the new aggregate, atomically: each item counts exactly once."""
        with self.transaction() as db:
            db.executemany("INSERT INTO consumed VALUES (?, ?, ?)",
                           [(loop, k, iteration) for k in keys])
            db.execute("INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?)",
                       (loop, iteration, items, json.dumps(state, sort_keys=True)))

    # ---------------------------------------------------------------- ingest
    def reject(self, stream: str, items: Sequence[tuple[str, str]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO rejected VALUES (?, ?, ?)",
                           [(stream, _sql_key(k), why) for k, why in items])

    def rejected(self, stream: str) -> set[str]:
        return {k.decode("utf-8", "surrogatepass") if isinstance(k, bytes) else k
                for k, in self._rows("SELECT key FROM rejected WHERE stream = ?", (stream,))}

    # ------------------------------------------------------------- occupancy
    def record_occupancy(self, t: float, gpus: int, cores: int, running: int,
                         queued: int) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO occupancy VALUES (?, ?, ?, ?, ?)",
                       (t, gpus, cores, running, queued))

    def occupancy(self) -> list[tuple[float, int, int, int, int]]:
        return [tuple(r) for r in self._rows("SELECT * FROM occupancy ORDER BY t")]


def _sql_key(key: str) -> str | bytes:
    """``key`` as SQLite can hold it. A name listed from a directory or Redis that is not
    UTF-8 arrives with surrogates, which SQLite's text refuses: it is kept as a BLOB of
    those code points, which ``rejected`` turns back into the same string."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return key.encode("utf-8", "surrogatepass")
    return key

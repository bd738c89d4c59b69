"""The campaign's durable record (SQLite): selections, jobs, consumed feedback, occupancy."""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mummi_spec.errors import LeaseLostError, LedgerError
from mummi_spec.runtime.selectors.base import Pick
from mummi_spec.runtime.states import AttemptState, Holder, SimState
from mummi_spec.runtime.writes import Writes

T = TypeVar("T")

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

-- Schema 3: one manager per workspace (runtime/lease.py). At most one row: the lease's
-- holder (process identity, heartbeat, the staleness bound it declared), the run token
-- that lets a `mummi run` hand it to its manager, when it was released, and the first stop
-- request addressed to it.
CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY CHECK (id = 1), token TEXT NOT NULL, holder TEXT NOT NULL,
    host TEXT NOT NULL, proc TEXT NOT NULL, pid INTEGER NOT NULL, taken REAL NOT NULL,
    heartbeat REAL NOT NULL, stale_after REAL NOT NULL, released REAL, stop TEXT);

-- ---- The steering record (schema 3; `mummi replay` and `mummi explain`, docs/steering.md).
-- batches/arrivals: every add() a selector was given, in order, with the encodings as given
--   (float32 little-endian: stores may move or delete items, and a replay must not depend
--   on them); a batch is one ingest chunk of one stream, numbered over every stream. No index
--   on the key: it would double the cost of recording a batch; explain scans instead.
-- calls: every call that changes a selector's state: 'select' (the policy asked for `asked`)
--   and 'weights' (a feedback loop's weights bring new candidates into the ranked set);
--   `after_batch` is the last batch the selector had been given when it was called.
-- picks: what a select call returned, in order (rank 1 first), the queue and score of each
--   and the sim it became (NULL when the book already had it).
-- fed: per feedback iteration and simulation, the items (a JSON list of keys) it wrote that
--   the iteration consumed: one row per sim, not per item, so a 70,000-item iteration costs
--   a few thousand rows.
-- runs: each manager start; `previous` is the outcome the last run left ('running': it
--   crashed) and `rebuilt` the selectors restarted without a checkpoint.
CREATE TABLE IF NOT EXISTS batches (
    batch INTEGER PRIMARY KEY, stream TEXT NOT NULL, pass INTEGER NOT NULL, t REAL NOT NULL,
    n INTEGER NOT NULL, dim INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS arrivals (
    batch INTEGER NOT NULL, pos INTEGER NOT NULL, key TEXT NOT NULL, tag TEXT,
    point BLOB NOT NULL, PRIMARY KEY (batch, pos)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    call INTEGER PRIMARY KEY, kind TEXT NOT NULL, selector TEXT NOT NULL, coupling TEXT,
    t REAL NOT NULL, asked INTEGER NOT NULL, after_batch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS picks (
    call INTEGER NOT NULL, rank INTEGER NOT NULL, candidate TEXT NOT NULL,
    queue TEXT NOT NULL, score REAL, sim TEXT, PRIMARY KEY (call, rank)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS picks_candidate ON picks (candidate);
CREATE TABLE IF NOT EXISTS fed (
    loop TEXT NOT NULL, iteration INTEGER NOT NULL, sim TEXT NOT NULL, keys TEXT NOT NULL,
    PRIMARY KEY (loop, iteration, sim)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fed_sim ON fed (sim);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY, t REAL NOT NULL, previous TEXT, rebuilt TEXT NOT NULL);
"""
_LEASE = ("SELECT token, holder, host, proc, pid, taken, heartbeat, stale_after, released, stop"
          " FROM lease WHERE id = 1")


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
class LeaseRow:
    """Who holds the workspace, since when, and whether someone asked it to stop."""

    token: str  # this holding's run token
    holder: Holder
    host: str
    proc: str  # where the pid means this process (lease.process_identity); "" if unknown
    pid: int
    taken: float
    heartbeat: float  # wall-clock time of the last renewal
    stale_after: float  # seconds without a heartbeat after which the holder is presumed dead
    released: float | None = None
    stop: str | None = None  # who asked the holder to stop, once someone has


def read_lease(db: sqlite3.Connection) -> LeaseRow | None:
    """The lease row through any connection (a read-only one too); None before schema 3."""
    try:
        row = db.execute(_LEASE).fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None:
        return None
    token, holder, *rest = row
    return LeaseRow(token, Holder(holder), *rest)


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


class CallKind(str, enum.Enum):
    """A recorded call that changed a selector's state."""

    SELECT = "select"  # the policy asked for selections
    WEIGHTS = "weights"  # a feedback loop asked for weights (ranks the new candidates)


@dataclass(frozen=True, slots=True)
class PickRow:
    """One id a select call returned: how it was chosen, and the sim the book made of it."""

    candidate: str
    how: Pick
    sim: str | None = None  # None: the book had it already (or, being written, not known yet)


def pick_rows(ids: Sequence[str], how: Sequence[Pick]) -> tuple[PickRow, ...]:
    """What a select returned (``ids``) with its ``last_picks()``, as rows."""
    return tuple(PickRow(i, h) for i, h in zip(ids, how, strict=True))


@dataclass(frozen=True, slots=True)
class CallRow:
    """One selector call of the steering record; a select's picks in the order returned."""

    call: int
    kind: CallKind
    selector: str
    coupling: str | None
    t: float
    asked: int
    after_batch: int  # the last batch the selector had been given
    picks: tuple[PickRow, ...] = ()


class Ledger:
    """One SQLite file, one connection shared by the manager's threads under a lock.

    WAL mode with ``synchronous=NORMAL``: a committed transaction survives the process being
    killed (only a power cut can lose the last few), and readers such as ``mummi status`` never
    block the manager. Each write is one transaction, tried again through ``writes`` while
    the disk refuses it (by default not at all: a ``WorkspaceError`` at once).
    """

    def __init__(self, path: Path, writes: Writes | None = None) -> None:
        self.path = Path(path)
        self.writes = writes or Writes()
        self._lock = threading.RLock()
        # The lease token this process holds: once set, every transaction first checks it
        # still does, so a manager that lost its lease (stalled past the bound and taken over)
        # can commit nothing, and so submit nothing, beside the new holder.
        self.fence: str | None = None
        self._call_lock = threading.Lock()  # not _lock: a long commit must not hold up a pick
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
            # Damage found now, before a run starts, not by the query that meets it.
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check(1)")]
            if problems != ["ok"]:  # "*** in database main ***\nOn tree page 7 ...": one line
                raise self._damaged(" ".join(" ".join(problems).split()))
            self._last_call = int(self._rows("SELECT COALESCE(MAX(call), 0) FROM calls")[0][0])
        except sqlite3.Error as exc:
            raise self._damaged(str(exc)) if _corrupt(exc) else LedgerError(
                f"{self.path}: cannot open the ledger ({exc})") from None

    def _damaged(self, why: str) -> LedgerError:
        return LedgerError(
            f"{self.path}: the ledger is damaged ({why}); restore it from a copy, or salvage "
            f"what SQLite can read (`sqlite3 {self.path.name} .recover | sqlite3 "
            f"recovered.sqlite`, then move recovered.sqlite over it); or start the campaign "
            "afresh in another --workspace")

    @classmethod
    def open_readonly(cls, path: Path) -> sqlite3.Connection:
        """A read-only connection for ``mummi status`` (never creates or migrates anything)."""
        if not Path(path).exists():
            raise LedgerError(f"{path}: no ledger here; is this a campaign workspace?")
        return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)

    @contextmanager
    def transaction(self, *, fenced: bool = True) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all (and none once this process
        lost its lease, unless ``fenced`` is False: taking a new one)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if fenced and self.fence is not None and self._db.execute(
                        "SELECT 1 FROM lease WHERE id = 1 AND token = ? AND released IS NULL",
                        (self.fence,)).fetchone() is None:
                    raise LeaseLostError(f"{self.path}: this process no longer holds the "
                                         "workspace's lease; it writes nothing more")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _write(self, fn: Callable[[sqlite3.Connection], T], *, fenced: bool = True) -> T:
        """``fn(db)`` in one transaction; all of it again if the disk refused the commit."""

        def once() -> T:
            with self.transaction(fenced=fenced) as db:
                return fn(db)

        try:
            return self.writes.run(self.path, once)
        except sqlite3.DatabaseError as exc:
            if _corrupt(exc):
                raise self._damaged(str(exc)) from None
            raise

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                if _corrupt(exc):
                    raise self._damaged(str(exc)) from None
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ meta
    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                          (key, value)))

    # ----------------------------------------------------------------- lease
    def lease(self) -> LeaseRow | None:
        with self._lock:
            return read_lease(self._db)

    def take_lease(self, row: LeaseRow, may: Callable[[LeaseRow | None], bool]
                   ) -> LeaseRow | None:
        """Write ``row`` as the lease if ``may(current)`` allows, in one transaction: None
        then, else the current holder's row. A stop request stays with its token."""

        def take(db: sqlite3.Connection) -> LeaseRow | None:
            current = read_lease(db)
            if not may(current):
                return current
            stop = current.stop if current is not None and current.token == row.token \
                else None
            db.execute("INSERT OR REPLACE INTO lease VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                       (row.token, row.holder, row.host, row.proc, row.pid, row.taken,
                        row.heartbeat, row.stale_after, stop))
            return None

        return self._write(take, fenced=False)

    def renew_lease(self, token: str, holder: Holder, t: float) -> LeaseRow | None:
        """A heartbeat at ``t`` for ``token``'s lease as ``holder`` holds it: its row, or
        None once it does not (released, handed to the manager, or taken over)."""

        def renew(db: sqlite3.Connection) -> LeaseRow | None:
            if db.execute("UPDATE lease SET heartbeat = ? WHERE token = ? AND holder = ? AND"
                          " released IS NULL", (t, token, holder)).rowcount == 0:
                return None
            return read_lease(db)

        return self._write(renew)

    def stop_lease(self, token: str, who: str) -> bool:
        """Ask ``token``'s holder to stop (the first request is the one kept)."""
        return self._write(lambda db: db.execute(
            "UPDATE lease SET stop = COALESCE(stop, ?) WHERE token = ? AND released IS NULL",
            (who, token)).rowcount > 0)

    def release_lease(self, token: str, t: float) -> None:
        self._write(lambda db: db.execute(
            "UPDATE lease SET released = ? WHERE token = ? AND released IS NULL", (t, token)))

    # ------------------------------------------------------------------ sims
    def add_sims(self, rows: Iterable[tuple[str, str, str, int, float]],
                 call: CallRow | None = None) -> None:
        """Record new selections ``(sim, coupling, candidate, seq, t)`` in state ``selected``,
        with the select ``call`` they came from, in one transaction."""
        rows = list(rows)  # a retry writes them again

        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO sims (sim, coupling, candidate, seq, state, selected_at)"
                           " VALUES (?, ?, ?, ?, 'selected', ?)", rows)
            if call is not None:
                _insert_call(db, call, {cand: sim for sim, _, cand, _, _ in rows})

        self._write(write)

    def set_sim(self, sim: str, state: SimState, *, setup_dir: str | None = None,
                reason: str | None = None, t: float | None = None) -> None:
        self._write(lambda db: db.execute(
            "UPDATE sims SET state = ?, setup_dir = COALESCE(?, setup_dir),"
            " reason = COALESCE(?, reason), ended_at = COALESCE(?, ended_at)"
            " WHERE sim = ?", (state, setup_dir, reason, t, sim)))

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
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO jobs (name, job_type, sim, attempt, state,"
            " sched_id, workdir, gpus, cores, submitted_at, sched_name)"
            " VALUES (?, ?, ?, ?, 'submitting', NULL, ?, ?, ?, ?, ?)",
            (job.name, job.job_type, job.sim, job.attempt, job.workdir, job.gpus, job.cores, t,
             job.sched_name)))

    def set_job(self, name: str, state: AttemptState, *, sched_id: str | None = None,
                exit_code: int | None = None, reason: str | None = None,
                t: float | None = None, started: float | None = None) -> None:
        """A new state; ``t`` is when it ended, ``started`` when the scheduler started it."""
        self._write(lambda db: db.execute(
            "UPDATE jobs SET state = ?, sched_id = COALESCE(?, sched_id),"
            " exit_code = COALESCE(?, exit_code), reason = COALESCE(?, reason),"
            " ended_at = COALESCE(?, ended_at), started_at = COALESCE(started_at, ?)"
            " WHERE name = ?", (state, sched_id, exit_code, reason, t, started, name)))

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

    def consumed_keys(self, loop: str) -> set[str]:
        """Every key this loop has aggregated."""
        return {r[0] for r in self._rows("SELECT key FROM consumed WHERE loop = ?", (loop,))}

    def feedback_state(self, loop: str) -> tuple[int, int, dict[str, Any]]:
        """(iteration, items consumed so far, aggregator state) of a feedback loop."""
        rows = self._rows("SELECT iteration, items, state FROM feedback WHERE loop = ?", (loop,))
        if not rows:
            return 0, 0, {}
        return int(rows[0][0]), int(rows[0][1]), json.loads(rows[0][2])

    def commit_feedback(self, loop: str, iteration: int, items: int, state: dict[str, Any],
                        keys: Sequence[str], sims: Sequence[str | None] = ()) -> None:
        """The consumed keys and the new aggregate, atomically: each item counts exactly once.
        ``sims``: the simulation that wrote each key, where its record names one."""
        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO consumed VALUES (?, ?, ?)",
                           [(loop, k, iteration) for k in keys])
            by_sim: dict[str, list[str]] = {}
            for key, sim in zip(keys, sims, strict=False):
                if sim:
                    by_sim.setdefault(sim, []).append(key)
            db.executemany("INSERT INTO fed VALUES (?, ?, ?, ?)",
                           [(loop, iteration, sim, json.dumps(k)) for sim, k in by_sim.items()])
            db.execute("INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?)",
                       (loop, iteration, items, json.dumps(state, sort_keys=True)))

        self._write(write)

    # ---------------------------------------------------------------- ingest
    def reject(self, stream: str, items: Sequence[tuple[str, str]]) -> None:
        rows = [(stream, _sql_key(k), why) for k, why in items]
        self._write(lambda db: db.executemany("INSERT OR IGNORE INTO rejected VALUES (?, ?, ?)",
                                              rows))

    def rejected(self, stream: str) -> set[str]:
        return {sql_text(k) for k, in self._rows("SELECT key FROM rejected WHERE stream = ?",
                                                 (stream,))}

    # ------------------------------------------------------------- occupancy
    def record_occupancy(self, t: float, gpus: int, cores: int, running: int,
                         queued: int) -> None:
        self._write(lambda db: db.execute("INSERT INTO occupancy VALUES (?, ?, ?, ?, ?)",
                                          (t, gpus, cores, running, queued)))

    def occupancy(self) -> list[tuple[float, int, int, int, int]]:
        return [tuple(r) for r in self._rows("SELECT * FROM occupancy ORDER BY t")]

    # -------------------------------------------------------- steering record
    def record_batch(self, stream: str, ingest_pass: int, t: float, keys: Sequence[str],
                     tags: Sequence[str | None] | None, points: np.ndarray) -> int:
        """Record the items of one add() to the stream's selectors; returns the batch number
        (one more than any batch of any stream so far)."""
        pts = np.ascontiguousarray(points, dtype="<f4")
        n, dim = pts.shape
        tag_of = tags if tags is not None else [None] * n
        def write(db: sqlite3.Connection) -> int:
            batch = int(db.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM batches"
                                   ).fetchone()[0])
            db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                       (batch, stream, ingest_pass, t, n, dim))
            db.executemany("INSERT INTO arrivals VALUES (?, ?, ?, ?, ?)",
                           [(batch, i, _sql_key(k), tag, pts[i].tobytes())
                            for i, (k, tag) in enumerate(zip(keys, tag_of, strict=True))])
            return batch

        return self._write(write)

    def last_batch(self) -> int:
        """The number of the last batch recorded (0: none yet)."""
        return int(self._rows("SELECT COALESCE(MAX(batch), 0) FROM batches")[0][0])

    def last_pass(self, stream: str) -> int:
        """The last ingest pass of ``stream`` that recorded a batch (0: none yet)."""
        return int(self._rows("SELECT COALESCE(MAX(pass), 0) FROM batches WHERE stream = ?",
                              (stream,))[0][0])

    def next_call(self) -> int:
        """The number of the next selector call. Taken while holding the selector's lock, so
        the numbers order the calls on one selector as they happened, whatever the thread."""
        with self._call_lock:
            self._last_call += 1
            return self._last_call

    def record_call(self, call: CallRow) -> None:
        """A call that selected nothing for the book (a feedback loop's weights)."""
        self._write(lambda db: _insert_call(db, call, {}))

    def record_run(self, t: float, previous: str | None, rebuilt: Sequence[str]) -> None:
        """A manager started; ``previous`` is the outcome the last run left."""
        self._write(lambda db: db.execute(
            "INSERT INTO runs (t, previous, rebuilt) VALUES (?, ?, ?)",
            (t, previous, ",".join(rebuilt))))


def _insert_call(db: sqlite3.Connection, call: CallRow, sims: Mapping[str, str]) -> None:
    db.execute("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
               (call.call, call.kind.value, call.selector, call.coupling, call.t, call.asked,
                call.after_batch))
    db.executemany("INSERT INTO picks VALUES (?, ?, ?, ?, ?, ?)",
                   [(call.call, rank, p.candidate, p.how.queue, p.how.score,
                     sims.get(p.candidate)) for rank, p in enumerate(call.picks, start=1)])


def _sql_key(key: str) -> str | bytes:
    """``key`` as SQLite can hold it. A name listed from a directory or Redis that is not
    UTF-8 arrives with surrogates, which SQLite's text refuses: it is kept as a BLOB of
    those code points, which ``sql_text`` turns back into the same string."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return key.encode("utf-8", "surrogatepass")
    return key


# SQLite's primary result code for a database file it finds damaged: SQLITE_CORRUPT
# (https://www.sqlite.org/rescode.html); a file that is no database at all is NOTADB (26).
_CORRUPT = 11


def _corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite found the file damaged."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is None:  # 3.10 raises damage as the bare class, its subclasses for the rest
        return type(exc) is sqlite3.DatabaseError
    return bool(code & 0xFF == _CORRUPT)


def sql_text(value: str | bytes) -> str:
    """A key ``_sql_key`` stored, as the string it was."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value

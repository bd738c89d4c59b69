"""A workspace's steering record read back (read-only): arrivals, selector calls, picks, runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from mummi_spec.errors import LedgerError, UsageError
from mummi_spec.plan import Plan, PlanError
from mummi_spec.runtime.ledger import (
    SCHEMA_VERSION,
    CallKind,
    CallRow,
    Ledger,
    PickRow,
    sql_text,
)
from mummi_spec.runtime.selectors.base import Pick

LEDGER = "ledger.sqlite"


@dataclass(frozen=True)
class Batch:
    """One add() the selectors of a stream were given."""

    batch: int
    stream: str
    ingest_pass: int  # the stream's ingest pass
    t: float
    keys: tuple[str, ...]
    tags: tuple[str | None, ...] | None  # None: no item had a tag (the selectors got None)
    points: np.ndarray  # len(keys) x dim, float32, as the selectors got them


@dataclass(frozen=True)
class Run:
    """One start of the campaign's manager."""

    run: int
    t: float
    previous: str | None  # the outcome the run before left; 'running': it crashed
    rebuilt: tuple[str, ...]  # selectors restarted without a checkpoint


class History:
    """The ledger of ``workspace``, opened read-only; ``UsageError`` when it is not one."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = Path(workspace)
        path = self.workspace / LEDGER
        if not self.workspace.is_dir():
            raise UsageError(f"{self.workspace}: no such directory; give the workspace of a "
                             "campaign (the spec's `workspace:`, e.g. ./workspace/<name>)")
        if not path.is_file():
            raise UsageError(f"{self.workspace}: not a campaign workspace (no {LEDGER}); give "
                             "the spec's `workspace:` directory, e.g. ./workspace/<name>")
        try:
            self.db = Ledger.open_readonly(path)
            version = self.meta("schema_version")
        except (sqlite3.Error, LedgerError) as exc:
            raise UsageError(f"{path}: not a readable ledger ({exc})") from None
        if version != str(SCHEMA_VERSION):
            self.db.close()
            raise UsageError(f"{path}: ledger schema {version}, written by a mummi without the "
                             f"steering record (schema {SCHEMA_VERSION}); run the campaign "
                             "again with this version to replay or explain it")
        try:
            self.plan = Plan.from_json(self.meta("plan") or "", f"{path} (its plan)")
        except PlanError as exc:
            self.db.close()
            raise UsageError(f"{exc}; the campaign never started in this workspace?") from None
        self.started = float(self.meta("started") or 0.0)

    def close(self) -> None:
        self.db.close()

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, args).fetchall()

    def meta(self, key: str) -> str | None:
        found = self.rows("SELECT value FROM meta WHERE key = ?", (key,))
        return str(found[0][0]) if found else None

    # ------------------------------------------------------------- the record
    def batches(self, streams: Sequence[str] | None = None) -> list[Batch]:
        """Every recorded batch (of ``streams`` only, if given), in order."""
        rows = self.rows("SELECT b.batch, b.stream, b.pass, b.t, b.n, b.dim, a.key, a.tag, "
                         "a.point FROM batches b JOIN arrivals a ON a.batch = b.batch "
                         "ORDER BY b.batch, a.pos")
        out = []
        for (batch, stream, ingest_pass, t, n, dim), group in groupby(rows, key=lambda r: r[:6]):
            if streams is not None and stream not in streams:
                continue
            items = [r[6:] for r in group]
            if len(items) != n:
                raise UsageError(f"{self.workspace / LEDGER}: batch {batch} lists {n} items "
                                 f"but holds {len(items)}; the ledger is damaged")
            tags = tuple(tag for _, tag, _ in items)
            points = np.frombuffer(b"".join(p for *_, p in items), dtype="<f4")
            out.append(Batch(batch, stream, ingest_pass, t, tuple(sql_text(k) for k, *_ in items),
                             None if all(x is None for x in tags) else tags,
                             points.reshape(n, dim)))
        return out

    def calls(self, kind: CallKind | None = None) -> list[CallRow]:
        """Every recorded selector call (of ``kind`` only, if given) with its picks, in order."""
        picks: dict[int, list[PickRow]] = {}
        for call, cand, queue, score, sim in self.rows(
                "SELECT call, candidate, queue, score, sim FROM picks ORDER BY call, rank"):
            picks.setdefault(call, []).append(PickRow(cand, Pick(queue, score), sim))
        out = []
        for call, k, selector, coupling, t, asked, after in self.rows(
                "SELECT call, kind, selector, coupling, t, asked, after_batch FROM calls "
                "ORDER BY call"):
            if kind is None or k == kind.value:
                out.append(CallRow(call, CallKind(k), selector, coupling, t, asked, after,
                                   tuple(picks.get(call, ()))))
        return out

    def runs(self) -> list[Run]:
        return [Run(r, t, prev, tuple(x for x in rebuilt.split(",") if x))
                for r, t, prev, rebuilt in self.rows(
                    "SELECT run, t, previous, rebuilt FROM runs ORDER BY run")]

    def end(self) -> float:
        """The last time the record knows of (a batch, a call or a job's end)."""
        found = self.rows("SELECT MAX(t) FROM (SELECT MAX(t) AS t FROM batches UNION ALL "
                          "SELECT MAX(t) FROM calls UNION ALL SELECT MAX(ended_at) FROM jobs)")
        value = found[0][0] if found else None
        return float(value) if value is not None else self.started


def candidates(batches: Sequence[Batch], stream: str, dim: int) -> tuple[list[str], np.ndarray]:
    """Every candidate ``stream`` delivered, once (its first arrival), in arrival order,
    with its encoding; rows with a NaN or infinite coordinate are left out."""
    keys: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    for b in batches:
        if b.stream != stream:
            continue
        fresh = [i for i, k in enumerate(b.keys) if k not in seen]
        seen.update(b.keys)
        keys += [b.keys[i] for i in fresh]
        rows.append(b.points[fresh])
    points = np.vstack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    finite = np.asarray(np.isfinite(points).all(axis=1))
    return [k for k, ok in zip(keys, finite, strict=True) if ok], points[finite]

"""Benchmark one ingest pass over a huge candidate stream: the journal against a full listing.

    python benchmarks/bench_ingest.py [--quick] [--json out.json]

The workload is the SC'21 CG frame stream (``cg.frames`` of ``specs/rasraf-3scale.yaml``, in
Redis): 1,000,000 frames already ingested (``--quick``: 100,000), 1,000 new ones written
before each timed pass. Ours: ``Ingest.run_once`` reading the store's journal from the cursor
its previous pass left. Baseline, in the same run on the same keys: the same pass through the
full listing (SCAN of every key, minus the known set), which is what a store without a
journal does. The selector only collects ids, so the rows time finding and reading.

Redis on 127.0.0.1:6390 (``scripts/services start redis``; ``MUMMI_REDIS_HOST`` and
``MUMMI_REDIS_PORT`` override), under a fresh key prefix, purged after.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from bench_feedback import REDIS_HOST, REDIS_PORT, SPEC, _redis_missing
from benchlib import clock, main, peak_mb, reset_peak, row, skipped

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ingest import Guarded, Ingest
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.selectors.base import AddResult

STREAM = "cg.frames"
NEW = 1_000


class _Collect:
    """A selector that only counts: the pass's own cost is what is measured."""

    def add(self, ids: list[str], points: Any, tags: Any = None) -> AddResult:
        return AddResult(len(ids))


def _frames(start: int, count: int) -> dict[str, bytes]:
    values = np.random.default_rng(start).random((count, 3), dtype=np.float32)
    return {f"cg-{i % 1000:06d}_f{i:012d}": encode(Record(values[i - start]))
            for i in range(start, start + count)}


def _rows(known_n: int, repeats: int, ws: Path) -> list[dict[str, Any]]:
    plan = compile_loaded(load_spec(SPEC, profile=NO_PROFILE)).plan
    stream = plan.stream(STREAM)
    # The plan's store of the stream, journal included (the compiler journals a candidate
    # stream's namespace), on the benchmark's server, without a password, under a fresh prefix.
    settings = replace(plan.store(stream.store), backend="redis", host=REDIS_HOST,
                       port=REDIS_PORT, password_env=None, prefix=f"bench-{uuid.uuid4().hex}")
    assert stream.namespace in settings.journal, settings
    plan = replace(plan, stores={stream.store: settings})
    campaign = Campaign(plan, ws / "plan.json", ws)
    store = campaign.store(stream.store)
    ledger = Ledger(ws / "ledger.sqlite")
    try:
        known: set[str] = set()
        for start in range(0, known_n, 100_000):
            batch = _frames(start, min(100_000, known_n - start))
            store.put_many(stream.namespace, batch)
            known.update(batch)
        ours = Ingest(STREAM, campaign, ledger, [Guarded(_Collect())], known)
        assert ours.run_once() == 0  # the start-up pass (cursor None): the one full listing
        base = Ingest(STREAM, campaign, ledger, [Guarded(_Collect())], known)
        base._journal = None  # the full-listing path, as on a store without a journal
        mine: list[float] = []
        full: list[float] = []
        reset_peak()
        for k in range(repeats):
            store.put_many(stream.namespace, _frames(known_n + k * NEW, NEW))
            took, got = clock(ours.run_once)
            assert got == NEW, got
            mine.append(took)
            took, got = clock(base.run_once)
            assert got == NEW, got
            full.append(took)
        size = f"{NEW:,} new among {known_n:,} known"
        return [row("ingest", "ingest pass, Redis, from the journal", size, mine, n=NEW,
                    unit="new candidates/s", target="< 10 % of the full listing",
                    met=median(mine) < 0.1 * median(full), baseline_s=median(full),
                    baseline_is="the same pass listing every key (SCAN) minus the known set",
                    peak=peak_mb()),
                row("ingest", "  ingest pass, Redis, full listing (baseline)", size, full,
                    n=NEW, unit="new candidates/s", target="-")]
    finally:
        store.purge()  # type: ignore[attr-defined]
        ledger.close()
        campaign.close()


def run(quick: bool) -> list[dict[str, Any]]:
    """The journal row and its full-listing baseline (``quick``: 100,000 known)."""
    known_n = 100_000 if quick else 1_000_000
    missing = _redis_missing()
    if missing:
        return [skipped("ingest", "ingest pass, Redis, from the journal",
                        f"{NEW:,} new among {known_n:,} known", missing)]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        return _rows(known_n, 3 if quick else 5, Path(tmp))


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

"""Benchmark the steering record and what reads it: recording arrivals, replay, explain.

    python benchmarks/bench_steering.py [--quick] [--json out.json]

The workload is SC'21's patch stream (``macro.patches`` of ``specs/rasraf-3scale.yaml``, base
spec: 9-D farthest-point, IVF index, 4 tagged queues with a ratio): 200,000 patches
(``--quick``: 20,000) arriving in ingest batches of 2,000, each batch followed by 5 select
calls of 10, recorded as the manager records them (``Ledger.record_batch``, then a ``CallRow``
with its picks beside the sims). Rows:

- record: an ingest pass (``Ingest.run_once``) of 2,000 new patches from a memory store (the
  cheapest read there is, so the record's share is the largest it gets) into the selector,
  recorded; the baseline is the same pass with ``record_batch`` doing nothing.
- replay: ``replay`` of the whole record against the same plan (``--when recorded``), which
  reproduces every pick; the baseline is the selector work alone (the same adds and selects
  on a fresh selector, no ledger).
- explain: ``find`` of one sim in that ledger (arrival, call, attempts, feedback).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from benchlib import clock, main, peak_mb, reset_peak, row

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.plan import Plan, StorePlan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.explain_find import find
from mummi_spec.runtime.history import History
from mummi_spec.runtime.ingest import Guarded, Ingest
from mummi_spec.runtime.ledger import CallKind, CallRow, Ledger, pick_rows
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.registry import SELECTORS
from mummi_spec.runtime.replay import replay
from mummi_spec.runtime.selectors.base import Selector

SPEC = Path(__file__).resolve().parent.parent / "specs" / "rasraf-3scale.yaml"
STREAM, COUPLING, SELECTOR = "macro.patches", "macro-to-cg", "patch-selector"
BATCH, CALLS, K = 2_000, 5, 10
QUEUES = ("lipid-only", "ras-only", "ras-raf", "dimer")


def _batches(n: int) -> list[tuple[list[str], np.ndarray, list[str | None]]]:
    rng = np.random.default_rng(0)
    out = []
    for b in range(n // BATCH):
        ids = [f"pfpatch_{b:05d}{i:04d}" for i in range(BATCH)]
        tags: list[str | None] = [QUEUES[i] for i in rng.integers(len(QUEUES), size=BATCH)]
        out.append((ids, rng.random((BATCH, 9), dtype=np.float32), tags))
    return out


def _selector(plan: Plan) -> Selector:
    s: Selector = SELECTORS.get("farthest_point")(plan.selectors[SELECTOR])
    return s


def _campaign(plan: Plan, ws: Path, batches: list[Any]) -> list[float]:
    """Record the campaign as the manager would; returns each record_batch's seconds."""
    ledger = Ledger(ws / "ledger.sqlite")
    ledger.set_meta("plan", plan.to_json())
    ledger.set_meta("started", "0.0")
    sel = _selector(plan)
    took, seq = [], 1
    for b, (ids, points, tags) in enumerate(batches):
        t = 60.0 * b
        seconds, number = clock(ledger.record_batch, STREAM, b + 1, t, ids, tags, points)
        took.append(seconds)
        sel.add(ids, points, tags)
        for c in range(CALLS):
            picked = sel.select(K)
            call = CallRow(ledger.next_call(), CallKind.SELECT, SELECTOR, COUPLING, t + c, K,
                           number, pick_rows(picked, sel.last_picks()))
            ledger.add_sims([(f"cg-{seq + i:06d}", COUPLING, p, seq + i, t + c)
                             for i, p in enumerate(picked)], call)
            seq += len(picked)
    ledger.close()
    return took


def _selector_alone(plan: Plan, batches: list[Any]) -> None:
    sel = _selector(plan)
    for ids, points, tags in batches:
        sel.add(ids, points, tags)
        for _ in range(CALLS):
            sel.select(K)


class _Unrecorded(Ledger):
    """The ledger as it was before the steering record."""

    def record_batch(self, *args: Any, **kwargs: Any) -> int:
        return 0


def _passes(plan: Plan, ws: Path, batches: list[Any]) -> tuple[list[float], list[float]]:
    """Ingest passes of each batch with and without the record, alternately."""
    memory = {n: StorePlan(n, "memory", s.path) for n, s in plan.stores.items()}
    plan = replace(plan, stores=memory)
    rigs = []
    for name, kind in (("recorded", Ledger), ("bare", _Unrecorded)):
        campaign = Campaign(plan, ws / name / "plan.json", ws / name)
        ledger = kind(ws / name / "ledger.sqlite")
        ingest = Ingest(STREAM, campaign, ledger, [Guarded(_selector(plan))], set())
        rigs.append((campaign, ledger, ingest))
    ns = plan.stream(STREAM).namespace
    times: tuple[list[float], list[float]] = ([], [])
    for b, (ids, points, tags) in enumerate(batches):
        items = {k: encode(Record(p, tag=t)) for k, p, t in zip(ids, points, tags, strict=True)}
        order = rigs if b % 2 == 0 else rigs[::-1]  # neither always runs first
        for campaign, _, ingest in order:
            campaign.store(plan.stream(STREAM).store).put_many(ns, items)
            took, got = clock(ingest.run_once)
            assert got == len(ids), got
            times[rigs.index((campaign, _, ingest))].append(took)
    for campaign, ledger, _ in rigs:
        ledger.close()
        campaign.close()
    return times


def run(quick: bool) -> list[dict[str, Any]]:
    n = 20_000 if quick else 200_000
    plan = compile_loaded(load_spec(SPEC, profile=NO_PROFILE)).plan
    batches = _batches(n)
    size = f"{n:,} 9-D patches, {len(batches) * CALLS:,} select calls of {K}"
    with tempfile.TemporaryDirectory(prefix="bench-steering-") as tmp:
        ws = Path(tmp)
        _campaign(plan, ws, batches)
        per_item = (ws / "ledger.sqlite").stat().st_size / n
        recorded, bare = _passes(plan, ws / "passes", batches[:20])
        reset_peak()
        replays, alone = [], []
        for _ in range(3):
            h = History(ws)
            try:
                seconds, result = clock(replay, h, plan)
            finally:
                h.close()
            assert result.couplings[0].identical, "the identity replay must reproduce"
            replays.append(seconds)
            alone.append(clock(_selector_alone, plan, batches)[0])
        peak = peak_mb()
        h = History(ws)
        try:
            sims = len(batches) * CALLS * K
            explains = [clock(find, h, f"cg-{i:06d}")[0]
                        for i in np.linspace(1, sims, 5).astype(int)]
        finally:
            h.close()
    return [
        row("steering", "ingest pass with the steering record", f"{BATCH:,} new 9-D patches "
            f"({per_item:.0f} B each in the ledger)", recorded, n=BATCH, unit="arrivals/s",
            met=median(recorded) < 1.5 * median(bare), baseline_s=median(bare),
            baseline_is="the same pass, memory store, without the record"),
        row("steering", "replay of a campaign against its own spec", size, replays, n=n,
            unit="arrivals/s", met=median(replays) < 2 * median(alone),
            baseline_s=median(alone), baseline_is="the same adds and selects on the selector "
                                                  "alone", peak=peak,
            target="< 2x the selector's own work"),
        row("steering", "explain one sim", f"ledger of {size}", explains,
            met=median(explains) < 1.0, target="< 1 s"),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

"""Benchmark what reads a campaign's workspace: one redraw of `mummi status --watch`, and the
report page (`mummi report`), on a ledger as large as a Summit-scale campaign's.

    python benchmarks/bench_views.py [--quick] [--json out.json]

The workspace is mini's local plan with a hand-made history: N job attempts (setup and
simulation of N/2 selections, every tenth attempt failed with its reason), an occupancy
sample per job start and end, 20,000 candidates in the filesystem store (the report's coverage
sample) and one feedback loop's consumed items. The watch row times ``look`` (status.json and
one ledger snapshot), what each redraw costs; the report row ``write_report`` (figures drawn,
the page written).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import main, row, times

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import load_spec
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import CONSUMED_SUFFIX
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.reportpage import write_report
from mummi_spec.runtime.states import AttemptState, Holder, SimState
from mummi_spec.runtime.status import write_status
from mummi_spec.runtime.watch import look
from mummi_spec.runtime.workspace import claim

SPEC = Path(__file__).resolve().parent.parent / "specs" / "mini.yaml"
WATCH_S = 0.2  # a redraw every second must leave the machine to the campaign
REPORT_S = 10.0


def workspace(root: Path, attempts: int, candidates: int) -> Campaign:
    compiled = compile_loaded(load_spec(SPEC, profile="local"))
    (root / "build").mkdir()
    (root / "build" / "plan.json").write_text(compiled.files["plan.json"])
    c = Campaign.open(root / "build" / "plan.json", root / "ws")
    c.workspace.mkdir()
    ledger = Ledger(c.workspace / "ledger.sqlite")
    lease = claim(c, ledger, Holder.MANAGER, 1.0)
    ledger.set_meta("started", "0.0")
    plan = c.plan
    coupling = next(iter(plan.couplings.values()))
    stream = plan.stream(coupling.source)
    rng = np.random.default_rng(0)
    store = c.store(stream.store)
    for i in range(candidates):
        store.put(stream.namespace, f"structure_{i:06d}",
                  encode(Record(rng.normal(size=stream.dim).astype(np.float32))))
    sims = attempts // 2
    with ledger.transaction() as db:
        db.executemany("INSERT INTO sims VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?)",
                       [(f"cg-{i:06d}", coupling.name, f"structure_{i:06d}", i,
                         SimState.DONE.value, i * 0.5, i * 0.5 + 3600.0)
                        for i in range(sims)])
        db.executemany(
            "INSERT INTO jobs VALUES (?, ?, ?, 1, ?, ?, ?, ?, '/w', 1, 1, ?, ?, ?, NULL)",
            [(f"cg-{i // 2:06d}.{job}.1", job, f"cg-{i // 2:06d}",
              AttemptState.FAILED.value if i % 10 == 9 else AttemptState.COMPLETED.value,
              f"local-{i}", 1 if i % 10 == 9 else 0,
              "exit code 1" if i % 10 == 9 else None, i * 0.25, i * 0.25 + 1, i * 0.25 + 1800)
             for i in range(attempts)
             for job in [coupling.setup if i % 2 == 0 else coupling.simulation]])
        db.executemany("INSERT INTO occupancy VALUES (?, ?, ?, ?, ?)",
                       [(i * 0.25, i % 1000, i % 3000, i % 1000, 0)
                        for i in range(2 * attempts)])
    loop = next(iter(plan.feedback.values()))
    source = plan.stream(loop.source)
    items = [f"fb_{i:06d}" for i in range(min(attempts, 5000))]
    fb = c.store(source.store)
    for key in items:
        fb.put(source.namespace + CONSUMED_SUFFIX, key,
               encode(Record(rng.normal(size=source.dim).astype(np.float32))))
    ledger.commit_feedback(loop.name, 1, len(items), {"sum": [0.0] * source.dim,
                                                      "weight": 1.0}, items)
    lease.release()  # the manager has ended; the views only read
    ledger.close()
    write_status(c.workspace, {"state": "running", "elapsed": attempts * 0.25 + 1800,
                               "candidates": {stream.ref: {"ingested": candidates,
                                                           "rejected": 0, "examples": []}}})
    return c


def run(quick: bool) -> list[dict[str, Any]]:
    """The watch's redraw and the report page on a large ledger (``quick``: a small one)."""
    attempts, candidates = (2_000, 2_000) if quick else (24_000, 20_000)
    size = f"{attempts:,} attempts, {candidates:,} candidates"
    with tempfile.TemporaryDirectory(prefix="bench-views-") as tmp:
        c = workspace(Path(tmp), attempts, candidates)
        watch = times(lambda: look(c), 5 if quick else 20)
        report = times(lambda: write_report(c), 2 if quick else 3)
        page = (c.workspace / "report.html").stat().st_size
        c.close()
    return [row("views", "`status --watch`: one redraw's reads (look)", size, watch,
                met=float(np.median(watch)) < WATCH_S, target=f"< {WATCH_S} s"),
            row("views", f"`mummi report`: the page ({page / 1e6:.1f} MB)", size, report,
                met=float(np.median(report)) < REPORT_S, target=f"< {REPORT_S:g} s")]


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

"""Benchmark `mummi simulate`: 24 simulated hours of the SC'21 campaign, and what it predicts.

    python benchmarks/bench_simulate.py [--quick] [--json out.json]

Each row compiles ``specs/rasraf-3scale.yaml`` (base profile) for the node count, then runs its
unchanged workflow manager for 24 hours of virtual time against the simulated scheduler, with
the spec's ~100 jobs/min submission throttle (what `mummi simulate` does, minus the plots).
Beside the wall-clock time, each row carries the prediction (GPUs full after, mean GPU and CPU
occupancy once full) to compare with SC'21 Fig. 5 and 6. ``--quick``: the 1000-node warm
start once; otherwise three times, plus a cold start and the 4,000-node scaling run.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from statistics import median
from typing import Any

from benchlib import FIGURES, clock, main, peak_mb, reset_peak, row

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.plan import Plan
from mummi_spec.runtime.simulate.report import metrics
from mummi_spec.runtime.simulate.run import Options, simulate

SPEC = Path(__file__).resolve().parent.parent / "specs" / "rasraf-3scale.yaml"
HOURS = 24.0
TARGET_S = 30.0
FIGURES.setdefault("simulate", {
    "paper": "1000 nodes: GPUs full in ~1 h (Fig. 6); GPU mean 93.7 %, median 99.9 %; CPU "
             "mean 54 % (Fig. 5)",
    "reference": "-", "target": f"< {TARGET_S:g} s for 24 h at 1000 nodes"})


def _plan(nodes: int) -> Plan:
    loaded = load_spec(SPEC, profile=NO_PROFILE)
    machine = dataclasses.replace(loaded.spec.machine, nodes=nodes)
    loaded = dataclasses.replace(loaded, spec=dataclasses.replace(loaded.spec, machine=machine))
    return compile_loaded(loaded).plan


def _row(nodes: int, start: str, repeats: int, target: bool) -> dict[str, Any]:
    plan = _plan(nodes)
    reset_peak()
    seconds, results = [], []
    for _ in range(repeats):
        took, result = clock(simulate, plan, Options(hours=HOURS, start=start))
        seconds.append(took)
        results.append(metrics(result))
    m = results[0]
    size = f"{HOURS:g} h, {nodes} nodes ({m['gpus']} GPUs), {start} start"
    return row("simulate", f"simulate {HOURS:g} h of rasraf-3scale", size, seconds,
               n=int(HOURS), unit="sim-h/s", peak=peak_mb(),
               met=median(seconds) < TARGET_S if target else None,
               **({} if target else {"target": "-"}),
               gpus_full_h=m["gpus_full_h"], gpu_mean_after_full=m["gpu_mean_after_full"],
               cpu_mean_after_full=m["cpu_mean_after_full"], gpu_mean=m["gpu_mean"],
               gpu_median=m["gpu_median"], cpu_mean=m["cpu_mean"],
               share_full=m["share_full"])


def run(quick: bool) -> list[dict[str, Any]]:
    """The 1000-node warm start (target row); without ``quick`` also cold and 4,000 nodes."""
    logging.getLogger("mummi").setLevel(logging.ERROR)
    rows = [_row(1000, "warm", 1 if quick else 3, target=True)]
    if not quick:
        rows += [_row(1000, "cold", 1, target=False), _row(4000, "warm", 1, target=False)]
    for r in rows:
        print(f"{r['size']}: GPUs full after {r['gpus_full_h']} h; once full GPU "
              f"{r['gpu_mean_after_full']} %, CPU {r['cpu_mean_after_full']} %",
              file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

"""What the loop is for: (φ, ψ) cells of alanine dipeptide the adaptive campaign reaches
against plain MD with the same MD steps and seeds.

    python benchmarks/bench_alanine.py [--quick] [--json out.json]

Runs ``examples/alanine-dipeptide/campaign.yaml`` (its ``local`` profile) through
``python -m mummi_spec run`` in a temporary directory, then, from what its simulations
recorded (``result.json``: steps and seed of each), plain 300 K MD from the example's
extended structure with exactly those steps and seeds: as many short runs, and one run of
their total length. A third comparison is the explorer alone: as many 600 K proposals as the
campaign's explorer made, with no feedback. Cells are those of the 12 x 12 grid of (φ, ψ), the
feedback's own; a cell counts once one frame (every 0.1 ps) falls in it. Without ``--quick``
the campaign runs twice (its timing, and so its explorer's trajectory, differs run to run).
Needs OpenMM (``pip install -e '.[openmm]'``); without it the rows say skipped.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import FIGURES, clock, main, row, skipped
from run_all import machine

from mummi_spec.plan import Plan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.records import decode

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "alanine-dipeptide"
SPEC = EXAMPLE / "campaign.yaml"
CELLS = 144
FIGURES.setdefault("alanine", {
    "paper": "-", "reference": "plain 300 K MD, same steps and seeds",
    "target": "more (φ, ψ) cells than plain MD"})


class Coverage:
    """Frames of (φ, ψ) in degrees, and what they cover."""

    def __init__(self, phi: np.ndarray, psi: np.ndarray) -> None:
        from alanine.molecule import cells

        self.frames = int(np.size(phi))
        self.cells = {int(c) for c in np.ravel(cells(phi, psi))}
        self.left = float(np.mean(np.asarray(phi) > 0)) if self.frames else 0.0

    def text(self, what: str) -> str:
        return f"{what}; {len(self.cells)}/{CELLS} cells, {100 * self.left:.0f} % at φ > 0"


def campaign(tmp: Path) -> dict[str, Any]:
    """One `mummi run` of the example: wall time, what its MD covered, its proposals."""
    env = {k: v for k, v in os.environ.items() if k != "MUMMI_WORKSPACE"}
    took, proc = clock(lambda: subprocess.run(
        [sys.executable, "-m", "mummi_spec", "run", str(SPEC)], cwd=tmp, env=env,
        capture_output=True, text=True, check=False))
    if proc.returncode != 0:
        raise RuntimeError(f"the campaign failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                           f"\n{proc.stderr[-2000:]}")
    c = Campaign.open(tmp / "build" / "plan.json")
    db = sqlite3.connect(c.workspace / "ledger.sqlite")
    dirs = [Path(w) for (w,) in db.execute(
        "SELECT workdir FROM jobs WHERE job_type = 'simulate' AND state = 'completed' "
        "ORDER BY sim")]
    results = [json.loads((d / "result.json").read_text()) for d in dirs]
    torsions = [np.load(d / "torsions.npz") for d in dirs]
    phi = np.concatenate([t["phi"] for t in torsions])
    psi = np.concatenate([t["psi"] for t in torsions])
    stream = c.stream("explorer.conformations")
    store = c.store(stream.store)
    proposals = [decode(b).meta for b in store.get_many(stream.namespace,
                                                        sorted(store.keys(stream.namespace)))]
    out = {"seconds": took, "md": Coverage(phi, psi), "results": results, "plan": c.plan,
           "proposals": Coverage(np.array([p["phi"] for p in proposals]),
                                 np.array([p["psi"] for p in proposals])),
           "count": len(proposals)}
    c.close()
    return out


def plain_md(seeds: list[int], steps: list[int]) -> tuple[float, Coverage]:
    """300 K MD from the example's extended structure: one run per (seed, steps)."""
    from alanine.molecule import Molecule
    from alanine.simulate import MD

    molecule = Molecule()
    phis, psis = [], []
    start = time.perf_counter()
    for seed, n in zip(seeds, steps, strict=True):
        for phi, psi in MD(molecule, molecule.positions, seed).stretches(n, n):
            phis.append(phi)
            psis.append(psi)
    return time.perf_counter() - start, Coverage(np.concatenate(phis), np.concatenate(psis))


def explorer_alone(plan: Plan, count: int) -> tuple[float, Coverage]:
    """The campaign's explorer, its arguments as the spec gives them, with no feedback."""
    from alanine.explore import alone, arguments

    took, proposals = clock(alone, arguments(plan.job("explore").command), count)
    phi, psi = np.array(proposals).T
    return took, Coverage(phi, psi)


def markdown(lines: list[tuple[str, str, Coverage, float]]) -> str:
    """The side-by-side table of examples/alanine-dipeptide/README.md."""
    now = datetime.datetime.now().astimezone()
    out = ["| run | what ran | (φ, ψ) cells visited (of 144) | frames at φ > 0 | wall time |",
           "|---|---|---|---|---|"]
    out += [f"| {who} | {what} | {len(cov.cells)} | {100 * cov.left:.0f} % | {secs:.0f} s |"
            for who, what, cov, secs in lines]
    out.append(f"\n{now:%Y-%m-%d %H:%M %Z}, {machine()}")
    return "\n".join(out)


def run(quick: bool) -> list[dict[str, Any]]:
    try:
        import openmm  # noqa: F401
    except ImportError:
        return [skipped("alanine", "adaptive campaign vs plain MD", "examples/alanine-dipeptide",
                        "openmm is not installed (pip install -e '.[openmm]')")]
    sys.path.insert(0, str(EXAMPLE))  # the example's own code, as the spec's pythonpath
    runs = []
    for _ in range(1 if quick else 2):
        with tempfile.TemporaryDirectory(prefix="bench-alanine-") as tmp:
            runs.append(campaign(Path(tmp)))
    first = runs[0]
    seeds = [int(r["seed"]) for r in first["results"]]
    steps = [int(r["steps"]) for r in first["results"]]
    ps = sum(float(r["ps"]) for r in first["results"])
    md_what = f"{len(steps)} x {ps / len(steps):g} ps at 300 K"
    short_s, short = plain_md(seeds, steps)
    long_s, long = plain_md(seeds[:1], [sum(steps)])
    alone_s, alone = explorer_alone(first["plan"], first["count"])
    best_plain = max(len(short.cells), len(long.cells))
    reference = f"plain MD, same steps and seeds: {best_plain} cells"
    rows = [
        row("alanine", "plain MD, one start, the campaign's seeds",
            short.text(f"{md_what} from the extended start"), short_s, met=None,
            reference=reference),
        row("alanine", "plain MD, one trajectory of the same length",
            long.text(f"1 x {ps:g} ps at 300 K"), long_s, met=None, reference=reference),
        row("alanine", "explorer alone (600 K, no feedback), its proposals",
            alone.text(f"{first['count']} proposals"), alone_s, met=None, reference=reference),
    ]
    lines = [("plain MD", f"{md_what} from the extended start, the campaign's seeds", short,
              short_s),
             ("plain MD", f"one {ps:g} ps trajectory, the first seed", long, long_s),
             ("explorer alone", f"{first['count']} proposals at 600 K, no feedback", alone,
              alone_s)]
    for k, r in enumerate(runs, start=1):
        rows.append(row("alanine", f"adaptive campaign (mummi run), run {k}",
                        r["md"].text(f"{md_what} from selected proposals"), r["seconds"],
                        met=len(r["md"].cells) > best_plain, reference=reference,
                        proposals=r["count"], proposal_cells=len(r["proposals"].cells)))
        lines.append((f"adaptive campaign, run {k}",
                      f"{md_what} from {len(steps)} of its explorer's {r['count']} proposals "
                      f"(which cover {len(r['proposals'].cells)} cells)", r["md"], r["seconds"]))
    print(markdown(lines) + "\n", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

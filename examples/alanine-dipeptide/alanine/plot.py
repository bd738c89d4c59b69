"""The Ramachandran map of a finished campaign: `python -m alanine.plot WORKSPACE [-o PNG]`.

Every 300 K frame of every simulation, the grid of the feedback's cells, and where each
simulation started (the selected conformation, minimised). Reads the simulations' own
``result.json`` and ``torsions.npz``: no store, no plan.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from alanine.molecule import GRID, cells


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m alanine.plot", description=__doc__.split("\n")[0])
    p.add_argument("workspace", type=Path)
    p.add_argument("-o", "--output", type=Path, help="default: WORKSPACE/ramachandran.png")
    args = p.parse_args(argv)
    results = sorted(args.workspace.glob("runs/*/simulate.*/result.json"))
    if not results:
        print(f"plot: no simulation results under {args.workspace}/runs; is it the workspace "
              "of a campaign that has run?", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    phis, psis, starts = [], [], []
    for path in results:
        with np.load(path.parent / "torsions.npz") as t:
            phis.append(t["phi"])
            psis.append(t["psi"])
        starts.append(json.loads(path.read_text())["start_phi_psi"])
    phi, psi = np.concatenate(phis), np.concatenate(psis)
    ax.scatter(phi, psi, s=1, alpha=0.3, color="tab:blue", label="300 K frames")
    start_phi, start_psi = np.array(starts).T
    ax.scatter(start_phi, start_psi, s=25, marker="x", color="tab:red", label="starts")
    ticks = np.linspace(-180, 180, GRID + 1)
    ax.set_xticks(ticks[::2])
    ax.set_yticks(ticks[::2])
    ax.set_xticks(ticks, minor=True)
    ax.set_yticks(ticks, minor=True)
    ax.grid(which="both", linewidth=0.3)
    ax.set(xlim=(-180, 180), ylim=(-180, 180), xlabel="φ (°)", ylabel="ψ (°)",
           title=f"{len(results)} simulations, {len(set(cells(phi, psi).tolist()))} of "
                 f"{GRID * GRID} cells")
    ax.legend(loc="lower right", fontsize=8)
    out = args.output or args.workspace / "ramachandran.png"
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

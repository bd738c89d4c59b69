"""The explorer (persistent, coarse scale): high-temperature MD over a flooded (φ, ψ) map.

    python -m alanine.explore --stream explorer.conformations --out DIR [--temperature 600]
        [--steps 500] [--every 0.5] [--level 25] [--count N] [--seed 1]

Langevin MD at ``--temperature`` K samples far more of the map than 300 K MD does; every
``--steps`` steps it proposes the current conformation: its (φ, ψ) as the 4-D features the
selector reads, its coordinates as a PDB file in ``--out`` whose path (relative to the
workspace) the candidate's meta carries. The feedback target, the 300 K MD's visits per cell
summed over every simulation so far, floods the basins the MD has sampled (alanine/flood.py),
so the explorer climbs out of them towards cells nobody has simulated yet.

SIGTERM: it finishes the proposal in hand, saves its state (OpenMM checkpoint, counters and
the visits it floods) in MUMMI_STATE_DIR and exits 0. Started again with MUMMI_RESTART=1 it
continues from that state: the same trajectory, the next candidate id.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
from openmm import unit

from alanine.flood import Flood
from alanine.job import finish
from alanine.molecule import (
    GRID,
    TIMESTEP_PS,
    Molecule,
    features,
    positions_of,
    seed_of,
)
from mummi_spec import app

STATE = "explorer.npz"


@dataclass
class Progress:
    """What a restart needs beside the OpenMM checkpoint."""

    proposed: int = 0  # candidates emitted; the next id is conf-{proposed:06d}
    steps: int = 0
    iteration: int = 0  # the feedback iteration the flood was built from (0: none yet)


class Explorer:
    """The biased high-temperature simulation and its state on disk."""

    def __init__(self, temperature: float, level: float, seed: int) -> None:
        self.molecule = Molecule()
        self.flood = Flood(self.molecule, level)
        self.temperature = temperature
        self.sim = self.molecule.simulation(temperature, seed, [self.flood.force])
        self.sim.context.setPositions(self.molecule.positions)
        self.sim.minimizeEnergy()
        self.sim.context.setVelocitiesToTemperature(temperature * unit.kelvin, seed)
        self.progress = Progress()
        self.visits = np.zeros(GRID * GRID)

    def steer(self, visits: np.ndarray, iteration: int) -> None:
        """Flood what the MD has visited, as the feedback target of ``iteration`` says."""
        self.visits = np.asarray(visits, dtype=np.float64)
        self.flood.update(self.visits, self.sim.context)
        self.progress.iteration = iteration

    def advance(self, steps: int) -> None:
        self.sim.step(steps)
        self.progress.steps += steps

    def save(self, path: Path) -> None:
        """Everything a restart needs, written whole (a kill mid-write leaves the old one)."""
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, checkpoint=np.frombuffer(self.sim.context.createCheckpoint(), np.uint8),
                     visits=self.visits, progress=json.dumps(vars(self.progress)))
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        try:
            with np.load(path) as saved:
                self.sim.context.loadCheckpoint(saved["checkpoint"].tobytes())
                self.progress = Progress(**json.loads(str(saved["progress"])))
                self.visits = np.asarray(saved["visits"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError, openmm.OpenMMException) as exc:
            # Starting afresh would propose new conformations under ids already taken.
            raise app.AppError(f"cannot resume from {path}: {exc}; restore it, or run the "
                               "campaign in a new workspace (a fresh explorer would propose "
                               "new conformations under ids already taken)") from None
        if self.visits.any():
            self.flood.update(self.visits, self.sim.context)


def feedback_loop(ctx: app.Context, name: str | None) -> str | None:
    """The loop whose target floods the map: ``name``, or the one loop aimed at this scale."""
    if name:
        return name
    loops = ctx.targets_for()
    if len(loops) > 1:
        raise app.AppError(f"feedback loops {', '.join(loops)} all report to this scale; "
                           "name one with --loop")
    return loops[0] if loops else None


def run(args: argparse.Namespace) -> int:
    stop = app.Stop.install()
    with app.context() as ctx:
        stream = ctx.stream(args.stream)
        loop = feedback_loop(ctx, args.loop)
        if ctx.state_dir is None:
            raise app.AppError("no MUMMI_STATE_DIR: the explorer keeps its checkpoint there")
        ctx.state_dir.mkdir(parents=True, exist_ok=True)
        state = ctx.state_dir / STATE
        out = Path(args.out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        explorer = Explorer(args.temperature, args.level, seed_of("explorer", args.seed))
        if ctx.restart and state.exists():
            explorer.load(state)
        p = explorer.progress
        print(f"explorer: {args.temperature:g} K, {args.steps} steps a proposal, "
              f"{'resumed at' if p.proposed else 'from'} proposal {p.proposed}", flush=True)
        next_at = time.monotonic()
        while p.proposed < args.count and not stop.requested:
            target = ctx.target(loop) if loop else None
            if target is not None and target.iteration > p.iteration:
                explorer.steer(target.values, target.iteration)
                print(f"explorer: flooding {int((target.values > 0).sum())} visited cells "
                      f"(feedback iteration {target.iteration}, {target.items} items)",
                      flush=True)
            explorer.advance(args.steps)
            positions = positions_of(explorer.sim)
            phi, psi = (float(a) for a in explorer.molecule.torsions(positions))
            cid = f"conf-{p.proposed:06d}"
            pdb = out / f"{cid}.pdb"
            explorer.molecule.write_pdb(pdb, positions)
            p.proposed += 1
            # State before the item: after a kill in between, the restart skips this id
            # rather than emitting a second, different conformation under it.
            explorer.save(state)
            stream.emit(features(phi, psi), id=cid, meta={
                "pdb": where(pdb, ctx.workspace), "phi": round(phi, 2), "psi": round(psi, 2),
                "ps": round(p.steps * TIMESTEP_PS, 3), "feedback": p.iteration})
            next_at += args.every
            stop.wait(next_at - time.monotonic())
        explorer.save(state)
        why = "SIGTERM" if stop.requested else f"{args.count} proposals"
        print(f"explorer: stopped after {why}; {p.proposed} proposed, state in {state}",
              flush=True)
    return 0


def where(path: Path, workspace: Path) -> str:
    """``path`` relative to the workspace when inside it (the campaign may move), else whole."""
    try:
        return str(path.relative_to(workspace))
    except ValueError:
        return str(path)


def alone(argv: Sequence[str], count: int) -> list[tuple[float, float]]:
    """(φ, ψ) of the first ``count`` proposals of the explorer these arguments set up, with no
    feedback: the control that shows what the flood changes (rounded as the meta is)."""
    args = parser().parse_args(list(argv))
    explorer = Explorer(args.temperature, args.level, seed_of("explorer", args.seed))
    out = []
    for _ in range(count):
        explorer.advance(args.steps)
        phi, psi = explorer.molecule.torsions(positions_of(explorer.sim))
        out.append((round(float(phi), 2), round(float(psi), 2)))
    return out


def arguments(command: str) -> list[str]:
    """The arguments of ``-m alanine.explore`` in a job's command line."""
    words = shlex.split(command)
    return words[words.index("alanine.explore") + 1:]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alanine.explore", description=__doc__.split(
        "\n")[0])
    p.add_argument("--stream", required=True, help="candidate stream, scale.stream")
    p.add_argument("--out", required=True, help="directory for the proposed structures")
    p.add_argument("--loop", help="feedback loop to read (default: the one aimed here)")
    p.add_argument("--temperature", type=float, default=600.0, help="kelvin (default 600)")
    p.add_argument("--steps", type=int, default=500, help="MD steps between proposals")
    p.add_argument("--every", type=float, default=0.5, help="seconds between proposals")
    p.add_argument("--level", type=float, default=30.0,
                   help="flood level above the most visited cell, kJ/mol (default 30)")
    p.add_argument("--count", type=int, default=100_000, help="proposals, at most")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return finish("explorer", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

"""The simulation job: 300 K MD of a prepared conformation, reporting its (φ, ψ) visits.

    python -m alanine.simulate --feedback md.visits [--stop "20 ps"] [--report "5 ps"]
        [--seed 1]

Langevin MD at 300 K (amber ff14SB, OBC2 implicit solvent, 2 fs steps) from the setup's
``minimised.pdb`` for the job's stop condition (``20 ps``, ``1 ns``). (φ, ψ) is read every
0.1 ps; every ``--report`` of simulated time the frames of that stretch, counted per cell of
the 12 x 12 grid (144 numbers), go to the feedback stream, so the summed target holds every
frame once. Writes ``trajectory.dcd``, ``torsions.npz`` and ``result.json`` to its work
directory. The seed comes from ``--seed`` and the simulation's name: the same campaign, the
same trajectories.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator

import numpy as np
import openmm
from openmm import app as omm_app
from openmm import unit

from alanine.job import finish
from alanine.molecule import (
    TIMESTEP_PS,
    Molecule,
    histogram,
    positions_of,
    potential_energy,
    seed_of,
)
from alanine.prepare import MINIMISED
from mummi_spec import app

TEMPERATURE = 300.0
FRAME_STEPS = 50  # (φ, ψ) every 0.1 ps
_TIME = re.compile(r"\s*([0-9.]+)\s*(fs|ps|ns|us|µs)\s*")
_PS = {"fs": 1e-3, "ps": 1.0, "ns": 1e3, "us": 1e6, "µs": 1e6}


def picoseconds(text: str) -> float:
    """``"20 ps"`` -> 20.0; an ``AppError`` for anything else."""
    m = _TIME.fullmatch(text)
    if not m:
        raise app.AppError(f"stop {text!r} is no simulated time; write e.g. '20 ps' or '1 ns' "
                           "(the job's stop: in the spec)")
    return float(m.group(1)) * _PS[m.group(2)]


class MD:
    """300 K Langevin MD from ``positions``, read in stretches of (φ, ψ) frames."""

    def __init__(self, molecule: Molecule, positions: np.ndarray, seed: int,
                 dcd: str | None = None) -> None:
        self.molecule = molecule
        self.sim = molecule.simulation(TEMPERATURE, seed)
        self.sim.context.setPositions(positions)
        self.sim.context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, seed)
        if dcd:
            self.sim.reporters.append(omm_app.DCDReporter(dcd, FRAME_STEPS))

    def stretches(self, steps: int, every: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Run ``steps``; after each ``every`` steps (and at the end), (φ, ψ) of its frames."""
        done = 0
        while done < steps:
            n = min(every, steps - done)
            frames = []
            for _ in range(n // FRAME_STEPS):
                self.sim.step(FRAME_STEPS)
                frames.append(positions_of(self.sim))
            if n % FRAME_STEPS:
                self.sim.step(n % FRAME_STEPS)
            done += n
            shape = (len(frames), *self.molecule.positions.shape)
            yield self.molecule.torsions(np.array(frames).reshape(shape))


def run(args: argparse.Namespace) -> int:
    with app.context() as ctx:
        if ctx.setup_dir is None or ctx.sim is None:
            raise app.AppError("no MUMMI_SETUP_DIR or MUMMI_SIM: run by the campaign, after "
                               "its setup job")
        out = ctx.stream(args.feedback)
        molecule = Molecule(ctx.setup_dir / MINIMISED)
        total_ps = picoseconds(args.stop or ctx.stop)
        steps = round(total_ps / TIMESTEP_PS)
        # Whole frames per stretch, at least one.
        report = max(1, round(picoseconds(args.report) / TIMESTEP_PS / FRAME_STEPS)) * FRAME_STEPS
        seed = seed_of("md", args.seed, ctx.sim)
        start = molecule.torsions(molecule.positions)
        print(f"simulate: {ctx.sim} from (φ {start[0]:.0f}°, ψ {start[1]:.0f}°), "
              f"{total_ps:g} ps at {TEMPERATURE:g} K, seed {seed}", flush=True)
        md = MD(molecule, molecule.positions, seed, dcd=str(ctx.workdir / "trajectory.dcd"))
        phis: list[np.ndarray] = []
        psis: list[np.ndarray] = []
        for phi, psi in md.stretches(steps, report):
            # In situ: each stretch as soon as it is simulated. Its key is the simulation's
            # name and the stretch's number, never the attempt's: a retry, the same seed and
            # so the same trajectory, rewrites the same keys, and each counts once.
            out.emit(histogram(phi, psi), meta={"stretch": len(phis), "frames": int(phi.size)})
            phis.append(phi)
            psis.append(psi)
        sim = md.sim
        phi, psi = np.concatenate(phis), np.concatenate(psis)
        np.savez(ctx.workdir / "torsions.npz", phi=phi, psi=psi)
        result = {
            "sim": ctx.sim, "candidate": ctx.candidate_id, "engine": "OpenMM",
            "openmm": openmm.version.version,
            "platform": sim.context.getPlatform().getName(), "temperature_k": TEMPERATURE,
            "steps": steps, "ps": total_ps, "seed": seed, "frames": int(phi.size),
            "start_phi_psi": [round(float(start[0]), 2), round(float(start[1]), 2)],
            "cells": sorted(int(c) for c in np.flatnonzero(histogram(phi, psi))),
            "items": len(phis), "final_energy_kj_mol": round(potential_energy(sim), 3),
        }
        (ctx.workdir / "result.json").write_text(json.dumps(result) + "\n", encoding="utf-8")
        print(f"simulate: {ctx.sim} visited {len(result['cells'])} cells in {phi.size} frames",
              flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alanine.simulate",
                                description=__doc__.split("\n")[0])
    p.add_argument("--feedback", required=True, help="feedback stream, scale.stream")
    p.add_argument("--stop", help="simulated time (default: the job's stop condition)")
    p.add_argument("--report", default="5 ps", help="simulated time between feedback items")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return finish("simulate", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

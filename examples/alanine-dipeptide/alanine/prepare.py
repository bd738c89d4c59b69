"""The setup job: the selected conformation, energy-minimised, ready for 300 K MD.

    python -m alanine.prepare

Reads the candidate the manager selected (MUMMI_CANDIDATE) and the structure file its meta
names, minimises it with the simulation's force field and writes ``minimised.pdb`` and
``setup.json`` (the candidate's and the minimised (φ, ψ), the energies) to its work directory,
which the simulation job gets as MUMMI_SETUP_DIR.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import openmm

from alanine.job import finish
from alanine.molecule import Molecule, angles, positions_of, potential_energy
from mummi_spec import app

MINIMISED = "minimised.pdb"
SETUP = "setup.json"
HOLD_KJ_MOL_RAD2 = 2000.0  # 0.6 kJ/mol at 1°, 30 kJ/mol at 10°


def structure_of(ctx: app.Context, candidate: app.Candidate) -> Path:
    """The structure file a candidate's meta names (relative to the workspace, or whole)."""
    name = candidate.meta.get("pdb")
    if not isinstance(name, str):
        raise app.AppError(f"candidate {candidate.id}: its meta names no structure file "
                           "('pdb'); was it written by alanine.explore?")
    path = Path(ctx.workspace) / name
    if not path.is_file():
        raise app.AppError(f"candidate {candidate.id}: structure file {path} is missing")
    return path


def hold(molecule: Molecule, phi: float, psi: float) -> openmm.Force:
    """Harmonic restraints keeping φ and ψ at the given angles (degrees) while minimising."""
    force = openmm.CustomTorsionForce(
        "0.5 * k * d^2; d = min(a, 2 * pi - a); a = abs(theta - theta0); pi = 3.141592653589793")
    force.addGlobalParameter("k", HOLD_KJ_MOL_RAD2)
    force.addPerTorsionParameter("theta0")
    force.addTorsion(*molecule.phi, [math.radians(phi)])
    force.addTorsion(*molecule.psi, [math.radians(psi)])
    return force


def run() -> int:
    with app.context() as ctx:
        cand = ctx.candidate()
        molecule = Molecule(structure_of(ctx, cand))
        cphi, cpsi = angles(cand.values)
        # Minimisation needs no dynamics: the temperature and seed play no part. φ and ψ are
        # held where the explorer found them, or the minimiser slides along the shallow
        # torsions to the nearest basin and the simulation starts from another conformation.
        sim = molecule.simulation(300.0, 1, [hold(molecule, cphi, cpsi)])
        sim.context.setPositions(molecule.positions)
        before = potential_energy(sim)
        sim.minimizeEnergy(tolerance=1.0 * openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
        positions = positions_of(sim)
        molecule.write_pdb(ctx.workdir / MINIMISED, positions)
        phi, psi = (float(a) for a in molecule.torsions(positions))
        info = {"candidate": cand.id, "sim": ctx.sim, "structure": cand.meta["pdb"],
                "candidate_phi_psi": [round(cphi, 2), round(cpsi, 2)],
                "minimised_phi_psi": [round(phi, 2), round(psi, 2)],
                "energy_kj_mol": {"before": round(before, 3),
                                  "after": round(potential_energy(sim), 3)}}
        (ctx.workdir / SETUP).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        print(f"prepare: {cand.id} (φ {cphi:.0f}°, ψ {cpsi:.0f}°) minimised to "
              f"(φ {phi:.0f}°, ψ {psi:.0f}°), {before:.0f} -> {potential_energy(sim):.0f} kJ/mol")
    return 0


def main() -> int:
    return finish("prepare", run)


if __name__ == "__main__":
    sys.exit(main())

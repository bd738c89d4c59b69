"""Build ala2.pdb (ACE-ALA-NME) from internal coordinates: `python -m alanine.build [out]`.

The heavy atoms are placed one by one from standard peptide bond lengths, angles and
torsions (trans peptide bonds, L-alanine, the extended backbone φ = -150°, ψ = 150°); OpenMM's
Modeller adds the hydrogens of the force field's templates and a short minimisation relaxes
them. The result is fixed: the same file on every run.
"""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from alanine.molecule import FORCE_FIELD, STRUCTURE

PHI, PSI = -150.0, 150.0

# (residue, atom, (reference atoms a, b, c), bond c-atom Å, angle b-c-atom °, torsion a-b-c-atom °)
# The first three atoms are laid in a plane; each later one is placed from three placed atoms.
CHAIN = (
    ("ALA", "CA", (("ACE", "CH3"), ("ACE", "C"), ("ALA", "N")), 1.458, 121.7, 180.0),
    ("ACE", "O", (("ALA", "CA"), ("ALA", "N"), ("ACE", "C")), 1.229, 122.9, 0.0),
    ("ALA", "C", (("ACE", "C"), ("ALA", "N"), ("ALA", "CA")), 1.525, 111.2, PHI),
    ("ALA", "CB", (("ALA", "C"), ("ALA", "N"), ("ALA", "CA")), 1.530, 110.5, -122.5),
    ("NME", "N", (("ALA", "N"), ("ALA", "CA"), ("ALA", "C")), 1.335, 116.2, PSI),
    ("ALA", "O", (("NME", "N"), ("ALA", "CA"), ("ALA", "C")), 1.229, 120.5, 180.0),
    ("NME", "C", (("ALA", "CA"), ("ALA", "C"), ("NME", "N")), 1.458, 121.7, 180.0),
)
ORDER = {"ACE": ("CH3", "C", "O"), "ALA": ("N", "CA", "C", "O", "CB"), "NME": ("N", "C")}
BONDS = ((("ACE", "CH3"), ("ACE", "C")), (("ACE", "C"), ("ACE", "O")),
         (("ACE", "C"), ("ALA", "N")), (("ALA", "N"), ("ALA", "CA")),
         (("ALA", "CA"), ("ALA", "C")), (("ALA", "C"), ("ALA", "O")),
         (("ALA", "CA"), ("ALA", "CB")), (("ALA", "C"), ("NME", "N")),
         (("NME", "N"), ("NME", "C")))


def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float,
          torsion: float) -> np.ndarray:
    """The atom bonded to ``c`` at ``bond``, with angle b-c-atom and torsion a-b-c-atom."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    theta, tau = np.radians(angle), np.radians(torsion)
    return np.asarray(c + bond * (-np.cos(theta) * bc
                                  + np.sin(theta) * (np.cos(tau) * m + np.sin(tau) * n)))


def heavy_atoms() -> dict[tuple[str, str], np.ndarray]:
    """Coordinates in Å, keyed by (residue, atom)."""
    kink = np.radians(180.0 - 116.6)  # the CH3-C-N angle of the acetyl cap
    xyz = {("ACE", "CH3"): np.zeros(3), ("ACE", "C"): np.array([1.522, 0.0, 0.0]),
           ("ALA", "N"): np.array([1.522 + 1.335 * np.cos(kink), 1.335 * np.sin(kink), 0.0])}
    for res, atom, refs, bond, angle, torsion in CHAIN:
        a, b, c = (xyz[r] for r in refs)
        xyz[res, atom] = place(a, b, c, bond, angle, torsion)
    return xyz


def build() -> str:
    """The PDB text of the minimised, protonated dipeptide."""
    xyz = heavy_atoms()
    top = app.Topology()
    chain = top.addChain(id="A")
    atoms, positions = {}, []
    elements = {"C": app.element.carbon, "N": app.element.nitrogen, "O": app.element.oxygen}
    for number, (res, names) in enumerate(ORDER.items(), start=1):
        residue = top.addResidue(res, chain, id=str(number))
        for name in names:
            atoms[res, name] = top.addAtom(name, elements[name[0]], residue)
            positions.append(xyz[res, name] / 10.0)  # nm
    for one, two in BONDS:
        top.addBond(atoms[one], atoms[two])
    forcefield = app.ForceField(*FORCE_FIELD)
    model = app.Modeller(top, np.array(positions) * unit.nanometer)
    random.seed(2024)  # Modeller starts the hydrogens it adds from random positions
    model.addHydrogens(forcefield, platform=openmm.Platform.getPlatformByName("Reference"))
    system = forcefield.createSystem(model.topology, nonbondedMethod=app.NoCutoff,
                                     constraints=app.HBonds)
    sim = app.Simulation(model.topology, system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(model.positions)
    sim.minimizeEnergy(maxIterations=200)
    out = io.StringIO()
    app.PDBFile.writeFile(model.topology, sim.context.getState(getPositions=True).getPositions(),
                          out, keepIds=True)
    # OpenMM's header carries today's date; the file says how it was made instead.
    lines = [line for line in out.getvalue().splitlines() if not line.startswith("REMARK")]
    remark = ("REMARK   1 ACE-ALA-NME BUILT FROM INTERNAL COORDINATES BY alanine/build.py, "
              "AMBER FF14SB+OBC2 MINIMISED")
    return "\n".join([remark[:80], *lines]) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else STRUCTURE
    out.write_text(build(), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

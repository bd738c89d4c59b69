"""The molecule and its physics: force field, integrators, (φ, ψ), features and the grid."""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

HERE = Path(__file__).resolve().parent
STRUCTURE = HERE.parent / "ala2.pdb"  # ACE-ALA-NME, built by `python -m alanine.build`
# Amber ff14SB with the OBC2 generalised-Born solvent: water's effect on the backbone without
# thousands of water atoms, so 22 atoms run at thousands of steps a second on one core.
FORCE_FIELD = ("amber14/protein.ff14SB.xml", "implicit/obc2.xml")
TIMESTEP_PS = 0.002  # bonds to hydrogen constrained
FRICTION_PER_PS = 1.0
GRID = 12  # (φ, ψ) cells per angle: 30° each, 144 in all
_PHI = (("ACE", "C"), ("ALA", "N"), ("ALA", "CA"), ("ALA", "C"))
_PSI = (("ALA", "N"), ("ALA", "CA"), ("ALA", "C"), ("NME", "N"))


def seed_of(*parts: object) -> int:
    """A seed for OpenMM (a positive 31-bit number) from names: the same names, the same run."""
    return zlib.crc32(":".join(map(str, parts)).encode()) % (2**31 - 1) + 1


class Molecule:
    """The topology of a structure file, its force field and where φ and ψ are."""

    def __init__(self, pdb: Path = STRUCTURE) -> None:
        structure = app.PDBFile(str(pdb))
        self.topology = structure.topology
        self.positions = np.asarray(structure.getPositions(asNumpy=True).value_in_unit(
            unit.nanometer), dtype=np.float64)
        atoms = {(a.residue.name, a.name): a.index for a in self.topology.atoms()}
        try:
            self.phi = [atoms[a] for a in _PHI]
            self.psi = [atoms[a] for a in _PSI]
        except KeyError as exc:
            raise ValueError(f"{pdb}: no atom {exc} of the φ or ψ torsion: is it "
                             "ACE-ALA-NME with PDB atom names?") from None
        self.forcefield = app.ForceField(*FORCE_FIELD)

    def system(self) -> openmm.System:
        return self.forcefield.createSystem(self.topology, nonbondedMethod=app.NoCutoff,
                                            constraints=app.HBonds)

    def simulation(self, temperature: float, seed: int,
                   extra: Sequence[openmm.Force] = ()) -> app.Simulation:
        """A Langevin simulation at ``temperature`` K on one CPU thread (jobs share cores)."""
        system = self.system()
        for force in extra:
            system.addForce(force)
        integrator = openmm.LangevinMiddleIntegrator(
            temperature * unit.kelvin, FRICTION_PER_PS / unit.picosecond,
            TIMESTEP_PS * unit.picoseconds)
        integrator.setRandomNumberSeed(seed)
        platform = openmm.Platform.getPlatformByName("CPU")
        return app.Simulation(self.topology, system, integrator, platform, {"Threads": "1"})

    def torsions(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """φ and ψ in degrees of one set of positions (n, 3) or of frames (f, n, 3)."""
        return dihedral(positions, self.phi), dihedral(positions, self.psi)

    def write_pdb(self, path: Path, positions: np.ndarray) -> None:
        """Write a structure file whole (a reader never sees half of one)."""
        buf = io.StringIO()
        app.PDBFile.writeFile(self.topology, positions * unit.nanometer, buf, keepIds=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, path)


def positions_of(simulation: app.Simulation) -> np.ndarray:
    state = simulation.context.getState(getPositions=True)
    return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


def potential_energy(simulation: app.Simulation) -> float:
    """kJ/mol."""
    state = simulation.context.getState(getEnergy=True)
    return float(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def dihedral(positions: np.ndarray, atoms: Sequence[int]) -> np.ndarray:
    """The torsion angle in degrees over four atoms, for one frame or many."""
    p0, p1, p2, p3 = (positions[..., i, :] for i in atoms)
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - (b0 * b1).sum(-1, keepdims=True) * b1
    w = b2 - (b2 * b1).sum(-1, keepdims=True) * b1
    x = (v * w).sum(-1)
    y = (np.cross(b1, v) * w).sum(-1)
    return np.asarray(np.degrees(np.arctan2(y, x)))


def features(phi: float, psi: float) -> np.ndarray:
    """The 4-D encoding the selector sees: (sin φ, cos φ, sin ψ, cos ψ), so that -180° and
    180° are one angle and distances are chord lengths on the torus."""
    a, b = np.radians(phi), np.radians(psi)
    return np.array([np.sin(a), np.cos(a), np.sin(b), np.cos(b)])


def angles(encoding: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """φ and ψ in degrees back from ``features``."""
    s1, c1, s2, c2 = (float(v) for v in encoding)
    return float(np.degrees(np.arctan2(s1, c1))), float(np.degrees(np.arctan2(s2, c2)))


def cells(phi: Any, psi: Any) -> np.ndarray:
    """The grid cell (0 .. GRID² - 1, φ-major) of each (φ, ψ) in degrees."""
    i = np.floor((np.asarray(phi) + 180.0) / 360.0 * GRID).astype(int) % GRID
    j = np.floor((np.asarray(psi) + 180.0) / 360.0 * GRID).astype(int) % GRID
    return np.asarray(i * GRID + j)


def histogram(phi: Any, psi: Any) -> np.ndarray:
    """Frames per cell: the feedback a simulation reports (GRID² counts)."""
    return np.bincount(cells(phi, psi).ravel(), minlength=GRID * GRID).astype(np.float64)


def cell_centres() -> tuple[np.ndarray, np.ndarray]:
    """φ and ψ (degrees) at the centre of every cell, in the order of ``histogram``."""
    mid = -180.0 + (np.arange(GRID) + 0.5) * 360.0 / GRID
    phi, psi = np.meshgrid(mid, mid, indexing="ij")
    return phi.ravel(), psi.ravel()

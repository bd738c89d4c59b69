"""The explorer's bias: the visited basins of the (φ, ψ) map flooded, from the MD's visits."""

from __future__ import annotations

import math

import numpy as np
import openmm

from alanine.molecule import GRID, Molecule, cell_centres

KT_300 = 2.494  # kJ/mol: the free energies are those of the 300 K simulations
NODES = 36  # the bias is tabulated every 10° (and splined between)
SMOOTH_DEG = 20.0  # width of the Gaussian spreading each cell's bias over its neighbours


def flood_levels(visits: np.ndarray, level: float) -> np.ndarray:
    """Bias per cell, kJ/mol: each visited cell raised to ``level`` above the most visited
    one's free energy, -kT ln(visits / most), never below its own; unvisited cells stay 0.

    Conformational flooding: the basins the 300 K MD has sampled are filled up, so the
    explorer leaves them over the lowest rim, towards what nobody has simulated yet.
    """
    visits = np.asarray(visits, dtype=np.float64)
    out = np.zeros(GRID * GRID)
    if visits.size != out.size:
        raise ValueError(f"{visits.size} visit counts; the (φ, ψ) grid has {out.size} cells")
    seen = visits > 0
    if seen.any():
        free = -KT_300 * np.log(visits[seen] / visits.max())
        out[seen] = np.maximum(level - free, 0.0)
    return out


def tabulate(levels: np.ndarray) -> list[float]:
    """The bias on a periodic (NODES + 1)² grid over [-π, π]², φ fastest (OpenMM's order)."""
    nodes = -180.0 + np.arange(NODES + 1) * 360.0 / NODES
    cphi, cpsi = cell_centres()

    def weights(at: np.ndarray, centres: np.ndarray) -> np.ndarray:
        d = (at[:, None] - centres[None, :] + 180.0) % 360.0 - 180.0  # periodic distance
        return np.asarray(np.exp(-0.5 * (d / SMOOTH_DEG) ** 2))

    wphi, wpsi = weights(nodes, cphi), weights(nodes, cpsi)  # (nodes, cells)
    kernel = wphi[:, None, :] * wpsi[None, :, :]  # (phi node, psi node, cell)
    grid = (kernel @ levels) / kernel.sum(axis=2)
    return [float(v) for v in grid.T.ravel()]  # psi-major rows: values[i + n * j]


class Flood:
    """The bias force on (φ, ψ), one tabulated function updated in place as visits come."""

    def __init__(self, molecule: Molecule, level: float) -> None:
        self.level = level
        self.force = openmm.CustomCVForce("flood(phi, psi)")
        for name, atoms in (("phi", molecule.phi), ("psi", molecule.psi)):
            torsion = openmm.CustomTorsionForce("theta")
            torsion.addTorsion(*atoms, [])
            self.force.addCollectiveVariable(name, torsion)
        n = NODES + 1
        self.force.addTabulatedFunction("flood", openmm.Continuous2DFunction(
            n, n, [0.0] * n * n, -math.pi, math.pi, -math.pi, math.pi, True))
        self.height = 0.0

    def update(self, visits: np.ndarray, context: openmm.Context | None = None) -> None:
        """Flood the cells ``visits`` says the MD has seen (a simulation's context, if given,
        gets the new bias at once)."""
        levels = flood_levels(visits, self.level)
        self.height = float(levels.max())
        n = NODES + 1
        self.force.getTabulatedFunction(0).setFunctionParameters(
            n, n, tabulate(levels), -math.pi, math.pi, -math.pi, math.pi)
        if context is not None:
            self.force.updateParametersInContext(context)

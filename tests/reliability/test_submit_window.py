"""kill -9 of the manager after the scheduler took a simulation's job and before the ledger
recorded its id, on the real Slurm and Flux: a restart finds the job by its unique name and
tracks it; the simulation runs once, on one GPU (tests/reliability/window.py says how)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.window import kill_inside_the_window, restart_and_check

SIMULATION = "cg-000002.cganalysis.1"  # the first attempt of the second selection's GPU job


@pytest.mark.slurm
def test_a_kill_inside_sbatch_is_adopted_not_resubmitted(slurm_cluster: dict[str, str],
                                                         tmp_path: Path) -> None:
    restart_and_check(kill_inside_the_window(tmp_path, "slurm", SIMULATION))


@pytest.mark.flux
def test_a_kill_after_flux_accepted_is_adopted_not_resubmitted(
        flux_instance: dict[str, object], tmp_path: Path) -> None:
    restart_and_check(kill_inside_the_window(tmp_path, "flux", SIMULATION))

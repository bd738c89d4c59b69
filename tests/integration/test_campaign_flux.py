"""The toy campaigns on a real Flux (4 fake GPUs): the study's steps through Maestro's Flux
adapter, every job of the manager through ours."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.integration.test_campaign import check_campaign, run_spec

pytestmark = pytest.mark.flux


@pytest.mark.parametrize("spec", ["mini.yaml", "rasraf-3scale.yaml"])
def test_campaign_on_flux(spec: str, flux_instance: dict[str, object],
                          tmp_path_factory: pytest.TempPathFactory) -> None:
    # The local profile's queue ('debug', the local Slurm's partition) refused every job on
    # a broker with only the anonymous queue; it is dropped with a warning now.
    cwd = run_spec(tmp_path_factory, spec, MUMMI_SCHEDULER="flux")
    c = check_campaign(cwd)  # ids unique, within caps, each sim once, busy GPUs <= pool...
    assert c.plan.scheduler.type == "flux"
    db = sqlite3.connect(c.workspace / "ledger.sqlite")
    ids = [i for (i,) in db.execute("SELECT sched_id FROM jobs WHERE state = 'completed'")]
    assert ids and all(i.startswith("\u0192") for i in ids)  # Flux's f58 ids: "ƒ..."
    gpu_jobs = [Path(w) for (w,) in db.execute(
        "SELECT workdir FROM jobs WHERE gpus > 0 AND state = 'completed' AND job_type IN "
        "(SELECT job_type FROM jobs WHERE sim IS NOT NULL)")]
    results = [w / "result.json" for w in gpu_jobs if (w / "result.json").exists()]
    assert results
    for path in results:
        # Flux bound exactly one of its fake GPUs to each GPU simulation.
        gpus = json.loads(path.read_text())["gpus"]
        assert gpus is not None and len(gpus.split(",")) == 1 and gpus != "-1"
    run_log = (c.workspace / "run.log").read_text()
    assert "Failed to import Flux" not in run_log  # Maestro's conductor reached the broker

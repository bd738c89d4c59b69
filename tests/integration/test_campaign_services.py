"""The toy campaigns on real services: mini on Slurm (a job per fake GPU), RDF feedback on Redis."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import redis

from tests.integration.test_campaign import check_campaign, run_spec

REDIS_DB = 5  # a database of the test server no other test writes to


def test_mini_campaign_on_slurm(slurm_cluster: dict[str, str],
                                tmp_path_factory: pytest.TempPathFactory) -> None:
    cwd = run_spec(tmp_path_factory, "mini.yaml", MUMMI_SCHEDULER="slurm",
                   MUMMI_QUEUE=slurm_cluster["partition"])
    c = check_campaign(cwd)
    assert c.plan.scheduler.type == "slurm"
    db = sqlite3.connect(c.workspace / "ledger.sqlite")
    ids = [i for (i,) in db.execute("SELECT sched_id FROM jobs WHERE state = 'completed'")]
    assert ids and all(i.isdigit() for i in ids)  # Slurm job ids, not local ones
    sims = [Path(w) for (w,) in db.execute(
        "SELECT workdir FROM jobs WHERE job_type = 'cganalysis' AND state = 'completed'")]
    for workdir in sims:
        script = next(workdir.glob("*.slurm.sh")).read_text()
        assert "--gres=gpu:1" in script
        # Slurm bound exactly one of its (fake) GPUs to each simulation.
        gpus = json.loads((workdir / "result.json").read_text())["gpus"]
        assert gpus is not None and len(gpus.split(",")) == 1


@pytest.fixture
def redis_db(redis_server: dict[str, object]) -> redis.Redis:
    client = redis.Redis(host=str(redis_server["host"]), port=int(redis_server["port"]),
                         db=REDIS_DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_rasraf_feedback_through_redis(redis_server: dict[str, object], redis_db: redis.Redis,
                                       tmp_path_factory: pytest.TempPathFactory,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMMI_REDIS_PASSWORD", "")  # the test server has none
    cwd = run_spec(tmp_path_factory, "rasraf-3scale.yaml", MUMMI_RDFS_BACKEND="redis",
                   MUMMI_REDIS_PORT=str(redis_server["port"]), MUMMI_REDIS_DB=str(REDIS_DB),
                   MUMMI_REDIS_PASSWORD="")
    c = check_campaign(cwd)  # includes: every RDF consumed exactly once, none left live
    assert c.plan.stores["rdfs"].backend == "redis"
    keys = [k.decode() for k in redis_db.scan_iter("rdfs:*")]
    # Write journals are kept for candidate streams only: no one reads a feedback journal.
    assert not [k for k in keys if k.endswith(":#journal")]
    items = keys
    assert items and all(k.startswith("rdfs:rdfs-consumed::rdf_sim_cg-") for k in items)
    # The password's variable name is in the plan, never a password.
    assert c.plan.stores["rdfs"].password_env == "MUMMI_REDIS_PASSWORD"

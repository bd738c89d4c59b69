"""Candidate ids only Redis can hold ('/', '../..') are rejected once at ingest with the reason."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import load_spec
from mummi_spec.plan import Plan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ingest import Guarded, Ingest
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.registry import SELECTORS
from tests.conftest import SPECS

redis = pytest.importorskip("redis")
pytestmark = pytest.mark.redis

PATHLIKE = {"structure_../../etc/passwd": "path separator", "structure_a/b": "path separator",
            "structure_x..": "'..'"}


@pytest.fixture
def redis_campaign(tmp_path: Path, redis_server: dict[str, object]) -> Iterator[Campaign]:
    plan = Plan.from_json(compile_loaded(load_spec(SPECS / "mini.yaml")).files["plan.json"])
    latent = dataclasses.replace(
        plan.stores["latent"], backend="redis", prefix=f"hostile-{uuid.uuid4().hex[:8]}",
        host=str(redis_server["host"]), port=int(redis_server["port"]))
    plan = dataclasses.replace(plan, stores={**plan.stores, "latent": latent})
    c = Campaign(plan, tmp_path / "plan.json", tmp_path / "ws")
    c.workspace.mkdir()
    store = c.store("latent")
    try:
        yield c
    finally:
        store.purge()  # type: ignore[attr-defined]
        c.close()


def _ingest(c: Campaign, ledger: Ledger, known: list[str] | tuple[()]) -> Ingest:
    cfg = c.plan.selectors["sampler"]
    return Ingest("structures.latent", c, ledger,
                  [Guarded(SELECTORS.get(cfg.kind)(cfg, seed=0))], known)


def _foreign_write(c: Campaign, redis_server: dict[str, object], keys: list[str | bytes]
                   ) -> None:
    """One good record under each key, written straight to Redis as another client could."""
    client = redis.Redis(host=str(redis_server["host"]), port=int(redis_server["port"]))
    head = f"{c.plan.stores['latent'].prefix}:{c.stream('structures.latent').namespace}::"
    good = encode(Record(np.ones(8)))
    client.mset({head.encode() + (k if isinstance(k, bytes) else k.encode()): good
                 for k in keys})


def test_path_like_ids_are_rejected_once_and_safe_ones_accepted(
        redis_campaign: Campaign, redis_server: dict[str, object],
        caplog: pytest.LogCaptureFixture) -> None:
    c = redis_campaign
    ledger = Ledger(c.workspace / "ledger.sqlite")
    ingest = _ingest(c, ledger, ())
    # Past the store's checks, as a foreign writer could.
    _foreign_write(c, redis_server, [*PATHLIKE, "structure_ok; $(x)"])
    with caplog.at_level(logging.WARNING, "mummi.ingest"):
        assert ingest.run_once() == 1
        assert ingest.run_once() == 0
    reasons = dict(ledger._rows("SELECT key, reason FROM rejected"))
    assert reasons.keys() == PATHLIKE.keys()
    for key, why in PATHLIKE.items():
        assert why in reasons[key], (key, reasons[key])
    assert "will retry" not in caplog.text
    assert caplog.text.count("rejected") == 1  # the second pass read nothing again
    ledger.close()


def test_a_key_that_is_not_utf8_is_rejected_once(
        redis_campaign: Campaign, redis_server: dict[str, object],
        caplog: pytest.LogCaptureFixture) -> None:
    c = redis_campaign
    ledger = Ledger(c.workspace / "ledger.sqlite")
    _foreign_write(c, redis_server, [b"structure_\xff", b"structure_ok"])
    for _ in range(2):  # a restart: the second Ingest starts from the ledger
        ingest = _ingest(c, ledger, ["structure_ok"])
        with caplog.at_level(logging.WARNING, "mummi.ingest"):
            ingest.run_once()
            ingest.run_once()
        assert ingest.rejected == 1
    assert ledger.rejected("structures.latent") == {"structure_\udcff"}
    (why,), = ledger._rows("SELECT reason FROM rejected")
    assert "not UTF-8" in why
    assert caplog.text.count("rejected") == 1 and "will retry" not in caplog.text
    ledger.close()

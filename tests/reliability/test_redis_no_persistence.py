"""A redis-server that keeps nothing (no AOF, no snapshots: the operator's choice), restarted
under a campaign: ingest lists the stream again from scratch, since its journal began again,
and what the restart took from what the manager knew is reported, not passed over."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mummi_spec.runtime.stores.redis import RedisStore
from tests import plans
from tests.conftest import SPECS
from tests.integration.test_campaign import running
from tests.reliability.test_redis_restart import RedisProcess, own_server

pytestmark = pytest.mark.redis
LOCAL_STORES = "    workspace: ./workspace/mini-mummi-local\n"


@pytest.fixture
def bare_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    yield from own_server(tmp_path, persist=False)


def test_after_a_restart_the_journal_cursor_lists_every_new_key(bare_redis, tmp_path):
    store = RedisStore(plans.store("redis", "cands", host="127.0.0.1", port=bare_redis.port,
                                   journal=("ns",), retry_for=30.0), tmp_path)
    try:
        store.put_many("ns", {f"old{i:03d}": b"v" for i in range(100)})
        found, cursor = store.keys_after("ns", "*", None)
        assert len(found) == 100
        bare_redis.kill()
        bare_redis.start()  # empty: its journal begins again
        new = {f"new{i:03d}": b"v" for i in range(150)}
        store.put_many("ns", new)  # past the old cursor's length before the next pass
        found, cursor = store.keys_after("ns", "*", cursor)
        assert sorted(found) == sorted(new)  # not the 50 past the old length
        store.put("ns", "later", b"v")
        assert store.keys_after("ns", "*", cursor)[0] == ["later"]  # and on from there
    finally:
        store.close()


def _spec(tmp_path: Path, port: int) -> Path:
    """mini.yaml, local profile, with both its stores on the test's own Redis."""
    text = (SPECS / "mini.yaml").read_text()
    assert text.count(LOCAL_STORES) == 1
    on_redis = f"{{backend: redis, host: 127.0.0.1, port: {port}, retry_for: 30s}}"
    spec = tmp_path / "mini.yaml"
    spec.write_text(text.replace(LOCAL_STORES, LOCAL_STORES + (
        f"    stores:\n      latent: {on_redis}\n      feedback: {on_redis}\n")))
    return spec


def _feedback_iterations(ws: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{ws / 'ledger.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT MAX(iteration) FROM feedback").fetchone()[0] or 0)
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet


def test_a_restart_that_lost_the_data_is_reported_and_the_campaign_goes_on(
        bare_redis, tmp_path):
    spec = _spec(tmp_path, bare_redis.port)
    ws = tmp_path / "workspace" / "mini-mummi-local"
    with running("run", str(spec), cwd=tmp_path) as proc:
        deadline = time.monotonic() + 180
        while _feedback_iterations(ws) < 1:  # feedback consumed and candidates ingested
            assert proc.poll() is None, "mummi run ended before a feedback iteration"
            assert time.monotonic() < deadline, "no feedback iteration"
            time.sleep(0.05)  # polling the ledger for the moment, not waiting for an outcome
        bare_redis.kill()
        bare_redis.start()  # back at once, empty
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    status = json.loads((ws / "status.json").read_text())
    lost = status["lost"]
    assert re.fullmatch(r"\d+ candidate\(s\) of structures\.latent read before its server "
                        r"restarted are gone \(first 'structure_\d+'\): the server kept no "
                        r"copy \(Redis: appendonly yes keeps one\); selections of them cannot "
                        r"be set up", lost["candidates structures.latent"])
    assert re.fullmatch(r"\d+ item\(s\) feedback cg-to-sampler consumed are gone from "
                        r"'\S+-consumed' after its server restarted \(the aggregate still "
                        r"counts them\); items written and not yet consumed before the restart "
                        r"are lost, uncounted: keep the server's data \(Redis: appendonly yes\)",
                        lost["feedback cg-to-sampler"])
    for what, note in lost.items():  # said on the console as it happened, and in the summary
        assert f"lost: {what}: {note}" in out
        assert f"lost: {what}: {note}" in (ws / "summary.txt").read_text()
    # Ingest went on past the restart: a candidate written after it was selected. Ids are
    # written in order and every one read before the restart is gone, so an id past that
    # count was written after it (one written before but never read is gone unselectable).
    db = sqlite3.connect(ws / "ledger.sqlite")
    gone = int(lost["candidates structures.latent"].split()[0])
    ids = [int(c.rsplit("_", 1)[1]) for (c,) in db.execute("SELECT candidate FROM sims")]
    assert max(ids) >= gone


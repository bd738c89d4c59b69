"""The Redis store rides out a server restart: bounded back-off, a warning, nothing done twice."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from mummi_spec.errors import StoreError
from mummi_spec.plan import StorePlan
from mummi_spec.runtime import backoff, feedback
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import CONSUMED_SUFFIX, FeedbackLoop
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.records import Record, decode, encode
from mummi_spec.runtime.stores.redis import RedisStore
from tests import plans

pytestmark = pytest.mark.redis
LOST = redis.ConnectionError("Connection closed by server.")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "FIRST_DELAY", 0.01)
    monkeypatch.setattr(backoff, "MAX_DELAY", 0.02)


@pytest.fixture
def config(redis_server: dict[str, Any]) -> StorePlan:
    # "ns" is journaled: its writes are MULTI/EXEC transactions (a pipeline), the others MSETs.
    return plans.store("redis", "fb", prefix=f"test-{uuid.uuid4().hex}", journal=("ns",),
                       **redis_server)


@pytest.fixture
def store(config: StorePlan, tmp_path: Path) -> Iterator[RedisStore]:
    s = RedisStore(config, tmp_path)
    yield s
    s.purge()
    s.close()


def flaky(fn: Callable[..., Any], fails: int, after: bool = False) -> Callable[..., Any]:
    """``fn`` whose first ``fails`` calls lose the connection: before it reaches the server,
    or with ``after`` once the server has done the work (the reply is what gets lost)."""
    left = [fails]

    def call(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            if after:
                fn(*args, **kwargs)
            raise LOST
        return fn(*args, **kwargs)

    return call


def test_a_write_waits_for_the_server_and_warns(store: RedisStore, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(store._client, "pipeline", flaky(store._client.pipeline, 3))
    with caplog.at_level(logging.WARNING, "mummi.store"):
        store.put("ns", "k", b"v")
    assert store.get("ns", "k") == b"v"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert all("cannot write key 'k'" in w and "retrying in" in w for w in warnings)


def test_a_move_whose_reply_was_lost_is_not_reported_missing(
        store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put_many("ns", {"a": b"1", "b": b"2"})
    monkeypatch.setattr(store, "_move", flaky(store._move, 1, after=True))
    store.move("ns", ["a", "b"], "done")  # the retry finds both already moved: no error
    assert store.keys("ns") == [] and store.keys("done") == ["a", "b"]


def test_a_move_retried_still_reports_keys_that_were_never_there(
        store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("ns", "a", b"1")
    monkeypatch.setattr(store, "_move", flaky(store._move, 1, after=True))
    with pytest.raises(StoreError, match="no such key in namespace 'ns': 'ghost'"):
        store.move("ns", ["a", "ghost"], "done")
    assert store.keys("done") == ["a"]


def test_the_wait_is_bounded_and_the_error_names_server_and_cause(
        config: StorePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisStore(dataclasses.replace(config, retry_for=0.05), tmp_path)
    monkeypatch.setattr(store._client, "mget", flaky(store._client.mget, 10**6))
    with pytest.raises(StoreError) as err:
        store.get_many("ns", ["k"])
    assert str(err.value) == (
        f"redis store 'fb' at {store.where}: cannot read 1 keys from 'k' in namespace 'ns' "
        f"(ConnectionError: {LOST})")
    store.close()


def test_other_errors_are_not_retried(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def wrong_type(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")

    monkeypatch.setattr(store._client, "pipeline", wrong_type)
    with pytest.raises(StoreError, match="WRONGTYPE"):
        store.put("ns", "k", b"v")
    assert len(calls) == 1


def test_feedback_through_lost_connections_counts_each_item_once(
        config: StorePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plans.plan(
        stores=[config],
        streams=[plans.stream("cg.rdfs", "fb", "rdfs", "rdf_{sim}_{n:04d}", 2, kind="feedback")],
        feedback=[plans.feedback("loop", "cg.rdfs", ("fb", "model", "rdf"), to="macro")])
    campaign = Campaign(plan, tmp_path / "plan.json", tmp_path / "ws")
    ledger = Ledger(tmp_path / "ws" / "ledger.sqlite")
    store = campaign.store("fb")
    assert isinstance(store, RedisStore)
    try:
        store.put_many("rdfs", {f"rdf_s_{i:04d}": encode(Record([float(i), 1.0]))
                                for i in range(6)})
        loop = FeedbackLoop("loop", campaign, ledger)
        # Every kind of call the iteration makes loses its connection once or twice; the
        # scan and the move lose theirs after the server did the work.
        client = store._client
        monkeypatch.setattr(client, "scan", flaky(client.scan, 2, after=True))
        monkeypatch.setattr(client, "mget", flaky(client.mget, 1))
        monkeypatch.setattr(store, "_move", flaky(store._move, 1, after=True))
        monkeypatch.setattr(client, "mset", flaky(client.mset, 2))  # the report
        result = loop.iterate()
        assert (result.consumed, result.total) == (6, 6)
        assert store.keys("rdfs") == [] and len(store.keys("rdfs" + CONSUMED_SUFFIX)) == 6
        assert ledger.consumed("loop", store.keys("rdfs" + CONSUMED_SUFFIX)) == set(
            store.keys("rdfs" + CONSUMED_SUFFIX))
        assert decode(store.get("model", "rdf")).meta["items"] == 6
        assert loop.iterate().consumed == 0  # nothing counted twice
        assert feedback.reported("mean", ledger.feedback_state("loop")[2]).tolist() == [2.5, 1.0]
    finally:
        store.purge()
        ledger.close()
        campaign.close()

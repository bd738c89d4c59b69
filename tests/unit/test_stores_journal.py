"""``keys_after``: what was written since a cursor, on every store that keeps a journal."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mummi_spec.runtime.registry import STORES
from mummi_spec.runtime.stores.base import Journaled, Store
from mummi_spec.runtime.stores.redis import RedisStore
from tests import plans
from tests.conftest import SPECS

JOURNALED = ["taridx", "memory", pytest.param("redis", marks=pytest.mark.redis)]
# Redis journals only the namespaces its settings name (a campaign's candidate streams).
NAMESPACES = ("ns", "ns2", "done")


@pytest.fixture(params=JOURNALED)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    extra: dict[str, object] = {}
    if request.param == "redis":
        extra = {**request.getfixturevalue("redis_server"), "journal": NAMESPACES,
                 "prefix": f"test-{uuid.uuid4().hex}"}
    opened = STORES.get(request.param)(plans.store(request.param, **extra), root=tmp_path)
    yield opened
    if isinstance(opened, RedisStore):
        opened.purge()
    opened.close()


def test_the_filesystem_store_has_no_journal(tmp_path: Path) -> None:
    store = STORES.get("filesystem")(plans.store("filesystem"), root=tmp_path)
    assert not isinstance(store, Journaled)


def test_new_keys_come_in_write_order_and_a_cursor_resumes(store: Store) -> None:
    assert isinstance(store, Journaled)
    assert store.keys_after("ns", "*", None)[0] == []
    store.put_many("ns", {"c": b"1", "a": b"2"})
    first, cursor = store.keys_after("ns", "*", None)
    assert sorted(first) == ["a", "c"]
    assert store.keys_after("ns", "*", cursor) == ([], cursor)  # nothing new: same cursor
    store.put("ns", "b", b"3")
    store.put_many("ns", {"z": b"4", "d": b"5"})
    found, later = store.keys_after("ns", "*", cursor)
    assert found == ["b", "z", "d"]
    assert store.keys_after("ns", "*", later)[0] == []
    assert store.keys_after("ns", "*", cursor)[0] == ["b", "z", "d"]  # cursors stay valid


def test_patterns_filter_and_namespaces_are_apart(store: Store) -> None:
    assert isinstance(store, Journaled)
    cursor = store.keys_after("ns", "*", None)[1]
    other = store.keys_after("ns2", "*", None)[1]
    store.put_many("ns", {"rdf_1": b"1", "frame_1": b"2", "rdf_2": b"3"})
    store.put_many("ns2", {"rdf_9": b"4"})
    assert store.keys_after("ns", "rdf_*", cursor)[0] == ["rdf_1", "rdf_2"]
    assert store.keys_after("ns2", "*", other)[0] == ["rdf_9"]
    assert sorted(store.keys_after("ns", "rdf_*", None)[0]) == ["rdf_1", "rdf_2"]


def test_each_write_is_listed_once_and_moves_count_as_writes(store: Store) -> None:
    assert isinstance(store, Journaled)
    cursor = store.keys_after("ns", "*", None)[1]
    done = store.keys_after("done", "*", None)[1]
    items = {f"k{i:05d}": bytes([i % 256]) for i in range(2_500)}
    store.put_many("ns", items)
    store.put("ns", "single", b"x")
    assert store.keys_after("ns", "*", cursor)[0] == [*items, "single"]
    store.move("ns", ["k00001", "single"], "done")
    assert store.keys_after("done", "*", done)[0] == ["k00001", "single"]
    store.move("ns", ["k00002"], "ns")  # moving within a namespace writes nothing new
    assert store.keys_after("done", "*", done)[0] == ["k00001", "single"]


def test_a_new_store_object_starts_from_the_beginning(store: Store, tmp_path: Path) -> None:
    if store.key == "memory":
        pytest.skip("a memory store's items die with it")
    store.put_many("ns", {"a": b"1", "b": b"2"})
    store.close()
    extra: dict[str, object] = {}
    if isinstance(store, RedisStore):
        host, port = store.where.split(":")
        extra = {"host": host, "port": int(port), "prefix": store.prefix, "journal": NAMESPACES}
    again = STORES.get(store.key)(plans.store(store.key, **extra), root=tmp_path)
    try:
        assert isinstance(again, Journaled)
        assert sorted(again.keys_after("ns", "*", None)[0]) == ["a", "b"]
    finally:
        again.close()


@pytest.mark.redis
def test_redis_journals_each_put_exactly_once_in_its_transaction(redis_server, tmp_path: Path
                                                                  ) -> None:
    config = plans.store("redis", prefix=f"test-{uuid.uuid4().hex}", journal=("ns",),
                         **redis_server)
    store = RedisStore(config, tmp_path)
    opened = []
    real = store._client.pipeline

    def pipeline(**kwargs):
        opened.append(kwargs)
        return real(**kwargs)

    try:
        store._client.pipeline = pipeline  # type: ignore[method-assign]
        store.put_many("ns", {f"k{i}": b"v" for i in range(3)})
        store.put("ns", "k9", b"v")
        assert opened == [{"transaction": True}] * 2  # MULTI/EXEC: item and entry, or neither
        journal = f"{store.prefix}:ns:#journal".encode()
        assert store._client.lrange(journal, 0, -1) == [b"k0", b"k1", b"k2", b"k9"]
        assert store.keys("ns") == ["k0", "k1", "k2", "k9"]  # the journal is not an item
        # Written by another client: no entry, found by the full listing from None only.
        store._client.set(f"{store.prefix}:ns::outside".encode(), b"v")
        found, cursor = store.keys_after("ns", "*", None)
        assert sorted(found) == ["k0", "k1", "k2", "k9", "outside"]
        assert store.keys_after("ns", "*", cursor)[0] == []
        assert store.keys_after("ns", "*", (cursor[0], 0))[0] == ["k0", "k1", "k2", "k9"]
    finally:
        store.purge()
        store.close()


@pytest.mark.redis
def test_redis_journals_only_the_namespaces_it_is_told(redis_server: dict[str, object],
                                                       tmp_path: Path) -> None:
    store = RedisStore(plans.store("redis", prefix=f"test-{uuid.uuid4().hex}",
                                   journal=("cands",), **redis_server), tmp_path)
    try:
        store.put_many("cands", {"c1": b"1"})
        store.put_many("fb", {"f1": b"1", "f2": b"2"})
        store.move("fb", ["f1"], "fb-consumed")
        journals = sorted(k.decode() for k in store._client.scan_iter(f"{store.prefix}:*#journal"))
        assert journals == [f"{store.prefix}:cands:#journal"]
        # A namespace without a journal is listed in full every time, with no cursor to keep.
        assert store.keys_after("fb", "*", None) == (["f2"], None)
        found, cursor = store.keys_after("cands", "*", None)
        store.put("cands", "c2", b"2")
        assert found == ["c1"] and store.keys_after("cands", "*", cursor)[0] == ["c2"]
    finally:
        store.purge()
        store.close()


def test_a_campaign_journals_its_candidate_namespaces(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mummi_spec.compiler.compile import compile_loaded
    from mummi_spec.frontend import NO_PROFILE, load_spec_text
    from mummi_spec.plan import Plan, StorePlan
    from mummi_spec.runtime import campaign as campaign_module

    # One store holding a candidate stream (latent) and a feedback stream (feedback).
    text = (SPECS / "mini.yaml").read_text().replace(
        "store: feedback\n        key: \"fb_", "store: latent\n        key: \"fb_")
    compiled = compile_loaded(load_spec_text(text, "mini.yaml", profile=NO_PROFILE))
    plan = Plan.from_json(compiled.files["plan.json"])
    assert {s.namespace: s.store for s in plan.streams.values()} == {
        "latent": "latent", "feedback": "latent"}
    seen: list[StorePlan] = []

    class Stores:  # the registry, recording the settings each store is opened with
        @staticmethod
        def get(name: str) -> object:
            def make(settings: StorePlan, root: Path) -> object:
                seen.append(settings)
                return STORES.get("memory")(settings, root)
            return make

    monkeypatch.setattr(campaign_module, "STORES", Stores)
    campaign_module.Campaign(plan, tmp_path / "plan.json", tmp_path / "ws").store("latent")
    assert [(s.name, s.journal) for s in seen] == [("latent", ("latent",))]

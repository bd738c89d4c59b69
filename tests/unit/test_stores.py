"""One contract for every store backend: same calls, same answers, same errors."""

from __future__ import annotations

import os
import random
import socket
import uuid
from pathlib import Path

import pytest

from mummi_spec.errors import StoreError
from mummi_spec.runtime.registry import STORES
from mummi_spec.runtime.stores.base import Store
from mummi_spec.runtime.stores.redis import RedisStore
from tests import plans

BACKENDS = [
    "filesystem",
    "taridx",
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
]
PERSISTENT = ["filesystem", "taridx", pytest.param("redis", marks=pytest.mark.redis)]
UNSAFE = ["", "a/b", "..", "../up", "a..b", ".hidden", "a\\b", "a\x00b", "a\nb", "/abs"]


@pytest.fixture
def open_store(request: pytest.FixtureRequest, tmp_path: Path):
    """``open_store(backend)`` -> a new store on a fresh workspace (redis: a fresh prefix)."""
    opened: list[Store] = []

    def open_(backend: str, **extra: object) -> Store:
        if backend == "redis":
            server = request.getfixturevalue("redis_server")
            extra = {"prefix": f"test-{uuid.uuid4().hex}", **extra, **server}
        store = STORES.get(backend)(plans.store(backend, **extra), root=tmp_path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        if isinstance(store, RedisStore):
            store.purge()
        store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, open_store) -> Store:
    return open_store(request.param)


def test_store_follows_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert STORES.get(store.key) is type(store)


def test_round_trip_is_byte_for_byte(store: Store) -> None:
    rng = random.Random(7)
    items = {
        "empty": b"",
        "small.npz": b"\x00\x01rdf\xff",
        "big.npz": rng.randbytes(156 * 1024 + 13),
        "block.bin": rng.randbytes(512 * 3),
    }
    for key, data in items.items():
        store.put("frames", key, data)
    for key, data in items.items():
        assert store.get("frames", key) == data


def test_bytes_like_values_are_accepted_and_copied(store: Store) -> None:
    buf = bytearray(b"abc")
    store.put("ns", "ba", buf)
    store.put("ns", "mv", memoryview(b"xyz"))
    buf[0:1] = b"Z"
    assert store.get("ns", "ba") == b"abc"
    assert store.get("ns", "mv") == b"xyz"


def test_last_write_wins(store: Store) -> None:
    store.put("ns", "k", b"one")
    store.put("ns", "k", b"two")
    assert store.get("ns", "k") == b"two"
    assert store.keys("ns") == ["k"]


def test_put_many_get_many_keep_the_order_asked(store: Store) -> None:
    items = {f"item_{i:04d}": f"value {i}".encode() * (i % 7) for i in range(300)}
    store.put_many("batch", items)
    order = list(items)
    random.Random(3).shuffle(order)
    order.append(order[0])  # asking twice returns it twice
    assert store.get_many("batch", order) == [items[k] for k in order]
    assert store.get_many("batch", []) == []


def test_exists(store: Store) -> None:
    assert not store.exists("ns", "k")
    store.put("ns", "k", b"v")
    assert store.exists("ns", "k")
    assert not store.exists("ns", "other")
    assert not store.exists("elsewhere", "k")


def test_keys_match_patterns_sorted_and_per_namespace(store: Store) -> None:
    names = ["rdf_sim_2_00000001.npz", "rdf_sim_1_00000002.npz", "rdf_sim_1_00000001.npz",
             "sim_1_aaf00000001", "done_sim_1.npz"]
    store.put_many("fb", {n: n.encode() for n in names})
    store.put("fb2", "rdf_sim_9_00000001.npz", b"other namespace")
    store.put("f", "rdf_sim_8_00000001.npz", b"prefix of the namespace name")
    assert store.keys("fb") == sorted(names)
    assert store.keys("fb", "rdf_sim_1_*") == ["rdf_sim_1_00000001.npz", "rdf_sim_1_00000002.npz"]
    assert store.keys("fb", "rdf_sim_?_00000001.npz") == [
        "rdf_sim_1_00000001.npz", "rdf_sim_2_00000001.npz"]
    assert store.keys("fb", "rdf_sim_[2-9]_*") == ["rdf_sim_2_00000001.npz"]
    assert store.keys("fb", "rdf_sim_[!1]_*") == ["rdf_sim_2_00000001.npz"]
    assert store.keys("fb", "*.npz") == sorted(n for n in names if n.endswith(".npz"))
    assert store.keys("fb", "nothing*") == []
    assert store.keys("never-written") == []


def test_glob_characters_in_a_namespace_are_literal(store: Store) -> None:
    store.put("ns*", "k1", b"1")
    store.put("nsX", "k2", b"2")
    store.put("n[s]", "k3", b"3")
    store.put("ns", "k4", b"4")
    assert store.keys("ns*") == ["k1"]
    assert store.keys("n[s]") == ["k3"]
    assert store.keys("ns*", "k?") == ["k1"]


def test_move_consumes_from_source_and_keeps_full_names(store: Store) -> None:
    rng = random.Random(11)
    items = {f"rdf_sim_{i}_{i:08d}.npz": rng.randbytes(rng.randrange(0, 5000)) for i in range(20)}
    store.put_many("rdfs", items)
    moved = sorted(items)[:12]
    store.move("rdfs", moved, "processed_rdfs")
    assert store.keys("rdfs") == sorted(items)[12:]
    assert store.keys("processed_rdfs") == moved  # suffix ".npz" kept (MuMMI's move_key lost it)
    assert store.get_many("processed_rdfs", moved) == [items[k] for k in moved]
    for key in moved:
        assert not store.exists("rdfs", key)
        with pytest.raises(StoreError, match="no such key"):
            store.get("rdfs", key)


def test_move_reports_missing_keys_and_moves_the_rest(store: Store) -> None:
    store.put_many("src", {"a": b"A", "b": b"B"})
    with pytest.raises(StoreError, match=r"'src'.*'ghost'"):
        store.move("src", ["a", "ghost", "b"], "dst")
    assert store.keys("src") == []
    assert store.get_many("dst", ["a", "b"]) == [b"A", b"B"]
    with pytest.raises(StoreError, match="'a'"):
        store.move("src", ["a"], "dst")  # already consumed


def test_move_into_the_same_namespace_changes_nothing(store: Store) -> None:
    store.put("ns", "k", b"v")
    store.move("ns", ["k"], "ns")
    assert store.keys("ns") == ["k"]
    assert store.get("ns", "k") == b"v"


def test_put_after_move_makes_the_key_live_again(store: Store) -> None:
    store.put("src", "k.npz", b"first")
    store.move("src", ["k.npz"], "done")
    store.put("src", "k.npz", b"second")
    assert store.keys("src") == ["k.npz"]
    assert store.get("src", "k.npz") == b"second"
    assert store.get("done", "k.npz") == b"first"
    store.move("src", ["k.npz"], "done")
    assert store.keys("src") == []
    assert store.get("done", "k.npz") == b"second"


def test_missing_key_errors_name_namespace_and_key(store: Store) -> None:
    store.put("ns", "here", b"x")
    with pytest.raises(StoreError, match=r"namespace 'ns'.*'absent'"):
        store.get("ns", "absent")
    with pytest.raises(StoreError, match=r"'gone1'.*'gone2'.*2 of 3"):
        store.get_many("ns", ["gone1", "here", "gone2"])
    with pytest.raises(StoreError, match=r"namespace 'nowhere'.*'absent'"):
        store.get("nowhere", "absent")


@pytest.mark.parametrize("bad", UNSAFE)
def test_unsafe_names_are_refused_everywhere(store: Store, bad: str) -> None:
    calls = [
        lambda: store.put(bad, "k", b"v"),
        lambda: store.put("ns", bad, b"v"),
        lambda: store.put_many("ns", {"ok": b"v", bad: b"v"}),
        lambda: store.get(bad, "k"),
        lambda: store.get("ns", bad),
        lambda: store.get_many("ns", ["ok", bad]),
        lambda: store.exists("ns", bad),
        lambda: store.keys(bad),
        lambda: store.move("ns", [bad], "dst"),
        lambda: store.move("ns", ["k"], bad),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="unsafe"):
            call()
    assert store.keys("ns") == []  # the valid half of the batch was not written either


def test_values_must_be_bytes(store: Store) -> None:
    with pytest.raises(StoreError, match=r"'k'.*'ns'.*must be bytes, not str"):
        store.put("ns", "k", "text")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", PERSISTENT)
def test_data_outlives_the_store_object(backend: str, open_store) -> None:
    extra = {"prefix": f"test-{uuid.uuid4().hex}"} if backend == "redis" else {}
    first = open_store(backend, **extra)
    first.put_many("ns", {"a": b"1", "b": b"2"})
    first.move("ns", ["a"], "old")
    first.close()
    second = open_store(backend, **extra)
    assert second.keys("ns") == ["b"]
    assert second.get("old", "a") == b"1"


def test_filesystem_layout_and_no_temporary_leftovers(tmp_path: Path) -> None:
    store = STORES.get("filesystem")(plans.store("filesystem", "fb", path="feedback"),
                                     root=tmp_path)
    store.put("rdfs", "a.npz", b"x")
    store.move("rdfs", ["a.npz"], "processed")
    assert (tmp_path / "feedback" / "processed" / "a.npz").read_bytes() == b"x"
    assert os.listdir(tmp_path / "feedback" / "rdfs") == []
    store.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_unreachable_names_host_and_port_not_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUMMI_TEST_REDIS_PW", "s3cret-pw")
    port = _free_port()
    # retry_for=0: no waiting for a server that never comes (test_store_retry.py)
    config = plans.store("redis", "fb", port=port, password_env="MUMMI_TEST_REDIS_PW",
                         retry_for=0)
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}") as err:
        STORES.get("redis")(config, root=tmp_path)
    assert "s3cret-pw" not in str(err.value)


def test_redis_password_variable_must_be_set(tmp_path: Path) -> None:
    config = plans.store("redis", "fb", password_env="MUMMI_TEST_UNSET_VARIABLE")
    with pytest.raises(StoreError, match="MUMMI_TEST_UNSET_VARIABLE"):
        STORES.get("redis")(config, root=tmp_path)


@pytest.mark.redis
def test_redis_namespaces_cannot_blur_into_keys(open_store) -> None:
    store = open_store("redis")
    for bad in ("a::b", "a:"):
        with pytest.raises(StoreError, match="unsafe namespace"):
            store.put(bad, "k", b"v")
    store.put("a:b", "k", b"colon inside is fine")
    assert store.keys("a:b") == ["k"]
    assert store.keys("a") == []

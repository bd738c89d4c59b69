"""Feedback loops on every store: aggregates, running state, exactly-once through crashes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mummi_spec.errors import StoreError
from mummi_spec.runtime import feedback
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import (
    CONSUMED_SUFFIX,
    REJECTED_SUFFIX,
    FeedbackError,
    FeedbackLoop,
    IterationResult,
    selector_weights,
)
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.readtries import READ_TRIES
from mummi_spec.runtime.records import Record, decode, encode
from mummi_spec.runtime.stores.base import Store
from mummi_spec.runtime.stores.redis import RedisStore
from tests import plans

BACKENDS = ["memory", "filesystem", "taridx", pytest.param("redis", marks=pytest.mark.redis)]
LOOP = "cg-to-sampler"
NS = "feedback"
DIM = 3
TARGET = ("sampler", "feedback_main")
# Three simulations' items; values and weights chosen so float32 holds every result exactly.
ITEMS = {"a": [1.0, 2.0, 3.0], "b": [3.0, 4.0, 5.0], "c": [8.0, 0.0, -4.0]}
WEIGHTS = {"a": 1.0, "b": 2.0, "c": 1.0}


def peak(values: np.ndarray, weights: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """A user aggregate (``module:function``): the largest value of every item so far."""
    assert len(weights) == len(values)
    batch = values.max(axis=0)
    return batch if previous is None else np.maximum(batch, previous)


def per_batch(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The old two-argument form: it cannot see what the target held."""
    return values.mean(axis=0)


class Rig:
    """A campaign with one feedback loop over one store, and the ledger it commits to."""

    def __init__(self, backend: str, root: Path, redis: dict[str, Any] | None,
                 **loop: Any) -> None:
        extra = {} if redis is None else {"prefix": f"test-{uuid.uuid4().hex}", **redis}
        self.plan = plans.plan(
            stores=[plans.store(backend, "fb", **extra)],
            streams=[plans.stream("cg.feedback", "fb", NS, "fb_{sim}_{n:06d}", DIM,
                                  kind="feedback")],
            feedback=[plans.feedback(LOOP, "cg.feedback", ("fb", *TARGET), to="structures",
                                     **loop)])
        self.root = root
        self.campaign = Campaign(self.plan, root / "build" / "plan.json", root / "ws")
        self.ledger = Ledger(root / "ws" / "ledger.sqlite")
        self.loop = self._loop()
        self.n = 0

    def _loop(self) -> FeedbackLoop:
        return FeedbackLoop(LOOP, self.campaign, self.ledger)

    @property
    def store(self) -> Store:
        return self.campaign.store("fb")

    def restart(self) -> None:
        """What a crashed manager's successor sees: the ledger and stores reopened from disk."""
        self.ledger.close()
        if self.plan.store("fb").backend != "memory":  # memory lives in this process only
            self.campaign.close()
            self.campaign = Campaign(self.plan, self.campaign.plan_path, self.campaign.workspace)
        self.ledger = Ledger(self.root / "ws" / "ledger.sqlite")
        self.loop = self._loop()

    def put(self, sim: str, values: Sequence[float], key: str | None = None) -> str:
        key = key or f"fb_{sim}_{self.n:06d}"
        self.n += 1
        self.store.put(NS, key, encode(Record(np.array(values), sim=sim)))
        return key

    def put_items(self, sims: str = "abc") -> list[str]:
        return [self.put(s, ITEMS[s]) for s in sims]

    def target(self) -> Record:
        return decode(self.store.get(*TARGET))

    def keys(self, suffix: str = "") -> list[str]:
        return self.store.keys(NS + suffix)

    def close(self) -> None:
        if isinstance(self.store, RedisStore):
            self.store.purge()
        self.ledger.close()
        self.campaign.close()


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``make(**loop settings)`` -> a Rig on a fresh workspace (redis: a fresh key prefix)."""
    rigs: list[Rig] = []
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None

    def make_(**loop: Any) -> Rig:
        rig = Rig(request.param, tmp_path / str(len(rigs)), redis, **loop)
        rigs.append(rig)
        return rig

    yield make_
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make: Callable[..., Rig]) -> Rig:
    return make()


def mean_of(*sims: str) -> np.ndarray:
    return np.mean([ITEMS[s] for s in sims], axis=0)


def assert_reported(rig: Rig, iteration: int, items: int, value: np.ndarray) -> None:
    record = rig.target()
    assert record.meta == {"iteration": iteration, "items": items, "loop": LOOP}
    np.testing.assert_allclose(record.values, value, rtol=1e-6)


@pytest.mark.parametrize(("aggregate", "expected"), [
    ("mean", [4.0, 2.0, 4.0 / 3.0]),
    ("weighted_mean", [3.75, 2.5, 2.25]),
    ("sum", [12.0, 6.0, 4.0]),
    (f"{__name__}:peak", [8.0, 4.0, 5.0]),
])
def test_aggregate_values(make: Callable[..., Rig], aggregate: str, expected: list[float]
                          ) -> None:
    rig = make(aggregate=aggregate)
    rig.loop.weights = lambda sims: np.array([WEIGHTS[s or ""] for s in sims])
    keys = rig.put_items()
    assert rig.loop.iterate() == IterationResult(1, 3, 0, 3)
    assert_reported(rig, 1, 3, np.array(expected))
    assert rig.keys() == []
    assert rig.keys(CONSUMED_SUFFIX) == sorted(keys)
    assert rig.ledger.consumed(LOOP, keys) == set(keys)


def test_unimportable_aggregate_is_a_feedback_error(make: Callable[..., Rig]) -> None:
    with pytest.raises(FeedbackError, match="no_such_module"):
        make(aggregate="no_such_module:mean")
    with pytest.raises(FeedbackError, match=r"must take \(values, weights, previous\)"):
        make(aggregate=f"{__name__}:per_batch")


def test_a_user_aggregate_holds_every_item_so_far_like_the_built_ins(
        make: Callable[..., Rig]) -> None:
    # One rule for every aggregate: the target is the aggregate of every item consumed so
    # far. A user function folds each batch into what was reported before, also after a
    # restart (the previous value comes from the ledger).
    rig = make(aggregate=f"{__name__}:peak")
    rig.put_items("a")
    rig.loop.iterate()
    assert_reported(rig, 1, 1, np.array(ITEMS["a"]))
    rig.restart()
    rig.put_items("c")
    rig.loop.iterate()
    assert_reported(rig, 2, 2, np.array([8.0, 2.0, 3.0]))


def test_running_mean_continues_across_iterations_and_restarts(rig: Rig) -> None:
    rig.put_items("ab")
    rig.loop.iterate()
    rig.put_items("c")
    assert rig.loop.iterate() == IterationResult(2, 1, 0, 3)
    assert_reported(rig, 2, 3, mean_of("a", "b", "c"))
    rig.restart()
    rig.put_items("a")
    assert rig.loop.iterate() == IterationResult(3, 1, 0, 4)
    assert_reported(rig, 3, 4, mean_of("a", "b", "c", "a"))
    assert rig.loop.iterate() == IterationResult(3, 0, 0, 4)  # nothing new: no new iteration


def fail_once(monkeypatch: pytest.MonkeyPatch, obj: object, name: str,
              when: Callable[..., bool] = lambda *a: True) -> list[tuple[Any, ...]]:
    """Make ``obj.name`` raise StoreError the first time ``when(*args)`` holds."""
    real = getattr(obj, name)
    failed: list[tuple[Any, ...]] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if not failed and when(*args):
            failed.append(args)
            raise StoreError(f"crash in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, flaky)
    return failed


@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "same-process"])
@pytest.mark.parametrize("crash", ["commit", "move", "report"])
def test_each_item_counts_once_whatever_the_crash(rig: Rig, monkeypatch: pytest.MonkeyPatch,
                                                  crash: str, restart: bool) -> None:
    rig.put_items("ab")
    rig.loop.iterate()
    rig.put_items("c")
    rig.put_items("a")
    if crash == "commit":  # before the ledger knows: nothing consumed
        failed = fail_once(monkeypatch, rig.ledger, "commit_feedback")
    elif crash == "move":  # the ledger has committed, the items are still live
        failed = fail_once(monkeypatch, rig.store, "move", lambda ns, keys, dest: dest.endswith(
            CONSUMED_SUFFIX))
    else:  # the items have moved, the target still holds the previous aggregate
        failed = fail_once(monkeypatch, rig.store, "put", lambda ns, key, data: ns == TARGET[0])
    with pytest.raises(StoreError, match="crash in"):
        rig.loop.iterate()
    assert failed
    assert len(rig.keys()) == (0 if crash == "report" else 2)
    if restart:  # else the manager logs the error and calls again next period
        rig.restart()
    rig.loop.iterate()
    assert rig.keys() == []
    assert len(rig.keys(CONSUMED_SUFFIX)) == 4
    assert rig.ledger.feedback_state(LOOP)[:2] == (2, 4)
    # The aggregate the crash kept from the target is reported on the rerun.
    assert_reported(rig, 2, 4, mean_of("a", "b", "c", "a"))
    rig.put_items("b")
    assert rig.loop.iterate() == IterationResult(3, 1, 0, 5)
    assert_reported(rig, 3, 5, mean_of("a", "b", "c", "a", "b"))


def test_a_key_already_consumed_is_not_counted_again(rig: Rig) -> None:
    first = rig.put_items("ab")
    rig.loop.iterate()
    rig.put("c", ITEMS["c"], key=first[0])  # e.g. a retried simulation writes the same key
    rig.put_items("c")
    assert rig.loop.iterate() == IterationResult(2, 1, 0, 3)
    assert_reported(rig, 2, 3, mean_of("a", "b", "c"))
    assert rig.keys() == []
    assert rig.loop.iterate() == IterationResult(2, 0, 0, 3)


def test_unreadable_items_are_rejected_and_the_rest_counted(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    good = rig.put_items("ab")
    rig.store.put(NS, "fb_garbage_000000", b"\x00\x01 not a record")
    bad = ["fb_garbage_000000", rig.put("wrongdim", [1.0, 2.0, 3.0, 4.0]),
           rig.put("nan", [1.0, float("nan"), 3.0])]
    good += rig.put_items("c")
    with caplog.at_level(logging.WARNING, logger="mummi.feedback"):
        assert rig.loop.iterate() == IterationResult(1, 3, 3, 3)
    assert f"feedback {LOOP}: 3 unreadable item(s)" in caplog.text
    assert rig.keys() == []
    assert rig.keys(REJECTED_SUFFIX) == sorted(bad)
    assert rig.keys(CONSUMED_SUFFIX) == sorted(good)
    assert rig.ledger.consumed(LOOP, bad) == set()
    assert_reported(rig, 1, 3, mean_of("a", "b", "c"))


def _flaky(rig: Rig, monkeypatch: pytest.MonkeyPatch, key: str, failures: int) -> None:
    """Make ``key`` fail to read (a store error, not bad data) on its next ``failures`` reads."""
    left = [failures]
    real_many, real_one = rig.store.get_many, rig.store.get

    def get_many(ns: str, keys: Sequence[str]) -> list[bytes]:
        if key in keys and left[0] > 0:
            raise StoreError("batch read failed")
        return real_many(ns, keys)

    def get(ns: str, k: str) -> bytes:
        if k == key and left[0] > 0:
            left[0] -= 1
            raise StoreError(f"cannot read {k}: Input/output error")
        return real_one(ns, k)

    monkeypatch.setattr(rig.store, "get_many", get_many)
    monkeypatch.setattr(rig.store, "get", get)


def test_an_item_that_fails_to_read_stays_and_counts_once_it_reads(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    first = rig.put_items("ab")
    flaky = rig.put("c", ITEMS["c"])
    _flaky(rig, monkeypatch, flaky, READ_TRIES - 1)
    assert rig.loop.iterate() == IterationResult(1, 2, 0, 2)
    for _ in range(READ_TRIES - 2):
        assert rig.loop.iterate() == IterationResult(1, 0, 0, 2)
    assert rig.keys() == [flaky] and rig.keys(REJECTED_SUFFIX) == []
    assert rig.loop.iterate() == IterationResult(2, 1, 0, 3)
    assert rig.keys(CONSUMED_SUFFIX) == sorted([*first, flaky])
    assert_reported(rig, 2, 3, mean_of("a", "b", "c"))


def test_an_item_that_never_reads_is_set_aside_after_read_tries(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rig.put_items("a")
    flaky = rig.put("b", ITEMS["b"])
    _flaky(rig, monkeypatch, flaky, 10**6)
    with caplog.at_level(logging.WARNING, logger="mummi.feedback"):
        results = [rig.loop.iterate() for _ in range(READ_TRIES)]
    assert [r.rejected for r in results] == [0] * (READ_TRIES - 1) + [1]
    assert "trying again next iteration" in caplog.text
    assert f"Input/output error ({READ_TRIES} iterations in a row)" in caplog.text
    assert rig.keys() == [] and rig.keys(REJECTED_SUFFIX) == [flaky]
    assert rig.ledger.feedback_state(LOOP)[:2] == (1, 1)


def test_a_batch_of_only_unreadable_items_commits_nothing(rig: Rig) -> None:
    rig.put_items("a")
    rig.loop.iterate()
    rig.put("nan", [float("nan")] * DIM)
    assert rig.loop.iterate() == IterationResult(1, 0, 1, 1)
    assert rig.ledger.feedback_state(LOOP)[:2] == (1, 1)
    assert len(rig.keys(REJECTED_SUFFIX)) == 1
    assert_reported(rig, 1, 1, mean_of("a"))


def test_max_items_bounds_an_iteration(make: Callable[..., Rig]) -> None:
    rig = make(max_items=3)
    for sim in "abcabca":
        rig.put(sim, ITEMS[sim])
    results = [rig.loop.iterate() for _ in range(4)]
    assert [(r.iteration, r.consumed, r.total) for r in results] == [
        (1, 3, 3), (2, 3, 6), (3, 1, 7), (3, 0, 7)]
    assert_reported(rig, 3, 7, mean_of(*"abcabca"))


def test_chunks_read_in_parallel_keep_items_with_their_keys(
        make: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feedback, "_CHUNK", 4)
    rig = make(aggregate="weighted_mean", workers=3)
    sims = [f"s{i:02d}" for i in range(17)]
    for i, sim in enumerate(sims):
        rig.put(sim, [i, 2 * i, -i])
    rig.loop.weights = lambda names: np.array([float(int((n or "")[1:])) for n in names])
    assert rig.loop.iterate() == IterationResult(1, 17, 0, 17)
    w = np.arange(17.0)
    expected = (w * w).sum() / w.sum()  # value i weighted by i
    assert_reported(rig, 1, 17, np.array([expected, 2 * expected, -expected]))


def test_a_failing_batch_read_falls_back_to_single_reads(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.put_items()

    real = rig.store.get_many

    def refuse_batches(ns: str, keys: Sequence[str]) -> list[bytes]:
        if len(keys) > 1:
            raise StoreError("batch read failed")
        return real(ns, keys)

    monkeypatch.setattr(rig.store, "get_many", refuse_batches)
    assert rig.loop.iterate() == IterationResult(1, 3, 0, 3)
    assert_reported(rig, 1, 3, mean_of("a", "b", "c"))


def test_selector_weights_follow_each_item_to_its_candidate(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        ledger.add_sims([("cg-000001", "s2c", "structure_000004", 1, 0.0),
                         ("cg-000002", "s2c", "structure_000009", 2, 0.0)])
        table = {"structure_000004": 2.5, "structure_000009": 0.5}
        weights = selector_weights(ledger, lambda: table)
        np.testing.assert_array_equal(
            weights(["cg-000002", "cg-000001", "cg-000002", "unknown", None]),
            [0.5, 2.5, 0.5, 1.0, 1.0])
        table["structure_000004"] = 4.0  # looked up at every call, not once
        assert weights(["cg-000001"]).tolist() == [4.0]
    finally:
        ledger.close()

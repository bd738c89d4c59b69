"""Ingest on a journaled store: only what is new each pass, failed reads retried, restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mummi_spec.errors import StoreError
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ingest import Guarded, Ingest
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.selectors.base import AddResult
from mummi_spec.runtime.status import events
from tests import plans


class Collect:
    """A selector that keeps every id it is given."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, ids: list[str], points: Any, tags: Any = None) -> AddResult:
        self.ids += ids
        return AddResult(len(ids))


class Rig:
    def __init__(self, tmp_path: Path, backend: str) -> None:
        plan = plans.plan(stores=[plans.store(backend, "s")],
                          streams=[plans.stream("cg.cands", "s", "cands", "c_{i}", 2)])
        self.campaign = Campaign(plan, tmp_path / "plan.json", tmp_path)
        self.store = self.campaign.store("s")
        self.ledger = Ledger(tmp_path / "ledger.sqlite")
        self.listings = 0
        full = self.store.keys

        def keys(*args: Any) -> list[str]:
            self.listings += 1
            return full(*args)

        self.store.keys = keys  # type: ignore[method-assign]

    def ingest(self, known: set[str] | None = None) -> tuple[Ingest, Collect]:
        sel = Collect()
        return Ingest("cg.cands", self.campaign, self.ledger, [Guarded(sel)], known or set()), sel

    def write(self, *ids: int) -> None:
        self.store.put_many("cands", {f"c_{i}": encode(Record(np.array([i, 0.5])))
                                      for i in ids})

    def close(self) -> None:
        self.ledger.close()
        self.campaign.close()


@pytest.fixture
def rig(tmp_path: Path):
    made = Rig(tmp_path, "memory")
    yield made
    made.close()


def test_a_pass_reads_only_the_journal_never_the_full_listing(rig: Rig) -> None:
    rig.write(*range(5))
    ingest, sel = rig.ingest(known={"c_0", "c_1"})
    assert ingest.run_once() == 3
    rig.write(5, 6)
    assert ingest.run_once() == 2
    assert ingest.run_once() == 0
    assert sel.ids == ["c_2", "c_3", "c_4", "c_5", "c_6"]
    assert rig.listings == 0


def test_a_store_without_a_journal_is_listed_in_full_each_pass(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "filesystem")
    try:
        rig.write(1, 2)
        ingest, sel = rig.ingest()
        assert ingest.run_once() == 2
        rig.write(3)
        assert ingest.run_once() == 1
        assert rig.listings == 2 and sorted(sel.ids) == ["c_1", "c_2", "c_3"]
    finally:
        rig.close()


def _failing(rig: Rig, monkeypatch: pytest.MonkeyPatch, bad: set[str]) -> list[str]:
    """Reads of ``bad`` keys fail (one ``get`` each after the batch fails); returns the log."""
    asked: list[str] = []
    get_many, get = rig.store.get_many, rig.store.get

    def many(namespace: str, keys: list[str]) -> list[bytes]:
        if bad & set(keys):
            raise StoreError("unreadable now")
        return get_many(namespace, keys)

    def one(namespace: str, key: str) -> bytes:
        asked.append(key)
        if key in bad:
            raise StoreError(f"cannot read {key}")
        return get(namespace, key)

    monkeypatch.setattr(rig.store, "get_many", many)
    monkeypatch.setattr(rig.store, "get", one)
    return asked


def _first_pass(rig: Rig, monkeypatch: pytest.MonkeyPatch, bad: set[str]
                ) -> tuple[Ingest, Collect, list[str]]:
    """c_1..c_3 written, ``bad`` unreadable, one pass done: the ingest, its selector, reads."""
    rig.write(1, 2, 3)
    asked = _failing(rig, monkeypatch, bad)
    ingest, sel = rig.ingest()
    assert ingest.run_once() == 3 - len(bad)
    return ingest, sel, asked


def test_a_failed_read_is_retried_on_later_passes(rig: Rig,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {"c_2"}
    ingest, sel, _ = _first_pass(rig, monkeypatch, bad)
    assert ingest.run_once() == 0  # still unreadable: retried, not lost
    bad.clear()
    assert ingest.run_once() == 1
    assert sel.ids == ["c_1", "c_3", "c_2"]
    assert ingest.run_once() == 0 and rig.listings == 0


def test_a_key_that_is_gone_is_not_retried(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest, _, asked = _first_pass(rig, monkeypatch, {"c_2"})
    rig.store.move("cands", ["c_2"], "elsewhere")
    assert ingest.run_once() == 0  # retried once, found gone
    asked.clear()
    assert ingest.run_once() == 0
    assert asked == []


def test_a_new_ingest_finds_everything_not_known(rig: Rig,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {"c_3"}
    _first_pass(rig, monkeypatch, bad)
    rig.write(4)
    bad.clear()
    # A restart: the known set comes from checkpoints and the ledger, the cursor from None.
    again, sel = rig.ingest(known={"c_1"})
    assert again.run_once() == 3
    assert sorted(sel.ids) == ["c_2", "c_3", "c_4"]


def test_candidates_beyond_a_selectors_bounds_are_warned_of_once_per_stream(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    from mummi_spec.runtime.registry import SELECTORS

    config = plans.selector("binned", dim=2, name="frames", bins=(2, 2),
                            bounds=((0.0, 1.0), (0.0, 1.0)))
    ingest = Ingest("cg.cands", rig.campaign, rig.ledger,
                    [Guarded(SELECTORS.get("binned")(config, seed=0), name="frames")], set())
    rig.write(0)  # (0, 0.5): inside
    assert ingest.run_once() == 1 and ingest.outside == ""
    rig.write(2, 3)  # x = 2 and 3, above 1
    rig.store.put("cands", "c_low", encode(Record(np.array([-1.0, 7.0]))))
    with caplog.at_level("WARNING", "mummi.ingest"):
        assert ingest.run_once() == 3
        rig.write(4)
        assert ingest.run_once() == 1
    assert ingest.outside == (
        "4 candidate(s) of cg.cands lie outside the bounds of selector 'frames' (bounds[0] = "
        "[0, 1]: 1 below, 3 above, bounds[1] = [0, 1]: 0 below, 1 above); they go into the "
        "edge bins: widen selectors.frames.bounds to spread them")
    warned = [r.getMessage() for r in caplog.records if "outside the bounds" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(
        "ingest cg.cands: 3 candidate(s) of cg.cands lie outside the bounds of selector "
        "'frames' (bounds[0] = [0, 1]: 1 below, 2 above, bounds[1] = [0, 1]: 0 below, 1 above)")
    # On the console: news once per stream, though the count goes on growing.
    told: set[str] = set()
    status = {"candidates": {"cg.cands": {"ingested": 5, "rejected": 0, "examples": [],
                                          "outside": warned[0].split(": ", 1)[1]}}}
    assert events(status, told) == [f"warning: {warned[0].split(': ', 1)[1]}"]
    status["candidates"]["cg.cands"]["outside"] = ingest.outside
    assert events(status, told) == []

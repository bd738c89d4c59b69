"""A selector rebuilt without a usable checkpoint is given back what the ledger says it chose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.runtime.ingest import Guarded, Ingest
from tests.reliability.candidates import Rig

COUPLING = "structures-cg"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path, "filesystem")
    yield made
    made.close()


def _run_until_crash(rig: Rig) -> tuple[list[str], list[str], dict[str, float]]:
    """The first life of the manager: ingest 200 candidates, select 30 (recorded in the
    ledger as the manager does); then what the same selector would have done next."""
    points = np.random.default_rng(5).normal(size=(200, 8)) * [1, 1, 1, 1, 2, 2, 3, 3]
    rig.write_points(points)
    guarded = rig.ingest.selectors[0]
    assert rig.ingest.run_once() == 200
    chosen = guarded.selector.select(30)
    rig.ledger.add_sims([(f"cg-{i:06d}", COUPLING, c, i, 0.0) for i, c in enumerate(chosen)])
    weights = guarded.selector.weights()
    return chosen, guarded.selector.select(10), weights


def _restart(rig: Rig) -> tuple[Guarded, Ingest]:
    """A manager starting again with no checkpoint, its ingest's known set from the ledger."""
    again = rig.start(rig.ledger.selected_candidates(COUPLING))
    return again.selectors[0], again


def test_a_rebuilt_farthest_point_selector_keeps_away_from_what_it_chose(rig: Rig) -> None:
    chosen, expected, weights = _run_until_crash(rig)
    guarded, again = _restart(rig)
    in_order = [r.candidate for r in rig.ledger.sims() if r.coupling == COUPLING]
    assert in_order == chosen  # the ledger keeps the selection order (seq)
    result = again.restore_selected(guarded, in_order)
    assert result.accepted == 30 and result.rejected == []
    assert again.run_once() == 170
    sel = guarded.selector
    assert sel.stats().selected == 30 and sel.stats().candidates == 170
    assert sel.weights() == pytest.approx(weights)
    assert sel.select(10) == expected


def test_the_control_without_it_ignores_its_own_picks(rig: Rig) -> None:
    # What a restart did before: the same ledger, no restore_selected; picks ignore the 30
    # (so the test above tells the two apart).
    _, expected, weights = _run_until_crash(rig)
    guarded, again = _restart(rig)
    assert again.run_once() == 170
    assert guarded.selector.select(10) != expected
    assert guarded.selector.weights().keys().isdisjoint(weights)


def test_selected_candidates_that_cannot_be_read_are_named_and_the_rest_restored(
        rig: Rig) -> None:
    chosen, _, _ = _run_until_crash(rig)
    lost = chosen[3]
    rig.store.move(rig.namespace, [lost], "elsewhere")
    guarded, again = _restart(rig)
    result = again.restore_selected(guarded, chosen)
    assert result.accepted == 29
    assert [k for k, _ in result.rejected] == [lost] and "no such key" in result.rejected[0][1]
    assert set(guarded.selector.weights()) == set(chosen) - {lost}

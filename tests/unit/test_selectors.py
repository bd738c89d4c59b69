"""Selectors: one contract suite over every registered kind, then each kind's own semantics."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mummi_spec.errors import SelectorError
from mummi_spec.plan import IndexPlan, SelectorPlan
from mummi_spec.runtime.registry import SELECTORS
from mummi_spec.runtime.selectors.base import AddResult, Selector, SelectorStats
from tests import plans
from tests.plans import queues

CONFIGS: dict[str, SelectorPlan] = {
    "random": plans.selector("random"),
    "binned": plans.selector("binned", bins=(4, 4, 4), bounds=((0.0, 1.0),) * 3),
    "farthest_point": plans.selector("farthest_point"),
}
KINDS = sorted(CONFIGS)


def make(kind: str, seed: int = 0, **extra: Any) -> Any:
    return SELECTORS.get(kind)(dataclasses.replace(CONFIGS[kind], **extra), seed=seed)


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def cloud(n: int, seed: int = 0, dim: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((n, dim))


def drain(sel: Any, batch: int = 7) -> list[str]:
    out: list[str] = []
    while picked := sel.select(batch):
        out += picked
    return out


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("kind", KINDS)
def test_registry_builds_an_object_that_implements_the_protocol(kind: str) -> None:
    sel = make(kind)
    assert isinstance(sel, Selector)
    assert sel.key == kind and sel.dim == 3


@pytest.mark.parametrize("kind", KINDS)
def test_select_returns_each_added_id_exactly_once(kind: str) -> None:
    sel = make(kind)
    assert sel.add(ids("c", 120), cloud(120)) == AddResult(120)
    picked = drain(sel)
    assert sorted(picked) == sorted(ids("c", 120))
    assert sel.select(5) == []
    assert sel.stats() == SelectorStats(0, 120, 0, {"default": (0, 120)})


@pytest.mark.parametrize("kind", KINDS)
def test_bad_items_are_refused_one_by_one_and_never_selected(kind: str) -> None:
    sel = make(kind)
    sel.add(["a", "b"], cloud(2))
    points = cloud(6, seed=1)
    points[3, 1], points[4, 0] = np.nan, np.inf
    result = sel.add(["a", "new", "new", "nan", "inf", ""], points)
    assert result.accepted == 1
    reasons = dict(result.rejected[:1] + result.rejected[2:])
    assert "already a candidate" in reasons["a"]
    assert "within this batch" in result.rejected[1][1]
    assert "NaN" in reasons["nan"] and "NaN" in reasons["inf"]
    assert "non-empty" in reasons[""]
    assert sorted(drain(sel)) == ["a", "b", "new"]
    again = sel.add(["b", "fresh"], cloud(2))
    assert again.accepted == 1 and "already selected" in again.rejected[0][1]


def test_large_batches_find_every_duplicate_exactly() -> None:
    sel = make("random")
    rng = np.random.default_rng(0)
    first = [f"id-{i}" for i in rng.permutation(20_000)]
    assert sel.add(first, cloud(20_000)).accepted == 20_000
    repeats = [first[i] for i in range(0, 20_000, 97)]
    batch = [f"new-{i}" for i in range(30_000)] + repeats + ["new-5", "new-7"]
    result = sel.add(batch, cloud(len(batch)))
    assert result.accepted == 30_000
    assert sorted(i for i, _ in result.rejected) == sorted([*repeats, "new-5", "new-7"])
    assert sel.stats().candidates == 50_000


@pytest.mark.parametrize("kind", KINDS)
def test_whole_batch_shape_errors_raise(kind: str) -> None:
    sel = make(kind)
    with pytest.raises(SelectorError, match=r"shape \(2, 3\)"):
        sel.add(["a", "b"], np.zeros((2, 4)))
    with pytest.raises(SelectorError, match="shape"):
        sel.add(["a", "b", "c"], np.zeros((2, 3)))
    with pytest.raises(SelectorError, match="tags"):
        sel.add(["a", "b"], np.zeros((2, 3)), tags=["default"])
    with pytest.raises(SelectorError):
        sel.select(-1)
    assert sel.stats().candidates == 0


@pytest.mark.parametrize("kind", KINDS)
def test_tags_route_to_the_single_default_queue(kind: str) -> None:
    sel = make(kind)
    result = sel.add(["a", "b", "c"], cloud(3), tags=["default", "default", "dimers"])
    assert result.accepted == 2
    assert result.rejected[0][0] == "c" and "queue" in result.rejected[0][1]


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_selections_other_seed_others(kind: str) -> None:
    def run(seed: int) -> list[str]:
        sel = make(kind, seed=seed)
        sel.add(ids("c", 300), cloud(300))
        first = sel.select(10)
        sel.add(ids("d", 100), cloud(100, seed=2))
        return first + sel.select(30)

    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip_continues_exactly(kind: str, tmp_path: Path) -> None:
    a, b = make(kind, seed=5), make(kind, seed=5)
    for sel in (a, b):
        sel.add(ids("c", 200), cloud(200))
        sel.select(15)
        sel.add(ids("d", 50), cloud(50, seed=9))  # unsearched candidates are saved too
    a.save(tmp_path / "sel.npz")
    restored = make(kind, seed=5)
    restored.load(tmp_path / "sel.npz")
    assert not list(tmp_path.glob("*.tmp"))
    assert restored.stats() == b.stats()
    assert restored.weights() == b.weights()
    for sel in (restored, b):
        sel.add(ids("e", 40), cloud(40, seed=11))
    assert restored.select(25) == b.select(25)
    assert drain(restored) == drain(b)


def _saved(sel: Any, path: Path) -> dict[str, np.ndarray]:
    sel.save(path)
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("when", ["first", "later"])
def test_an_empty_add_changes_nothing(kind: str, when: str, tmp_path: Path) -> None:
    # An ingest pass whose items were all refused hands the selector an empty batch.
    a, b = make(kind, seed=4), make(kind, seed=4)
    if when == "later":
        for sel in (a, b):
            sel.add(ids("c", 30), cloud(30, seed=1))
            sel.select(3)
    assert a.add([], np.zeros((0, 3))) == AddResult(0)
    for sel in (a, b):
        sel.add(ids("d", 200), cloud(200, seed=2) * 10 + 5)
    got, want = _saved(a, tmp_path / "a.npz"), _saved(b, tmp_path / "b.npz")
    assert got.keys() == want.keys()
    for name in got:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert a.select(20) == b.select(20)
    assert a.weights() == b.weights()
    assert sum(a.weights(normalize=False).values()) == sum(b.weights(normalize=False).values())
    if kind == "farthest_point":
        assert np.isfinite(list(a.ranks().values())).all()


def test_fp_checkpoint_with_a_nan_origin_is_refused(tmp_path: Path) -> None:
    # What an empty first add used to save: every stored point NaN, ranks never finite.
    sel = make("farthest_point")
    sel.add(ids("c", 20), cloud(20))
    arrays = _saved(sel, tmp_path / "good.npz")
    arrays["origin"] = np.full(3, np.nan, dtype=np.float32)
    arrays["fresh_x"] = np.full_like(arrays["fresh_x"], np.nan)
    with open(tmp_path / "nan.npz", "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(SelectorError, match="not finite"):
        make("farthest_point").load(tmp_path / "nan.npz")


def _rebuild_inputs(kind: str) -> tuple[Any, list[str], np.ndarray, list[str]]:
    """A selector that chose 40 of 300 points; the points; their ids; the chosen ids."""
    names, pts = ids("c", 300), cloud(300, seed=3)
    orig = make(kind, seed=1)
    orig.add(names, pts)
    return orig, names, pts, orig.select(40)


@pytest.mark.parametrize("kind", KINDS)
def test_a_selector_rebuilt_with_add_selected_goes_on_as_the_original(kind: str) -> None:
    orig, names, pts, chosen = _rebuild_inputs(kind)
    row = {n: i for i, n in enumerate(names)}
    rebuilt = make(kind, seed=1)
    assert rebuilt.add_selected(chosen, pts[[row[c] for c in chosen]]) == AddResult(40)
    rest = [n for n in names if n not in set(chosen)]
    rebuilt.add(rest, pts[[row[n] for n in rest]])
    assert rebuilt.stats() == orig.stats()
    assert rebuilt.weights() == pytest.approx(orig.weights())
    later = rebuilt.select(30)
    assert not set(later) & set(chosen)
    if kind == "farthest_point":  # ranks depend only on the points selected: the same picks
        assert later == orig.select(30)
    if kind == "binned":  # the same counts per bin, so the same bins owed the next picks
        orig.select(30)
        np.testing.assert_array_equal(rebuilt._s, orig._s)


@pytest.mark.parametrize("kind", KINDS)
def test_add_selected_after_an_older_checkpoint_takes_the_candidates_once(
        kind: str, tmp_path: Path) -> None:
    orig, names, pts, chosen = _rebuild_inputs(kind)
    old = make(kind, seed=1)
    old.add(names, pts)
    old.select(15)
    old.save(tmp_path / "old.npz")  # the checkpoint before the last 25 picks
    restored = make(kind, seed=1)
    restored.load(tmp_path / "old.npz")
    row = {n: i for i, n in enumerate(names)}
    twice = chosen + chosen[-3:]
    result = restored.add_selected(twice, pts[[row[c] for c in twice]])
    assert result.accepted == 25 and result.rejected == []
    assert restored.stats() == orig.stats()
    assert restored.weights() == pytest.approx(orig.weights())
    assert not set(drain(restored)) & set(chosen)


def test_add_selected_refuses_bad_items_one_by_one() -> None:
    sel = make("farthest_point")
    pts = cloud(3)
    pts[1, 0] = np.nan
    result = sel.add_selected(["a", "b", ""], pts)
    assert result.accepted == 1
    assert [k for k, _ in result.rejected] == ["b", ""]
    assert sel.stats().selected == 1 and sel.add_selected([], np.zeros((0, 3))) == AddResult(0)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_holds_no_pickles(kind: str, tmp_path: Path) -> None:
    sel = make(kind)
    sel.add(ids("c", 20), cloud(20))
    sel.select(3)
    sel.save(tmp_path / "sel.npz")
    with np.load(tmp_path / "sel.npz", allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)


@pytest.mark.parametrize("kind", KINDS)
def test_unreadable_checkpoints_raise_naming_the_path_and_keep_state(
    kind: str, tmp_path: Path
) -> None:
    sel = make(kind)
    sel.add(ids("c", 30), cloud(30))
    missing, garbage, other = tmp_path / "missing.npz", tmp_path / "bad.npz", tmp_path / "o.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    make(kind, min_candidates=3).save(other)  # another config
    for path in (missing, garbage, other):
        with pytest.raises(SelectorError, match=str(path)):
            sel.load(path)
    assert sel.stats().candidates == 30 and len(sel.select(30)) == 30


@pytest.mark.parametrize("kind", KINDS)
def test_warmup_waits_for_min_candidates_ever_added(kind: str) -> None:
    sel = make(kind, min_candidates=50)
    sel.add(ids("a", 30), cloud(30))
    assert sel.select(5) == []
    sel.add(ids("b", 20), cloud(20, seed=1))
    assert len(sel.select(5)) == 5
    assert len(sel.select(100)) == 45  # counted as ever added, so it never closes again


@pytest.mark.parametrize("kind", KINDS)
def test_weights_cover_the_selected_and_normalise_to_mean_one(kind: str) -> None:
    sel = make(kind)
    assert sel.weights() == {}
    sel.add(ids("c", 100), cloud(100))
    picked = sel.select(10)
    raw, norm = sel.weights(normalize=False), sel.weights()
    assert sorted(raw) == sorted(picked) == sorted(norm)
    assert min(raw.values()) >= 1.0
    assert np.mean(list(norm.values())) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_settings_and_wrong_kind_are_refused(kind: str) -> None:
    cls = SELECTORS.get(kind)
    with pytest.raises(SelectorError, match="kind"):
        cls(dataclasses.replace(CONFIGS[kind], kind="nope"))
    with pytest.raises(SelectorError, match="'dim' must be an integer >= 1"):
        cls(dataclasses.replace(CONFIGS[kind], dim=0))
    with pytest.raises(SelectorError, match="'random_first' must be an integer >= 0"):
        cls(dataclasses.replace(CONFIGS[kind], random_first=-1))
    with pytest.raises(SelectorError, match="'min_candidates'"):
        cls(dataclasses.replace(CONFIGS[kind], min_candidates=1.5))
    with pytest.raises(SelectorError, match="'seed'"):
        cls(CONFIGS[kind], seed=-1)


# ------------------------------------------------------------------ farthest point
def fp(seed: int = 0, **cfg: Any) -> Any:
    return SELECTORS.get("farthest_point")(plans.selector("farthest_point", **cfg), seed=seed)


def brute_force_ranks(cands: np.ndarray, selected: np.ndarray, k: int) -> np.ndarray:
    dist = np.sqrt(((cands[:, None, :] - selected[None, :, :]) ** 2).sum(-1))
    return np.sort(dist, axis=1)[:, :k].mean(axis=1)


def test_fp_incremental_ranks_equal_a_brute_force_recomputation() -> None:
    rng = np.random.default_rng(3)
    sel = fp(seed=2, dim=4, k=5, queues=queues(a=0.7, b=0.3))
    where: dict[str, np.ndarray] = {}

    def add(prefix: str, n: int) -> None:
        names, pts = ids(prefix, n), rng.normal(10.0, 3.0, (n, 4))  # far from the origin
        sel.add(names, pts, tags=rng.choice(["a", "b"], n).tolist())
        where.update(zip(names, pts, strict=True))

    add("x", 300)
    chosen: list[str] = []
    for batch in range(6):
        chosen += sel.select(7)
        add(f"y{batch}_", 50)
    ranks = sel.ranks()  # the last 50 are searched lazily, here
    expected = brute_force_ranks(np.array([where[i] for i in ranks]),
                                 np.array([where[i] for i in chosen]), 5)
    np.testing.assert_allclose(list(ranks.values()), expected, rtol=1e-5)
    sel.rerank()
    np.testing.assert_allclose(list(sel.ranks().values()), expected, rtol=1e-5)


def test_fp_with_fewer_selected_than_k_ranks_by_those_that_exist() -> None:
    sel = fp(dim=1, k=10)
    sel.add(["s"], np.array([[0.0]]))
    assert sel.select(1) == ["s"]  # nothing selected yet: ranks are +inf, pick is random
    sel.add(["a", "b"], np.array([[3.0], [-1.0]]))
    assert sel.ranks() == {"a": 3.0, "b": 1.0}


def test_fp_picks_within_a_batch_are_sequential_not_batch_greedy() -> None:
    sel = fp(dim=2, k=1)
    sel.add(["origin"], np.zeros((1, 2)))
    sel.select(1)
    sel.add(["b", "b2", "c"], np.array([[10.1, 0.0], [10.0, 0.0], [-7.0, 0.0]]))
    # Batch-greedy would take b and b2 (ranks 10.1 and 10); b2 is 0.1 from b once b is taken.
    assert sel.select(2) == ["b", "c"]


def test_fp_queue_ratios_are_approached_and_ratio_zero_never_selected() -> None:
    ratios = {"lipid": 0.1, "mono": 0.5, "dimer": 0.4, "invalid": 0.0}
    sel = fp(dim=3, queues=queues(**ratios))
    for name in ratios:
        sel.add(ids(name, 100), cloud(100, seed=len(name)), tags=[name] * 100)
    for _ in range(10):
        sel.select(10)
    counts = {name: sel.stats().per_queue[name][1] for name in ratios}
    assert counts == {"lipid": 10, "mono": 50, "dimer": 40, "invalid": 0}
    # An exhausted queue gives its share away instead of stalling the batch.
    drain(sel)
    assert sel.stats().per_queue["lipid"] == (0, 100)
    assert sel.stats().per_queue["invalid"] == (100, 0)


def test_fp_untagged_candidates_need_a_single_queue() -> None:
    sel = fp(dim=3, queues=queues(a=1.0, b=1.0))
    result = sel.add(["x"], cloud(1))
    assert result.accepted == 0 and "several queues (a, b)" in result.rejected[0][1]


def test_fp_capacity_discards_the_least_novel_tail() -> None:
    sel = fp(dim=2, queues=queues(q=(1.0, 50)))
    points = cloud(100, seed=4, dim=2)
    sel.add(ids("c", 100), points, tags=["q"] * 100)
    first = sel.select(1)
    assert sel.stats() == SelectorStats(50, 1, 49, {"q": (50, 1)})
    kept = set(sel.ranks())
    seed_point = points[[int(first[0][1:])]]
    rank = dict(zip(ids("c", 100), brute_force_ranks(points, seed_point, 10), strict=True))
    dropped = set(rank) - kept - set(first)
    assert len(dropped) == 49 and max(rank[i] for i in dropped) <= min(rank[i] for i in kept)
    assert "discarded" in sel.add([next(iter(dropped))], cloud(1, dim=2)).rejected[0][1]


def test_fp_weights_count_the_voronoi_cell_on_a_hand_example() -> None:
    sel = fp(dim=2)
    sel.add(["s1", "s2"], np.array([[0.0, 0.0], [10.0, 0.0]]))
    sel.select(2)
    sel.add(["a", "b", "c"], np.array([[1.0, 0.0], [2.0, 1.0], [9.0, 0.0]]))
    assert sel.weights(normalize=False) == {"s1": 3.0, "s2": 2.0}
    assert sel.weights() == pytest.approx({"s1": 1.2, "s2": 0.8})


def test_fp_ivf_index_trains_once_enough_points_and_survives_a_checkpoint(tmp_path: Path) -> None:
    # nprobe == nlist searches every cell, so IVF must agree with brute force exactly.
    ivf = IndexPlan("ivf", nlist=4, nprobe=4)
    sel = fp(dim=3, k=3, index=ivf)
    points = cloud(600, seed=8)
    sel.add(ids("c", 600), points)
    chosen = sel.select(200)  # past 39 * nlist: trained on the way
    sel.add(ids("c", 650)[600:], cloud(50, seed=9))
    where = dict(zip(ids("c", 650), np.vstack([points, cloud(50, seed=9)]), strict=True))
    ranks = sel.ranks()
    expected = brute_force_ranks(np.array([where[i] for i in ranks]),
                                 np.array([where[i] for i in chosen]), 3)
    np.testing.assert_allclose(list(ranks.values()), expected, rtol=1e-5)
    sel.save(tmp_path / "ivf.npz")
    other = fp(dim=3, k=3, index=ivf)
    other.load(tmp_path / "ivf.npz")
    for s in (sel, other):
        s.add(ids("m", 30), cloud(30, seed=10))
    assert other.select(40) == sel.select(40)


def test_fp_random_first_picks_ignore_ranks() -> None:
    rng = np.random.default_rng(0)
    blob = np.vstack([rng.normal(0.0, 0.1, (999, 2)), [[50.0, 50.0]]])
    names = [*ids("b", 999), "outlier"]
    greedy, warm = fp(dim=2), fp(dim=2, random_first=10)
    for sel in (greedy, warm):
        sel.add(names, blob)
    assert "outlier" in greedy.select(2)
    assert "outlier" not in warm.select(10)
    assert warm.select(1) == ["outlier"]  # ranked again from the 11th pick


def test_fp_covers_a_clustered_space_better_than_random() -> None:
    rng = np.random.default_rng(7)
    centres = rng.normal(0.0, 6.0, (10, 4))
    points = np.vstack([rng.normal(0.0, 0.3, (1900, 4))]
                       + [c + rng.normal(0.0, 0.2, (10, 4)) for c in centres])
    cluster = np.r_[np.zeros(1900, dtype=int), np.repeat(np.arange(1, 11), 10)]
    names = ids("p", 2000)
    index = {name: i for i, name in enumerate(names)}

    def coverage(kind: str) -> tuple[float, float, float]:
        sel = SELECTORS.get(kind)(plans.selector(kind, dim=4), seed=1)
        sel.add(names, points)
        chosen = [index[i] for i in sel.select(50)]
        nearest = np.sqrt(((points[:, None] - points[chosen][None]) ** 2).sum(-1)).min(1)
        per_cluster = np.mean([nearest[cluster == c].mean() for c in range(11)])
        return float(nearest.max()), float(per_cluster), len(set(cluster[chosen])) / 11

    # The mean over all points is not the measure: the dense blob dominates it, and random
    # picks (mostly in the blob) tie with farthest-point there (about 0.63 each here).
    fp_radius, fp_mean, fp_touched = coverage("farthest_point")
    rnd_radius, rnd_mean, rnd_touched = coverage("random")
    assert fp_radius < 0.2 * rnd_radius
    assert fp_mean < 0.2 * rnd_mean
    assert fp_touched == 1.0 and rnd_touched < 0.5


def test_fp_config_errors() -> None:
    with pytest.raises(SelectorError, match="index type"):
        fp(dim=2, index=IndexPlan("hnsw"))
    with pytest.raises(SelectorError, match="ratio > 0"):
        fp(dim=2, queues=queues(a=0.0))
    with pytest.raises(SelectorError, match=r"'queues\.a\.capacity' must be an integer >= 1"):
        fp(dim=2, queues=queues(a=(1.0, 0)))
    with pytest.raises(SelectorError, match=r"'queues\.a\.ratio'"):
        fp(dim=2, queues=queues(a=-1.0))
    with pytest.raises(SelectorError, match="'k' must be an integer >= 1"):
        fp(dim=2, k=0)
    with pytest.raises(SelectorError, match=r"'index\.nprobe'"):
        fp(dim=2, index=IndexPlan("ivf", nprobe=0))


# ------------------------------------------------------------------------ binned
def binned(novelty: float = 0.5, seed: int = 0, **cfg: Any) -> Any:
    config = plans.selector("binned", dim=2, **{
        "bins": (4, 4), "bounds": ((0.0, 4.0), (0.0, 4.0)), "novelty": novelty, **cfg})
    return SELECTORS.get("binned")(config, seed=seed)


def fill(sel: Any, counts: dict[tuple[int, int], int]) -> dict[str, tuple[int, int]]:
    """Add ``counts[cell]`` candidates in each cell; return id -> cell."""
    where: dict[str, tuple[int, int]] = {}
    for (i, j), n in counts.items():
        names = ids(f"{i}{j}-", n)
        sel.add(names, np.tile([i + 0.5, j + 0.5], (n, 1)))
        where.update(dict.fromkeys(names, (i, j)))
    return where


def picks_per_cell(picked: list[str], where: dict[str, tuple[int, int]]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for name in picked:
        out[where[name]] = out.get(where[name], 0) + 1
    return out


UNEVEN = {(0, 0): 500, (0, 1): 100, (1, 1): 50, (2, 3): 20, (3, 0): 20, (3, 3): 10}


def test_binned_says_which_points_lie_outside_its_bounds_and_keeps_them() -> None:
    sel = binned()
    inside = sel.add(ids("in", 2), np.array([[0.0, 4.0], [2.0, 3.9]]))  # bounds included
    assert inside.outside is None
    result = sel.add(ids("out", 4), np.array([[-1.0, 2.0], [5.0, 9.0], [4.5, 1.0],
                                              [1.0, 1.0]]))
    assert result.accepted == 4 and result.outside is not None
    assert result.outside.points == 3
    assert result.outside.dims == {0: (0.0, 4.0, 1, 2), 1: (0.0, 4.0, 0, 1)}
    # Kept, in the edge bins: the selector still picks them.
    assert sorted(sel.select(6)) == sorted([*ids("in", 2), *ids("out", 4)])


@pytest.mark.parametrize("kind", ["random", "farthest_point"])
def test_selectors_without_bounds_say_nothing_of_them(kind: str) -> None:
    sel = SELECTORS.get(kind)(plans.selector(kind, dim=2), seed=0)
    assert sel.add(ids("a", 2), np.array([[1e9, -1e9], [0.0, 0.0]])).outside is None


def test_binned_novelty_one_spreads_evenly_over_occupied_bins() -> None:
    sel = binned(1.0)
    where = fill(sel, UNEVEN)
    assert picks_per_cell(sel.select(60), where) == dict.fromkeys(UNEVEN, 10)


def test_binned_novelty_zero_follows_the_candidate_distribution() -> None:
    sel = binned(0.0, seed=3)
    where = fill(sel, UNEVEN)
    got = picks_per_cell(sel.select(70), where)
    expected = {cell: 70 * n / 700 for cell, n in UNEVEN.items()}
    chi2 = sum((got.get(c, 0) - e) ** 2 / e for c, e in expected.items())
    assert chi2 < 2.0  # 5 degrees of freedom: chance alone would give about 5


@pytest.mark.parametrize("novelty", [0.0, 0.8, 0.9, 1.0])
def test_binned_every_novelty_works_with_nothing_selected(novelty: float) -> None:
    sel = binned(novelty)
    where = fill(sel, UNEVEN)
    first = sel.select(10)
    assert len(set(first)) == 10
    assert len(first) + len(drain(sel, batch=50)) == sum(UNEVEN.values())
    assert set(where) >= set(first)


def _shares(sel: Any) -> np.ndarray:
    """The target share q of each bin, as the class docstring states the rule."""
    both = sel._n + sel._s
    occupied = both > 0
    return ((1 - sel.novelty) * both / both.sum()
            + sel.novelty * occupied / np.count_nonzero(occupied))


def _follows_the_rule(sel: Any, horizons: list[int]) -> list[np.ndarray]:
    """Pick one at a time up to each horizon; at every t, each bin holds within one pick of
    q·t. Returns the picks per bin at each horizon."""
    q, out = _shares(sel), []
    for t in range(1, max(horizons) + 1):
        assert len(sel.select(1)) == 1
        off = np.abs(sel._s - q * t).max()
        assert off < 1.5, (t, off)
        if t in horizons:
            out.append(sel._s.copy())
    return out


def test_binned_uniform_data_at_novelty_one_is_spread_over_every_bin_in_random_order() -> None:
    # Every bin owed the same share: the deficit rule's ties went to the lowest bin index,
    # so the first 100 picks all came from x < 0.1.
    config = plans.selector("binned", dim=3, bins=(10, 10, 10), bounds=((0.0, 1.0),) * 3,
                            novelty=1.0)
    points = cloud(20_000, seed=1)

    def filled(seed: int) -> Any:
        sel = SELECTORS.get("binned")(config, seed=seed)
        sel.add(ids("u", len(points)), points)
        return sel

    at_100, _ = _follows_the_rule(filled(2), [100, 1000])
    slabs = np.bincount(np.flatnonzero(at_100) // 100, minlength=10)  # x-cell of each pick
    assert slabs.max() <= 25 and slabs.min() >= 1, slabs
    # Ties are broken by the seed: the same seed, the same picks; another, others.
    assert filled(2).select(100) == filled(2).select(100) != filled(3).select(100)


def test_binned_rare_bins_get_their_share_at_every_horizon() -> None:
    # 300 bins of 1,000 candidates and 1,000 bins of 3, novelty 0.5: the small bins are owed
    # 39 % of the picks (117 of the first 300); the deficit rule gave them none.
    config = plans.selector("binned", dim=2, bins=(50, 26),
                            bounds=((0.0, 50.0), (0.0, 26.0)), novelty=0.5)
    sel = SELECTORS.get("binned")(config, seed=0)
    rng = np.random.default_rng(7)
    big = np.zeros(1300, dtype=bool)
    big[rng.choice(1300, 300, replace=False)] = True
    counts = np.where(big, 1000, 3)
    cells = np.repeat(np.arange(1300), counts)
    centres = np.column_stack([cells // 26, cells % 26]) + 0.5
    sel.add(ids("p", len(cells)), centres)
    q = _shares(sel)
    small_share = q[~big].sum()
    assert abs(small_share - 0.39) < 0.01
    horizons = [30, 100, 300, 1000, 3000]
    for t, per_bin in zip(horizons, _follows_the_rule(sel, horizons), strict=True):
        expected = small_share * t
        got = int(per_bin[~big].sum())
        assert abs(got - expected) <= 4 * np.sqrt(expected) + 2, (t, got, expected)


def test_binned_points_outside_the_bounds_go_to_the_edge_bins() -> None:
    sel = binned(0.5)
    inside = sel.bin_of(np.array([[0.1, 3.9], [3.9, 0.0], [2.5, 1.5]]))
    outside = sel.bin_of(np.array([[-5.0, 40.0], [1e9, -1e9], [2.5, 1.5]]))
    assert inside.tolist() == outside.tolist() == [3, 12, 9]


def test_binned_random_first_draws_in_proportion_to_candidates() -> None:
    greedy, warm = binned(1.0), binned(1.0, random_first=20)
    counts = {(0, 0): 990, (3, 3): 10}
    where = fill(greedy, counts)
    fill(warm, counts)
    assert picks_per_cell(greedy.select(20), where) == {(0, 0): 10, (3, 3): 10}
    assert picks_per_cell(warm.select(20), where).get((0, 0), 0) >= 17


def test_binned_weights_share_a_bin_among_its_selections() -> None:
    sel = binned(1.0)
    fill(sel, {(0, 0): 30, (1, 1): 10})
    sel.select(4)
    assert sorted(sel.weights(normalize=False).values()) == [5.0, 5.0, 15.0, 15.0]


@pytest.mark.parametrize(
    ("bad", "message"),
    [({"bins": (4,)}, "bins"), ({"bounds": ((0.0, 4.0), (4.0, 4.0))}, "low < high"),
     ({"novelty": 1.5}, "novelty"), ({"bins": (4, 0)}, "bins")],
)
def test_binned_config_errors(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        binned(**bad)


# ------------------------------------------------------------------------ random
def test_random_picks_uniformly() -> None:
    sel = make("random", seed=11)
    sel.add(ids("c", 10_000), cloud(10_000))
    groups = np.bincount([int(i[1:]) // 1000 for i in sel.select(1000)], minlength=10)
    chi2 = float(((groups - 100) ** 2 / 100).sum())
    assert groups.sum() == 1000 and chi2 < 27.9  # the 99.9th percentile for 9 dof


# ----------------------------------------------------------------- how picks were made
@pytest.mark.parametrize("kind", KINDS)
def test_last_picks_say_how_each_id_of_the_last_select_was_chosen(kind: str) -> None:
    sel = make(kind)
    assert sel.last_picks() == []
    sel.add(ids("c", 40), cloud(40))
    first = sel.select(5)
    assert len(sel.last_picks()) == 5
    second = sel.select(3)
    how = sel.last_picks()
    assert len(how) == len(second) == 3 and set(first).isdisjoint(second)
    assert {p.queue for p in how} == {"default"}
    if kind != "farthest_point":
        assert all(p.score is None for p in how)  # not chosen by a score
    assert sel.select(0) == [] and sel.last_picks() == []


def test_farthest_point_picks_carry_their_queue_and_the_rank_they_won_by() -> None:
    sel = fp(seed=1, dim=3, k=2, queues=queues(a=0.5, b=0.5), random_first=2)
    n = 30
    sel.add(ids("c", n), cloud(n), ["a" if i % 3 else "b" for i in range(n)])
    sel.select(2)
    assert [p.score for p in sel.last_picks()] == [None, None]  # the warm-up's random picks
    for _ in range(6):
        ranks = sel.ranks()
        (picked,) = sel.select(1)
        (how,) = sel.last_picks()
        assert how.score == pytest.approx(ranks[picked])
        tag = "a" if int(picked[1:]) % 3 else "b"
        assert how.queue == tag
        assert how.score == pytest.approx(max(r for c, r in ranks.items()
                                              if ("a" if int(c[1:]) % 3 else "b") == tag))

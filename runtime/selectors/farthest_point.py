"""Farthest-point selection with ranks kept up to date incrementally instead of re-ranked."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mummi_spec.errors import SelectorError
from mummi_spec.plan import QueuePlan, SelectorPlan
from mummi_spec.runtime.selectors._columns import Columns
from mummi_spec.runtime.selectors._common import SelectorBase, read_float, read_int
from mummi_spec.runtime.selectors._idbook import DISCARDED
from mummi_spec.runtime.selectors._knn import SelectedIndex


def _ranks(d2: np.ndarray) -> np.ndarray:
    """Mean distance over the finite entries of each row of squared distances (+inf if none)."""
    dist = np.sqrt(d2)
    finite = np.isfinite(dist)
    if finite.all():
        mean: np.ndarray = dist.mean(axis=1, dtype=np.float32)
        return mean
    count = finite.sum(axis=1)
    total = np.where(finite, dist, 0.0).sum(axis=1, dtype=np.float32)
    out = np.full(len(d2), np.inf, dtype=np.float32)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _parse_queues(queues: Sequence[QueuePlan]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Queue names (settings order), target ratios, capacities (-1 = unbounded)."""
    if not queues:
        return ["default"], np.ones(1), np.full(1, -1, dtype=np.int64)
    names, ratios, caps = [], [], []
    for q in queues:
        names.append(q.name)
        ratios.append(read_float(f"queues.{q.name}.ratio", q.ratio, 0.0, math.inf))
        caps.append(-1 if q.capacity is None else
                    read_int(f"queues.{q.name}.capacity", q.capacity, minimum=1))
    if sum(ratios) == 0:
        raise SelectorError("farthest_point: at least one queue needs a ratio > 0")
    return names, np.array(ratios), np.array(caps, dtype=np.int64)


class FarthestPointSelector(SelectorBase):
    """Picks, one at a time, the candidate farthest (mean distance to its k nearest selected
    points) from everything selected so far, across queues that share one selected index.

    Every candidate keeps its k smallest squared distances to selected points. New candidates
    get theirs from one FAISS search at the next ``select``; each pick then merges its distance
    into every row (a matrix-vector product), so a batch is truly sequential farthest-point.
    """

    key = "farthest_point"
    _point_dtype = np.float32

    def __init__(self, settings: SelectorPlan, seed: int | None = None) -> None:
        super().__init__(settings, seed)
        self.k = read_int("k", settings.k, minimum=1)
        self._index = SelectedIndex(self.dim, settings.index, self.seed)
        self._queue_names, ratio, self._capacity = _parse_queues(settings.queues)
        self._target = ratio / ratio.sum()
        nq, d = len(self._queue_names), self.dim
        self._qcand = np.zeros(nq, dtype=np.int64)  # candidates per queue, searched or not
        self._qsel = np.zeros(nq, dtype=np.int64)
        # Points are stored relative to an origin near the data: FAISS's BLAS search uses the
        # |x|^2 - 2x.p + |p|^2 expansion, which loses float32 precision far from zero.
        self._origin = np.zeros(0, dtype=np.float32)
        self._fresh = Columns({"x": (np.float32, (d,)), "serial": (np.int32, ()),
                               "queue": (np.int16, ())})  # added, not yet searched
        # knn: each candidate's k smallest squared distances to selected points, ascending
        # (+inf while fewer exist); nn: label of the nearest selected point (for weights).
        self._cand = Columns({"x": (np.float32, (d,)), "serial": (np.int32, ()),
                              "queue": (np.int16, ()), "knn": (np.float32, (self.k,)),
                              "nn": (np.int32, ()), "rank": (np.float32, ())})

    # ------------------------------------------------------------------ public
    def weights(self, normalize: bool = True) -> dict[str, float]:
        """1 + the number of candidates whose nearest selected point each selection is."""
        self._sync()
        nn = self._cand["nn"]
        counts = 1 + np.bincount(nn[nn >= 0], minlength=self._index.n)
        return self._weights_dict(counts, normalize)

    def rerank(self) -> None:
        """Recompute every candidate's ranks from scratch with one FAISS search (restart, or
        after the encoder changed); the incremental ranks equal these up to rounding."""
        self._sync(search=False)
        cand = self._cand
        d2, nearest = self._index.search(np.ascontiguousarray(cand["x"].T), self.k)
        cand["knn"][:] = d2.T
        cand["nn"][:] = nearest
        cand["rank"][:] = _ranks(d2)

    def ranks(self) -> dict[str, float]:
        """Current rank of every candidate (for inspection and tests)."""
        self._sync()
        names = self._book.decode(self._cand["serial"])
        return dict(zip(names, self._cand["rank"].tolist(), strict=True))

    # -------------------------------------------------------------- internals
    def _accept(self, serials: np.ndarray, points: np.ndarray, queue: np.ndarray) -> None:
        if not self._origin.size:
            self._origin = points.mean(axis=0, dtype=np.float64).astype(np.float32)
        self._fresh.append(x=points - self._origin, serial=serials, queue=queue)
        self._qcand += np.bincount(queue, minlength=len(self._qcand))

    def _sync(self, search: bool = True) -> None:
        """Move fresh candidates into the ranked set, searching them against the index."""
        fresh = self._fresh
        if not fresh.n:
            return
        x = np.ascontiguousarray(fresh["x"].T)
        if search:
            d2, nearest = self._index.search(x, self.k)
        else:  # the caller ranks everything itself
            d2 = np.full((fresh.n, self.k), np.inf, dtype=np.float32)
            nearest = np.full(fresh.n, -1, dtype=np.int32)
        self._cand.append(x=x, serial=fresh["serial"], queue=fresh["queue"], knn=d2,
                          nn=nearest, rank=_ranks(d2))
        fresh.clear()

    def _select(self, k: int) -> None:
        self._sync()
        self._enforce_capacity()
        for _ in range(k):
            queue = self._choose_queue()
            if queue < 0:
                break
            self._pick(self._choose_row(queue), queue)
        self._enforce_capacity()

    def _choose_queue(self) -> int:
        """The queue furthest below its target share of all selections so far."""
        eligible = (self._qcand > 0) & (self._target > 0)
        if not eligible.any():
            return -1
        deficit = self._target * (self._qsel.sum() + 1) - self._qsel
        return int(np.argmax(np.where(eligible, deficit, -np.inf)))

    def _choose_row(self, queue: int) -> int:
        cand = self._cand
        single = len(self._queue_names) == 1
        if self._rank_free() or self._index.n == 0:
            members = np.arange(cand.n) if single else np.flatnonzero(cand["queue"] == queue)
            return int(members[self._rng.integers(members.size)])
        if single:
            return int(np.argmax(cand["rank"]))
        return int(np.argmax(np.where(cand["queue"] == queue, cand["rank"], -np.inf)))

    def _pick(self, row: int, queue: int) -> None:
        cand = self._cand
        x = cand["x"][:, row].copy()
        serial = int(cand["serial"][row])
        ranked = not self._rank_free() and self._index.n > 0  # as _choose_row decided
        score = float(cand["rank"][row]) if ranked else None
        cand.swap_remove(row)
        label = self._index.n
        self._index.add(x)
        self._merge(x, label)
        self._qsel[queue] += 1
        self._qcand[queue] -= 1
        self._take(serial, queue, score)

    def _accept_selected(self, serials: np.ndarray, points: np.ndarray,
                         queue: np.ndarray) -> None:
        if not self._origin.size:
            self._origin = points.mean(axis=0, dtype=np.float64).astype(np.float32)
        self._index.add(points - self._origin)
        self._qsel += np.bincount(queue, minlength=len(self._qsel))
        if self._cand.n:  # ranked against fewer points: one search, not a merge per point
            self.rerank()

    def _take_candidate(self, serial: int) -> None:
        self._sync()
        row = int(np.flatnonzero(self._cand["serial"] == serial)[0])
        self._pick(row, int(self._cand["queue"][row]))

    def _merge(self, p: np.ndarray, label: int) -> None:
        """Fold the distance to a newly selected point ``p`` into every candidate's k-row."""
        cand = self._cand
        if not cand.n:
            return
        x = cand["x"]  # one contiguous row per coordinate: exact differences, no BLAS
        d2 = np.subtract(x[0], p[0])
        d2 *= d2
        step = np.empty_like(d2)
        for j in range(1, self.dim):
            np.subtract(x[j], p[j], out=step)
            step *= step
            d2 += step
        knn = cand["knn"]
        hit = np.flatnonzero(d2 < knn[-1])  # only rows whose k nearest change
        if not hit.size:
            return
        cand["nn"][hit[d2[hit] < knn[0, hit]]] = label
        rows = np.ascontiguousarray(knn[:, hit].T)
        rows[:, -1] = d2[hit]  # replaces the largest, so one sort restores the order
        rows.sort(axis=1)
        knn[:, hit] = rows.T
        cand["rank"][hit] = _ranks(rows)

    def _enforce_capacity(self) -> None:
        """Discard the least novel candidates of queues over capacity (once ranks exist)."""
        over = (self._capacity >= 0) & (self._qcand > self._capacity)
        if self._index.n == 0 or not over.any():
            return
        cand = self._cand
        drop = []
        for queue in np.flatnonzero(over).tolist():
            members = np.flatnonzero(cand["queue"] == queue)
            excess = int(self._qcand[queue] - self._capacity[queue])
            worst = members[np.argpartition(cand["rank"][members], excess - 1)[:excess]]
            drop.append(worst)
            self._book.mark(cand["serial"][worst], DISCARDED)
            self._qcand[queue] -= excess
            self._discarded += excess
        cand.remove(np.concatenate(drop))

    def _candidates(self) -> int:
        return self._cand.n + self._fresh.n

    def _per_queue(self) -> dict[str, tuple[int, int]]:
        return {name: (int(self._qcand[i]), int(self._qsel[i]))
                for i, name in enumerate(self._queue_names)}

    def _state(self) -> dict[str, np.ndarray]:
        return {**self._cand.state("cand_"), **self._fresh.state("fresh_"),
                **self._index.state(), "qsel": self._qsel, "origin": self._origin}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._cand.restore(arrays, "cand_")
        self._fresh.restore(arrays, "fresh_")
        self._index.restore(arrays)
        nq = len(self._queue_names)
        queues = np.concatenate([self._cand["queue"], self._fresh["queue"]])
        if self._index.n != self._selected.n or (queues.size and int(queues.max()) >= nq):
            raise SelectorError("candidates, queues and selected points do not agree")
        self._qsel = arrays["qsel"].astype(np.int64).reshape(nq)
        self._qcand = np.bincount(queues, minlength=nq).astype(np.int64)
        self._origin = arrays["origin"].astype(np.float32)
        if not (np.isfinite(self._origin).all() and np.isfinite(self._cand["x"]).all()
                and np.isfinite(self._fresh["x"]).all()):
            # Written after an empty first add set the origin to NaN: every point is lost.
            raise SelectorError("stored points are not finite")

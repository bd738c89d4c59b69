"""Binned selection: spread picks over a grid of bins, between following the data and novelty."""

from __future__ import annotations

import math

import numpy as np

from mummi_spec.errors import SelectorError
from mummi_spec.plan import SelectorPlan
from mummi_spec.runtime.selectors._columns import Columns
from mummi_spec.runtime.selectors._common import SelectorBase, read_float
from mummi_spec.runtime.selectors.base import Outside

_TAKEN = -1  # bin value of a candidate that has been selected


class BinnedSelector(SelectorBase):
    """Per-bin counts of candidates N and past selections S decide which bin is owed a pick:
    bin b's target share of the picks is q_b = (1-λ)·(N_b+S_b)/Σ(N+S) + λ/n_occupied, and
    the next pick comes from the bin whose next pick is due first, at virtual time
    (S_b + φ_b)/q_b, where φ_b in [0, 1) is the bin's phase, drawn once from the seed; the
    candidate is chosen at random within the bin. So after t picks every bin holds within
    one pick of q_b·t, at every t, and in expectation exactly q_b·t: a thousand bins each
    owed a tenth of a pick get a hundred picks between them, in bins the phases choose at
    random, and bins owed the same share come in a random order, not in index order.

    Adding is vectorised (bin index and counts per batch); a candidate stores only its serial,
    its bin and a random priority. A bin's member list is built when the bin is first picked
    from and extended with rows added since, so ``select`` never re-ranks everything. The
    random pick is the member of highest priority (ties: lowest row), which makes it
    independent of how the member lists happen to be ordered, so checkpoints need not store them.
    """

    key = "binned"

    def __init__(self, settings: SelectorPlan, seed: int | None = None) -> None:
        super().__init__(settings, seed)
        bins, bounds = settings.bins, settings.bounds
        if not isinstance(bins, (list, tuple)) or len(bins) != self.dim or not all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in bins
        ):
            raise SelectorError(f"binned: 'bins' must list {self.dim} integers >= 1, got {bins!r}")
        if not isinstance(bounds, (list, tuple)) or len(bounds) != self.dim:
            raise SelectorError(f"binned: 'bounds' must list {self.dim} [low, high] pairs")
        try:
            lo_hi = np.array(bounds, dtype=np.float64).reshape(self.dim, 2)
        except (TypeError, ValueError):
            raise SelectorError(f"binned: bounds {bounds!r} are not [low, high] pairs") from None
        if not (np.isfinite(lo_hi).all() and (lo_hi[:, 0] < lo_hi[:, 1]).all()):
            raise SelectorError(f"binned: every bound needs finite low < high, got {bounds!r}")
        self.novelty = read_float("novelty", settings.novelty, 0.0, 1.0)
        self._bins = np.array(bins, dtype=np.int64)
        self._nbins = math.prod(bins)
        if self._nbins >= np.iinfo(np.int32).max:
            raise SelectorError(f"binned: {self._nbins} bins are too many")
        self._lo, self._hi = lo_hi[:, 0], lo_hi[:, 1]
        self._scale = self._bins / (lo_hi[:, 1] - lo_hi[:, 0])
        self._strides = np.cumprod(np.r_[1, self._bins[::-1][:-1]])[::-1]  # C order
        self._cols = Columns({"serial": (np.int32, ()), "bin": (np.int32, ()),
                              "prio": (np.uint32, ())})
        self._n = np.zeros(self._nbins, dtype=np.int64)  # unselected candidates per bin
        self._s = np.zeros(self._nbins, dtype=np.int64)  # selections per bin
        self._sel_bin = Columns({"bin": (np.int32, ())})
        self._members: dict[int, np.ndarray] = {}  # bin -> unselected rows seen so far
        self._scanned = np.zeros(self._nbins, dtype=np.int64)  # rows checked for each bin
        # A generator of its own: the phases follow from the seed alone, so checkpoints need
        # not store them and drawing them moves no other random choice.
        self._phase = np.random.default_rng((self.seed, 1)).random(self._nbins)

    def bin_of(self, points: np.ndarray) -> np.ndarray:
        """Flat bin index of each point; coordinates outside the bounds go to the edge bins."""
        flat = np.zeros(len(points), dtype=np.int32)
        for j in range(self.dim):  # one column at a time keeps temporaries at n, not n*dim
            cell = (points[:, j] - self._lo[j]) * self._scale[j]
            np.clip(cell, 0, self._bins[j] - 1, out=cell)
            flat += cell.astype(np.int32) * int(self._strides[j])
        return flat

    def outside(self, points: np.ndarray) -> Outside | None:
        """Which points lie beyond the bounds, per dimension (None if none do): binned into
        the edge bins all the same, but a sign the bounds are wrong."""
        dims: dict[int, tuple[float, float, int, int]] = {}
        beyond = np.zeros(len(points), dtype=bool)
        for j in range(self.dim):
            below, above = points[:, j] < self._lo[j], points[:, j] > self._hi[j]
            n_below, n_above = int(np.count_nonzero(below)), int(np.count_nonzero(above))
            if n_below or n_above:
                dims[j] = (float(self._lo[j]), float(self._hi[j]), n_below, n_above)
                beyond |= below | above
        return Outside(int(np.count_nonzero(beyond)), dims) if dims else None

    def weights(self, normalize: bool = True) -> dict[str, float]:
        """Each selection stands for its bin's candidates shared among the bin's selections."""
        b = self._sel_bin["bin"]
        return self._weights_dict((self._n[b] + self._s[b]) / self._s[b], normalize)

    def _accept(self, serials: np.ndarray, points: np.ndarray, queue: np.ndarray
                ) -> Outside | None:
        b = self.bin_of(points)
        prio = self._rng.integers(0, 2**32, size=len(b), dtype=np.uint32)
        self._cols.append(serial=serials, bin=b, prio=prio)
        if len(b) >= self._nbins // 8:
            self._n += np.bincount(b, minlength=self._nbins)
        else:  # few rows and many bins: don't pay O(bins) per batch
            np.add.at(self._n, b, 1)
        return self.outside(points)

    def _select(self, k: int) -> None:
        for _ in range(k):
            if not self._n.any():
                break
            b = self._random_bin() if self._rank_free() else self._neediest_bin()
            self._take_row(b, self._pop(b))

    def _take_row(self, b: int, row: int) -> None:
        """Select candidate ``row`` of bin ``b`` (already out of the bin's member list)."""
        self._n[b] -= 1
        self._s[b] += 1
        self._cols["bin"][row] = _TAKEN
        self._sel_bin.append(bin=np.array([b], dtype=np.int32))
        self._take(int(self._cols["serial"][row]))

    def _accept_selected(self, serials: np.ndarray, points: np.ndarray,
                         queue: np.ndarray) -> None:
        b = self.bin_of(points)
        np.add.at(self._s, b, 1)
        self._sel_bin.append(bin=b)

    def _take_candidate(self, serial: int) -> None:
        row = int(np.flatnonzero((self._cols["serial"] == serial)
                                 & (self._cols["bin"] != _TAKEN))[0])
        b = int(self._cols["bin"][row])
        if b in self._members:
            members = self._members[b]
            self._members[b] = members[members != row]
        self._take_row(b, row)

    def _random_bin(self) -> int:
        """A bin drawn in proportion to its candidates: with a random member, a uniform pick."""
        r = self._rng.integers(int(self._n.sum()))
        return int(np.searchsorted(np.cumsum(self._n), r, side="right"))

    def _neediest_bin(self) -> int:
        """The bin whose next pick falls due first (see the class docstring)."""
        both = self._n + self._s
        occupied = both > 0
        lam = self.novelty
        share = (1 - lam) * both / both.sum() + lam * occupied / np.count_nonzero(occupied)
        # Only bins that still hold candidates can give one (their share is never 0).
        open_ = np.flatnonzero(self._n)
        due = (self._s[open_] + self._phase[open_]) / share[open_]
        return int(open_[np.argmin(due)])

    def _pop(self, b: int) -> int:
        """Remove and return the highest-priority unselected row of bin ``b``."""
        rows = self._members.get(b, np.zeros(0, dtype=np.int64))
        n, start = self._cols.n, int(self._scanned[b])
        if start < n:
            new = np.flatnonzero(self._cols["bin"][start:n] == b) + start
            rows = np.concatenate([rows, new])
            self._scanned[b] = n
        prio = self._cols["prio"][rows]
        top = np.flatnonzero(prio == prio.max())
        j = int(top[np.argmin(rows[top])]) if len(top) > 1 else int(top[0])
        row = int(rows[j])
        rows[j] = rows[-1]
        self._members[b] = rows[:-1]
        return row

    def _candidates(self) -> int:
        return int(self._n.sum())

    def _state(self) -> dict[str, np.ndarray]:
        return {**self._cols.state("cand_"), **self._sel_bin.state("selbin_")}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._cols.restore(arrays, "cand_")
        self._sel_bin.restore(arrays, "selbin_")
        bins, taken = self._cols["bin"], self._sel_bin["bin"]
        if (len(bins) and int(bins.max()) >= self._nbins) or len(taken) != self._selected.n:
            raise SelectorError("stored bins do not match the selector's bins")
        self._n = np.bincount(bins[bins != _TAKEN], minlength=self._nbins).astype(np.int64)
        self._s = np.bincount(taken, minlength=self._nbins).astype(np.int64)

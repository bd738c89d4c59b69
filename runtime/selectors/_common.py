"""What every selector shares: config checks, warm-up, add pipeline, routing, checkpoints."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from mummi_spec.errors import SelectorError
from mummi_spec.plan import SelectorPlan, to_data
from mummi_spec.runtime.selectors._columns import Columns
from mummi_spec.runtime.selectors._idbook import (
    CANDIDATE,
    DISCARDED,
    SELECTED,
    IdBook,
    as_id_array,
)
from mummi_spec.runtime.selectors.base import AddResult, Outside, Pick, SelectorStats

FORMAT = "mummi-spec-selector/1"


def read_int(key: str, value: Any, minimum: int = 0) -> int:
    """A setting that must be an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SelectorError(f"selector setting '{key}' must be an integer >= {minimum}, "
                            f"got {value!r}")
    return int(value)


def read_float(key: str, value: Any, lo: float, hi: float) -> float:
    """A setting that must be a number in ``[lo, hi]``."""
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or not lo <= float(value) <= hi:
        raise SelectorError(f"selector setting '{key}' must be a number in [{lo}, {hi}], "
                            f"got {value!r}")
    return float(value)


def normalized(weights: np.ndarray, normalize: bool) -> np.ndarray:
    """Scale weights to mean 1 when asked (feedback treats 1 as 'an ordinary selection')."""
    if normalize and len(weights):
        scaled: np.ndarray = weights / weights.mean()
        return scaled
    return weights


class SelectorBase:
    """The kind-independent half of every selector; subclasses supply ranks and choices.

    A subclass implements ``_accept`` (store accepted rows), ``_select`` (make picks through
    ``_take``), ``_candidates``, ``_per_queue``, ``weights``, ``_state`` and ``_restore``.
    """

    key: ClassVar[str]
    _point_dtype: ClassVar[type | None] = None  # dtype candidates are stored in, if stored

    def __init__(self, settings: SelectorPlan, seed: int | None = None) -> None:
        if settings.kind != self.key:
            raise SelectorError(f"settings of kind {settings.kind!r} given to {self.key!r}")
        self.dim = read_int("dim", settings.dim, minimum=1)
        self.min_candidates = read_int("min_candidates", settings.min_candidates)
        self.random_first = read_int("random_first", settings.random_first)
        self.seed = read_int("seed", settings.seed if seed is None else seed)
        self.settings = settings
        self._rng = np.random.default_rng(self.seed)
        self._book = IdBook()
        self._selected = Columns({"serial": (np.int32, ())})
        self._queue_names: list[str] = ["default"]
        self._ever_added = 0
        self._discarded = 0
        self._picks: list[Pick] = []  # how the last select's picks were made (not saved)

    # ----------------------------------------------------------------- adding
    def add(
        self, ids: Sequence[str], points: np.ndarray, tags: Sequence[str | None] | None = None
    ) -> AddResult:
        id_arr, usable = as_id_array(ids)
        m = len(id_arr)
        pts = self._as_points(points, m)
        all_finite = np.isfinite(pts).all()  # one flat pass; the per-row form is 10x slower
        finite = np.ones(m, dtype=bool) if all_finite else np.isfinite(pts).all(axis=1)
        queue = self._route(tags, m)
        if m == 0:  # checked, and nothing to keep: no state may change (the mean of no
            return AddResult(0)  # points would have become the farthest-point origin: NaN)
        ok = usable & finite & (queue >= 0)
        all_ok = bool(ok.all())
        base = len(self._book)
        serials, match = self._book.insert(id_arr if all_ok else id_arr[ok])
        new = np.flatnonzero(match < 0)
        accepted = len(new)
        outside = None
        if all_ok and accepted == m:  # the usual batch: no copies of the caller's arrays
            outside = self._accept(serials, pts, queue)
        elif accepted:
            rows = np.flatnonzero(ok)[new]
            outside = self._accept(serials[new], pts[rows], queue[rows])
        self._ever_added += accepted
        if accepted == m:
            return AddResult(accepted, outside=outside)
        return AddResult(accepted, self._reasons(id_arr, usable, finite, queue, ok, match, base),
                         outside)

    def add_selected(
        self, ids: Sequence[str], points: np.ndarray, tags: Sequence[str | None] | None = None
    ) -> AddResult:
        """Record candidates selected before a restart as selected (rebuilding from the ledger).

        Each counts as a pick: later picks keep away from it (farthest-point), its bin has
        had it (binned), weights count it. An id already selected is left as it is; one
        still a candidate (a checkpoint older than the ledger) is taken from the candidates.
        """
        id_arr, usable = as_id_array(ids)
        m = len(id_arr)
        pts = self._as_points(points, m)
        finite = np.isfinite(pts).all(axis=1) if m else np.ones(0, dtype=bool)
        queue = self._route(tags, m)
        ok = usable & finite & (queue >= 0)
        if not ok.any():
            return AddResult(0, self._reasons(id_arr, usable, finite, queue, ok,
                                              np.zeros(0, dtype=np.int32), len(self._book)))
        rows, base = np.flatnonzero(ok), len(self._book)
        serials, match = self._book.insert(id_arr[rows])
        before = (match >= 0) & (match < base)  # known before this batch (not a repeat in it)
        state = self._book.states[np.where(before, match, 0)]
        # New ids, and discarded ones (their point left the candidates): new selected points.
        new = np.flatnonzero((match < 0) | (before & (state == DISCARDED)))
        fresh = np.where(match[new] < 0, serials[new], match[new])
        once = np.sort(np.unique(fresh, return_index=True)[1])  # a batch may name an id twice
        new, fresh = new[once], fresh[once]
        self._book.mark(fresh, SELECTED)
        if len(new):
            self._accept_selected(fresh, pts[rows[new]], queue[rows[new]])
            self._selected.append(serial=fresh)
        self._ever_added += int(np.count_nonzero(match < 0))
        taken = list(dict.fromkeys(match[before & (state == CANDIDATE)].tolist()))
        for serial in taken:
            self._take_candidate(serial)
        reasons = self._reasons(id_arr, usable, finite, queue, ok,
                                np.full(len(rows), -1, dtype=np.int32), base)
        return AddResult(len(new) + len(taken), reasons)

    def _as_points(self, points: np.ndarray, m: int) -> np.ndarray:
        try:
            with np.errstate(over="ignore"):  # out-of-range values become inf and are refused
                pts = np.asarray(points, dtype=self._point_dtype)
            if pts.dtype.kind not in "fiu":
                pts = pts.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise SelectorError(f"points are not numeric: {exc}") from None
        if m == 0 and pts.size == 0:
            return np.zeros((0, self.dim), dtype=pts.dtype)
        if pts.ndim != 2 or pts.shape != (m, self.dim):
            raise SelectorError(
                f"points must have shape ({m}, {self.dim}) for {m} ids, got {pts.shape}"
            )
        return pts

    def _route(self, tags: Sequence[str | None] | None, m: int) -> np.ndarray:
        """Queue index of each candidate, -1 where its tag names no queue."""
        if tags is None:
            fill = 0 if len(self._queue_names) == 1 else -1
            return np.full(m, fill, dtype=np.int16)
        tag_arr = np.asarray(tags)
        if tag_arr.dtype.kind not in "US":  # e.g. None among the tags: compare as objects
            tag_arr = np.asarray(tags, dtype=object)
        if tag_arr.shape != (m,):
            raise SelectorError(f"{len(tag_arr)} tags given for {m} ids")
        queue = np.full(m, -1, dtype=np.int16)
        for index, name in enumerate(self._queue_names):
            queue[tag_arr == name] = index
        return queue

    def _reasons(
        self,
        id_arr: np.ndarray,
        usable: np.ndarray,
        finite: np.ndarray,
        queue: np.ndarray,
        ok: np.ndarray,
        match: np.ndarray,
        base: int,
    ) -> list[tuple[str, str]]:
        """Per-item refusals, built only for the refused rows."""
        dup_of = np.full(len(id_arr), -1, dtype=np.int64)
        dup_of[np.flatnonzero(ok)] = match
        names = ", ".join(self._queue_names)
        out = []
        for i in np.flatnonzero(~ok | (dup_of >= 0)).tolist():
            text = id_arr[i].decode(errors="replace")
            if not usable[i]:
                out.append((text, "not a usable id: ids must be non-empty strings"))
            elif not finite[i]:
                out.append((text, "point has NaN or infinite coordinates"))
            elif queue[i] < 0:
                why = "no tag given and the selector has several queues"
                out.append((text, f"{why} ({names})" if len(self._queue_names) > 1 else why))
            else:
                out.append((text, self._book.reason(int(dup_of[i]), base)))
        return out

    # -------------------------------------------------------------- selecting
    def select(self, k: int) -> list[str]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise SelectorError(f"select(k) needs an integer k >= 0, got {k!r}")
        self._picks = []
        if k == 0 or self._ever_added < self.min_candidates:
            return []
        start = self._selected.n
        self._select(int(k))
        return self._book.decode(self._selected["serial"][start:])

    def _rank_free(self) -> bool:
        """Whether the next pick is one of the warm-up's random (rank-free) picks."""
        return self._selected.n < self.random_first

    def _take(self, serial: int, queue: int = 0, score: float | None = None) -> None:
        self._selected.append(serial=np.array([serial], dtype=np.int32))
        self._book.mark(serial, SELECTED)
        self._picks.append(Pick(self._queue_names[queue], score))

    def last_picks(self) -> list[Pick]:
        return list(self._picks)

    def stats(self) -> SelectorStats:
        return SelectorStats(
            candidates=self._candidates(),
            selected=self._selected.n,
            discarded=self._discarded,
            per_queue=self._per_queue(),
        )

    def known_ids(self) -> list[str]:
        """Every id ever added (candidates, selected and discarded), for a restart's ingest."""
        return self._book.decode(np.arange(len(self._book), dtype=np.int64))

    def _weights_dict(self, weights: np.ndarray, normalize: bool) -> dict[str, float]:
        ids = self._book.decode(self._selected["serial"])
        values = normalized(weights.astype(np.float64), normalize).tolist()
        return dict(zip(ids, values, strict=True))

    # ------------------------------------------------------------ checkpoints
    def save(self, path: Path) -> None:
        path = Path(path)
        arrays = {
            "format": np.array(FORMAT),
            "kind": np.array(self.key),
            "config": np.array(self._config_text()),
            "rng": np.array(json.dumps(self._rng.bit_generator.state)),
            "counters": np.array([self._ever_added, self._discarded], dtype=np.int64),
            **self._book.state(),
            **self._selected.state("sel_"),
            **self._state(),
        }
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:  # a file object: np.savez would append '.npz' to a name
            np.savez(fh, **cast(dict[str, Any], arrays))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        path = Path(path)
        try:
            # Our own handle: np.load leaks the one it opens when the zip is corrupt.
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise SelectorError(f"cannot read selector checkpoint {path}: {exc}") from None
        # Restore into a fresh instance first, so a bad file leaves this one untouched.
        fresh = type(self)(self.settings, self.seed)
        try:
            fresh._restore_all(arrays)
        except (KeyError, ValueError, IndexError, TypeError, SelectorError) as exc:
            raise SelectorError(f"unusable selector checkpoint {path}: {exc}") from None
        self.__dict__.update(fresh.__dict__)

    def _config_text(self) -> str:
        # Everything that shapes the selector's state; its name may change between runs.
        return json.dumps({k: v for k, v in to_data(self.settings).items() if k != "name"},
                          sort_keys=True)

    def _restore_all(self, arrays: dict[str, np.ndarray]) -> None:
        if str(arrays["format"]) != FORMAT or str(arrays["kind"]) != self.key:
            raise SelectorError(f"not a {self.key} selector checkpoint ({arrays['format']})")
        if str(arrays["config"]) != self._config_text():
            raise SelectorError("written with a different selector config")
        self._rng.bit_generator.state = json.loads(str(arrays["rng"]))
        self._ever_added, self._discarded = (int(v) for v in arrays["counters"])
        self._book.restore(arrays)
        self._selected.restore(arrays, "sel_")
        if self._selected.n and int(self._selected["serial"].max()) >= len(self._book):
            raise SelectorError("selected serials beyond the stored ids")
        self._restore(arrays)

    # ------------------------------------------------------ subclass contract
    def _accept(self, serials: np.ndarray, points: np.ndarray, queue: np.ndarray
                ) -> Outside | None:
        raise NotImplementedError

    def _select(self, k: int) -> None:
        raise NotImplementedError

    def _accept_selected(self, serials: np.ndarray, points: np.ndarray,
                         queue: np.ndarray) -> None:
        """Store points selected elsewhere (``add_selected``), already in ``_selected``."""
        raise NotImplementedError

    def _take_candidate(self, serial: int) -> None:
        """Select the candidate ``serial`` now, as a pick would (through ``_take``)."""
        raise NotImplementedError

    def _candidates(self) -> int:
        raise NotImplementedError

    def _per_queue(self) -> dict[str, tuple[int, int]]:
        return {"default": (self._candidates(), self._selected.n)}

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

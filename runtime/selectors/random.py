"""Random selection: uniform, seeded choice among the unselected candidates (a baseline)."""

from __future__ import annotations

import numpy as np

from mummi_spec.errors import SelectorError
from mummi_spec.plan import SelectorPlan
from mummi_spec.runtime.selectors._columns import Columns
from mummi_spec.runtime.selectors._common import SelectorBase


class RandomSelector(SelectorBase):
    """Each pick is uniform over the candidates not yet selected; points are checked, not kept."""

    key = "random"

    def __init__(self, settings: SelectorPlan, seed: int | None = None) -> None:
        super().__init__(settings, seed)
        self._cols = Columns({"serial": (np.int32, ())})

    def weights(self, normalize: bool = True) -> dict[str, float]:
        """An unbiased sample: every selection stands for the same share of the candidates."""
        n_sel = self._selected.n
        share = (n_sel + self._cols.n) / n_sel if n_sel else 1.0
        return self._weights_dict(np.full(n_sel, share), normalize)

    def _accept(self, serials: np.ndarray, points: np.ndarray, queue: np.ndarray) -> None:
        self._cols.append(serial=serials)

    def _select(self, k: int) -> None:
        for _ in range(k):
            if not self._cols.n:
                break
            row = int(self._rng.integers(self._cols.n))
            serial = int(self._cols["serial"][row])
            self._cols.swap_remove(row)
            self._take(serial)

    def _accept_selected(self, serials: np.ndarray, points: np.ndarray,
                         queue: np.ndarray) -> None:
        """Nothing to keep: no random pick depends on an earlier one."""

    def _take_candidate(self, serial: int) -> None:
        row = int(np.flatnonzero(self._cols["serial"] == serial)[0])
        self._cols.swap_remove(row)
        self._take(serial)

    def _candidates(self) -> int:
        return self._cols.n

    def _state(self) -> dict[str, np.ndarray]:
        return self._cols.state("cand_")

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._cols.restore(arrays, "cand_")
        if len(self._cols) and int(self._cols["serial"].max()) >= len(self._book):
            raise SelectorError("candidate serials beyond the stored ids")

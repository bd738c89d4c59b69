"""Growable struct-of-arrays storage for selector state: batched appends, O(1) removal."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import DTypeLike

from mummi_spec.errors import SelectorError

ColumnSpec = Mapping[str, tuple[DTypeLike, tuple[int, ...]]]


class Columns:
    """Named numpy columns sharing one row count, stored feature-major (row axis last).

    ``cols["x"]`` of shape ``(d,)`` per row is a ``(d, n)`` view whose ``[j]`` is one
    contiguous coordinate: the per-pick distance update then runs as plain contiguous
    ufunc loops instead of a BLAS matrix-vector product, which OpenBLAS threads make slow on
    a busy 2-core machine. Capacity doubles when full, so appends are amortised O(1).
    """

    def __init__(self, spec: ColumnSpec) -> None:
        self.n = 0
        self._data = {
            name: np.empty((*shape, 0), dtype=np.dtype(dtype))
            for name, (dtype, shape) in spec.items()
        }

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, name: str) -> np.ndarray:
        return self._data[name][..., : self.n]

    def capacity(self) -> int:
        """Rows that fit before the next reallocation."""
        return int(min(a.shape[-1] for a in self._data.values()))

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` rows in total."""
        cap = self.capacity()
        if rows <= cap:
            return
        new_cap = max(rows, 2 * cap, 64)
        for name, arr in self._data.items():
            grown = np.empty((*arr.shape[:-1], new_cap), dtype=arr.dtype)
            grown[..., : self.n] = arr[..., : self.n]
            self._data[name] = grown

    def retype(self, name: str, dtype: DTypeLike) -> None:
        """Change one column's dtype (e.g. a wider byte-string width), keeping its rows."""
        self._data[name] = self._data[name].astype(dtype)

    def append(self, **cols: np.ndarray) -> None:
        """Append rows; each value is row-major, ``(m, *shape)``, like the caller's data."""
        m = len(next(iter(cols.values())))
        self.reserve(self.n + m)
        for name, arr in self._data.items():
            value = np.asarray(cols[name])
            arr[..., self.n : self.n + m] = np.moveaxis(value, 0, -1) if value.ndim > 1 else value
        self.n += m

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        """Selected rows of one column, row-major: ``(len(index), *shape)``."""
        return np.moveaxis(self._data[name][..., index], -1, 0)

    def set_rows(self, name: str, index: np.ndarray, value: np.ndarray) -> None:
        self._data[name][..., index] = np.moveaxis(value, 0, -1) if value.ndim > 1 else value

    def swap_remove(self, row: int) -> None:
        """Remove one row by moving the last row into its place (row order is not kept)."""
        last = self.n - 1
        if row != last:
            for arr in self._data.values():
                arr[..., row] = arr[..., last]
        self.n = last

    def remove(self, rows: np.ndarray) -> None:
        """Remove distinct rows in O(len(rows)): rows from the tail fill the holes."""
        m = len(rows)
        if not m:
            return
        end = self.n - m
        gone = np.zeros(m, dtype=bool)
        tail = rows[rows >= end]
        gone[tail - end] = True
        holes = np.sort(rows[rows < end])
        movers = end + np.flatnonzero(~gone)
        for arr in self._data.values():
            arr[..., holes] = arr[..., movers]
        self.n = end

    def compress(self, keep: np.ndarray) -> None:
        """Keep the rows where ``keep`` is true, in order."""
        kept = int(np.count_nonzero(keep))
        for arr in self._data.values():
            arr[..., :kept] = arr[..., : self.n][..., keep]
        self.n = kept

    def clear(self) -> None:
        self.n = 0

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        """The live rows of every column, keyed ``prefix + name`` for a checkpoint."""
        return {prefix + name: self[name] for name in self._data}

    def restore(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """Replace the rows with what ``state`` returned; raise ``SelectorError`` on a mismatch."""
        loaded = {}
        rows = None
        for name, arr in self._data.items():
            key = prefix + name
            if key not in arrays:
                raise SelectorError(f"missing array '{key}'")
            got = np.asarray(arrays[key])
            if got.shape[:-1] != arr.shape[:-1] or got.dtype.kind != arr.dtype.kind:
                raise SelectorError(f"array '{key}' has shape {got.shape} and dtype {got.dtype}")
            if rows is not None and got.shape[-1] != rows:
                raise SelectorError(f"array '{key}' has {got.shape[-1]} rows, expected {rows}")
            rows = got.shape[-1]
            # Byte-string columns keep the checkpoint's width; numeric ones the declared dtype.
            loaded[name] = np.array(got, dtype=None if got.dtype.kind == "S" else arr.dtype)
        self._data = loaded
        self.n = rows or 0

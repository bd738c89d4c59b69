"""The FAISS index of selected points: exact, or IVF once enough points exist to train it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from mummi_spec.errors import OptionalDependencyError, SelectorError
from mummi_spec.plan import IndexPlan
from mummi_spec.runtime.selectors._columns import Columns
from mummi_spec.runtime.selectors._common import read_int

try:
    import faiss
except ImportError:  # pragma: no cover - faiss-cpu is a dependency; this names the fix
    raise OptionalDependencyError("farthest-point selection", "faiss") from None

# FAISS's k-means warns below 39 training points per cell; below that we stay exact.
TRAIN_PER_LIST = 39
# Below this many queries a search takes milliseconds, and OpenMP's fork/join and spinning
# threads cost more than they save, badly so when other processes share the cores.
SMALL_SEARCH = 2048
# FAISS >= 1.9 scans with SIMD below 128,000 queries instead of using BLAS; for low-dimensional
# points BLAS is 2-3x faster at every batch size we measured (10 to 175,000 queries, d = 9).
BLAS_THRESHOLD = 20


@contextmanager
def _search_settings(queries: int) -> Iterator[None]:
    """Scoped FAISS knobs for one search, restored afterwards (both are process-wide)."""
    threads = faiss.omp_get_max_threads()
    threshold = faiss.cvar.distance_compute_blas_threshold
    if queries < SMALL_SEARCH:
        faiss.omp_set_num_threads(1)
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = threshold
        faiss.omp_set_num_threads(threads)


class SelectedIndex:
    """Selected points, searchable by k nearest neighbours; labels are selection order."""

    def __init__(self, dim: int, settings: IndexPlan, seed: int) -> None:
        self.kind = settings.type
        if self.kind not in ("exact", "ivf"):
            raise SelectorError(f"index type must be 'exact' or 'ivf', got {self.kind!r}")
        self.nlist = read_int("index.nlist", settings.nlist, minimum=1)
        self.nprobe = read_int("index.nprobe", settings.nprobe, minimum=1)
        self.dim = dim
        self._seed = seed
        self._points = Columns({"x": (np.float32, (dim,))})
        self._faiss: Any = faiss.IndexFlatL2(dim)
        self._trained = False

    @property
    def n(self) -> int:
        return self._points.n

    @property
    def points(self) -> np.ndarray:
        """The selected points, row-major (a copy)."""
        return np.ascontiguousarray(self._points["x"].T)

    def add(self, x: np.ndarray) -> None:
        """Add selected points (rows of ``x``)."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, self.dim)
        self._points.append(x=x)
        self._faiss.add(x)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances to the k nearest selected points, ascending, +inf where fewer
        exist or IVF found fewer; and the label of the nearest (-1 if none)."""
        n, kk = len(queries), min(k, self.n)
        if n == 0 or kk == 0:
            return np.full((n, k), np.inf, dtype=np.float32), np.full(n, -1, dtype=np.int32)
        self._train_if_ready()
        with _search_settings(n):
            dist, labels = self._faiss.search(np.ascontiguousarray(queries, dtype=np.float32), kk)
        if (labels[:, -1] < 0).any():  # results come nearest first, so gaps are at the end
            dist[labels < 0] = np.inf
        np.maximum(dist, 0.0, out=dist)
        if kk < k:
            dist = np.hstack([dist, np.full((n, k - kk), np.inf, dtype=np.float32)])
        return dist, labels[:, 0].astype(np.int32)

    def _train_if_ready(self) -> None:
        if self.kind != "ivf" or self._trained or self.n < TRAIN_PER_LIST * self.nlist:
            return
        quantizer = faiss.IndexFlatL2(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist)
        ivf.cp.seed = self._seed
        points = self.points
        ivf.train(points)
        ivf.add(points)
        ivf.nprobe = self.nprobe
        self._quantizer = quantizer  # the IVF index borrows it; keep it alive
        self._faiss = ivf
        self._trained = True

    def state(self) -> dict[str, np.ndarray]:
        blob = faiss.serialize_index(self._faiss) if self._trained else np.zeros(0, np.uint8)
        return {**self._points.state("index_"), "index_ivf": np.asarray(blob, dtype=np.uint8)}

    def restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._points.restore(arrays, "index_")
        blob = arrays["index_ivf"]
        if blob.size:
            index = faiss.deserialize_index(np.ascontiguousarray(blob, dtype=np.uint8))
            if index.ntotal != self.n or index.d != self.dim:
                raise SelectorError("stored IVF index does not match the selected points")
            self._faiss, self._trained = index, True
        else:
            self._faiss = faiss.IndexFlatL2(self.dim)
            self._faiss.add(self.points)
            self._trained = False

"""Benchmark the indexed-tar store beside plain pytaridx: write, random read cold and warm.

    python benchmarks/bench_stores.py [--quick] [--json out.json]

20,000 members of ~156 KB (the paper's patch files; sizes +-10 %, random bytes), written into
one archive and read back in a shuffled order, first with the archive evicted from the page
cache (cold), then again (warm). Plain pytaridx and our ``TaridxStore`` run alternately, twice
each; the median of each is reported. ``BENCH_DIR`` chooses the temporary directory. The Redis
rows live in ``bench_feedback.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Any

import pytaridx
from benchlib import clock, main, peak_mb, reset_peak, row

from mummi_spec.plan import StorePlan
from mummi_spec.runtime.stores.taridx import TaridxStore

FILE_SIZE = 156 * 1024  # the paper's ~156 KB patch/frame files
STORE = StorePlan(name="bench", backend="taridx", path="bench")  # <root>/bench/<namespace>.tar


def _payloads(count: int) -> dict[str, memoryview]:
    """~156 KB random members (sizes +-10 %), as views into one random pool."""
    rng = random.Random(42)
    pool = memoryview(os.urandom(8 << 20))
    items = {}
    for i in range(count):
        size = rng.randrange(int(FILE_SIZE * 0.9), int(FILE_SIZE * 1.1))
        start = rng.randrange(0, len(pool) - size)
        items[f"pfpatch_{i:012d}.npz"] = pool[start : start + size]
    return items


def _evict(tar: Path) -> None:
    """Drop the archive's pages from the page cache, so the next read is cold."""
    fd = os.open(tar, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _plain_close(itf: Any) -> None:
    itf.index.lstfile.close()
    itf.index.tree.backing.filehandle.close()
    itf.close()


def _plain_write(tar: Path, items: dict[str, memoryview]) -> None:
    itf = pytaridx.IndexedTarFile()
    itf.open(str(tar), "r+")
    itf.tfa.format = tarfile.GNU_FORMAT  # without it pytaridx reads back wrong bytes
    for name, data in items.items():
        itf.write(name, data)
    _plain_close(itf)


def _plain_read(tar: Path, order: list[str]) -> int:
    itf = pytaridx.IndexedTarFile()
    itf.open(str(tar), "r")
    total = sum(len(itf.read(name)) for name in order)
    _plain_close(itf)
    return total


def _store_write(root: Path, items: dict[str, memoryview]) -> None:
    with TaridxStore(STORE, root) as store:
        for name, data in items.items():
            store.put("patches", name, data)


def _store_read(root: Path, order: list[str]) -> int:
    with TaridxStore(STORE, root) as store:
        return sum(len(store.get("patches", name)) for name in order)


def _taridx_once(folder: Path, who: str, items: dict[str, memoryview], order: list[str]
                 ) -> dict[str, float]:
    """Write, read cold, read warm: seconds for each, by plain pytaridx or by the store."""
    root = folder / who
    tar = root / "bench" / "patches.tar" if who == "ours" else root / "patches.tar"
    tar.parent.mkdir(parents=True)
    write, read, where = (
        (_plain_write, _plain_read, tar) if who == "plain" else (_store_write, _store_read, root)
    )
    times = {"write": clock(write, where, items)[0]}
    expected = sum(len(v) for v in items.values())
    for kind in ("cold", "warm"):
        if kind == "cold":
            _evict(tar)
        times[kind], got = clock(read, where, order)
        assert got == expected, f"{who} read back {got} bytes, expected {expected}"
    shutil.rmtree(root)
    return times


# Plain pytaridx with 20,000 files on a 2-core machine of this kind, files/s.
REFERENCE = {"write": 1_800, "cold": 4_100, "warm": 16_000}


def taridx_rows(quick: bool, repeats: int = 2) -> list[dict[str, Any]]:
    count = 2_000 if quick else 20_000
    items = _payloads(count)
    order = list(items)
    random.Random(7).shuffle(order)
    expected = sum(len(v) for v in items.values())
    runs: dict[tuple[str, str], list[float]] = defaultdict(list)
    peak = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-stores-", dir=os.environ.get("BENCH_DIR")) as d:
        # Alternate the two: other work on the machine adds noise to both alike.
        for _ in range(repeats):
            for who in ("plain", "ours"):
                reset_peak()
                for kind, seconds in _taridx_once(Path(d), who, items, order).items():
                    runs[who, kind].append(seconds)
                if who == "ours":
                    peak = max(peak, peak_mb())
    rows = []
    for kind, rate in REFERENCE.items():
        ours, plain = runs["ours", kind], median(runs["plain", kind])
        what = "taridx write" if kind == "write" else f"taridx random read ({kind})"
        rows.append(row(
            "taridx", what, f"{count:,} files of ~156 KB", ours, n=count, unit="files/s",
            ref_s=None if quick else count / rate, baseline_s=plain,
            baseline_is="plain pytaridx, same files, same order", met=plain / median(ours) >= 0.8,
            peak=peak, mb_per_s=round(expected / median(ours) / 1e6, 1)))
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Every row of this benchmark (``quick``: 2,000 instead of 20,000 archive members)."""
    return taridx_rows(quick)


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

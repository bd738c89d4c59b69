"""What every benchmark shares: the papers' figures, timing, peak memory, rows, table, main."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# The papers' and the reference implementations' figures, and our targets. paper: SC'21 §4.4
# and §5.2 and mini-MuMMI Table 1, on Summit. reference: the reference implementations as
# published (LLNL DynIm main and binned_sampling branches,
# plain pytaridx, redis-py, sbatch), measured on a 2-core machine of this kind.
FIGURES: dict[str, dict[str, str]] = {
    "fp-select": {"paper": "3-4 min per full re-rank",
                  "reference": "DynIm SamplerImportance 2.9 s exact, 2.0 s IVF; 175 MB",
                  "target": "< 30 ms (>= 100x reference), < 200 MB"},
    "fp-rerank": {"paper": "3-4 min",
                  "reference": "DynIm 2.8 s exact; bare IndexFlatL2.search 1.6 s",
                  "target": "within 10 % of bare FAISS search"},
    "binned-add": {"paper": "-", "reference": "DynIm SamplerBinned 17 s, 4.3 GB peak",
                   "target": "< 2 s, < 1 GB"},
    "binned-select": {"paper": "3-4 min per re-rank", "reference": "DynIm SamplerBinned 47 s",
                      "target": "< 0.5 s"},
    "ingest": {"paper": '"negligible"', "reference": "-", "target": "> 1 M/s"},
    "feedback": {"paper": "~10,000 keys/s, 2,000 reads/s (20 Redis nodes)",
                 "reference": "redis-py ~115k SET, ~150k GET, ~175k RENAME/s pipelined",
                 "target": "> 20,000 frames/s end to end"},
    "manager": {"paper": "polled every few minutes", "reference": "-",
                "target": "< 0.5 s at 24,000, ~linear"},
    "submit": {"paper": "~100 jobs/min", "reference": "sbatch alone ~200-250/s",
               "target": "> 100 jobs/s to Slurm"},
    "taridx": {"paper": "575 files/s, 87.6 MB/s read",
               "reference": "pytaridx 20,000 files: write ~1,800/s (~290 MB/s); read ~4,100/s "
                            "cold, ~16,000/s warm",
               "target": "within 20 % of plain pytaridx"},
    "compile": {"paper": "-", "reference": "-", "target": "< 0.5 s each"},
    "views": {"paper": "-", "reference": "-", "target": "watch < 0.2 s a redraw, report < 10 s"},
    "steering": {"paper": "-", "reference": "-",
                 "target": "< 1.5x the pass without the record"},
}
SOURCE = ("paper and reference figures: the published ones (SC'21 §4.4, §5.2; mini-MuMMI Table 1; "
          "reference implementations measured on a 2-core machine of this kind)")


# -- timing ----------------------------------------------------------------------------------


def clock(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds ``fn(*args)`` took, and what it returned."""
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def times(fn: Callable[[], Any], repeats: int, before: Callable[[], Any] | None = None
          ) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``; ``before`` runs untimed ahead of each."""
    out = []
    for _ in range(repeats):
        if before is not None:
            before()
        out.append(clock(fn)[0])
    return out


def median(fn: Callable[[], Any], repeats: int, before: Callable[[], Any] | None = None
           ) -> float:
    return statistics.median(times(fn, repeats, before))


def paired(a: Callable[[], Any], b: Callable[[], Any], repeats: int
           ) -> tuple[list[float], list[float]]:
    """Times of ``a`` and ``b`` run alternately, so load from other processes hits both; the
    order flips each round (a b, b a, ...), so neither always runs first (cold caches)."""
    ta: list[float] = []
    tb: list[float] = []
    for i in range(repeats):
        for f, out in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            out.append(clock(f)[0])
    return ta, tb


# -- memory ----------------------------------------------------------------------------------


def reset_peak() -> None:
    """Reset this process's resident high-water mark (Linux: write 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    """Resident high-water mark of this process since start or the last ``reset_peak``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- rows ------------------------------------------------------------------------------------


def row(family: str, what: str, size: str, ours: Sequence[float] | float, *,
        n: int | None = None, unit: str = "", met: bool | None = None,
        ref_s: float | None = None, baseline_s: float | None = None, baseline_is: str = "",
        peak: float | None = None, peak_how: str = "rss", **figures: Any) -> dict[str, Any]:
    """One result. ``ours``: seconds of each timed run (or an already taken median).

    ``n`` items per run give ``rate`` = n / median in ``unit``. ``ref_s``: the reference
    implementation's seconds for the same work (FIGURES), ``baseline_s``: a baseline measured
    in the same run (``baseline_is`` says what); the ratios are their seconds over ours.
    ``peak``: MB, ``peak_how`` "rss" (resident high-water mark of the process, reset before
    the row) or "tracemalloc" (Python and numpy allocations during the operation).
    ``figures`` may override the family's ``paper``, ``reference`` or ``target`` text.
    """
    runs = [ours] if isinstance(ours, int | float) else list(ours)
    mid = statistics.median(runs)
    fig = {**FIGURES[family], **{k: v for k, v in figures.items() if k in FIGURES[family]}}
    extra = {k: v for k, v in figures.items() if k not in FIGURES[family]}
    return {
        "family": family, "what": what, "size": size, "ours_s": round(mid, 6),
        "runs": len(runs), "rate": None if n is None else round(n / mid, 1), "unit": unit,
        **fig,
        "ref_ratio": None if ref_s is None else round(ref_s / mid, 2),
        "baseline_s": None if baseline_s is None else round(baseline_s, 6),
        "baseline_is": baseline_is,
        "base_ratio": None if baseline_s is None else round(baseline_s / mid, 2),
        "met": met, "verdict": {True: "met", False: "MISSED", None: ""}[met],
        "peak_mb": None if peak is None else round(peak, 1),
        "peak_how": peak_how if peak is not None else "", **extra,
    }


def skipped(family: str, what: str, size: str, why: str) -> dict[str, Any]:
    """A row that could not run here, with the reason in its verdict."""
    return {"family": family, "what": what, "size": size, "ours_s": None, "runs": 0,
            "rate": None, "unit": "", **FIGURES[family], "ref_ratio": None, "baseline_s": None,
            "baseline_is": "", "base_ratio": None, "met": None, "verdict": f"skipped: {why}",
            "peak_mb": None, "peak_how": ""}


# -- table -----------------------------------------------------------------------------------


def _seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def _rate(r: dict[str, Any]) -> str:
    if r["rate"] is None:
        return ""
    v = r["rate"]
    text = f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    return f"{text} {r['unit']}"


def _ratio(r: dict[str, Any]) -> str:
    parts = []
    if r["ref_ratio"] is not None:
        parts.append(f"{r['ref_ratio']:.3g}x ref")
    if r["base_ratio"] is not None:
        parts.append(f"{r['base_ratio']:.3g}x base")
    return ", ".join(parts)


COLUMNS = ("what", "size", "ours (median)", "rate", "paper", "reference", "target", "ratio",
           "verdict", "peak MB")


def cells(r: dict[str, Any]) -> list[str]:
    ours = "" if r["ours_s"] is None else f"{_seconds(r['ours_s'])} (of {r['runs']})"
    peak = "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}" + (
        " (t)" if r["peak_how"] == "tracemalloc" else "")
    return [r["what"], r["size"], ours, _rate(r), r["paper"], r["reference"], r["target"],
            _ratio(r), r["verdict"], peak]


def table(rows: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The rows as a text table (or a Markdown one), with a legend below."""
    body = [cells(r) for r in rows]
    repeated = [COLUMNS.index(c) for c in ("paper", "reference", "target")]
    for k in range(len(rows) - 1, 0, -1):  # the figures repeat within a family: say them once
        if rows[k]["family"] == rows[k - 1]["family"]:
            for i in repeated:
                if body[k][i] == body[k - 1][i]:
                    body[k][i] = ""
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in body]
    else:
        widths = [max(len(x) for x in col) for col in zip(COLUMNS, *body, strict=True)]
        lines = [" | ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
                 for line in [list(COLUMNS), *body]]
        lines.insert(1, "-+-".join("-" * w for w in widths))
    bases = sorted({f"base of '{r['what']}': {r['baseline_is']}" for r in rows
                    if r["baseline_is"]})
    legend = [
        "paper, reference, target: blank = as in the row above; "
        "ratio: their seconds / ours (> 1: we are faster); ref = reference implementation's "
        "figure, base = baseline measured in the same run",
        "peak MB: resident high-water mark of the benchmark process, reset before the row; "
        "(t) = tracemalloc, the operation's own allocations",
        SOURCE,
    ]
    notes = [*bases, *legend]
    if markdown:
        notes = [f"- {n}" for n in notes]
    return "\n".join([*lines, "", *notes])


# -- command line ----------------------------------------------------------------------------


def main(run: Callable[[bool], list[dict[str, Any]]], doc: str | None,
         argv: list[str] | None = None) -> int:
    """``python benchmarks/bench_X.py [--quick] [--json out.json]``: run, print, save."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any(r["met"] is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit("benchlib is imported by the bench_*.py modules; run benchmarks/run_all.py")

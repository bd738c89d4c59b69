"""The benchmark runner: one quick module end to end, and the fields of its JSON (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN_ALL = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"
ROW_FIELDS = {"bench", "family", "what", "size", "ours_s", "runs", "rate", "unit", "paper",
              "reference", "target", "ref_ratio", "baseline_s", "baseline_is", "base_ratio",
              "met", "verdict", "peak_mb", "peak_how"}


def _run_all(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN_ALL), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_quick_compile_run_prints_one_table_and_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _run_all("--quick", "--only", "compile", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result) == {"date", "machine", "quick", "elapsed_s", "modules", "rows"}
    assert result["quick"] is True
    assert list(result["modules"]) == ["compile"]
    assert result["modules"]["compile"]["returncode"] in (0, 1)  # 1: it ran, a target missed
    assert "error" not in result["modules"]["compile"]
    assert "cores" in result["machine"]
    rows = result["rows"]
    assert {r["what"].split(" ")[0] for r in rows} >= {"compile", "dry-run"}
    for r in rows:
        assert set(r) >= ROW_FIELDS, ROW_FIELDS - set(r)
        assert r["bench"] == "compile"
        assert r["ours_s"] > 0
        assert r["runs"] >= 1
        assert r["target"] == "< 0.5 s each"
        assert isinstance(r["met"], bool)
        assert r["verdict"] in ("met", "MISSED")
        assert r["peak_mb"] > 0
    header = proc.stdout.splitlines()[0]
    assert all(column in header for column in ("what", "size", "ours (median)", "paper",
                                               "reference", "target", "verdict", "peak MB"))


def test_unknown_module_is_refused_with_the_known_names() -> None:
    proc = _run_all("--only", "compiel")
    assert proc.returncode == 2
    assert "unknown benchmark compiel" in proc.stderr
    assert "compile" in proc.stderr.split("known:")[1]


# The OpenMM one runs minutes even when quick; tests/integration/test_alanine_dipeptide.py
# runs the same campaign.
SLOW = {"alanine"}


def test_every_benchmark_module_runs_quick(tmp_path: Path) -> None:
    """Each module's quick run ends and gives rows: a benchmark the code moved away from
    fails here, not at the next full run (bench_views did, on the lease's claim())."""
    modules = sorted(p.stem.removeprefix("bench_") for p in RUN_ALL.parent.glob("bench_*.py"))
    wanted = [m for m in modules if m not in SLOW]
    out = tmp_path / "bench.json"
    proc = _run_all("--quick", "--only", ",".join(wanted), "--json", str(out))
    result = json.loads(out.read_text())
    for name in wanted:
        module = result["modules"][name]
        assert "error" not in module and module["returncode"] in (0, 1), (name, proc.stdout)
        assert any(r["bench"] == name for r in result["rows"]), name

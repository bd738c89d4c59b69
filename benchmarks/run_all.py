"""Run every benchmark, each module in a process of its own; print one table; write JSON.

    python benchmarks/run_all.py [--quick] [--json out.json] [--only NAME] [--markdown]

Each ``benchmarks/bench_NAME.py`` runs as ``python bench_NAME.py [--quick] --json FILE`` in a
child process, so one module's memory never counts in another's. A row's peak MB is the one the
module measured (resident high-water mark reset before the row, or tracemalloc); rows that bring
none get the child's ``ru_maxrss``. ``--only`` (repeatable, or comma-separated) keeps the named
modules, e.g. ``--only compile`` or ``--only feedback,manager``. A module's output goes to a log
that is shown only if it fails. Exit status: 0 when every module ran (missed targets are
results, shown in the table), 2 when one failed or timed out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import table

HERE = Path(__file__).resolve().parent
MODULES = tuple(sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py")))


def machine() -> str:
    """``Debian GNU/Linux 12 (bookworm), 2 cores, Python 3.11.7``."""
    name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Exit status and peak resident MB of ``proc`` (``wait4`` gives that child's own)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGTERM)  # the module and anything it started
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGTERM
            return proc.returncode, usage.ru_maxrss / 1024
        time.sleep(0.1)


def run_module(name: str, quick: bool, timeout: float, tmp: Path
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of ``bench_NAME.py`` run in a child process, and how the child went."""
    out, log = tmp / f"{name}.json", tmp / f"{name}.log"
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", str(out)]
    if quick:
        cmd.append("--quick")
    start = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=HERE.parent,
                                start_new_session=True)
        code, maxrss = _wait(proc, timeout)
    took = time.monotonic() - start
    info = {"returncode": code, "elapsed_s": round(took, 1), "maxrss_mb": round(maxrss, 1),
            "load_after": [round(x, 2) for x in os.getloadavg()]}  # other work on the machine
    rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    if code not in (0, 1) or not rows:  # 1: the module ran and some target was missed
        tail = log.read_text(errors="replace").splitlines()[-15:]
        why = "timed out" if code == -signal.SIGTERM else f"exit status {code}"
        print(f"{name}: {why}; last lines of its output:", *tail, sep="\n  ", file=sys.stderr)
        info["error"] = why
    for r in rows:
        r["bench"] = name
        if r["peak_mb"] is None and r["ours_s"] is not None:
            r["peak_mb"], r["peak_how"] = round(maxrss, 1), "child ru_maxrss"
    return rows, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only these modules ({', '.join(MODULES)})")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one module may take (default 600)")
    args = parser.parse_args(argv)
    chosen = [n for part in args.only or [] for n in part.split(",") if n] or list(MODULES)
    unknown = sorted(set(chosen) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(MODULES)}")
    started = datetime.datetime.now().astimezone()
    rows: list[dict[str, Any]] = []
    modules: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-run-all-") as tmp:
        for name in chosen:
            got, modules[name] = run_module(name, args.quick, args.timeout, Path(tmp))
            rows += got
            print(f"{name}: {len(got)} rows in {modules[name]['elapsed_s']:.0f} s",
                  file=sys.stderr)
    total = sum(m["elapsed_s"] for m in modules.values())
    print(table(rows, markdown=args.markdown))
    print(f"\n{started:%Y-%m-%d %H:%M}, {machine()}; {'quick' if args.quick else 'full'} run "
          f"of {', '.join(chosen)} in {total:.0f} s")
    if args.json:
        result = {"date": started.isoformat(timespec="seconds"), "machine": machine(),
                  "quick": args.quick, "elapsed_s": round(total, 1), "modules": modules,
                  "rows": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 2 if any("error" in m for m in modules.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark compile and dry-run of the SC'21 three-scale spec, as `mummi compile` runs them.

    python benchmarks/bench_compile.py [--quick] [--json out.json]

compile: load and validate the spec (loader, schema, checks), then render and self-check every
artefact (``compile_loaded``); the disk write of ``emit`` is left out. dry-run: the same load and
compile plus the dry-run report (``dryrun.report`` and its text form). Each run starts from the
file, in a warm process: the first run (schema and template caches empty) is reported apart.
The CLI rows time ``python -m mummi_spec compile|dry-run`` as a user runs it: a new process
(with its bytecode cached, as after any first run), its imports, and (compile) the artefacts
written to a temporary directory.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

from benchlib import clock, main, peak_mb, reset_peak, row, times

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.dryrun import report, to_text
from mummi_spec.frontend import load_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "rasraf-3scale.yaml"
TARGET_S = 0.5


def _compile() -> Any:
    return compile_loaded(load_spec(SPEC))


def _dry_run() -> str:
    loaded = load_spec(SPEC)
    return to_text(report(loaded.spec, compile_loaded(loaded)))


def _cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "mummi_spec", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def cli_rows(size: str, repeats: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        # Python as a user has it: bytecode cached after the first run (pip compiles it at
        # install). An editable checkout under PYTHONDONTWRITEBYTECODE=1 recompiles every
        # module of the package in every process; the cache goes to a private prefix so the
        # checkout stays clean. The warm-up run fills it.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        build = str(Path(tmp) / "build")
        _cli(env, "compile", str(SPEC), "-o", build)
        comp = times(lambda: _cli(env, "compile", str(SPEC), "-o", build), repeats)
        dry = times(lambda: _cli(env, "dry-run", str(SPEC)), repeats)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return [row("compile", "`mummi compile` CLI (new process, writes the build)", size, comp,
                met=median(comp) < TARGET_S, peak=peak),
            row("compile", "`mummi dry-run` CLI (new process)", size, dry,
                met=median(dry) < TARGET_S, peak=peak)]


def run(quick: bool) -> list[dict[str, Any]]:
    """compile and dry-run rows (``quick``: fewer runs)."""
    repeats = 5 if quick else 15
    size = f"{SPEC.parent.name}/{SPEC.name}"
    reset_peak()
    first, compiled = clock(_compile)  # cold: imports done, caches (schema, Jinja) empty
    files = len(compiled.files)
    ours = times(_compile, repeats)
    compile_peak = peak_mb()
    reset_peak()
    dry = times(_dry_run, repeats)
    dry_peak = peak_mb()
    return [
        row("compile", f"compile ({files} artefacts)", size, ours,
            met=median(ours) < TARGET_S, peak=compile_peak, first_s=round(first, 4)),
        row("compile", "compile, first in process (cold caches)", size, first,
            met=first < TARGET_S, peak=compile_peak),
        row("compile", "dry-run (load, compile, report)", size, dry,
            met=median(dry) < TARGET_S, peak=dry_peak),
        *cli_rows(size, 5 if quick else 15),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

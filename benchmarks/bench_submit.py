"""Benchmark job submission and tracking through the scheduler adapters.

    python benchmarks/bench_submit.py [--quick] [--json out.json]

Rows: local processes through our non-blocking local adapter (baseline: Maestro's own local
adapter, which runs jobs one after another); local Slurm through our slurm adapter, serially
and from 4 threads (baseline: a bare ``sbatch --wrap true`` loop in the same run, each phase
on an idle node); one ``status()`` over 1,000 tracked Slurm ids (baseline: Maestro's
``check_jobs``); the local Flux broker through our flux adapter, one job at a time and as a
batch the way the manager submits (baselines: bare flux-python ``flux.job.submit`` in a loop,
and ``submit_async`` for all then every answer, ours and theirs alternating in the same run),
one ``status()`` over 1,000 held Flux jobs (baseline: flux-python's ``JobList(ids=...)``),
and a job in a Flux sub-instance of its own (``nested``) from submission to its end (baseline:
the same job plain).
Times are medians of the runs (2 at full size; 5 for Flux, whose shared broker varies
more). Slurm and Flux rows need ``scripts/services start``; without it they are reported as
skipped, with the reason.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

from benchlib import clock, main, paired, peak_mb, reset_peak, row, skipped

from mummi_spec.errors import SchedulerError
from mummi_spec.plan import FluxOptions, LocalOptions, SchedulerPlan
from mummi_spec.runtime.schedulers import _maestro
from mummi_spec.runtime.schedulers._common import wait_terminal
from mummi_spec.runtime.schedulers.base import JobRequest
from mummi_spec.runtime.schedulers.local import LocalScheduler
from mummi_spec.runtime.schedulers.slurm import SlurmScheduler

SLURM_RATE = 100  # jobs/s, our target (Summit's MuMMI: ~100 jobs/min)
FLUX_RATE = 100  # jobs/s, the same target through Flux
BARE_SHARE = 0.8  # of the bare client's rate, at least
SERVICES = Path(os.environ.get("MUMMI_SERVICES_DIR") or Path(__file__).parents[1] / ".services")


def _settings(type: str, queue: str | None = None) -> SchedulerPlan:
    """A spec's scheduler settings left at the compiler's defaults: no throttle, the adapters'
    own options; named for this machine, as Maestro's adapters take it."""
    return SchedulerPlan(
        type=type, queue=queue, bank=None, host=socket.gethostname(), qos=None,
        reservation=None, batch={}, flux=FluxOptions(), local=LocalOptions(), per_second=None,
        burst=1, per_iteration=500, poll=5.0, startup=None)


def _jobs(root: Path, prefix: str, count: int) -> list[JobRequest]:
    return [JobRequest(f"{prefix}{i}", "bench", "true", root / prefix) for i in range(count)]


def _submit_all(adapter: Any, jobs: list[JobRequest]) -> list[str]:
    return [adapter.submit(job) for job in jobs]


def _wait_done(adapter: Any, ids: list[str]) -> None:
    wait_terminal(adapter, ids, timeout=600.0)


# -- local ---------------------------------------------------------------------------------


def _maestro_local(root: Path, jobs: list[JobRequest]) -> None:
    """Maestro's local adapter as the conductor drives it: each submit runs the job to its end."""
    adapter = _maestro.adapter("local")
    for job in jobs:
        step = _maestro.step_for(job, job.script)
        _, script, _ = adapter.write_script(str(root), step)
        adapter.submit(step, script, str(root))


def local_rows(quick: bool, root: Path, repeats: int) -> list[dict[str, Any]]:
    count = 100 if quick else 500
    runs: dict[str, list[float]] = defaultdict(list)
    reset_peak()
    for r in range(repeats):
        (root / f"maestro{r}").mkdir()
        jobs = _jobs(root, f"m{r}_", count)
        runs["maestro"].append(clock(_maestro_local, root / f"maestro{r}", jobs)[0])
        ours = LocalScheduler(_settings("local"))
        took, ids = clock(_submit_all, ours, _jobs(root, f"l{r}_", count))
        runs["submit"].append(took)
        runs["done"].append(took + clock(_wait_done, ours, ids)[0])
        ours.close()
    peak = peak_mb()
    base = {"baseline_s": median(runs["maestro"]), "target": "-", "reference": "-", "peak": peak,
            "baseline_is": "Maestro's local adapter, as its conductor drives it (blocking)"}
    return [row("submit", "local: submit `true` jobs", f"{count:,} jobs", runs["submit"],
                n=count, unit="jobs/s", **base),
            row("submit", "local: submit + all COMPLETED", f"{count:,} jobs", runs["done"],
                n=count, unit="jobs/s", **base),
            _sleepers_row(root, 8 if quick else 16)]


def _sleepers_row(root: Path, count: int) -> dict[str, Any]:
    """Jobs that take time: Maestro's blocking submit runs them one after another."""
    jobs = [JobRequest(f"nap{i}", "bench", "sleep 0.5", root / "naps") for i in range(count)]
    baseline, _ = clock(_maestro_local, root, jobs)
    reset_peak()
    ours = LocalScheduler(_settings("local"))
    took, _ = clock(lambda: _wait_done(ours, _submit_all(ours, jobs)))
    ours.close()
    return row("submit", "local: `sleep 0.5` jobs, all COMPLETED", f"{count} jobs", took,
               n=count, unit="jobs/s", baseline_s=baseline, target="-", reference="-",
               peak=peak_mb(),
               baseline_is="Maestro's local adapter: one job at a time")


# -- Slurm ---------------------------------------------------------------------------------


def slurm_missing() -> str:
    """Why Slurm cannot be benchmarked here ("" when it can)."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed ({exc})"
    if proc.returncode != 0 or not {"idle", "mixed", "allocated", "completing"} & set(
            proc.stdout.split()):
        return f"no usable Slurm node ({proc.stdout.strip() or proc.stderr.strip()})"
    return ""


def _sbatch(root: Path, count: int, *extra: str) -> list[str]:
    cmd = ["sbatch", "--parsable", "-o", "/dev/null", *extra, "--wrap", "true"]
    return [subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=True)
            .stdout.strip().split(";")[0] for _ in range(count)]


def _threaded_submit(adapter: Any, jobs: list[JobRequest], threads: int) -> list[str]:
    # The adapters are thread-safe; a manager may submit from a few threads at once.
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(adapter.submit, jobs))


def slurm_rows(quick: bool, root: Path, repeats: int) -> list[dict[str, Any]]:
    count, tracked = (50, 200) if quick else (200, 1000)
    os.environ.setdefault("USER", pwd.getpwuid(os.getuid()).pw_name)
    ours = SlurmScheduler(_settings("slurm", queue="debug"))
    phases: dict[str, Callable[[str], list[str]]] = {
        "bare": lambda tag: _sbatch(root, count),
        "serial": lambda tag: _submit_all(ours, _jobs(root, tag, count)),
        "threads": lambda tag: _threaded_submit(ours, _jobs(root, tag, count), 4),
    }
    runs: dict[str, list[float]] = defaultdict(list)
    reset_peak()
    for r in range(repeats):
        for name, phase in phases.items():
            took, ids = clock(phase, f"{name}{r}_")
            runs[name].append(took)
            # The next phase starts on an idle node: these jobs would compete for the CPUs.
            _wait_done(ours, ids)
    # Held jobs never run: the status row measures tracking, not the node.
    held = _sbatch(root, tracked, "--hold")
    maestro = _maestro.adapter("slurm", host="localhost", bank="", queue="debug")
    try:
        status = [clock(ours.status, held)[0] for _ in range(repeats)]
        maestro_s = median(clock(maestro.check_jobs, held)[0] for _ in range(repeats))
    finally:
        ours.cancel(held)  # leave the shared cluster as we found it
    peak = peak_mb()
    size = f"{count:,} jobs"
    bare = {"baseline_s": median(runs["bare"]), "peak": peak,
            "baseline_is": "bare `sbatch --wrap true` loop, same run"}
    return [
        row("submit", "slurm: submit through our adapter", size, runs["serial"], n=count,
            unit="jobs/s", met=count / median(runs["serial"]) > SLURM_RATE, **bare),
        row("submit", "slurm: submit, 4 threads", size, runs["threads"], n=count,
            unit="jobs/s", met=count / median(runs["threads"]) > SLURM_RATE, **bare),
        row("submit", "slurm: one status() call", f"{tracked:,} tracked ids", status,
            baseline_s=maestro_s, target="-", paper="-", reference="-", peak=peak,
            baseline_is="Maestro's check_jobs (squeue -u $USER)"),
    ]


# -- Flux ----------------------------------------------------------------------------------


def flux_missing() -> str:
    """Why Flux cannot be benchmarked here ("" when it can). Finds the broker scripts/services
    started, as the tests do, unless FLUX_URI names one."""
    state = SERVICES / "flux"
    if not os.environ.get("FLUX_URI") and (state / "uri").exists():
        os.environ["FLUX_URI"] = (state / "uri").read_text().strip()
        command = Path((state / "command").read_text().strip())
        os.environ["PATH"] = f"{command.parent}{os.pathsep}{os.environ['PATH']}"
    if not os.environ.get("FLUX_URI"):
        return "no Flux broker (FLUX_URI unset, none started by scripts/services)"
    from mummi_spec.errors import OptionalDependencyError
    from mummi_spec.runtime.schedulers.flux import import_flux

    try:
        import_flux().Flux()
    except (OptionalDependencyError, OSError) as exc:
        return f"no usable Flux broker at {os.environ['FLUX_URI']} ({exc})"
    return ""


def flux_rows(quick: bool, root: Path, repeats: int) -> list[dict[str, Any]]:
    """Jobs are submitted held (urgency 0): they go through the broker's ingest like any, and
    never run, so the shared broker is not kept busy by thousands of `true` jobs."""
    from mummi_spec.runtime.schedulers.flux import FluxScheduler, import_flux

    flux = import_flux()
    handle = flux.Flux()
    serial, batch = (50, 100) if quick else (100, 500)
    ours = FluxScheduler(replace(_settings("flux"), flux=FluxOptions(urgency=0)))
    held: list[str] = []
    tags = iter(range(10**6))

    def bare_spec() -> Any:
        spec = flux.job.JobspecV1.from_command(["true"])
        spec.cwd, spec.environment = str(root), dict(os.environ)  # as ours: cwd, whole env
        return spec

    def bare_serial() -> None:
        held.extend(str(flux.job.submit(handle, bare_spec(), urgency=0).f58)
                    for _ in range(serial))

    def bare_batch() -> None:
        futures = [flux.job.submit_async(handle, bare_spec(), urgency=0) for _ in range(batch)]
        held.extend(str(f.get_id().f58) for f in futures)

    def ours_serial() -> None:
        held.extend(_submit_all(ours, _jobs(root, f"s{next(tags)}_", serial)))

    def ours_batch(count: int = batch) -> None:
        for result in ours.submit_many(_jobs(root, f"b{next(tags)}_", count)):
            if isinstance(result, SchedulerError):
                raise result
            held.append(result)

    reset_peak()
    try:
        one_ours, one_bare = paired(ours_serial, bare_serial, repeats)
        many_ours, many_bare = paired(ours_batch, bare_batch, repeats)
        ours.cancel(held)  # a manager's tracked jobs are (nearly) all its active jobs
        held.clear()
        ours_batch(200 if quick else 1000)
        ids = [flux.job.JobID(i) for i in held]
        status_ours, status_bare = paired(lambda: ours.status(held),
                                          lambda: flux.job.JobList(handle, ids=ids).jobs(),
                                          repeats)
    finally:
        ours.cancel(held)  # leave the shared broker as we found it
        ours.close()
    peak = peak_mb()
    share = f">= {BARE_SHARE}x bare"
    nested, plain = _nesting_cost(root, 2 if quick else 5)

    def ratio(ours_s: list[float], bare_s: list[float]) -> float:
        return median(bare_s) / median(ours_s)

    # One at a time, every client waits for the broker's answer (its ingest validates and
    # commits in batches): no client passes ~30 jobs/s here, so the rate target is the
    # batch's, the way the manager submits.
    return [
        row("submit", "flux: submit one at a time", f"{serial:,} jobs", one_ours, n=serial,
            unit="jobs/s", baseline_s=median(one_bare), target=share, reference="-",
            peak=peak, met=ratio(one_ours, one_bare) >= BARE_SHARE,
            baseline_is="bare flux-python flux.job.submit loop, same run"),
        row("submit", "flux: submit a batch, as the manager does", f"{batch:,} jobs",
            many_ours, n=batch, unit="jobs/s", baseline_s=median(many_bare),
            target=f"{share}, > {FLUX_RATE} jobs/s", reference="-", peak=peak,
            met=ratio(many_ours, many_bare) >= BARE_SHARE and batch / median(many_ours)
            > FLUX_RATE,
            baseline_is="bare flux-python submit_async for all, then every id, same run"),
        row("submit", "flux: one status() call", f"{len(held):,} tracked ids", status_ours,
            baseline_s=median(status_bare), target=share, paper="-", reference="-", peak=peak,
            met=ratio(status_ours, status_bare) >= BARE_SHARE,
            baseline_is="flux-python JobList(ids=...).jobs()"),
        row("submit", "flux: `$(LAUNCHER) true` in a sub-instance, submitted to ended",
            "1 job", nested, baseline_s=median(plain), target="-", paper="-", reference="-",
            baseline_is="the same job plain (no nested), same run"),
    ]


def _nesting_cost(root: Path, repeats: int) -> tuple[list[float], list[float]]:
    """What a job's own Flux instance costs: one job at a time, nested and plain in turn."""
    from mummi_spec.runtime.schedulers.flux import FluxScheduler

    adapter = FluxScheduler(_settings("flux"))
    tags = iter(range(10**6))

    def one(nested: bool) -> None:
        request = JobRequest(f"n{next(tags)}", "bench", "$(LAUNCHER) true", root / "nest",
                             nested=nested)
        job_id = adapter.submit(request)
        wait_terminal(adapter, [job_id], timeout=120.0, interval=0.01)

    try:
        return paired(lambda: one(True), lambda: one(False), repeats)
    finally:
        adapter.close()


def run(quick: bool) -> list[dict[str, Any]]:
    """Local rows, then Slurm and Flux rows where a local one answers (``quick``: fewer,
    smaller)."""
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        root = Path(tmp)
        repeats = 1 if quick else 2
        rows = local_rows(quick, root, repeats)
        why = slurm_missing()
        if why:
            rows.append(skipped("submit", "slurm: submit through our adapter", "-",
                                f"{why}; start it with scripts/services start"))
        else:
            rows += slurm_rows(quick, root, repeats)
        why = flux_missing()
        if why:
            rows.append(skipped("submit", "flux: submit through our adapter", "-",
                                f"{why}; start it with scripts/services start"))
        else:
            rows += flux_rows(quick, root, 1 if quick else 5)
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

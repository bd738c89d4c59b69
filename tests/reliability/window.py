"""kill -9 of a manager running mini.yaml on a real scheduler inside the submit window: after
the scheduler took an attempt's job, before the ledger holds its id; then a restart.

Slurm: an ``sbatch`` first on PATH calls the real one, then for the attempt named hangs
instead of answering. Flux (submitted in-process by flux-python): the submitter's test hook
(``MUMMI_TEST_PAUSE_AFTER_SUBMIT``) hangs the attempt once flux accepted it. Either writes
the job's id to ``paused-after-submit`` in the attempt's directory first; the test waits for
that file, never for a time.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.schedulers.flux import import_flux
from mummi_spec.runtime.submitter import PAUSE_AFTER_SUBMIT, PAUSED
from tests.conftest import SPECS
from tests.integration.test_campaign import check_campaign, run_cli

# Every `sbatch -D <dir> <dir>/<attempt>.slurm.sh` submits; the attempt matching the glob
# in MUMMI_TEST_SBATCH_PAUSE then records "<job id> <pid>" and sleeps until killed.
SBATCH_SHIM = """#!/bin/bash
out=$({real} "$@"); rc=$?
script=${{@: -1}}
case $(basename "$script" .slurm.sh) in
  $MUMMI_TEST_SBATCH_PAUSE)
    if [ $rc -eq 0 ]; then
      dir=$(dirname "$script")
      echo "${{out##* }} $$" > "$dir/{paused}.tmp" && mv "$dir/{paused}.tmp" "$dir/{paused}"
      exec sleep 100000
    fi ;;
esac
printf '%s\\n' "$out"
exit $rc
"""
RESTART_TIMEOUT = 600.0  # a whole campaign on a 2-core broker other tests also use


@dataclass(frozen=True)
class Killed:
    """The campaign and the attempt the kill caught in the window."""

    cwd: Path
    ws: Path
    scheduler: str
    attempt: str
    job_id: str  # what the scheduler answered, never recorded by the dead manager


def _manager(build: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, USER=os.environ.get("USER", "root"), **extra)
    env.pop("MUMMI_WORKSPACE", None)
    return subprocess.Popen([sys.executable, "-m", "mummi_spec", "manager", "--plan",
                             str(build / "plan.json")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _rows(ws: Path, sql: str, *args: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{ws / 'ledger.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def kill_inside_the_window(tmp_path: Path, scheduler: str, attempt: str) -> Killed:
    """Run mini.yaml on ``scheduler`` until ``attempt`` (``<sim>.<job type>.<n>``, or
    ``<job type>.<n>`` for the persistent generator) is in the window, kill -9 the manager
    there, and check the ledger holds no id for it."""
    proc = run_cli("compile", str(SPECS / "mini.yaml"), "-o", "build", cwd=tmp_path,
                   MUMMI_SCHEDULER=scheduler, MUMMI_QUEUE="debug")
    assert proc.returncode == 0, proc.stderr
    build = tmp_path / "build"
    ws = Campaign.open(build / "plan.json").workspace
    if scheduler == "slurm":
        shim = tmp_path / "shim"
        shim.mkdir()
        real = subprocess.run(["which", "sbatch"], capture_output=True, text=True,
                              check=True).stdout.strip()
        (shim / "sbatch").write_text(SBATCH_SHIM.format(real=real, paused=PAUSED))
        (shim / "sbatch").chmod(0o755)
        env = {"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
               "MUMMI_TEST_SBATCH_PAUSE": attempt}
    else:
        env = {PAUSE_AFTER_SUBMIT: attempt}
    parts = attempt.split(".")  # names hold no other dots
    sim = parts[0] if len(parts) == 3 else "persistent"
    marker = ws / "runs" / sim / ".".join(parts[-2:]) / PAUSED
    manager = _manager(build, **env)
    hung_sbatch = None
    try:
        deadline = time.monotonic() + RESTART_TIMEOUT
        while not marker.exists():
            assert manager.poll() is None, f"the manager ended before {attempt} was submitted"
            assert time.monotonic() < deadline, f"{attempt} was never submitted"
            time.sleep(0.02)  # polling for the marker, not waiting for an outcome
        job_id, *pid = marker.read_text().split()
        hung_sbatch = int(pid[0]) if pid else None
    finally:
        manager.send_signal(signal.SIGKILL)
        manager.wait()
        if hung_sbatch is not None:  # the shim's sleep, orphaned by the kill
            os.kill(hung_sbatch, signal.SIGKILL)
    ((state, sched_id),) = _rows(ws, "SELECT state, sched_id FROM jobs WHERE name = ?", attempt)
    # The kill landed inside the window.
    assert (state, sched_id) == ("submitting", None), f"{attempt}: {state} {sched_id}"
    return Killed(tmp_path, ws, scheduler, attempt, job_id)


def restart_and_check(killed: Killed) -> None:
    """Restart; the campaign completes with every job run once and the caught one adopted."""
    ws = killed.ws
    restart = _manager(killed.cwd / "build")
    try:
        code = restart.wait(timeout=RESTART_TIMEOUT)
        assert code == 0, f"the restarted manager exited {code}; see {ws / 'manager.log'}"
    finally:
        if restart.poll() is None:
            restart.kill()
            restart.wait()
    # Each simulation and each setup ran to success once: counted by what the jobs wrote.
    runs = ws / "runs"
    once = dict.fromkeys((str(s) for (s,) in _rows(ws, "SELECT sim FROM sims")), 1)
    for output in ("cganalysis.*/result.json", "createsim.*/createsims.success"):
        ran = Counter(p.parent.parent.name for p in runs.glob(f"*/{output}"))
        assert ran == once, f"{output} per sim: {dict(ran)}"
    check_campaign(killed.cwd)  # each sim done once, never more GPUs busy than the pool
    # The ledger took the caught job's id, and the job ran to its end under it.
    ((state, sched_id, sched_name),) = _rows(
        ws, "SELECT state, sched_id, sched_name FROM jobs WHERE name = ?", killed.attempt)
    assert sched_id == killed.job_id, f"{killed.attempt} recorded as {sched_id}"
    # A setup may fail as drawn (then retried); the generator is cancelled at the end.
    assert state in ("completed", "failed", "cancelled"), f"{killed.attempt} {state}"
    # Every job the scheduler took under this campaign's names is one attempt of the ledger.
    prefix = str(sched_name)[:-len(killed.attempt)]
    taken = _scheduler_jobs(killed.scheduler, prefix)
    twice = [name for name, n in Counter(name for name, _ in taken).items() if n > 1]
    assert not twice, f"submitted more than once: {twice}"
    ledger = {(str(n), str(i)) for n, i in _rows(
        ws, "SELECT sched_name, sched_id FROM jobs WHERE sched_id IS NOT NULL")}
    assert set(taken) == ledger, f"not in the ledger: {set(taken) - ledger}; " \
                                 f"not at the scheduler: {ledger - set(taken)}"


def _scheduler_jobs(scheduler: str, prefix: str) -> list[tuple[str, str]]:
    """(name, id) of every job, queued, running or ended, whose name starts with ``prefix``,
    as the scheduler's own tools list them."""
    if scheduler == "slurm":
        out = subprocess.run(["squeue", "-h", "-t", "all", "--me", "-O", "JobID:|,Name:"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        rows = [line.strip().split("|", 1)[::-1] for line in out.splitlines()]
    else:
        flux = import_flux()
        listing = flux.job.JobList(flux.Flux(), attrs=["name"], max_entries=0)
        rows = [[str(info.name), str(info.id.f58)] for info in listing.jobs()]
    return [(name, job_id) for name, job_id in rows if name.startswith(prefix)]

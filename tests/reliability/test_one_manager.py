"""One manager per workspace, stops through the workspace, on the local scheduler and real Slurm."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mummi_spec.cli._follow import STOP_BOUND
from mummi_spec.cli.status import lease_of
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.lease import TOKEN_ENV, local_pid, take
from mummi_spec.runtime.ledger import LeaseRow, Ledger
from mummi_spec.runtime.states import Holder
from tests.conftest import SPECS
from tests.integration.test_campaign import check_campaign

pytestmark = pytest.mark.slow
MINI = (SPECS / "mini.yaml").read_text()
# A store the prepare step probes, at a port where nothing listens: it retries for ten minutes,
# so the manager step never starts while the test acts.
NEVER_READY = MINI.replace(
    "  feedback: {backend: filesystem, path: feedback}\n",
    "  feedback: {backend: filesystem, path: feedback}\n"
    "  probe: {backend: redis, host: 127.0.0.1, port: 9, retry_for: 10m}\n")


def _env(scheduler: str, queue: str = "debug") -> dict[str, str]:
    """The environment of every command: USER unset (as under some batch systems)."""
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "MUMMI_WORKSPACE")}
    env.update(MUMMI_SCHEDULER=scheduler, MUMMI_QUEUE=queue)
    return env


def _mummi(*args: str) -> list[str]:
    return [sys.executable, "-m", "mummi_spec", *args]


def _compile(cwd: Path, env: dict[str, str], text: str = MINI) -> Path:
    """Compile ``text`` into ``cwd/build``; the campaign's workspace."""
    (cwd / "spec.yaml").write_text(text)
    subprocess.run(_mummi("compile", "spec.yaml"), cwd=cwd, env=env, check=True,
                   capture_output=True, timeout=120)
    return Campaign.open(cwd / "build" / "plan.json").workspace


class Run:
    """`mummi run build` (or ``cmd``) in the background, its output in files."""

    def __init__(self, cwd: Path, name: str, env: dict[str, str],
                 cmd: list[str] | None = None) -> None:
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd or _mummi("run", "build"), cwd=cwd, env=env,
                                         stdout=out, stderr=err)

    def text(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)


def _until(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    """Poll ``check`` until it returns something true (a condition, never a duration)."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
    return found


def _held_by(ws: Path, holder: Holder) -> LeaseRow | None:
    row = lease_of(ws)
    return row if row is not None and row.holder is holder and row.released is None else None


def _rows(ws: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(ws / "ledger.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _ran_once(cwd: Path, ws: Path) -> None:
    """The campaign completed exactly once: every ledger check, unique scheduler ids, no
    constraint error anywhere."""
    check_campaign(cwd)
    ids = [i for (i,) in _rows(ws, "SELECT sched_id FROM jobs WHERE sched_id IS NOT NULL")]
    assert ids and len(ids) == len(set(ids))
    logs = "".join(p.read_text(errors="replace") for p in (ws / "manager.log", ws / "run.log"))
    assert "IntegrityError" not in logs and "Traceback" not in logs


@pytest.fixture(params=["local", "slurm"])
def first(request: pytest.FixtureRequest, tmp_path: Path
          ) -> tuple[dict[str, str], Path, Run, LeaseRow]:
    """A `mummi run` on each scheduler, once its manager holds the workspace: the
    environment, the workspace, the run and its manager's lease."""
    if request.param == "slurm":
        request.getfixturevalue("slurm_cluster")
    env = _env(request.param)
    ws = _compile(tmp_path, env)
    run = Run(tmp_path, "first", env)
    return env, ws, run, _until("the first run's manager", lambda: _held_by(ws, Holder.MANAGER))


def test_a_second_run_follows_the_first_and_the_campaign_runs_once(
        first: tuple[dict[str, str], Path, Run, LeaseRow], tmp_path: Path) -> None:
    env, ws, run, manager = first
    second, third = Run(tmp_path, "second", env), Run(tmp_path, "third", env)
    _until("the second run following", lambda: "following it" in second.text(), 60)
    _until("the third run following", lambda: "following it" in third.text(), 60)
    third.proc.send_signal(signal.SIGINT)  # Ctrl-C stops following, not the campaign
    assert third.wait() == 130, third.text()
    assert "stopped following; the campaign goes on" in third.text()
    # Maestro killed too: the first run follows its orphaned manager through the workspace.
    (maestro,) = (pid for pid, cmd in _study_processes(tmp_path / "build")
                  if "maestro run" in cmd)
    os.kill(maestro, signal.SIGKILL)
    assert second.wait() == 0, second.text()
    assert run.wait() == 0, run.text()
    assert (f"campaign already running: manager pid {manager.pid} on host {manager.host}; "
            "following it — Ctrl-C stops following") in second.text()
    for each in (run, second):
        assert "campaign mini-mummi: complete" in each.text()
    _ran_once(tmp_path, ws)
    end = lease_of(ws)
    assert end is not None and end.token == manager.token and end.released is not None


def test_a_rerun_after_kill_9_follows_the_orphan_and_mummi_stop_stops_it(
        first: tuple[dict[str, str], Path, Run, LeaseRow], tmp_path: Path) -> None:
    env, ws, run, manager = first
    run.proc.kill()  # kill -9: Maestro and the manager live on, orphans
    run.wait()
    second = Run(tmp_path, "second", env)
    _until("the rerun following", lambda: "following it" in second.text(), 60)
    assert f"manager pid {manager.pid} on host {manager.host}" in second.text()
    stop = subprocess.run(_mummi("stop", str(ws)), env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert stop.stdout.startswith(f"stop requested: manager pid {manager.pid}")
    assert "stopped: campaign mini-mummi is stopped" in stop.stdout
    assert second.wait() == 130, second.text()  # the campaign was stopped: resumable
    assert "ended because a stop was requested (`mummi stop`, pid" in second.text()
    status = subprocess.run(_mummi("status", str(ws)), env=env, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    assert f"manager pid {manager.pid} on host {manager.host} released the workspace" in status
    third = Run(tmp_path, "third", env)
    assert third.wait() == 0, third.text()
    _ran_once(tmp_path, ws)


def test_a_stop_asked_before_the_manager_started_stops_it_at_its_first_tick(
        tmp_path: Path) -> None:
    env = _env("local")
    ws = _compile(tmp_path, env)
    ws.mkdir(parents=True)
    ledger = Ledger(ws / "ledger.sqlite")  # plays `mummi run` waiting for its manager step
    try:
        launcher = take(ledger, ws, Holder.LAUNCHER, 1.0)
        launcher.request_stop("a stop signal to `mummi run`")
        manager = subprocess.run(_mummi("manager", "--plan", "build/plan.json"), cwd=tmp_path,
                                 env={**env, TOKEN_ENV: launcher.token}, capture_output=True,
                                 text=True, timeout=120, check=False)
        assert manager.returncode == 0, manager.stderr
        assert "campaign mini-mummi stopped" in manager.stdout
        assert _rows(ws, "SELECT COUNT(*) FROM jobs") == [(0,)]  # not even the generator
        # The next run's manager, handed its lease the same way, runs the campaign; a
        # `mummi run` started meanwhile follows the hand-over to the end.
        launcher = take(ledger, ws, Holder.LAUNCHER, 1.0)
        follower = Run(tmp_path, "follower", env)
        _until("the follower", lambda: "its manager step has not started yet" in
               follower.text(), 60)
        step = Run(tmp_path, "manager", {**env, TOKEN_ENV: launcher.token},
                   _mummi("manager", "--plan", "build/plan.json"))
        assert step.wait() == 0, step.text()
        assert follower.wait() == 0, follower.text()
        assert "its manager started: manager pid" in follower.text()
        check_campaign(tmp_path)
    finally:
        ledger.close()


def _unshared(cwd: Path, env: dict[str, str], name: str) -> Run:
    """`mummi manager` in a pid namespace of its own, as on another node: no pid it records
    can be signalled from here. Killing the returned process kills everything inside."""
    return Run(cwd, name, env, ["unshare", "--pid", "--fork", "--mount-proc",
                                "--kill-child=SIGKILL", "sh", "-c", '"$@"; exit $?', "sh",
                                *_mummi("manager", "--plan", "build/plan.json")])


def test_stop_and_takeover_work_where_no_pid_can_be_signalled(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a new pid namespace needs root (unshare --pid)")
    env = _env("local")
    ws = _compile(tmp_path, env)
    inside = _unshared(tmp_path, env, "manager-1")
    row = _until("the manager in its own namespace", lambda: _held_by(ws, Holder.MANAGER))
    assert local_pid(row) is None  # its pid means nothing here
    status = subprocess.run(_mummi("status", str(ws)), env=env, capture_output=True, text=True,
                            timeout=60, check=False).stdout
    assert f"manager: manager pid {row.pid} on host {row.host}, heartbeat" in status
    stop = subprocess.run(_mummi("stop", str(ws)), env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert stop.returncode == 0 and "is stopped" in stop.stdout, stop.stdout + stop.stderr
    assert inside.wait(60) == 0, inside.text()
    assert "campaign mini-mummi stopped" in inside.text()
    # Killed with everything in its namespace, it cannot release the workspace; nothing here
    # can tell it died, so a rerun follows it until its heartbeat is past the bound.
    inside = _unshared(tmp_path, env, "manager-2")
    killed = _until("the second manager", lambda: _held_by(ws, Holder.MANAGER))
    _until("jobs of the second manager", lambda: _rows(
        ws, "SELECT COUNT(*) FROM jobs WHERE sim IS NOT NULL")[0][0] >= 2)
    inside.proc.send_signal(signal.SIGKILL)
    inside.wait()
    rerun = Run(tmp_path, "rerun", env)
    assert rerun.wait(600) == 0, rerun.text()
    text = rerun.text()
    assert f"campaign already running: manager pid {killed.pid} on host {killed.host}" in text
    gone = text.split("last heartbeat ", 1)[1]
    assert float(gone.split(" s ago", 1)[0]) > killed.stale_after  # never taken over early
    end = lease_of(ws)
    assert end is not None and end.token != killed.token
    _ran_once(tmp_path, ws)


@pytest.fixture
def down_partition(slurm_cluster: dict[str, str]) -> Iterator[str]:
    """A partition of our own over the cluster's node, down: sbatch accepts, nothing starts
    (a queue wait with no end), and the shared partition stays free for other tests."""
    nodes = subprocess.run(["sinfo", "-h", "-p", slurm_cluster["partition"], "-o", "%N"],
                           capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    name = f"mummi-wait-{os.getpid()}"
    subprocess.run(["scontrol", "create", f"PartitionName={name}", f"Nodes={nodes}",
                    "State=DOWN"], check=True, capture_output=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["scancel", "-p", name], capture_output=True, timeout=30, check=False)
        subprocess.run(["scontrol", "delete", f"PartitionName={name}"], capture_output=True,
                       timeout=30, check=False)


def _study_processes(build: Path) -> list[tuple[int, str]]:
    """Live processes running this build's study (Maestro, its steps): pid, command line."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(build) in cmd and state != "Z":
            found.append((int(proc.name), cmd))
    return found


@pytest.mark.parametrize("where", ["local", "slurm"])
def test_a_stop_before_the_manager_step_started_is_not_dropped(
        where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if where == "slurm":  # the study's steps wait in a Slurm queue that never moves
        env = _env("slurm", request.getfixturevalue("down_partition"))
        ws = _compile(tmp_path, env)
    else:  # the prepare step waits for a store that never answers
        env = _env("local")
        ws = _compile(tmp_path, env, NEVER_READY)
    run = Run(tmp_path, "run", env)
    _until("the run's lease", lambda: _held_by(ws, Holder.LAUNCHER))
    _until("the study's first step", lambda: (ws / "maestro" / "run-1" / "prepare").is_dir())
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(STOP_BOUND + 30) == 130, run.text()
    assert time.monotonic() - t0 < STOP_BOUND + 10
    assert "stopped before the manager step started: cancelling the Maestro study" in run.text()
    assert "its Maestro study was cancelled before its manager started" in run.text()
    assert _rows(ws, "SELECT COUNT(*) FROM jobs") == [(0,)]
    end = lease_of(ws)
    assert end is not None and end.holder is Holder.LAUNCHER and end.released is not None
    assert end.stop is not None and end.stop.startswith("a stop signal to `mummi run`")
    assert _study_processes(tmp_path / "build") == []
    if where == "slurm":
        queue = subprocess.run(["squeue", "-h", "-p", env["MUMMI_QUEUE"]], capture_output=True,
                               text=True, timeout=30, check=True).stdout
        assert queue.strip() == ""  # the queued step was cancelled, not left behind


def test_a_second_stop_signal_ends_mummi_run_within_its_bound(tmp_path: Path) -> None:
    env = _env("local")
    ws = _compile(tmp_path, env)
    run = Run(tmp_path, "run", env)
    row = _until("the manager", lambda: _held_by(ws, Holder.MANAGER))
    pid = local_pid(row)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a manager that cannot stop (hung, or its node frozen)
    try:
        run.proc.send_signal(signal.SIGTERM)
        _until("the first stop recorded", lambda: (lease_of(ws) or row).stop)
        t0 = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(STOP_BOUND + 30) == 130, run.text()
        assert time.monotonic() - t0 < STOP_BOUND + 10
    finally:
        if local_pid(row) is not None:
            os.kill(pid, signal.SIGKILL)
    text = run.text()
    assert "a second stop signal: cancelling the Maestro study" in text
    assert "its Maestro study was cancelled at a second stop signal" in text
    assert local_pid(row) is None  # the study's process group, the manager with it, ended
    assert _study_processes(tmp_path / "build") == []
    rerun = Run(tmp_path, "rerun", env)  # its dead manager's lease is taken over at once
    assert rerun.wait() == 0, rerun.text()
    assert "following it" not in rerun.text()
    check_campaign(tmp_path)

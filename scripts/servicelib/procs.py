"""Process plumbing for daemons we own: pid files, liveness, polite stops, ports, polling."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.1
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0


class ServiceError(Exception):
    """A service could not be started, stopped or checked; the message says why."""


@dataclass(frozen=True)
class Daemon:
    """A daemon we start ourselves and track only through its pid file."""

    name: str
    comm: str  # /proc/<pid>/comm, checked so a reused pid is never signalled
    pid_file: Path
    port: int | None = None

    def pid(self) -> int | None:
        """The live pid from our pid file, or None (missing, stale, reused or zombie)."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if process_matches(pid, self.comm) else None

    def down(self) -> str:
        """Why it is down, naming a stranger that holds our port."""
        if self.port is not None and not port_free(self.port):
            return f"down (port {self.port} held by {port_holder(self.port) or 'another process'}" \
                   ", not started by scripts/services)"
        return "down"

    def stop(self) -> str:
        """SIGTERM, then SIGKILL after the grace period; only ever the pid in our file."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "not running"
        os.kill(pid, signal.SIGTERM)
        if not wait_for(lambda: not process_matches(pid, self.comm), STOP_GRACE_S):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not process_matches(pid, self.comm), 5.0)
        self.pid_file.unlink(missing_ok=True)
        return f"stopped (pid {pid})"


def process_matches(pid: int, comm: str) -> bool:
    """True if ``pid`` is alive, not a zombie, and runs the program ``comm``."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    state = stat.rpartition(")")[2].split()[0]
    return name == comm[:15] and state not in ("Z", "X")


def port_free(port: int) -> bool:
    """True if nobody listens on ``port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def port_holder(port: int) -> str:
    """Who listens on ``port`` ("pid N (comm)"), from /proc; "" if it cannot be told."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pid = fd_dir.parent.name
                return f"pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})"
        except OSError:
            continue
    return ""


def require_port(daemon: Daemon) -> None:
    """Refuse to start ``daemon`` when a process we did not start holds its port."""
    if daemon.port is not None and not port_free(daemon.port):
        who = port_holder(daemon.port) or "another process"
        raise ServiceError(
            f"port {daemon.port} is held by {who}, which scripts/services did not start; "
            f"refusing to start {daemon.name} over it (stop that process or free the port)")


def wait_for(check: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> bool:
    """Poll ``check`` every 0.1 s until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def run(cmd: Sequence[str], *, timeout: float = 10.0, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short client command, capturing text output; never raises on exit status."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              input=input, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(exc))


def launch(cmd: Sequence[str], log: Path, *, input: str | None = None) -> None:
    """Run a self-daemonizing program and wait for its parent to return.

    Output goes to ``log``, never to a pipe: a daemon that keeps an inherited pipe open
    would make us wait for ever.
    """
    with log.open("a") as out:
        proc = subprocess.run(list(cmd), input=input, text=True,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              stdout=out, stderr=out, timeout=30, check=False)
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        raise ServiceError(f"{cmd[0]} exited with {proc.returncode}: {' | '.join(tail)}")

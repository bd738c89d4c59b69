"""redis-server on 127.0.0.1:6390 without persistence; password only from the environment."""

from __future__ import annotations

import os

from servicelib.layout import Layout
from servicelib.procs import Daemon, ServiceError, launch, require_port, run, wait_for

# MUMMI_REDIS_PORT is also what tests/conftest.py reads to find the server.
PORT = int(os.environ.get("MUMMI_REDIS_PORT", "6390"))


def daemon(layout: Layout) -> Daemon:
    return Daemon("redis", "redis-server", layout.pids / "redis.pid", PORT)


def reply() -> str:
    """What the server says to PING ("" when nobody answers)."""
    env = dict(os.environ)
    password = os.environ.get("MUMMI_REDIS_PASSWORD")
    if password:
        env["REDISCLI_AUTH"] = password  # keeps it off redis-cli's command line
    proc = run(["redis-cli", "-h", "127.0.0.1", "-p", str(PORT), "ping"], timeout=5, env=env)
    return proc.stdout.strip()


def status(layout: Layout) -> tuple[bool, str]:
    own = daemon(layout)
    pid = own.pid()
    if pid is None:
        return False, own.down()
    answer = reply()
    if answer == "PONG":
        return True, f"up (pid {pid}, 127.0.0.1:{PORT})"
    return False, f"not answering PING (pid {pid}): {answer or 'no reply'}"


def start(layout: Layout) -> str:
    own = daemon(layout)
    started = own.pid() is None
    if started:
        require_port(own)
        layout.create()
        cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(PORT),
               "--protected-mode", "yes", "--save", "", "--appendonly", "no",
               "--daemonize", "yes", "--pidfile", str(own.pid_file),
               "--logfile", str(layout.log / "redis.log"), "--dir", str(layout.redis)]
        password = os.environ.get("MUMMI_REDIS_PASSWORD")
        config = None
        if password:
            if "\n" in password:
                raise ServiceError("MUMMI_REDIS_PASSWORD must not contain a newline")
            # Through stdin (`-`), not argv: /proc/<pid>/cmdline is world-readable.
            cmd.append("-")
            config = "requirepass " + _quote(password) + "\n"
        launch(cmd, layout.log / "redis.launch.log", input=config)
    if not wait_for(lambda: reply() == "PONG"):
        raise ServiceError(f"redis-server does not answer PING ({reply() or 'no reply'}); "
                           f"see {layout.log / 'redis.log'}")
    return f"up ({'started' if started else 'already running'}, 127.0.0.1:{PORT})"


def stop(layout: Layout) -> str:
    return daemon(layout).stop()


def _quote(value: str) -> str:
    """A double-quoted redis.conf string (sdssplitargs rules)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

"""kill -9 and restart the redis-server under RDF feedback mid-campaign: nothing lost or doubled."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mummi_spec.runtime.campaign import Campaign
from tests.conftest import SPECS
from tests.integration.test_campaign import check_campaign, run_cli
from tests.reliability.test_crash import _count, _manager

LOOP = "cg-to-macro"


class RedisProcess:
    """A redis-server of our own on a free port, restartable on the same port and data.

    Persistence is the append-only file with ``appendfsync always``: every write is on disk
    before Redis acknowledges it, so even kill -9 loses nothing a client was told is stored,
    as a production Redis with AOF persistence. (RDB snapshots, ``--save``, would lose every
    write since the last snapshot, which is exactly the outage this test is about.) With
    ``persist=False`` it keeps nothing: a restart comes back empty, the server's choice.
    """

    def __init__(self, root: Path, *, persist: bool = True) -> None:
        self.dir = root
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.keeps = ["--appendonly", "yes", "--appendfsync", "always"] if persist else \
            ["--appendonly", "no"]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), "--save", "", *self.keeps, "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:  # until it listens and has loaded its append-only file
            try:
                client.ping()
                break
            except redis.ConnectionError:  # includes LOADING
                assert self.proc.poll() is None, (self.dir / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not come up"
                time.sleep(0.02)  # polling for readiness
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def own_server(root: Path, *, persist: bool = True) -> Iterator[RedisProcess]:
    """A started ``RedisProcess`` in ``root/redis``, killed at the end."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    data = root / "redis"
    data.mkdir()
    server = RedisProcess(data, persist=persist)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    yield from own_server(tmp_path)


def _wait(what: str, cond: object, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while not cond():  # type: ignore[operator]
        assert proc.poll() is None, f"manager ended before {what}"
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.05)  # polling the ledger, Redis or the log for the moment


def test_redis_killed_and_restarted_mid_feedback_loses_nothing(
        own_redis: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"MUMMI_RDFS_BACKEND": "redis", "MUMMI_REDIS_PORT": str(own_redis.port),
           "MUMMI_REDIS_DB": "3", "MUMMI_REDIS_PASSWORD": ""}
    proc = run_cli("compile", str(SPECS / "rasraf-3scale.yaml"), "-o", "build", cwd=tmp_path,
                   **env)
    assert proc.returncode == 0, proc.stderr
    build = tmp_path / "build"
    ws = Campaign.open(build / "plan.json").workspace
    monkeypatch.setenv("MUMMI_REDIS_PASSWORD", "")  # the manager and its jobs read it
    client = redis.Redis(port=own_redis.port, db=3)
    manager = _manager(build)
    try:
        deadline = time.monotonic() + 120
        # Feedback is flowing: one iteration committed and more RDFs waiting in Redis.
        _wait("a feedback iteration with RDFs waiting", lambda: _count(
            ws, f"SELECT MAX(iteration) FROM feedback WHERE loop = '{LOOP}'") >= 1
            and any(client.scan_iter("rdfs:rdfs::*")), deadline, manager)
        waiting = {k.decode().split("::")[1] for k in client.scan_iter("rdfs:rdfs::*")}
        own_redis.kill()
        # The manager hits the dead server and waits for it (a warning, not an error).
        log = ws / "manager.log"
        _wait("the store's retry warning in manager.log", lambda: "redis store 'rdfs'" in
              log.read_text() and "retrying in" in log.read_text(), deadline, manager)
        own_redis.start()
        assert manager.wait(timeout=180) == 0
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait()
    c = check_campaign(tmp_path)  # every RDF consumed exactly once, none live, target counts
    db = sqlite3.connect(ws / "ledger.sqlite")
    consumed = {k for (k,) in db.execute("SELECT key FROM consumed WHERE loop = ?", (LOOP,))}
    assert waiting <= consumed  # written before the restart, still there after it
    assert c.plan.stores["rdfs"].port == own_redis.port
    # The simulations writing RDFs waited for Redis instead of failing.
    assert db.execute("SELECT COUNT(*) FROM jobs WHERE job_type = 'cg' AND state NOT IN "
                      "('completed', 'cancelled')").fetchone()[0] == 0
    text = (ws / "manager.log").read_text()
    assert "Traceback" not in text
    client.close()

"""Redis listens on loopback only, and its password comes from the environment, never the plan."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.errors import SpecErrors, StoreError
from mummi_spec.frontend import load_spec, load_spec_text
from mummi_spec.plan import Plan, PlanError
from mummi_spec.runtime.stores.redis import RedisStore
from tests import plans
from tests.conftest import ROOT, SPECS

redis = pytest.importorskip("redis")
from redis.backoff import NoBackoff  # noqa: E402  (after the import check)
from redis.retry import Retry  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")
LOOPBACK = {"127.0.0.1", "::1", "-::1", "localhost"}  # '-' marks an optional address


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        return True  # up, and asking for the password
    except redis.ConnectionError:
        return False


def _wait_up(port: int, proc: subprocess.Popen[str]) -> None:
    # One attempt per look: redis-py's own retries would hide how soon the server answers.
    client = redis.Redis(port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + 30
    # Polls until the server answers: readiness, not a guess at how long start-up takes.
    while not _answers(client):
        assert proc.poll() is None, "redis-server exited at start-up"
        assert time.monotonic() < deadline, f"redis-server on port {port} never answered"
        time.sleep(0.02)


@pytest.fixture
def locked_redis() -> Iterator[tuple[int, str]]:
    """Our own redis-server with a password, on a free loopback port; ended by its pid."""
    port, password = _free_port(), secrets.token_hex(16)
    # The password goes in through stdin (`-`), as scripts/services does: argv is public.
    proc = subprocess.Popen(
        ["redis-server", "-", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdin is not None
        proc.stdin.write(f'requirepass "{password}"\n')
        proc.stdin.close()
        _wait_up(port, proc)
        yield port, password
    finally:
        os.kill(proc.pid, 15)
        proc.wait(timeout=30)


def _store(port: int, **config: object) -> RedisStore:
    return RedisStore(plans.store("redis", "fb", port=port, **config), root=Path("/nonexistent"))


def _bind(client: redis.Redis) -> set[str]:
    return set(str(client.config_get("bind")["bind"]).split())


def test_the_running_services_redis_binds_loopback_only(redis_server: dict[str, object]) -> None:
    client = redis.Redis(host=str(redis_server["host"]), port=int(redis_server["port"]),
                         password=os.environ.get("MUMMI_REDIS_PASSWORD") or None)
    assert _bind(client) and _bind(client) <= LOOPBACK
    assert client.config_get("protected-mode")["protected-mode"] == "yes"


def test_services_start_binds_loopback_and_keeps_the_password_off_argv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from servicelib import redis as service
    from servicelib.layout import Layout

    port, password = _free_port(), secrets.token_hex(16)
    monkeypatch.setattr(service, "PORT", port)
    monkeypatch.setenv("MUMMI_REDIS_PASSWORD", password)
    layout = Layout(tmp_path / "services")
    service.start(layout)
    try:
        pid = service.daemon(layout).pid()
        assert pid is not None
        assert password not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        client = redis.Redis(port=port, password=password)
        assert _bind(client) == {"127.0.0.1"}
        assert client.config_get("protected-mode")["protected-mode"] == "yes"
    finally:
        assert service.stop(layout).startswith("stopped")  # by the pid in its own file


def test_store_takes_the_password_from_the_variable_password_env_names(
        locked_redis: tuple[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    port, password = locked_redis
    monkeypatch.setenv("MY_REDIS_SECRET", password)
    with _store(port, password_env="MY_REDIS_SECRET") as store:
        store.put("ns", "k", b"v")
        assert store.get("ns", "k") == b"v"


def test_unset_password_variable_is_a_clear_error(locked_redis: tuple[int, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    port, _ = locked_redis
    monkeypatch.delenv("MY_REDIS_SECRET", raising=False)
    with pytest.raises(StoreError, match=r"environment variable 'MY_REDIS_SECRET' "
                                         r"\(password_env\) is not set"):
        _store(port, password_env="MY_REDIS_SECRET")


def test_a_password_written_in_the_plan_is_never_used(locked_redis: tuple[int, str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    port, password = locked_redis
    data = json.loads(compile_loaded(load_spec(SPECS / "mini.yaml")).files["plan.json"])
    data["stores"]["feedback"].update(backend="redis", port=port, password=password)
    with pytest.raises(PlanError, match=r"unknown key\(s\) password") as refused:
        Plan.from_data(data)  # a plan.json edited by hand to hold one is not read at all
    assert password not in str(refused.value)
    # A store whose settings name no password_env connects with none.
    with pytest.raises(StoreError, match="Authentication") as err:
        _store(port)
    assert password not in str(err.value)
    assert "retrying" not in caplog.text  # refused at once: waiting cannot cure it


def test_a_wrong_password_is_refused_at_once_without_echoing_it(
        locked_redis: tuple[int, str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    port, _ = locked_redis
    wrong = secrets.token_hex(16)
    monkeypatch.setenv("MY_REDIS_SECRET", wrong)
    with pytest.raises(StoreError, match="cannot connect") as err:
        _store(port, password_env="MY_REDIS_SECRET")
    assert wrong not in str(err.value) and wrong not in caplog.text
    assert "retrying" not in caplog.text


def test_a_spec_cannot_hold_a_redis_password() -> None:
    text = (SPECS / "mini.yaml").read_text().replace(
        "  feedback: {backend: filesystem, path: feedback}",
        "  feedback: {backend: redis, password: hunter2}", 1)
    assert "hunter2" in text
    with pytest.raises(SpecErrors) as err:
        load_spec_text(text, "mini.yaml", env={})
    assert "password" in str(err.value)

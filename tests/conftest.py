"""Shared fixtures: golden-file switch and the real services (Redis, Slurm) tests may need."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
# In CI a missing service is a failure, not a skip: those tests must run there.
REQUIRE_SERVICES = os.environ.get("MUMMI_REQUIRE_SERVICES") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite golden files from current output"
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def _missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} (MUMMI_REQUIRE_SERVICES=1: run 'scripts/services start' first)")
    pytest.skip(f"{what}; start it with 'scripts/services start'")


@pytest.fixture(scope="session")
def redis_server() -> dict[str, object]:
    """Connection settings of the local redis-server that scripts/services started."""
    import redis

    host = os.environ.get("MUMMI_REDIS_HOST", "127.0.0.1")
    port = int(os.environ.get("MUMMI_REDIS_PORT", "6390"))
    try:
        redis.Redis(host=host, port=port, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        _missing(f"no redis-server on {host}:{port} ({exc})")
    return {"host": host, "port": port}


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """The local single-node Slurm that scripts/services started (partition ``debug``)."""
    if shutil.which("sinfo") is None:
        _missing("Slurm client commands are not installed")
    proc = subprocess.run(
        ["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=10, check=False
    )
    if proc.returncode != 0 or not any(
        state in proc.stdout for state in ("idle", "mixed", "allocated", "completing")
    ):
        _missing(f"no usable Slurm node: {proc.stdout.strip() or proc.stderr.strip()}")
    os.environ.setdefault("USER", "root")  # Maestro's slurm adapter polls squeue -u $USER
    return {"partition": "debug"}

"""scripts/services and Flux: a broker on a local socket only, found again, and Flux tests that
skip with the reason where no Flux can be had (or fail, in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SERVICES = ROOT / "scripts" / "services"
STATE = Path(os.environ.get("MUMMI_SERVICES_DIR") or ROOT / ".services") / "flux"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT, check=False)


@pytest.fixture
def our_broker(flux_instance):
    """The broker under test, if this checkout's scripts/services started it."""
    if not (STATE / "uri").exists() or (STATE / "uri").read_text().strip() != \
            flux_instance["uri"]:
        pytest.skip("the Flux broker under test was not started by this checkout")
    return flux_instance


def _listening_tcp_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    return inodes


@pytest.mark.flux
def test_status_and_a_second_start_find_the_broker_as_it_is(our_broker):
    status = run(sys.executable, str(SERVICES), "status", "flux")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("flux ") and "up (pid" in status.stdout
    assert f"{our_broker['gpus']} GPUs" in status.stdout
    again = run(sys.executable, str(SERVICES), "start", "flux")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout and "(started" not in again.stdout


@pytest.mark.flux
def test_the_broker_listens_on_a_local_socket_only(our_broker):
    assert str(our_broker["uri"]).startswith("local://")
    pid = run("flux", "getattr", "broker.pid").stdout.strip()
    sockets = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    assert sockets and not sockets & _listening_tcp_inodes()


def _without_flux(tmp_path: Path) -> dict[str, str]:
    """An environment where no Flux can be had: no flux on PATH, no source, empty caches."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not (Path(p) / "flux").exists())
    env = {**os.environ, "PATH": path, "MUMMI_SERVICES_DIR": str(tmp_path / "services"),
           "MUMMI_FLUX_TARBALL": str(tmp_path / "absent.tar.gz"),
           "MUMMI_FLUX_PREFIX": str(tmp_path / "prefix")}
    for key in ("FLUX_URI", "MUMMI_REQUIRE_SERVICES", "PYTEST_ADDOPTS"):
        env.pop(key, None)
    return env


def test_start_flux_without_flux_or_its_source_says_so(tmp_path):
    proc = run(sys.executable, str(SERVICES), "start", "flux", env=_without_flux(tmp_path))
    assert proc.returncode == 1
    assert "no 'flux' on PATH and no flux-core source" in proc.stderr
    assert str(tmp_path / "absent.tar.gz") in proc.stderr


@pytest.mark.parametrize("required", [False, True])
def test_flux_tests_skip_with_the_reason_or_fail_in_ci(tmp_path, required):
    env = _without_flux(tmp_path)
    if required:
        env["MUMMI_REQUIRE_SERVICES"] = "1"
    proc = run(sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
               "tests/integration/test_flux_scheduler.py", "-k", "unreachable", env=env)
    out = proc.stdout + proc.stderr
    assert "no Flux here: no 'flux' on PATH and no flux-core source" in out
    assert (proc.returncode, "1 skipped" in out) == ((1, False) if required else (0, True))

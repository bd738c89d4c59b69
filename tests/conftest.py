"""Shared fixtures: golden-file switch and the real services (Redis, Slurm, Flux) tests need."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def flux_instance() -> Iterator[dict[str, object]]:
    """A Flux broker to submit to: the one ``FLUX_URI`` names (tests run inside an instance),
    else the one scripts/services started, whose URI and ``flux`` command it writes to
    ``<state dir>/flux/uri`` and ``<state dir>/flux/command``. For the session ``FLUX_URI``
    is set and that command's directory leads PATH, so the adapter finds libflux-core beside
    it and processes the tests start find the broker. Yields its URI, cores and GPUs."""
    from mummi_spec.errors import OptionalDependencyError
    from mummi_spec.runtime.schedulers.flux import import_flux

    state = Path(os.environ.get("MUMMI_SERVICES_DIR") or ROOT / ".services") / "flux"
    uri, command = os.environ.get("FLUX_URI", ""), shutil.which("flux") or ""
    if not uri and (state / "uri").exists():
        uri = (state / "uri").read_text().strip()
        command = (state / "command").read_text().strip()
    if not uri or not command:
        sys.path.insert(0, str(ROOT / "scripts"))
        from servicelib.fluxbuild import unavailable_reason

        _missing(f"no Flux here: {unavailable_reason()}" if unavailable_reason() else
                 "no Flux broker: FLUX_URI is unset and scripts/services has not started one")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLUX_URI", uri)
        patch.setenv("PATH", f"{Path(command).parent}{os.pathsep}{os.environ['PATH']}")
        try:
            import_flux()
        except OptionalDependencyError as exc:
            _missing(f"flux-python cannot be imported: {exc.__cause__}")
        proc = subprocess.run([command, "resource", "list", "--states=up", "-no",
                               "{ncores} {ngpus}"], capture_output=True, text=True, timeout=30,
                              check=False)
        counts = proc.stdout.split()
        if proc.returncode != 0 or len(counts) != 2:
            _missing(f"the Flux broker at {uri} does not answer: {proc.stderr.strip()}")
        yield {"uri": uri, "cores": int(counts[0]), "gpus": int(counts[1])}


def _tool(name: str, *candidates: str) -> str:
    found = next((p for p in map(shutil.which, candidates or (name,)) if p), None)
    if found is None:
        what = f"{name} is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"{what} (MUMMI_REQUIRE_SERVICES=1: run 'scripts/services install "
                        "tools' as root first)")
        pytest.skip(f"{what}; 'scripts/services install tools' installs it (as root)")
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless-capable Chromium, which scripts/services installs with the tools."""
    from tests.browser import CHROMIUM

    return _tool("chromium", *CHROMIUM)


@pytest.fixture(scope="session")
def tmux() -> str:
    """tmux, a real terminal to run `mummi status --watch` in and read back."""
    return _tool("tmux")
@contextlib.contextmanager
def mounted(*args: str, at: Path) -> Iterator[Path]:
    """``mount ARGS at`` for the block (a tmpfs that fills up, a read-only bind): real file
    systems that refuse writes. Skips where mounting is not allowed (not root)."""
    proc = subprocess.run(["mount", *args, str(at)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): {proc.stderr.strip()}")
    try:
        yield at
    finally:
        # Lazily: a job the test started may still hold a file open there.
        subprocess.run(["umount", "-l", str(at)], capture_output=True, check=False)


def fill(disk: Path) -> Path:
    """Write zeros to a file until the file system is full (ENOSPC); returns the file."""
    filler = disk / "filler"
    # Unbuffered: a buffered file keeps the block the disk refused and raises ENOSPC again
    # when it is closed.
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * (64 << 10))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler

"""flux-core: the one on PATH, or a build of the vendored source cached by version and prefix."""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from servicelib import packages
from servicelib.layout import REPO
from servicelib.procs import ServiceError, run

VERSION = "0.88.0"
# The vendored source beside the checkout (`shared/` is a sibling of the repository).
VENDORED = REPO.parent / "shared" / "vendor" / f"flux-core-{VERSION}.tar.gz"
_VERSION_LINE = re.compile(r"^libflux-core:\s*(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class FluxInstall:
    """A usable flux-core: its ``flux`` command and version, and how we came by it."""

    command: Path
    version: str
    how: str

    def __str__(self) -> str:
        return f"{self.version} ({self.how})"


def source() -> Path:
    """Where the source is looked for: ``$MUMMI_FLUX_TARBALL``, else the vendored tarball."""
    named = os.environ.get("MUMMI_FLUX_TARBALL")
    return Path(named) if named else VENDORED


def tarball() -> Path | None:
    """The source to build, if it exists."""
    return source() if source().is_file() else None


def prefix() -> Path:
    """Where the build is installed: outside the checkout, so every clone reuses it."""
    named = os.environ.get("MUMMI_FLUX_PREFIX")
    if named:
        return Path(named).resolve()
    if os.geteuid() == 0:
        base = Path("/var/cache/mummi-spec")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mummi-spec"
    return base / f"flux-core-{VERSION}"


def version_of(command: Path | str) -> str:
    """``libflux-core`` version that ``flux version`` prints, or "" if it does not run."""
    out = run([str(command), "version"], timeout=30).stdout
    match = _VERSION_LINE.search(out)
    return match.group(1) if match else ""


def find() -> FluxInstall | None:
    """A flux already on PATH (as on a cluster), else our cached build of VERSION."""
    on_path = shutil.which("flux")
    if on_path:
        found = version_of(on_path)
        if found:
            return FluxInstall(Path(on_path).resolve(), found, "on PATH")
    cached = prefix() / "bin" / "flux"
    if cached.exists() and version_of(cached) == VERSION:
        return FluxInstall(cached, VERSION, f"cached in {prefix()}")
    return None


def unavailable_reason() -> str:
    """Why no Flux can be had here ("" when one can: found, or buildable from source)."""
    if find() is not None or tarball() is not None:
        return ""
    return (f"no 'flux' on PATH and no flux-core source at {source()} (set "
            f"MUMMI_FLUX_TARBALL to a flux-core-{VERSION} tarball, or put flux on PATH)")


def ensure(log_dir: Path) -> FluxInstall:
    """Find flux-core, or build it from the source once (about 2.5 min on 2 cores)."""
    found = find()
    if found is not None:
        return found
    source = tarball()
    if source is None:
        raise ServiceError(unavailable_reason())
    target = prefix()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two checkouts may start Flux at once; they share the prefix, so one builds.
    with (target.parent / f".flux-core-{VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if version_of(target / "bin" / "flux") == VERSION:
            return FluxInstall(target / "bin" / "flux", VERSION, f"cached in {target}")
        packages.ensure_installed(["flux-build"], log_dir / "apt.log")
        begin = time.monotonic()
        _build(source, target, log_dir / "flux-build.log")
        spent = time.monotonic() - begin
    return FluxInstall(target / "bin" / "flux", VERSION, f"built in {spent:.0f} s into {target}")


def _build(source: Path, target: Path, log: Path) -> None:
    """configure, make, and install through a staging tree that is moved in whole at the end,
    so an interrupted build never leaves a prefix that looks complete."""
    with tempfile.TemporaryDirectory(prefix="flux-build-", dir=target.parent) as tmp:
        work = Path(tmp)
        with log.open("a") as out:
            subprocess.run(["tar", "-xzf", str(source), "-C", str(work)], stdout=out,
                           stderr=out, check=False)
        tops = [p for p in work.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "configure").exists():
            raise ServiceError(f"{source} does not hold one flux-core tree with ./configure")
        tree, stage = tops[0], work / "stage"
        # flux's own commands are Python scripts run by Debian's python3 (with python3-cffi
        # and friends); the project's interpreter uses the flux-python wheel instead.
        env = dict(os.environ, PYTHON="/usr/bin/python3")
        jobs = str(os.cpu_count() or 1)
        steps = [["./configure", f"--prefix={target}", "--disable-docs"],
                 ["make", f"-j{jobs}"],
                 ["make", "install", f"DESTDIR={stage}"]]
        with log.open("a") as out:
            for cmd in steps:
                out.write(f"\n$ {' '.join(cmd)}\n")
                out.flush()
                done = subprocess.run(cmd, cwd=tree, env=env, stdout=out, stderr=out,
                                      check=False)
                if done.returncode != 0:
                    raise ServiceError(f"building flux-core failed at '{' '.join(cmd)}' "
                                       f"(exit {done.returncode}); see {log}")
        shutil.rmtree(target, ignore_errors=True)
        (stage / target.relative_to("/")).rename(target)
    if version_of(target / "bin" / "flux") != VERSION:
        raise ServiceError(f"{target}/bin/flux does not report {VERSION} after the build; "
                           f"see {log}")


def ensure_binding(version: str, log: Path) -> str:
    """The matching ``flux-python`` (and ``ply``, which it imports but does not declare)
    in the interpreter running scripts/services, i.e. the project's environment."""
    try:
        have = importlib.metadata.version("flux-python")
        importlib.metadata.version("ply")
    except importlib.metadata.PackageNotFoundError:
        have = ""
    if have == version:
        return f"flux-python {version} present"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           f"flux-python=={version}", "ply"]
    with log.open("a") as out:
        done = subprocess.run(cmd, stdout=out, stderr=out, check=False)
    if done.returncode != 0:
        raise ServiceError(f"pip could not install flux-python=={version} into "
                           f"{sys.executable}; see {log}")
    return f"flux-python {version} installed"

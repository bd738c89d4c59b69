"""Install the Debian packages a service needs, without letting their postinst start daemons."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

from servicelib.procs import ServiceError

# Package -> a program it ships: the cheap "is it installed" test (dpkg-query is slower).
PACKAGES = {
    "slurm": {
        "munge": "/usr/sbin/munged",
        "slurmctld": "/usr/sbin/slurmctld",
        "slurmd": "/usr/sbin/slurmd",
        "slurm-client": "/usr/bin/sbatch",
    },
    "redis": {"redis-server": "/usr/bin/redis-server", "redis-tools": "/usr/bin/redis-cli"},
    # Only to build flux-core from source (reference/flux-ci.md); its run-time libraries
    # come with these -dev packages. A flux already on PATH needs none of them.
    "flux-build": {
        "autoconf": "/usr/bin/autoconf",
        "automake": "/usr/bin/automake",
        "libtool": "/usr/bin/libtoolize",
        "make": "/usr/bin/make",
        "pkg-config": "/usr/bin/pkg-config",
        "gcc": "/usr/bin/gcc",
        "g++": "/usr/bin/g++",
        "libc6-dev": "/usr/include/stdio.h",
        "libzmq3-dev": "/usr/include/zmq.h",
        "uuid-dev": "/usr/include/uuid/uuid.h",
        "libjansson-dev": "/usr/include/jansson.h",
        "liblz4-dev": "/usr/include/lz4.h",
        "libarchive-dev": "/usr/include/archive.h",
        "libhwloc-dev": "/usr/include/hwloc.h",
        "libsqlite3-dev": "/usr/include/sqlite3.h",
        "lua5.1": "/usr/bin/lua5.1",
        "liblua5.1-dev": "/usr/include/lua5.1/lua.h",
        "lua-posix": "/usr/share/lua/5.1/posix/init.lua",
        "python3-dev": "/usr/bin/python3-config",
        "python3-cffi": "/usr/lib/python3/dist-packages/cffi/__init__.py",
        "python3-ply": "/usr/lib/python3/dist-packages/ply/__init__.py",
        "python3-setuptools": "/usr/lib/python3/dist-packages/setuptools/__init__.py",
        "python3-yaml": "/usr/lib/python3/dist-packages/yaml/__init__.py",
        "jq": "/usr/bin/jq",
    },
    # Not services: what the tests of `mummi report` (a real browser loads the page) and
    # `mummi status --watch` (read from a real terminal) drive.
    "tools": {"chromium": "/usr/bin/chromium", "tmux": "/usr/bin/tmux"},
}
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def missing(services: list[str]) -> list[str]:
    """Packages needed by ``services`` whose programs are absent."""
    return [pkg for svc in services for pkg, prog in PACKAGES.get(svc, {}).items()
            if not Path(prog).exists()]


def ensure_installed(services: list[str], log: Path) -> str:
    """Install what is missing (root only); say what was done."""
    pkgs = missing(services)
    if not pkgs:
        return "present"
    if os.geteuid() != 0:
        raise ServiceError(
            f"missing Debian packages: {' '.join(pkgs)}; run 'scripts/services start' as root "
            f"or install them with: sudo apt-get install -y --no-install-recommends "
            f"{' '.join(pkgs)}")
    if shutil.which("apt-get") is None:
        raise ServiceError(f"missing packages {' '.join(pkgs)} and no apt-get to install them")
    # Without a policy-rc.d that says 101, postinst scripts start daemons we would not own.
    guard = not POLICY_RC_D.exists()
    if guard:
        POLICY_RC_D.write_text("#!/bin/sh\n# temporary, from mummi-spec scripts/services\n"
                               "exit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        with log.open("a") as out:
            if _apt_install(pkgs, out) != 0:
                # The shipped package lists are usually fine; refresh them only if they are not.
                subprocess.run(["apt-get", "update"], check=False, stdout=out, stderr=out)
                if _apt_install(pkgs, out) != 0:
                    raise ServiceError(f"apt-get install {' '.join(pkgs)} failed; see {log}")
    finally:
        if guard:
            POLICY_RC_D.unlink(missing_ok=True)
    return "installed " + " ".join(pkgs)


def _apt_install(pkgs: list[str], out: IO[str]) -> int:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs]
    return subprocess.run(cmd, env=env, check=False, stdout=out, stderr=out).returncode

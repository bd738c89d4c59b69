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
}
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def missing(services: list[str]) -> list[str]:
    """Packages needed by ``services`` whose programs are absent."""
    return [pkg for svc in services for pkg, prog in PACKAGES[svc].items()
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

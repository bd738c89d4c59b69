"""munged: start our own as user munge, or reuse (and never stop) one that already answers."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from servicelib.layout import Layout
from servicelib.procs import Daemon, ServiceError, launch, run, wait_for

MUNGE_KEY = Path("/etc/munge/munge.key")
RUN_DIR = Path("/run/munge")


def daemon(layout: Layout) -> Daemon:
    return Daemon("munge", "munged", layout.munge / "munged.pid")


def answers() -> bool:
    """True when a credential round trip (``munge -n | unmunge``) succeeds."""
    cred = run(["munge", "-n"], timeout=5)
    return cred.returncode == 0 and run(["unmunge"], input=cred.stdout, timeout=5).returncode == 0


def status(layout: Layout) -> tuple[bool, str]:
    pid = daemon(layout).pid()
    if answers():
        return True, f"up (pid {pid})" if pid else "up (external munged, not ours)"
    return False, f"not answering (pid {pid})" if pid else "down"


def start(layout: Layout) -> str:
    """Make munge answer; start munged only when no munged answers already."""
    own = daemon(layout)
    if answers():
        return "up (already running)" if own.pid() else "up (reusing external munged)"
    if own.pid() is None:
        _prepare(layout)
        launch(["runuser", "-u", "munge", "--", "/usr/sbin/munged",
                f"--pid-file={own.pid_file}", f"--log-file={layout.munge / 'munged.log'}"],
               layout.log / "munged.launch.log")
    if not wait_for(answers):
        raise ServiceError(f"munged does not answer; see {layout.munge / 'munged.log'}")
    return "up (started)"


def stop(layout: Layout) -> str:
    """Stop munged only if we started it (our pid file names a live munged)."""
    own = daemon(layout)
    if own.pid() is None and answers():
        return "left alone (external munged)"
    return own.stop()


def _prepare(layout: Layout) -> None:
    user = pwd.getpwnam("munge")
    if not MUNGE_KEY.exists():
        # The munge postinst normally creates the key; a purged-and-reinstalled one may not.
        MUNGE_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(MUNGE_KEY.parent, user.pw_uid, user.pw_gid)
        proc = run(["mungekey", "--create", f"--keyfile={MUNGE_KEY}"])
        if proc.returncode != 0:
            raise ServiceError(f"mungekey --create failed: {proc.stderr.strip()}")
        os.chown(MUNGE_KEY, user.pw_uid, user.pw_gid)
        MUNGE_KEY.chmod(0o600)
    for path, mode in ((RUN_DIR, 0o755), (layout.munge, 0o755)):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(mode)

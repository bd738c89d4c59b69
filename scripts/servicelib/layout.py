"""Where the services keep their state: one directory, ``$MUMMI_SERVICES_DIR`` or ``.services``."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Layout:
    """Paths under the state directory: pids, logs, Slurm state and spool, Redis, Flux, GPUs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pids = root / "pids"
        self.log = root / "log"
        # munged runs as user munge, which cannot reach a state directory inside a private
        # (0700) tree such as a mktemp checkout; its pid and log live under /run instead,
        # keyed by the state directory so that two checkouts never share them.
        key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        self.munge = Path("/run/mummi-services") / key / "munge"
        self.slurmctld = root / "slurmctld"
        self.slurmd = root / "slurmd"
        self.redis = root / "redis"
        self.fakegpu = root / "fakegpu"
        # The Flux broker's configuration and the files clients read: `uri`, `command`.
        self.flux = root / "flux"
        self.jobcomp = self.log / "jobcomp.log"
        self.lock = root / "services.lock"

    @classmethod
    def from_env(cls) -> Layout:
        """The state directory from ``MUMMI_SERVICES_DIR``, defaulting to ``<repo>/.services``."""
        root = os.environ.get("MUMMI_SERVICES_DIR") or str(REPO / ".services")
        return cls(Path(root).resolve())

    def create(self) -> None:
        """Create the directories that every daemon expects to exist."""
        for path in (self.pids, self.log, self.slurmctld, self.slurmd, self.redis, self.fakegpu,
                     self.flux):
            path.mkdir(parents=True, exist_ok=True)


def node_name() -> str:
    """The short host name, as ``hostname -s`` prints it."""
    return socket.gethostname().split(".")[0]

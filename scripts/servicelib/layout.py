"""Where the services keep their state: one directory, ``$MUMMI_SERVICES_DIR`` or ``.services``."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Layout:
    """Paths under the state directory, plus the node this machine plays."""

    root: Path

    @classmethod
    def from_env(cls) -> Layout:
        """The state directory from ``MUMMI_SERVICES_DIR``, defaulting to ``<repo>/.services``."""
        root = os.environ.get("MUMMI_SERVICES_DIR") or str(REPO / ".services")
        return cls(Path(root).resolve())

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def munge(self) -> Path:
        # munged runs as user munge and wants a private directory for its pid and log.
        return self.root / "munge"

    @property
    def slurmctld(self) -> Path:
        return self.root / "slurmctld"

    @property
    def slurmd(self) -> Path:
        return self.root / "slurmd"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def fakegpu(self) -> Path:
        return self.root / "fakegpu"

    @property
    def jobcomp(self) -> Path:
        return self.log / "jobcomp.log"

    @property
    def lock(self) -> Path:
        return self.root / "services.lock"

    def create(self) -> None:
        """Create the directories that every daemon expects to exist."""
        for path in (self.pids, self.log, self.slurmctld, self.slurmd, self.redis, self.fakegpu):
            path.mkdir(parents=True, exist_ok=True)


def node_name() -> str:
    """The short host name, as ``hostname -s`` prints it."""
    return socket.gethostname().split(".")[0]

"""slurmctld and slurmd for one loopback node: configure, start in order, check, drain, stop."""

from __future__ import annotations

from servicelib import slurmconf
from servicelib.layout import Layout, node_name
from servicelib.procs import Daemon, ServiceError, launch, require_port, run, wait_for

USABLE = frozenset({"idle", "mixed", "allocated", "completing"})
# States a node keeps across restarts (saved in StateSaveLocation) until someone resumes it.
NEEDS_RESUME = frozenset({"drained", "draining", "drain", "down", "inval", "fail", "failing"})
QUEUE_DRAIN_S = 10.0


def ctld_up() -> bool:
    return "is UP" in run(["scontrol", "ping"], timeout=5).stdout


def node_state(node: str) -> str:
    """The node's base state as sinfo prints it, without flag suffixes like ``*`` or ``~``."""
    out = run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"], timeout=5).stdout.split()
    if not out:
        return "unknown"
    raw = out[0]
    # A trailing '*' means "not responding": not usable yet, whatever the base state says.
    return "not-responding" if raw.endswith("*") else raw.rstrip("~#!%$@^-+")


class Slurm:
    """Our slurmctld and slurmd, tracked by the pid files named in our slurm.conf."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.node = node_name()
        self.ctld = Daemon("slurmctld", "slurmctld", layout.pids / "slurmctld.pid",
                           slurmconf.CTLD_PORT)
        self.slurmd = Daemon("slurmd", "slurmd", layout.pids / "slurmd.pid",
                             slurmconf.SLURMD_PORT)
        self._ctld_started = False

    def start_ctld(self) -> str:
        note = ""
        if self.ctld.pid() is None:
            # Before slurm.conf is rewritten: a slurmctld another checkout started reads it
            # (and its clients find their jobcomp file and fake GPUs through it).
            require_port(self.ctld)
        if self._configure() and (self.ctld.pid() or self.slurmd.pid()):
            # Only our own daemons are restarted, slurmd with slurmctld (see start_slurmd).
            self.slurmd.stop()
            self.ctld.stop()
            note = ", config changed"
        if self.ctld.pid() is None:
            require_port(self.ctld)
            launch(["/usr/sbin/slurmctld"], self.layout.log / "slurmctld.launch.log")
            self._ctld_started = True
        if not wait_for(ctld_up):
            raise ServiceError(f"slurmctld is not UP; see {self.layout.log / 'slurmctld.log'}")
        return f"up ({'started' if self._ctld_started else 'already running'}{note})"

    def start_slurmd(self) -> str:
        if self._ctld_started and self.slurmd.pid():
            # A slurmd that outlives a slurmctld restart leaves the node `unknown` for ~25 s.
            self.slurmd.stop()
        started = self.slurmd.pid() is None
        if started:
            require_port(self.slurmd)
            launch(["/usr/sbin/slurmd", "-N", self.node], self.layout.log / "slurmd.launch.log")
        resumed: list[str] = []

        def usable() -> bool:
            state = node_state(self.node)
            if state in NEEDS_RESUME and len(resumed) < 3:
                resumed.append(state)
                run(["scontrol", "update", f"NodeName={self.node}", "State=RESUME"])
            return state in USABLE

        if not wait_for(usable):
            raise ServiceError(f"node {self.node} is {node_state(self.node)}, not usable; "
                               f"see {self.layout.log / 'slurmd.log'}")
        how = "started" if started else "already running"
        extra = f", resumed from {resumed[0]}" if resumed else ""
        return f"up ({how}, node {self.node} {node_state(self.node)}{extra})"

    def cancel_all_jobs(self) -> str:
        """Cancel every job through our slurmctld and wait (bounded) for the queue to empty."""
        if self.ctld.pid() is None or not ctld_up():
            return "no controller"
        ids = run(["squeue", "-h", "-o", "%i"]).stdout.split()
        if not ids:
            return "queue empty"
        run(["scancel", "--quiet", *ids], timeout=30)
        emptied = wait_for(lambda: not run(["squeue", "-h", "-o", "%i"]).stdout.split(),
                           QUEUE_DRAIN_S)
        return f"cancelled {len(ids)} job(s)" + ("" if emptied else ", queue not empty")

    def status_ctld(self) -> tuple[bool, str]:
        pid = self.ctld.pid()
        if pid is None:
            return False, self.ctld.down()
        return (True, f"up (pid {pid})") if ctld_up() else (False, f"not answering (pid {pid})")

    def status_slurmd(self) -> tuple[bool, str]:
        pid = self.slurmd.pid()
        if pid is None:
            return False, self.slurmd.down()
        state = node_state(self.node)
        return state in USABLE, f"{'up' if state in USABLE else 'unusable'} (pid {pid}, " \
                                f"node {self.node} {state})"

    def _configure(self) -> bool:
        """Write the configuration and its files; True if slurm.conf or gres.conf changed."""
        self.layout.create()
        slurmconf.make_fake_gpus(self.layout)
        if not self.layout.jobcomp.exists():
            self.layout.jobcomp.touch()
        # jobcomp/filetxt opens the file for appending even in `sacct -c`, for every user.
        self.layout.jobcomp.chmod(0o666)
        changed = slurmconf.write_if_changed(
            slurmconf.SLURM_CONF, slurmconf.render_slurm_conf(self.layout, self.node))
        return slurmconf.write_if_changed(
            slurmconf.GRES_CONF, slurmconf.render_gres_conf(self.layout, self.node)) or changed

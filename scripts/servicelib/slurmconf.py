"""slurm.conf and gres.conf for one loopback node with fake CPUs and fake GPUs."""

from __future__ import annotations

import os
from pathlib import Path

from servicelib.layout import Layout

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
CTLD_PORT = 6817
SLURMD_PORT = 6818


def fake_cpus() -> int:
    # More CPUs than exist: slurmctld starts jobs in ~1 s passes that fill the free CPUs,
    # so advertised CPUs, not real ones, bound throughput (config_overrides keeps it legal).
    return int(os.environ.get("MUMMI_SLURM_CPUS", "16"))


def fake_gpus() -> int:
    return int(os.environ.get("MUMMI_SLURM_GPUS", "4"))


def real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


def render_slurm_conf(layout: Layout, node: str) -> str:
    """The whole slurm.conf; comments say why the non-default settings are there."""
    cpus, gpus = fake_cpus(), fake_gpus()
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    return "\n".join([
        "# Written by mummi-spec scripts/services; rewritten when it changes.",
        "ClusterName=ci",
        # Address in parentheses keeps all traffic on loopback, no DNS needed.
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={CTLD_PORT}",
        f"SlurmdPort={SLURMD_PORT}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # No cgroups here: plain process tracking, no binding.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        # No slurmdbd: job history comes from the jobcomp file through `sacct -c`.
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={layout.jobcomp}",
        "MpiDefault=none",
        "MailProg=/bin/true",
        # Per-core allocation so jobs pack side by side; required for GPU GRES.
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        # The default 3 s delay before a fresh batch job is considered.
        "SchedulerParameters=batch_sched_delay=0",
        "ReturnToService=2",
        # The node line is authoritative: fake CPUs and GPUs do not drain the node.
        "SlurmdParameters=config_overrides",
        # Finished jobs stay visible to `squeue -t all` for an hour, for slow pollers...
        "MinJobAge=3600",
        # ...and count against MaxJobCount meanwhile: the default 10,000 refuses sbatch
        # ("Resource temporarily unavailable") after a few benchmark bursts.
        "MaxJobCount=50000",
        "InactiveLimit=0",
        "KillWait=5",
        "Waittime=0",
        f"StateSaveLocation={layout.slurmctld}",
        f"SlurmdSpoolDir={layout.slurmd}",
        f"SlurmctldPidFile={layout.pids / 'slurmctld.pid'}",
        f"SlurmdPidFile={layout.pids / 'slurmd.pid'}",
        f"SlurmctldLogFile={layout.log / 'slurmctld.log'}",
        f"SlurmdLogFile={layout.log / 'slurmd.log'}",
        "GresTypes=gpu",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} Boards=1 SocketsPerBoard=1 "
        f"CoresPerSocket={cpus} ThreadsPerCore=1 RealMemory={real_memory_mb()}{gres} "
        "State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def render_gres_conf(layout: Layout, node: str) -> str:
    """gres.conf: `File=` must name character devices; symlinks to /dev/null are enough."""
    gpus = fake_gpus()
    lines = ["# Written by mummi-spec scripts/services.", "AutoDetect=off"]
    if gpus:
        files = "nvidia0" if gpus == 1 else f"nvidia[0-{gpus - 1}]"
        lines.append(f"NodeName={node} Name=gpu File={layout.fakegpu / files}")
    return "\n".join([*lines, ""])


def make_fake_gpus(layout: Layout) -> None:
    layout.fakegpu.mkdir(parents=True, exist_ok=True)
    for i in range(fake_gpus()):
        link = layout.fakegpu / f"nvidia{i}"
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that; True if written."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True

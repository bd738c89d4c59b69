"""The resource plan: jobs placed on whole nodes, per-coupling budgets, concurrency per job type.

The model is node by node, as a scheduler places jobs. Persistent jobs go first, each on its
``nodes`` nodes with its share of cores, GPUs and memory on every one of them (MuMMI's
continuum ran 24 ranks on each of 150 Summit nodes, beside six GPU simulations). Nodes alike
after that form a group. On each node of a group, GPU jobs use as many GPUs as the node's free
cores (and memory) can feed at the largest cores-per-GPU of any GPU job; the cores left are
for CPU-only jobs. A coupling gets ``share.gpus`` of the GPU slots, and ``share.cores`` of
every node's CPU-only room, counted in whole instances of its CPU-only job: a node with 24
free cores holds one 16-core setup, not one and a half.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from mummi_spec.errors import SpecError, SpecWarning
from mummi_spec.model import Coupling, Job, Spec
from mummi_spec.sourcemap import SourceMap


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one job type's instances go and how many fit at once."""

    name: str
    scale: str
    role: str
    coupling: str | None
    pool: str  # "gpu", "cpu" or "persistent"
    gpus: int
    cores: int
    nodes: int
    max_concurrent: int
    spawned_by: str


@dataclass(frozen=True, slots=True)
class Budget:
    """What one coupling may hold at once."""

    coupling: str
    gpus: int
    cores: int


@dataclass(frozen=True, slots=True)
class NodeGroup:
    """Nodes alike once the persistent jobs are placed: what each has free and how it is used."""

    count: int
    gpus: int  # free GPUs per node
    cores: int  # free cores per node (oversubscription counted)
    memory_gb: float | None
    gpu_slots: int  # GPUs per node the GPU jobs can use
    cpu_cores: int  # cores per node left for CPU-only jobs
    hosts: tuple[str, ...]  # persistent jobs with a share of these nodes

    @property
    def idle_gpus(self) -> int:
        return self.gpus - self.gpu_slots


@dataclass(frozen=True, slots=True)
class ResourcePlan:
    """The whole allocation, divided."""

    nodes: int
    reserved_nodes: int
    compute_nodes: int
    cores_per_node: int  # after oversubscription
    groups: tuple[NodeGroup, ...]
    gpu_pool: int
    cores_per_gpu: float
    cpu_pool: int
    persistent_gpus: int
    persistent_cores: int
    budgets: tuple[Budget, ...]
    jobs: tuple[Placement, ...]
    sim_caps: dict[str, int]  # coupling -> its part of manager.max_simulations
    busy_gpus: int
    idle_gpus: int
    gpu_hours: float  # per allocation (machine.walltime), at the planned occupancy
    node_hours: float  # per allocation

    @property
    def gpus_held(self) -> int:
        """The most GPUs jobs can hold at once: the spawned jobs' and the persistent ones'."""
        return self.gpu_pool + self.persistent_gpus

    @property
    def cores_held(self) -> float:
        """The most cores jobs can hold at once (what the plots draw as the core pool)."""
        return self.gpu_pool * self.cores_per_gpu + self.cpu_pool + self.persistent_cores

    def job(self, name: str) -> Placement:
        """The placement of job type ``name``."""
        return next(j for j in self.jobs if j.name == name)

    def budget(self, coupling: str) -> Budget:
        """What coupling ``coupling`` may hold at once."""
        return next(b for b in self.budgets if b.coupling == coupling)


def apportion(shares: dict[str, float], pool: int, *, whole: bool = False) -> dict[str, int]:
    """Floor of each named share of ``pool``. When the shares sum to 1 (or ``whole``: they are
    normalised first), the remainder goes to the largest fractions, ties to the first name, so
    no unit of the pool is lost to rounding and the key order of the spec changes nothing."""
    total = sum(shares.values())
    if whole and total > 0:
        shares = {k: v / total for k, v in shares.items()}
    exact = {k: v * pool for k, v in shares.items()}
    parts = {k: int(x + 1e-9) for k, x in exact.items()}
    if whole or abs(total - 1.0) < 1e-9:
        order = sorted(parts, key=lambda k: (-(exact[k] - parts[k]), k))
        for k in order[: max(pool - sum(parts.values()), 0)]:
            parts[k] += 1
    return parts


def _per_node(job: Job) -> tuple[int, int, float]:
    """GPUs, cores and memory one instance needs on each of its nodes (rounded up)."""
    r = job.resources
    n = max(r.nodes, 1)
    return (-(-r.gpus // n), -(-r.tasks // n) * r.cores_per_task,
            (r.memory_gb or 0.0) / n)


def _place_persistent(spec: Spec, compute: int, cores: int, memory: float | None
                      ) -> tuple[list[tuple[int, int, float | None, tuple[str, ...]]],
                                 list[SpecError]]:
    """Every compute node's free (GPUs, cores, memory, hosted jobs) after the persistent jobs,
    each placed first-fit on the lowest-numbered nodes with room (job names in order)."""
    nodes: list[tuple[int, int, float | None, tuple[str, ...]]] = \
        [(spec.machine.gpus, cores, memory, ())] * compute
    problems: list[SpecError] = []
    for job in sorted((j for j in spec.jobs() if j.role == "persistent"), key=lambda j: j.name):
        g, c, m = _per_node(job)
        fit = [i for i, (fg, fc, fm, _) in enumerate(nodes)
               if fg >= g and fc >= c and (fm is None or fm >= m)][: job.resources.nodes]
        if len(fit) < job.resources.nodes:
            problems.append(SpecError(
                f"persistent job '{job.name}' needs {job.resources.nodes} node(s) with {g} "
                f"GPU(s) and {c} core(s) free; {len(fit)} of the {compute} compute nodes have "
                "room once the persistent jobs before it are placed", job.loc,
                hint="give the machine more nodes, or the job fewer"))
            continue
        for i in fit:
            fg, fc, fm, hosts = nodes[i]
            nodes[i] = (fg - g, fc - c, None if fm is None else fm - m, (*hosts, job.name))
    return nodes, problems


def _groups(free: list[tuple[int, int, float | None, tuple[str, ...]]], gpu_jobs: list[Job],
            cores_per_gpu: float, mem_per_gpu: float) -> tuple[NodeGroup, ...]:
    """Nodes grouped by what is free on them, with the GPU slots and CPU-only room of each."""
    groups = []
    for (g, c, m, hosts), count in sorted(Counter(free).items(),
                                          key=lambda kv: (-kv[1], kv[0][3], kv[0][:2])):
        slots = g if gpu_jobs else 0
        if cores_per_gpu:
            slots = min(slots, int(c / cores_per_gpu + 1e-9))
        if m is not None and mem_per_gpu:
            slots = min(slots, int(m / mem_per_gpu + 1e-9))
        held = math.ceil(slots * cores_per_gpu - 1e-9)
        groups.append(NodeGroup(count, g, c, m, slots, c - held, hosts))
    return tuple(groups)


def _cpu_fit(job: Job, grp: NodeGroup, memory_per_gpu: float) -> int:
    """Instances of a CPU-only job one node of ``grp`` holds beside its GPU jobs."""
    _, c, m = _per_node(job)
    fit = grp.cpu_cores // c if c else 0
    if m and grp.memory_gb is not None:
        fit = min(fit, int((grp.memory_gb - grp.gpu_slots * memory_per_gpu) / m + 1e-9))
    return max(fit, 0)


def _cpu_counts(cpu_jobs: dict[str, list[Job]], shares: dict[str, float],
                groups: tuple[NodeGroup, ...], memory_per_gpu: float) -> dict[str, int]:
    """How many of each CPU-only job type run at once: on each group of nodes, a coupling
    gets its share of the nodes' CPU-only room in whole instances (the largest remainders,
    ties to the first name, take what the floors leave while room is left)."""
    counts: dict[str, float] = {j.name: 0 for jobs in cpu_jobs.values() for j in jobs}
    for grp in groups:
        # Room in nodes: an instance of a coupling's largest CPU-only job takes 1/fit of one.
        fits = {c: _cpu_fit(max(jobs, key=lambda j: _per_node(j)[1]), grp, memory_per_gpu)
                for c, jobs in cpu_jobs.items()}
        exact = {c: shares[c] * grp.count * f for c, f in fits.items() if f}
        whole = {c: int(x + 1e-9) for c, x in exact.items()}
        room = grp.count - sum(whole[c] / fits[c] for c in whole)
        for c in sorted(whole, key=lambda c: (-(exact[c] - whole[c]), c)):
            if exact[c] > whole[c] + 1e-9 and room >= 1 / fits[c] - 1e-9:
                whole[c] += 1
                room -= 1 / fits[c]
        for c, n in whole.items():
            for job in cpu_jobs[c]:  # smaller CPU-only jobs of the coupling on the same room
                counts[job.name] += n * _cpu_fit(job, grp, memory_per_gpu) / fits[c]
    return {name: int(n + 1e-9) for name, n in counts.items()}


def plan_resources(spec: Spec, smap: SourceMap) -> tuple[ResourcePlan, list[SpecError]]:
    """Divide the machine; errors for job types that can never be placed."""
    mach = spec.machine
    reserved = mach.reserved_manager + mach.reserved_services
    compute = max(mach.nodes - reserved, 0)
    cores = mach.cores * mach.oversubscribe
    persistent = [j for j in spec.jobs() if j.role == "persistent"]
    free, problems = _place_persistent(spec, compute, cores, mach.memory_gb)
    by_coupling = {n: c for c in spec.couplings for n in (c.setup, c.simulation) if n}
    spawned = [j for j in spec.jobs() if j.name in by_coupling]
    gpu_jobs = [j for j in spawned if j.resources.gpus > 0]
    # At full GPU occupancy every GPU job holds the most cores (and memory) any GPU job asks
    # per GPU: what is left of a node beside them is sure to be free for CPU-only jobs.
    cores_per_gpu = max((_per_node(j)[1] / _per_node(j)[0] for j in gpu_jobs), default=0.0)
    mem_per_gpu = max((_per_node(j)[2] / _per_node(j)[0] for j in gpu_jobs), default=0.0)
    groups = _groups(free, gpu_jobs, cores_per_gpu, mem_per_gpu)
    gpu_pool = sum(g.count * g.gpu_slots for g in groups)
    cpu_pool = sum(g.count * g.cpu_cores for g in groups)
    gpu_parts = apportion({c.name: c.share_gpus for c in spec.couplings}, gpu_pool)
    cpu_parts = apportion({c.name: c.share_cores for c in spec.couplings}, cpu_pool)
    budgets = {c.name: Budget(c.name, gpu_parts[c.name], cpu_parts[c.name])
               for c in spec.couplings}
    cpu_jobs: dict[str, list[Job]] = {}
    for job in spawned:
        if job.resources.gpus == 0:
            cpu_jobs.setdefault(by_coupling[job.name].name, []).append(job)
    cpu_counts = _cpu_counts(cpu_jobs, {c.name: c.share_cores for c in spec.couplings},
                             groups, mem_per_gpu)
    jobs: list[Placement] = []
    for job in spec.jobs():
        r = job.resources
        if job.role == "persistent":
            jobs.append(Placement(job.name, job.scale, job.role, None, "persistent", r.gpus,
                                  r.cores, r.nodes, 1, "campaign start"))
            continue
        coupling = by_coupling.get(job.name)
        if coupling is None:
            continue
        budget = budgets[coupling.name]
        if r.gpus > 0:
            pool, most = "gpu", budget.gpus // r.gpus
        else:
            pool, most = "cpu", cpu_counts[job.name] // max(r.nodes, 1)
        if most == 0:
            problems.append(_never_placed(job, coupling, pool, budget, groups, gpu_pool, smap))
        jobs.append(Placement(job.name, job.scale, job.role, coupling.name, pool, r.gpus,
                              r.cores, r.nodes, most, _spawned_by(job, coupling)))
    busy = 0
    for c in spec.couplings:
        sim = next((j for j in jobs if j.name == c.simulation), None)
        if sim is None or sim.pool != "gpu":
            continue
        busy += sim.max_concurrent * sim.gpus
        if c.ready_buffer > sim.max_concurrent > 0:
            problems.append(SpecWarning(
                f"ready buffer of '{c.name}' ({c.ready_buffer}) is larger than the "
                f"{sim.max_concurrent} '{sim.name}' simulations that can run at once",
                smap.locate(("couplings", c.name, "ready_buffer")),
                hint="prepared setups beyond that wait for a GPU a long time"))
    problems += _idle_warnings(spec, groups, gpu_jobs, cores_per_gpu, gpu_pool, busy, smap)
    for c in spec.couplings:
        if c.max_pending is not None and c.max_pending < c.ready_buffer:
            problems.append(SpecWarning(
                f"max_pending of '{c.name}' ({c.max_pending}) is below its ready buffer "
                f"({c.ready_buffer}), so the buffer can never fill",
                smap.locate(("couplings", c.name, "max_pending"))))
    plan = ResourcePlan(
        nodes=mach.nodes, reserved_nodes=reserved, compute_nodes=compute, cores_per_node=cores,
        groups=groups, gpu_pool=gpu_pool, cores_per_gpu=cores_per_gpu, cpu_pool=cpu_pool,
        persistent_gpus=sum(j.resources.gpus for j in persistent),
        persistent_cores=sum(j.resources.cores for j in persistent),
        budgets=tuple(budgets[c.name] for c in spec.couplings), jobs=tuple(jobs),
        sim_caps=_sim_caps(spec, jobs), busy_gpus=busy, idle_gpus=gpu_pool - busy,
        gpu_hours=busy * mach.walltime / 3600, node_hours=mach.nodes * mach.walltime / 3600)
    return plan, problems


def _spawned_by(job: Job, c: Coupling) -> str:
    if job.role == "setup" or not c.setup:
        return f"{c.name}: selection from {c.source_scale}.{c.source_stream}"
    return f"{c.name}: a finished {c.setup}"


def _never_placed(job: Job, c: Coupling, pool: str, budget: Budget,
                  groups: tuple[NodeGroup, ...], gpu_pool: int, smap: SourceMap) -> SpecError:
    """The error for a job type no node or budget can hold, naming what it met."""
    r = job.resources
    if pool == "gpu":
        have = f"{budget.gpus} GPUs ({c.share_gpus:g} of {gpu_pool})"
        share_key, need = "gpus", f"{r.gpus} GPU(s)"
    else:
        room = ", ".join(f"{g.cpu_cores} on {g.count} node(s)" for g in groups) or "no node"
        have = f"CPU-only cores per node: {room}; its share is {c.share_cores:g}"
        share_key, need = "cores", f"{_per_node(job)[1]} cores on a node"
    return SpecError(
        f"job type '{job.name}' can never be placed: coupling '{c.name}' gets {have}, and "
        f"one instance needs {need}",
        smap.locate(("couplings", c.name, "share", share_key)),
        hint=f"raise share.{share_key} of '{c.name}', or shrink the job")


def _idle_warnings(spec: Spec, groups: tuple[NodeGroup, ...], gpu_jobs: list[Job],
                   cores_per_gpu: float, gpu_pool: int, busy: int, smap: SourceMap
                   ) -> list[SpecError]:
    out: list[SpecError] = []
    stranded = [g for g in groups if g.idle_gpus and gpu_jobs]
    if stranded:
        worst = max(gpu_jobs, key=lambda j: _per_node(j)[1] / _per_node(j)[0])
        where = "; ".join(
            f"{g.count} node(s) with {g.cores} free cores use {g.gpu_slots} of {g.gpus} GPUs"
            + (f" (beside {', '.join(g.hosts)})" if g.hosts else "") for g in stranded)
        out.append(SpecWarning(
            f"{sum(g.count * g.idle_gpus for g in stranded)} GPUs can never be used: GPU jobs "
            f"need {cores_per_gpu:g} cores per GPU ('{worst.name}'); {where}",
            smap.locate(("scales", worst.scale, "jobs", worst.name, "resources")),
            hint="give GPU jobs fewer cores, or persistent jobs fewer cores per node"))
    idle = gpu_pool - busy
    if gpu_pool and idle > 0:
        out.append(SpecWarning(
            f"{idle} of {gpu_pool} GPUs stay idle with these shares",
            smap.locate(("couplings",)), hint="raise share.gpus so the shares sum to 1"))
    return out


def _sim_caps(spec: Spec, jobs: list[Placement]) -> dict[str, int]:
    """Each coupling's part of ``manager.max_simulations``, by its share of the resource its
    simulations use (GPUs, or cores for CPU-only ones); equal parts when no share is set."""
    total = spec.manager.max_simulations
    if total is None:
        return {}
    pools = {j.name: j.pool for j in jobs}
    shares = {c.name: c.share_gpus if pools.get(c.simulation) == "gpu" else c.share_cores
              for c in spec.couplings}
    if not any(shares.values()):
        shares = dict.fromkeys(shares, 1.0)
    return apportion(shares, total, whole=True)

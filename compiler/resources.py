"""The resource plan: pools, per-coupling budgets and the most instances of each job type.

The model is MuMMI's: GPU jobs hold their cores beside their GPUs, so at full GPU occupancy
``gpu_pool x (cores per GPU)`` cores are taken; what is left of the nodes' cores (minus the
persistent jobs') is the CPU-only pool for setup jobs. Each coupling gets ``share.gpus`` of
the GPU pool and ``share.cores`` of the CPU-only pool; a job type's concurrency is its
coupling's budget divided by what one instance needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from mummi_spec.errors import SpecError, SpecWarning
from mummi_spec.model import Spec
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
    """What one coupling may use at once."""

    coupling: str
    gpus: int
    cores: int


@dataclass(frozen=True, slots=True)
class ResourcePlan:
    """The whole allocation, divided."""

    nodes: int
    reserved_nodes: int
    compute_nodes: int
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
    gpu_hours_per_day: float
    node_hours_per_day: float

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


def plan_resources(spec: Spec, smap: SourceMap) -> tuple[ResourcePlan, list[SpecError]]:
    """Divide the machine; errors for job types that can never be placed."""
    problems: list[SpecError] = []
    mach = spec.machine
    reserved = mach.reserved_manager + mach.reserved_services
    compute = max(mach.nodes - reserved, 0)
    persistent = [j for j in spec.jobs() if j.role == "persistent"]
    p_gpus = sum(j.resources.gpus for j in persistent)
    p_cores = sum(j.resources.cores for j in persistent)
    gpu_pool = max(compute * mach.gpus - p_gpus, 0)
    by_coupling = {n: c for c in spec.couplings for n in (c.setup, c.simulation) if n}
    gpu_jobs = [j for j in spec.jobs() if j.role != "persistent" and j.resources.gpus > 0]
    cores_per_gpu = max((j.resources.cores / j.resources.gpus for j in gpu_jobs), default=0.0)
    cpu_pool = compute * mach.cores - p_cores - round(gpu_pool * cores_per_gpu)
    if cpu_pool < 0:
        problems.append(SpecError(
            f"at full GPU occupancy the GPU jobs hold {gpu_pool} x {cores_per_gpu:g} cores, "
            f"which with the persistent jobs' {p_cores} is more than the "
            f"{compute * mach.cores} cores of {compute} nodes", smap.locate(("machine", "node")),
            hint="give each GPU job fewer cores, or declare more cores per node"))
        cpu_pool = 0
    gpu_parts = apportion({c.name: c.share_gpus for c in spec.couplings}, gpu_pool)
    cpu_parts = apportion({c.name: c.share_cores for c in spec.couplings}, cpu_pool)
    budgets = {c.name: Budget(c.name, gpu_parts[c.name], cpu_parts[c.name])
               for c in spec.couplings}
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
            have = f"{budget.gpus} GPUs ({coupling.share_gpus:g} of {gpu_pool})"
            share_key = "gpus"
        else:
            pool, most = "cpu", budget.cores // r.cores
            have = f"{budget.cores} CPU-only cores ({coupling.share_cores:g} of {cpu_pool})"
            share_key = "cores"
        spawned = (f"{coupling.name}: selection from {coupling.source_scale}."
                   f"{coupling.source_stream}") if job.role == "setup" or not coupling.setup \
            else f"{coupling.name}: a finished {coupling.setup}"
        if most == 0:
            problems.append(SpecError(
                f"job type '{job.name}' can never be placed: coupling '{coupling.name}' gets "
                f"{have} and one instance needs {r.gpus if r.gpus else r.cores}",
                smap.locate(("couplings", coupling.name, "share", share_key)),
                hint=f"raise share.{share_key} of '{coupling.name}', or shrink the job"))
        jobs.append(Placement(job.name, job.scale, job.role, coupling.name, pool, r.gpus, r.cores,
                            r.nodes, most, spawned))
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
    idle = gpu_pool - busy
    if gpu_pool and idle > 0:
        problems.append(SpecWarning(
            f"{idle} of {gpu_pool} GPUs stay idle with these shares",
            smap.locate(("couplings",)), hint="raise share.gpus so the shares sum to 1"))
    for c in spec.couplings:
        if c.max_pending is not None and c.max_pending < c.ready_buffer:
            problems.append(SpecWarning(
                f"max_pending of '{c.name}' ({c.max_pending}) is below its ready buffer "
                f"({c.ready_buffer}), so the buffer can never fill",
                smap.locate(("couplings", c.name, "max_pending"))))
    plan = ResourcePlan(
        nodes=mach.nodes, reserved_nodes=reserved, compute_nodes=compute, gpu_pool=gpu_pool,
        cores_per_gpu=cores_per_gpu, cpu_pool=cpu_pool, persistent_gpus=p_gpus,
        persistent_cores=p_cores, budgets=tuple(budgets[c.name] for c in spec.couplings),
        jobs=tuple(jobs), sim_caps=_sim_caps(spec, jobs), busy_gpus=busy, idle_gpus=idle,
        gpu_hours_per_day=busy * 24.0, node_hours_per_day=mach.nodes * 24.0)
    return plan, problems


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

"""The runtime plan: the spec and its resource plan resolved into the typed ``Plan``."""

from __future__ import annotations

from typing import TypeVar

from mummi_spec.compiler.resources import ResourcePlan
from mummi_spec.model import Coupling, Feedback, Job, Scheduler, Selector, Spec, Store, Stream
from mummi_spec.plan import (
    ADAPTER_OPTIONS,
    BudgetPlan,
    CouplingPlan,
    Expectation,
    FeedbackPlan,
    FluxOptions,
    IndexPlan,
    JobPlan,
    JobResources,
    LocalOptions,
    MachinePlan,
    ManagerPlan,
    Plan,
    Pool,
    PoolsPlan,
    QueuePlan,
    RetryPolicy,
    Role,
    Scalar,
    SchedulerPlan,
    SelectorPlan,
    StorePlan,
    StreamPlan,
    SuccessRule,
    TargetPlan,
    adapter_options,
    from_data,
    to_data,
)

T = TypeVar("T")


def _options(cls: type[T], given: dict[str, Scalar]) -> T:
    """An adapter's options: its defaults, with what the spec gives."""
    out: T = from_data(cls, to_data(cls()) | given, "scheduler.options")
    return out


def _scheduler(s: Scheduler, machine: str) -> SchedulerPlan:
    options = dict(s.options)
    own = {k: v for k, v in options.items() if k in adapter_options(s.type)}
    return SchedulerPlan(
        type=s.type, queue=s.queue or None, bank=s.bank or None,
        host=s.host or machine or "cluster",
        qos=s.qos or None, reservation=s.reservation or None,
        batch={} if s.type in ADAPTER_OPTIONS else options,
        # checks.py has located any option of the wrong name or type
        flux=_options(FluxOptions, own if s.type == "flux" else {}),
        local=_options(LocalOptions, own if s.type == "local" else {}),
        per_second=s.per_second, burst=s.burst, per_iteration=s.per_iteration, poll=s.poll,
        startup=s.startup)


def _store(st: Store, journal: tuple[str, ...]) -> StorePlan:
    return StorePlan(name=st.name, backend=st.backend, path=st.path or st.name, host=st.host,
                     port=st.port, db=st.db, password_env=st.password_env, prefix=st.name,
                     retry_for=st.retry_for, journal=journal)


def _job(job: Job, rp: ResourcePlan) -> JobPlan:
    r = job.resources
    placed = next((p for p in rp.jobs if p.name == job.name), None)
    return JobPlan(
        name=job.name, scale=job.scale, role=Role(job.role), description=job.description,
        command=job.command, walltime=job.walltime,
        resources=JobResources(r.nodes, r.tasks, r.cores_per_task, r.gpus), stop=job.stop,
        retry=RetryPolicy(job.retry_limit, tuple(sorted(job.retry_on))),
        success=SuccessRule(tuple(job.success_codes), job.success_file),
        expect=Expectation(job.duration, job.duration_sd, job.failure_rate),
        checkpoints=job.checkpoints, nested=job.nested, env=dict(job.env),
        coupling=placed.coupling if placed else None,
        pool=Pool(placed.pool) if placed else Pool.UNUSED,
        max_concurrent=placed.max_concurrent if placed else 0,
        spawned_by=placed.spawned_by if placed else "no coupling spawns it")


def _stream(st: Stream) -> StreamPlan:
    return StreamPlan(ref=st.ref, scale=st.scale, name=st.name, kind=st.kind, dim=st.dim,
                      store=st.store, namespace=st.namespace, key=st.key, tags=tuple(st.tags),
                      every=st.every, count=st.count)


def _selector(sel: Selector) -> SelectorPlan:
    return SelectorPlan(
        name=sel.name, kind=sel.kind, dim=sel.dim, seed=sel.seed,
        min_candidates=sel.min_candidates, random_first=sel.random_first, k=sel.k,
        index=IndexPlan(sel.index, sel.nlist, sel.nprobe),
        queues=tuple(QueuePlan(q.name, q.ratio, q.capacity)
                     for q in sorted(sel.queues, key=lambda q: q.name)),
        bins=tuple(sel.bins), bounds=tuple(sel.bounds), novelty=sel.novelty)


def _coupling(c: Coupling, rp: ResourcePlan) -> CouplingPlan:
    budget = rp.budget(c.name)
    sim = next((p for p in rp.jobs if p.name == c.simulation), None)
    # Unset, back-pressure is what the buffer and the free simulation slots can ever ask for.
    pending = c.max_pending if c.max_pending is not None else \
        c.ready_buffer + (sim.max_concurrent if sim else 0)
    return CouplingPlan(
        name=c.name, source=f"{c.source_scale}.{c.source_stream}", to=c.to,
        selector=c.selector, setup=c.setup, simulation=c.simulation,
        ready_buffer=c.ready_buffer, max_pending=max(pending, 1),
        max_selections_per_iteration=c.max_selections_per_iteration,
        share_gpus=c.share_gpus, share_cores=c.share_cores,
        budget=BudgetPlan(budget.gpus, budget.cores), max_simulations=rp.sim_caps.get(c.name))


def _feedback(spec: Spec, f: Feedback) -> FeedbackPlan:
    # Selector weights for a fine scale's feedback come from the coupling that feeds it.
    weights = next((c.selector for c in sorted(spec.couplings, key=lambda c: c.name)
                    if c.to == f.source_scale), None)
    return FeedbackPlan(
        name=f.name, source=f"{f.source_scale}.{f.source_stream}", to=f.to, period=f.period,
        aggregate=f.aggregate, workers=f.workers, max_items=f.max_items, weights_from=weights,
        target=TargetPlan(f.target_store, f.target_namespace, f.target_key))


def build_plan(spec: Spec, rp: ResourcePlan) -> Plan:
    """The typed plan of ``spec`` with its resource plan."""
    m = spec.machine
    # Only candidate streams are read from a cursor (ingest); journaling the feedback
    # namespaces too would cost an entry per frame that no one reads.
    journals = {st.name: tuple(sorted({s.namespace for s in spec.streams()
                                       if s.store == st.name and s.kind == "candidates"}))
                for st in spec.stores}
    plan = Plan(
        name=spec.name, description=spec.description, profile=spec.profile,
        workspace=spec.workspace, env=dict(spec.env),
        machine=MachinePlan(m.name, m.nodes, m.walltime, m.cores, m.gpus, m.memory_gb,
                            m.oversubscribe, m.reserved_manager, m.reserved_services),
        scheduler=_scheduler(spec.scheduler, m.name),
        pools=PoolsPlan(
            compute_nodes=rp.compute_nodes, gpu_pool=rp.gpu_pool, cpu_pool=rp.cpu_pool,
            cores_per_gpu=rp.cores_per_gpu, gpus_held=rp.gpus_held, cores_held=rp.cores_held,
            busy_gpus=rp.busy_gpus,
            idle_gpus=rp.idle_gpus, gpu_hours=rp.gpu_hours,
            node_hours=rp.node_hours),
        stores={st.name: _store(st, journals[st.name]) for st in spec.stores},
        jobs={j.name: _job(j, rp) for j in spec.jobs()},
        streams={st.ref: _stream(st) for st in spec.streams()},
        selectors={sel.name: _selector(sel) for sel in spec.selectors},
        couplings={c.name: _coupling(c, rp) for c in spec.couplings},
        feedback={f.name: _feedback(spec, f) for f in spec.feedback},
        pythonpath=spec.pythonpath,
        manager=ManagerPlan(tick=spec.manager.tick,
                            checkpoint_every=spec.manager.checkpoint_every,
                            stop_after=spec.manager.stop_after,
                            max_simulations=spec.manager.max_simulations,
                            allocation=m.walltime,
                            write_retry_for=spec.manager.write_retry_for))
    # Read back through the codec: numbers take their declared types (a memory of 512 is
    # 512.0), so the plan in hand is exactly what every reader of plan.json gets.
    return Plan.from_data(plan.to_data())

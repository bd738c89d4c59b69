"""Typed plan pieces with the compiler's defaults, for tests that build a plan by hand."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from mummi_spec.plan import (
    BudgetPlan,
    CouplingPlan,
    Expectation,
    FeedbackPlan,
    FluxOptions,
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
    SchedulerPlan,
    SelectorPlan,
    StorePlan,
    StreamPlan,
    SuccessRule,
    TargetPlan,
)


def store(backend: str, name: str = "data", **kw: Any) -> StorePlan:
    """A store; its directory (``path``) is its name unless given."""
    return StorePlan(name=name, backend=backend, path=kw.pop("path", ""), **kw)


SCHEDULER = SchedulerPlan(
    type="local", queue=None, bank=None, host="cluster", qos=None, reservation=None, batch={},
    flux=FluxOptions(), local=LocalOptions(), per_second=None, burst=1, per_iteration=500,
    poll=0.2, startup=None)


def scheduler(type: str = "local", **kw: Any) -> SchedulerPlan:
    """Scheduler settings: no queue, bank, throttle nor startup wait unless given."""
    return replace(SCHEDULER, type=type, **kw)


def local(**options: Any) -> SchedulerPlan:
    """The local adapter's settings with some of its own options (``max_workers``, ...)."""
    return scheduler("local", local=LocalOptions(**options))


def queues(**spec: float | tuple[float, int]) -> tuple[QueuePlan, ...]:
    """Farthest-point queues: name=ratio, or name=(ratio, capacity)."""
    return tuple(QueuePlan(name, *(v if isinstance(v, tuple) else (v,)))
                 for name, v in spec.items())


def selector(kind: str, dim: int = 3, name: str = "sel", **kw: Any) -> SelectorPlan:
    """A selector of ``kind``; the keys of other kinds keep their defaults."""
    return SelectorPlan(name=name, kind=kind, dim=dim, **kw)


def stream(ref: str, store: str, namespace: str, key: str, dim: int,
           kind: str = "candidates", tags: tuple[str, ...] = ()) -> StreamPlan:
    """A stream ``scale.name``."""
    scale, _, name = ref.partition(".")
    return StreamPlan(ref=ref, scale=scale, name=name, kind=kind, dim=dim, store=store,
                      namespace=namespace, key=key, tags=tags, every=None, count=1)


def feedback(name: str, source: str, target: tuple[str, str, str], **kw: Any) -> FeedbackPlan:
    """A feedback loop from stream ``source`` to ``target`` = (store, namespace, key)."""
    loop = FeedbackPlan(name=name, source=source, to="coarse", period=1.0, aggregate="mean",
                        workers=1, max_items=100_000, weights_from=None,
                        target=TargetPlan(*target))
    return replace(loop, **kw)


def job(name: str = "sim", command: str = "true", **kw: Any) -> JobPlan:
    """A simulation job type with the default retry and success rules unless given."""
    plain = JobPlan(name=name, scale="fine", role=Role.SIMULATION, description="",
                    command=command, walltime=3600.0, resources=JobResources(), stop="",
                    retry=RetryPolicy(), success=SuccessRule(), expect=Expectation(),
                    checkpoints=False, nested=False, env={},
                    coupling=None, pool=Pool.GPU, max_concurrent=1, spawned_by="a test")
    return replace(plain, **kw)


def coupling(name: str, source: str, selector: str, simulation: str, **kw: Any
             ) -> CouplingPlan:
    """A coupling without a setup job, holding one GPU."""
    plain = CouplingPlan(name=name, source=source, to="fine", selector=selector, setup=None,
                         simulation=simulation, ready_buffer=1, max_pending=2,
                         max_selections_per_iteration=50, share_gpus=1.0, share_cores=1.0,
                         budget=BudgetPlan(1, 1), max_simulations=None)
    return replace(plain, **kw)


def plan(*, stores: Iterable[StorePlan] = (), streams: Iterable[StreamPlan] = (),
         selectors: Iterable[SelectorPlan] = (), jobs: Iterable[JobPlan] = (),
         couplings: Iterable[CouplingPlan] = (), feedback: Iterable[FeedbackPlan] = (),
         **kw: Any) -> Plan:
    """A plan of these pieces on a one-node machine; other sections as ``kw``."""
    bare = Plan(
        name="test", description="", profile=None, workspace="ws", env={},
        machine=MachinePlan("laptop", 1, 3600.0, 4, 1, None, 1, 0, 0), scheduler=SCHEDULER,
        pools=PoolsPlan(compute_nodes=1, gpu_pool=1, cpu_pool=3, cores_per_gpu=1.0, gpus_held=1,
                        cores_held=4.0, busy_gpus=1, idle_gpus=0, gpu_hours=24.0,
                        node_hours=24.0),
        stores={s.name: s for s in stores}, jobs={j.name: j for j in jobs},
        streams={s.ref: s for s in streams}, selectors={s.name: s for s in selectors},
        couplings={c.name: c for c in couplings}, feedback={f.name: f for f in feedback},
        manager=ManagerPlan(tick=0.2, checkpoint_every=10.0, stop_after=None,
                            max_simulations=None, allocation=3600.0, write_retry_for=60.0),
        pythonpath=())
    return replace(bare, **kw)

"""Run a compiled campaign in virtual time: the real manager, a simulated scheduler and stores.

The manager is the one ``mummi run`` starts, driven tick by tick on a virtual clock with
``threads=False``; the only other differences are in the plan handed to it: every store is in
memory, success is decided by the simulated scheduler (no success files), periodic checkpoints
are skipped (they cost no virtual time) and the campaign stops after the simulated hours.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from mummi_spec.errors import UsageError
from mummi_spec.plan import LEDGER_FILE, Plan, Pool, StorePlan, SuccessRule
from mummi_spec.runtime import tracker
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import CONSUMED_SUFFIX
from mummi_spec.runtime.ledger import JobRow, Ledger
from mummi_spec.runtime.manager import Manager
from mummi_spec.runtime.simulate.clock import VirtualClock
from mummi_spec.runtime.simulate.scheduler import SimulatedScheduler
from mummi_spec.runtime.simulate.world import Engine, Machine, Producers, SimStore
from mummi_spec.runtime.states import AttemptState, SimState

STARTS = ("warm", "cold")
STATUS_EVERY = 3600.0  # status.json in virtual time: nobody reads it during a simulation
# Without scheduler.expect.startup: Flux starts a job on free resources within seconds.
DEFAULT_STARTUP = 10.0


@dataclass(frozen=True)
class Options:
    """What to simulate besides the plan."""

    hours: float = 24.0
    seed: int = 0
    start: str = "warm"  # warm: resume a full campaign, as each SC'21 allocation did; cold
    startup: float | None = None  # seconds until a job may start; None: the plan's or 10 s
    per_second: float | None = None  # submission throttle; None: the plan's
    items_per_hour: float = 1000.0  # most items per stream and simulated hour (thinning)
    sample_every: float = 60.0


@dataclass
class Result:
    """What happened, for the report."""

    name: str
    nodes: int
    hours: float
    options: Options
    job_types: list[str]
    samples: list[tuple[float, int, int, int, tuple[int, ...]]]  # t, gpus, cores, queued, per type
    total_gpus: int
    total_cores: int
    full_at: float | None
    started: dict[str, int]
    ended: dict[str, dict[str, int]]
    seeded: dict[str, int]  # simulations carried over from the previous allocation
    selected: dict[str, int]
    feedback: dict[str, tuple[int, int]]  # loop -> (iterations, items)
    ingested: dict[str, int]
    stands_for: dict[str, float]
    per_second: float | None
    startup: float
    poll: float
    outcome: str = ""
    allocations: int = 1
    allocation: float = 0.0  # seconds


class SimCampaign(Campaign):
    """A campaign whose stores are the simulated world's memory stores; they outlive each
    allocation's manager, as a real campaign's files and servers do."""

    def store(self, name: str) -> SimStore:
        with self._lock:
            if name not in self._stores:
                self._stores[name] = SimStore(self.plan.store(name), root=self.workspace)
            return cast(SimStore, self._stores[name])

    def close(self) -> None:
        """Nothing to release: the world's stores live as long as the world."""


def simulation_plan(plan: Plan, options: Options) -> Plan:
    """The plan the simulated campaign runs (see the module docstring)."""
    seconds = options.hours * 3600.0
    scheduler = plan.scheduler
    if options.per_second is not None:
        scheduler = dataclasses.replace(scheduler, per_second=options.per_second)
    return dataclasses.replace(
        plan,
        stores={n: StorePlan(n, "memory", s.path) for n, s in plan.stores.items()},
        jobs={n: dataclasses.replace(j, success=SuccessRule(j.success.exit_codes, None))
              for n, j in plan.jobs.items()},
        manager=dataclasses.replace(plan.manager, stop_after=seconds,
                                    checkpoint_every=seconds + 1.0),
        scheduler=scheduler)


def check_machine(plan: Plan, machine: Machine) -> None:
    """Refuse job types the machine can never hold (a persistent job wider than it, say)."""
    for name, job in sorted(plan.jobs.items()):
        if job.pool == Pool.UNUSED:
            continue
        r = job.resources
        nodes = max(r.nodes, 1)
        gpus, cores = -(-r.gpus // nodes), -(-r.cores // nodes)
        if not machine.fits_at_all(nodes, gpus, cores):
            raise UsageError(
                f"job type '{name}' needs {nodes} node(s) with {gpus} GPU(s) and {cores} "
                f"core(s) each; the machine has {machine.nodes} compute node(s) with "
                f"{machine.gpus} GPUs and {machine.cores} cores: it could never start")


def seed_warm(ledger: Ledger, plan: Plan, workspace: Path
              ) -> tuple[dict[str, int], set[tuple[str, str]]]:
    """Record what a previous allocation leaves: every GPU's simulation cut short, ready
    buffers full. Returns the simulations carried over per coupling, and the (simulation, job
    type) pairs that were running (those whose job checkpoints continue part done)."""
    seq = 0
    carried: dict[str, int] = {}
    cut: set[tuple[str, str]] = set()
    for name, c in sorted(plan.couplings.items()):
        job = plan.job(c.simulation)
        running = job.max_concurrent
        ready = c.ready_buffer if c.setup else 0
        cap = c.max_simulations if c.max_simulations is not None else running + ready
        n = min(running + ready, cap)
        rows = [(f"{c.to}-{seq + i + 1:06d}", name, f"warm-{name}-{i + 1:06d}", seq + i + 1,
                 0.0) for i in range(n)]
        seq += n
        ledger.add_sims(rows)
        carried[name] = n
        res = job.resources
        for i, (sim, *_) in enumerate(rows):
            setup_dir = str(workspace / "runs" / sim / "setup")
            if i >= running:
                ledger.set_sim(sim, SimState.READY, setup_dir=setup_dir)
                continue
            ledger.set_sim(sim, SimState.SIMULATING, setup_dir=setup_dir)
            jname = tracker.job_name(sim, c.simulation, 1)
            ledger.add_job(JobRow(jname, c.simulation, sim, 1, AttemptState.SUBMITTING, None,
                                  str(workspace / "runs" / sim / f"{c.simulation}.1"),
                                  res.gpus, res.cores), 0.0)
            ledger.set_job(jname, AttemptState.CANCELLED, started=0.0,
                           reason="the previous allocation ended", t=0.0)
            cut.add((sim, c.simulation))
    return carried, cut


def simulate(plan: Plan, options: Options) -> Result:
    """Run ``plan`` for ``options.hours`` of virtual time; nothing is left on disk."""
    if options.start not in STARTS:
        raise UsageError(f"start must be one of {', '.join(STARTS)}, not {options.start!r}")
    sim_plan = simulation_plan(plan, options)
    shm = Path("/dev/shm")  # the ledger's commits are several times cheaper on tmpfs
    scratch = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="mummi-simulate-", dir=scratch) as tmp:
        return _simulate(sim_plan, options, Path(tmp))


def _simulate(plan: Plan, options: Options, tmp: Path) -> Result:
    plan_path = tmp / "build" / "plan.json"
    plan_path.parent.mkdir()
    plan_path.write_text(plan.to_json(), encoding="utf-8")
    ws = tmp / "workspace"
    ws.mkdir()
    m, pools = plan.machine, plan.pools
    engine = Engine()
    machine = Machine(engine, pools.compute_nodes, m.cores * m.oversubscribe, m.gpus,
                      pools.cores_per_gpu)
    check_machine(plan, machine)
    campaign = SimCampaign(plan, plan_path, ws)
    producers = Producers(engine, plan, campaign.store, options.seed, options.items_per_hour)
    seeded: dict[str, int] = {}
    cut: set[tuple[str, str]] = set()
    if options.start == "warm":
        ledger = Ledger(ws / LEDGER_FILE)
        try:
            seeded, cut = seed_warm(ledger, plan, ws)
        finally:
            ledger.close()
    startup = options.startup
    if startup is None:
        startup = plan.scheduler.startup
    startup = DEFAULT_STARTUP if startup is None else float(startup)
    sched = SimulatedScheduler(plan, engine=engine, machine=machine, producers=producers,
                               seed=options.seed, startup=startup, carried=frozenset(cut))
    clock = VirtualClock(engine)
    job_types = sorted(n for n, j in plan.jobs.items() if j.pool != Pool.UNUSED)
    samples: list[tuple[float, int, int, int, tuple[int, ...]]] = []

    def sample() -> None:
        running = sched.running
        samples.append((engine.now, machine.busy_gpus, machine.busy_cores, sched.waiting,
                        tuple(running[t] for t in job_types)))
        if engine.now + options.sample_every <= options.hours * 3600.0 + 1e-6:
            engine.at(engine.now + options.sample_every, sample)

    read_by_loops = {f.source for f in plan.feedback.values()}

    def drain() -> None:
        # Items the manager has taken in are forgotten, as a long campaign's stores would
        # archive them: the stores then hold what is new, not everything since the start.
        for ref, em in producers.emitters.items():
            if em.stream.kind == "feedback":
                if ref in read_by_loops:
                    em.store.clear(em.namespace + CONSUMED_SUFFIX)
                else:
                    em.store.clear(em.namespace)
                continue
            if not em.pending:
                continue
            ingest = runs[-1].ingests.get(ref) if runs else None
            if ingest is None:
                em.store.discard(em.namespace, em.pending)
                em.pending = []
                continue
            known = ingest.known
            taken = [k for k in em.pending if k in known]
            if taken:
                em.store.discard(em.namespace, taken)
                em.pending = [k for k in em.pending if k not in known]

    engine.at(0.0, sample)
    engine.after_advance(drain)
    runs: list[Manager] = []  # one per allocation, each resuming from the ledger
    ingested: Counter[str] = Counter()
    outcome = None
    while outcome != "complete":
        manager = Manager(campaign, sched, clock=clock, threads=False,
                          status_every=STATUS_EVERY, allocation_margin=0.0)
        runs.append(manager)
        manager.start()
        outcome = "stopped"
        try:
            while (ended := manager.tick(clock.now())) is None:
                clock.sleep(plan.manager.tick)  # the world runs meanwhile
            outcome = ended
        finally:
            manager.stop(outcome)
            manager.release()  # the next allocation's manager takes the workspace
            ingested.update({s: i.ingested for s, i in manager.ingests.items()})
            feedback = {n: manager.ledger.feedback_state(n)[:2] for n in sorted(manager.loops)}
            manager.ledger.close()
    return Result(
        name=plan.name, nodes=m.nodes, hours=options.hours, options=options,
        job_types=job_types, samples=samples, total_gpus=machine.total_gpus,
        total_cores=machine.total_cores, full_at=machine.full_at,
        started={t: sched.started[t] for t in job_types},
        ended={t: dict(sorted(sched.ended.get(t, Counter()).items())) for t in job_types},
        seeded=seeded,
        selected={p.name: p.selected for p in manager.book.pipes.values()},
        feedback={n: (int(i), int(k)) for n, (i, k) in feedback.items()},
        ingested=dict(sorted(ingested.items())), allocations=len(runs),
        allocation=plan.manager.allocation,
        stands_for={r: em.rate.stands_for for r, em in producers.emitters.items()},
        per_second=plan.scheduler.per_second, startup=startup,
        poll=plan.scheduler.poll, outcome=outcome)

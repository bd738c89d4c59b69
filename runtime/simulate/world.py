"""The simulated world in virtual time: an event queue, the machine's nodes, the data producers."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from mummi_spec.plan import Plan, Pool, Role, StreamPlan
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.simulate.expect import StreamExpect, stream_expect, uniform
from mummi_spec.runtime.stores.common import check_name
from mummi_spec.runtime.stores.memory import MemoryStore

FULL = 0.98  # "GPUs full": the paper's threshold (98 % of the GPUs busy)
WRITE_EVERY = 60.0  # producers' items reach the stores on the minute


class Engine:
    """Virtual time and the events due in it, run in (time, insertion) order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._hooks: list[Callable[[], None]] = []

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``t`` (never earlier than now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(t, self.now), self._seq, fn, args))

    def after_advance(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` each time time has moved on (after the events it crossed)."""
        self._hooks.append(hook)

    def advance(self, to: float) -> None:
        """Run every event due up to ``to``, then stand at ``to``."""
        heap = self._heap
        while heap and heap[0][0] <= to:
            t, _, fn, args = heapq.heappop(heap)
            self.now = t
            fn(*args)
        self.now = max(self.now, to)
        for hook in self._hooks:
            hook()

    def sleep(self, seconds: float) -> None:
        """What a blocked caller does in virtual time: let the world run meanwhile."""
        self.advance(self.now + max(seconds, 0.0))


class Machine:
    """Nodes with free GPUs and cores; jobs are placed on whole-number shares of nodes.

    Placement keeps ``cores_per_gpu`` cores beside every free GPU of a node, as MuMMI's layout
    on Summit did (6 GPU jobs x 3 cores + one 24-core setup = 42 cores), so CPU-only jobs
    never strand GPUs; among the nodes that fit, the tightest is taken (best fit).
    """

    def __init__(self, engine: Engine, nodes: int, cores: int, gpus: int,
                 cores_per_gpu: float) -> None:
        self.engine = engine
        self.nodes, self.cores, self.gpus = nodes, cores, gpus
        self.total_gpus, self.total_cores = nodes * gpus, nodes * cores
        self.cores_per_gpu = cores_per_gpu
        self._free = [(gpus, cores)] * nodes
        self._buckets: dict[tuple[int, int], set[int]] = {(gpus, cores): set(range(nodes))}
        self.busy_gpus = 0
        self.busy_cores = 0
        self.full_at: float | None = None

    def fits_at_all(self, nodes: int, gpus: int, cores: int) -> bool:
        """Whether an empty machine could hold the job."""
        return nodes <= self.nodes and gpus <= self.gpus and cores <= self.cores

    def _keys(self, gpus: int, cores: int, keep_for_gpus: bool) -> list[tuple[int, int]]:
        keep = self.cores_per_gpu
        keys = []
        for fg, fc in self._buckets:
            if fg < gpus or fc < cores:
                continue
            if keep_for_gpus and not gpus and fc - cores < math.ceil((fg - gpus) * keep):
                continue  # would leave free GPUs without their cores
            keys.append((fg, fc))
        # Tightest first: fewest GPUs left, then fewest cores left.
        keys.sort()
        return keys

    def place(self, nodes: int, gpus: int, cores: int, persistent: bool = False
              ) -> list[int] | None:
        """Take ``gpus`` and ``cores`` on each of ``nodes`` nodes, or ``None`` if they are busy.

        A persistent job is placed as the compiler places it, before anything else: it may
        leave a node's GPUs without the cores to feed them.
        """
        keys = self._keys(gpus, cores, keep_for_gpus=not persistent)
        if not keys:
            return None
        if nodes == 1:
            chosen = [min(self._buckets[keys[0]])]
        else:
            chosen = []
            for key in keys:
                chosen.extend(sorted(self._buckets[key])[: nodes - len(chosen)])
                if len(chosen) == nodes:
                    break
            else:
                return None
        for n in chosen:
            self._move(n, -gpus, -cores)
        self.busy_gpus += gpus * nodes
        self.busy_cores += cores * nodes
        if self.full_at is None and self.total_gpus and \
                self.busy_gpus >= FULL * self.total_gpus:
            self.full_at = self.engine.now
        return chosen

    def release(self, chosen: Sequence[int], gpus: int, cores: int) -> None:
        for n in chosen:
            self._move(n, gpus, cores)
        self.busy_gpus -= gpus * len(chosen)
        self.busy_cores -= cores * len(chosen)

    def _move(self, node: int, dg: int, dc: int) -> None:
        old = self._free[node]
        new = (old[0] + dg, old[1] + dc)
        bucket = self._buckets[old]
        bucket.discard(node)
        if not bucket:
            del self._buckets[old]
        self._buckets.setdefault(new, set()).add(node)
        self._free[node] = new


class SimStore(MemoryStore):
    """The memory store, plus what the simulated world does to its own data: forget items."""

    def discard(self, namespace: str, keys: Sequence[str]) -> None:
        """Drop ``keys`` (items the manager has taken in; their bytes are no longer needed)."""
        check_name("namespace", namespace)
        with self._lock:
            items = self._data.get(namespace, {})
            for key in keys:
                items.pop(key, None)

    def clear(self, namespace: str) -> None:
        with self._lock:
            self._data.pop(check_name("namespace", namespace), None)

    def keys(self, namespace: str, pattern: str = "*") -> list[str]:
        check_name("namespace", namespace)
        with self._lock:
            names = list(self._data.get(namespace, {}))
        if pattern == "*":
            return sorted(names)
        return sorted(k for k in names if fnmatchcase(k, pattern))

    def put_trusted(self, namespace: str, items: Mapping[str, bytes]) -> None:
        """``put_many`` for the world's own items, whose key template was checked once."""
        with self._lock:
            self._data.setdefault(namespace, {}).update(items)
            # Journaled like any write: ingest reads new candidates from the log.
            self._log.setdefault(namespace, []).extend(items)


class Emitter:
    """One stream's producer side: what each running producer writes, and when."""

    def __init__(self, ref: str, stream: StreamPlan, rate: StreamExpect,
                 store: SimStore, values: Callable[[np.random.Generator, int], np.ndarray],
                 rng: np.random.Generator) -> None:
        self.ref, self.stream, self.rate, self.store = ref, stream, rate, store
        self.namespace = stream.namespace
        self.template = stream.key
        self.tags = list(stream.tags)
        self.dim = stream.dim
        self.values = values
        self.rng = rng
        self._block = np.zeros((0, self.dim), dtype=np.float32)
        self._tag_block = np.zeros(0, dtype=np.int64)
        self._used = 0
        self._checked = False
        self.serial = 0
        self.per_sim: dict[str, int] = {}
        self.written = 0
        self.pending: list[str] = []  # keys written and not yet taken in by the manager

    def write(self, sim: str | None, producer: str) -> None:
        """One write of ``rate.count`` items by ``producer`` (a simulation or a job type)."""
        count = self.rate.count
        if self._used + count > len(self._block):  # draws in blocks: one call per 4096 items
            size = max(4096, count)
            self._block = self.values(self.rng, size)
            self._tag_block = self.rng.integers(max(len(self.tags), 1), size=size)
            self._used = 0
        points = self._block[self._used:self._used + count]
        tags = self._tag_block[self._used:self._used + count].tolist()
        self._used += count
        items = {}
        n0 = self.per_sim.get(producer, 0)
        for i in range(count):
            self.serial += 1
            key = self.template.format_map({"id": f"{self.serial:06d}", "n": n0 + i,
                                            "sim": producer})
            items[key] = encode(Record(points[i], tag=self.tags[tags[i]] if self.tags else None,
                                       sim=sim))
        self.per_sim[producer] = n0 + count
        if not self._checked:  # the real stores refuse bad keys: so does the first write here
            self.store.put_many(self.namespace, items)
            self._checked = True
        else:
            self.store.put_trusted(self.namespace, items)
        self.written += count
        self.pending.extend(items)


def value_maker(stream: StreamPlan, plan: Plan
                ) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Encodings a selector can work with: inside a binned selector's bounds, else N(0, 1)."""
    dim = stream.dim
    for coupling in plan.couplings.values():
        sel = plan.selectors[coupling.selector]
        if coupling.source == stream.ref and sel.kind == "binned":
            lo = np.array([b[0] for b in sel.bounds], dtype=np.float64)
            hi = np.array([b[1] for b in sel.bounds], dtype=np.float64)
            return lambda rng, n: (lo + (hi - lo) * rng.random((n, dim))).astype(np.float32)
    return lambda rng, n: rng.standard_normal((n, dim), dtype=np.float32)


class Producers:
    """Every stream of the plan with its emitter; starts and stops producing jobs."""

    def __init__(self, engine: Engine, plan: Plan, store: Callable[[str], SimStore],
                 seed: int, items_per_hour: float) -> None:
        self.engine = engine
        self.seed = seed
        self.emitters: dict[str, Emitter] = {}
        self.by_job: dict[str, list[Emitter]] = {}
        jobs = plan.jobs
        for ref, stream in sorted(plan.streams.items()):
            producers = sorted(n for n, j in jobs.items() if j.scale == stream.scale
                               and j.role in (Role.PERSISTENT, Role.SIMULATION)
                               and j.pool != Pool.UNUSED)
            if not producers:
                continue
            role = jobs[producers[0]].role
            count = sum(jobs[n].max_concurrent for n in producers)
            rate = stream_expect(stream, role, max(count, 1), items_per_hour)
            rng = np.random.default_rng([seed, *ref.encode()])
            em = Emitter(ref, stream, rate, store(stream.store), value_maker(stream, plan),
                         rng)
            self.emitters[ref] = em
            for n in producers:
                self.by_job.setdefault(n, []).append(em)
        self._live: dict[str, bool] = {}

    def start(self, job_id: str, job_type: str, sim: str | None) -> None:
        emitters = self.by_job.get(job_type)
        if not emitters:
            return
        self._live[job_id] = True
        for em in emitters:
            # A thinned item stands for one of several real ones: the first is any of the
            # real intervals that it covers, not always the last of them.
            real = em.rate.real_every
            k = max(1, round(em.rate.every / real))
            first = real * (1 + int(uniform(self.seed, job_id, em.ref) * k))
            self._next(self.engine.now + first, job_id, em, sim, sim or job_type)

    def stop(self, job_id: str) -> None:
        self._live.pop(job_id, None)

    def _next(self, due: float, job_id: str, em: Emitter, sim: str | None,
              producer: str) -> None:
        # Writes land on the next whole WRITE_EVERY (the rate is kept: ``due`` runs on
        # exactly), so the manager's ingest finds one batch a minute, not a trickle per tick.
        at = math.ceil(due / WRITE_EVERY) * WRITE_EVERY if em.rate.every > WRITE_EVERY else due
        self.engine.at(at, self._tick, due, job_id, em, sim, producer)

    def _tick(self, due: float, job_id: str, em: Emitter, sim: str | None,
              producer: str) -> None:
        if job_id not in self._live:
            return
        em.write(sim, producer)
        self._next(due + em.rate.every, job_id, em, sim, producer)

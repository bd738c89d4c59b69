"""The runtime plan: the typed contract the compiler writes as plan.json and the runtime reads.

Every default and derived number is resolved by the compiler; nothing downstream fills one in.
One class writes and reads the artefact (``Plan.to_json`` / ``Plan.from_json``) and refuses a
document of another version. Imports nothing of the front end: applications load it too.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from mummi_spec.errors import MummiError

T = TypeVar("T")
Scalar = str | int | float | bool

# A workspace's ledger: the runtime writes it; the compiler refuses to replace a build holding one.
LEDGER_FILE = "ledger.sqlite"


class PlanError(MummiError):
    """``plan.json`` is missing, unreadable or from another version of mummi-spec."""


class Role(str, enum.Enum):
    """What a job type does in the campaign."""

    PERSISTENT = "persistent"
    """Runs for the whole campaign (a coarse model, a generator); restarted if it ends early."""
    SETUP = "setup"
    """Prepares one selected candidate for its simulation (createsim, backmapping)."""
    SIMULATION = "simulation"
    """Simulates one selected candidate (one job per GPU)."""


class Pool(str, enum.Enum):
    """Which part of the allocation a job type's instances take."""

    GPU = "gpu"
    """GPUs of its coupling's budget (with the cores beside them)."""
    CPU = "cpu"
    """CPU-only cores of its coupling's budget."""
    PERSISTENT = "persistent"
    """Its own nodes, set aside at the start."""
    UNUSED = "unused"
    """No coupling spawns it: never started."""


# ---------------------------------------------------------------------------- machine
@dataclass(frozen=True)
class MachinePlan:
    """The allocation as declared."""

    name: str
    nodes: int
    walltime: float
    cores: int
    gpus: int
    memory_gb: float | None
    oversubscribe: int  # jobs share each core this many times
    reserved_manager: int
    reserved_services: int


@dataclass(frozen=True)
class PoolsPlan:
    """The allocation divided: what the budgets and concurrency figures come from."""

    compute_nodes: int
    gpu_pool: int  # GPUs the couplings' GPU jobs can use at once
    cpu_pool: int  # cores the couplings' CPU-only jobs can use at once
    cores_per_gpu: float  # what every GPU job holds beside each GPU, at most
    gpus_held: int  # the most GPUs jobs hold at once, persistent ones included
    cores_held: float  # the most cores jobs hold at once, persistent ones included
    busy_gpus: int
    idle_gpus: int
    gpu_hours: float  # per allocation, at the planned occupancy
    node_hours: float  # per allocation


# -------------------------------------------------------------------------- scheduler
@dataclass(frozen=True)
class FluxOptions:
    """flux-specific settings (``scheduler.options`` of a flux spec)."""

    uri: str | None = None  # None: the broker of FLUX_URI, else the enclosing instance
    urgency: int = 16


@dataclass(frozen=True)
class LocalOptions:
    """Settings of the local adapter (``scheduler.options`` of a local spec)."""

    max_workers: int = 64  # jobs running at once
    kill_grace: int = 5  # seconds between SIGTERM and SIGKILL at a walltime or a cancel


# The schedulers whose own adapter reads ``scheduler.options``; the others' options go to
# Maestro's batch block.
ADAPTER_OPTIONS: dict[str, type] = {"flux": FluxOptions, "local": LocalOptions}
# The schedulers that can run a job in an instance of its own (a job type's ``nested``); their
# adapters declare it too (``nested_instances``), and a test holds the two equal.
NESTED_INSTANCES = frozenset({"flux"})


def adapter_options(scheduler: str) -> dict[str, type]:
    """Option name -> type, for a scheduler whose adapter reads ``scheduler.options`` itself."""
    cls = ADAPTER_OPTIONS.get(scheduler)
    if cls is None:
        return {}
    return {name: next(a for a in (typing.get_args(t) or (t,)) if a is not type(None))
            for name, t in _hints(cls).items()}


@dataclass(frozen=True)
class SchedulerPlan:
    """Where jobs run, and how fast they may be sent there."""

    type: str
    queue: str | None
    bank: str | None
    host: str  # the machine's name, as Maestro's adapters take it
    qos: str | None
    reservation: str | None
    batch: Mapping[str, Scalar]  # extra keys of Maestro's batch block (slurm, lsf)
    flux: FluxOptions
    local: LocalOptions
    per_second: float | None
    burst: int
    per_iteration: int
    poll: float
    startup: float | None

    def maestro_batch(self, *, options: bool = True) -> dict[str, Scalar]:
        """Maestro's batch block: for the study's steps, and (without ``options``, which our
        adapters write as directives of their own) for the jobs the runtime submits through
        Maestro's slurm and lsf adapters, so both ask the scheduler the same way."""
        if self.type == "local":
            return {"type": "local"}
        block: dict[str, Scalar] = {"type": self.type, "host": self.host}
        # Maestro's slurm and lsf adapters require these keys; empty ones write no directive
        # (no queue: the cluster's default partition).
        for key in ("bank", "queue"):
            value = getattr(self, key)
            if value is not None or self.type in ("slurm", "lsf"):
                block[key] = value or ""
        for key in ("qos", "reservation"):
            if getattr(self, key):
                block[key] = getattr(self, key)
        if options:
            block.update(self.batch)
        return block


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class StorePlan:
    """A named data store; ``journal`` lists the namespaces ingest reads from a cursor."""

    name: str
    backend: str
    path: str
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password_env: str | None = None
    prefix: str = ""
    retry_for: float = 60.0
    journal: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamPlan:
    """A stream of items a scale emits (``ref`` = ``scale.stream``)."""

    ref: str
    scale: str
    name: str
    kind: str  # candidates | feedback
    dim: int
    store: str
    namespace: str
    key: str
    tags: tuple[str, ...]
    every: float | None
    count: int


# ----------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class JobResources:
    """What one instance needs, over all its nodes."""

    nodes: int = 1
    tasks: int = 1
    cores_per_task: int = 1
    gpus: int = 0

    @property
    def cores(self) -> int:
        """Cores per instance."""
        return self.tasks * self.cores_per_task


@dataclass(frozen=True)
class RetryPolicy:
    """Which outcomes are retried, and how many times."""

    limit: int = 2
    on: tuple[str, ...] = ("failed", "timedout", "lost")


@dataclass(frozen=True)
class SuccessRule:
    """How an ended job is judged: its exit code, and a file it must leave."""

    exit_codes: tuple[int, ...] = (0,)
    file: str | None = None


@dataclass(frozen=True)
class Expectation:
    """What a job typically does; used by ``mummi simulate``, never enforced."""

    duration: float | None = None
    duration_sd: float | None = None
    failure_rate: float = 0.0


@dataclass(frozen=True)
class JobPlan:
    """A job type with its placement: how many may run at once and where they come from."""

    name: str
    scale: str
    role: Role
    description: str
    command: str
    walltime: float
    resources: JobResources
    stop: str
    retry: RetryPolicy
    success: SuccessRule
    expect: Expectation
    checkpoints: bool  # continues in the next attempt after a walltime or allocation end
    nested: bool  # runs in a scheduler instance of its own; $(LAUNCHER) starts its tasks there
    env: Mapping[str, str]
    coupling: str | None
    pool: Pool
    max_concurrent: int
    spawned_by: str


# ------------------------------------------------------------------ selectors and loops
@dataclass(frozen=True)
class QueuePlan:
    """A farthest-point queue: its target share of the picks and how many it may hold."""

    name: str
    ratio: float
    capacity: int | None = None


@dataclass(frozen=True)
class IndexPlan:
    """The farthest-point selector's nearest-neighbour index."""

    type: str = "exact"
    nlist: int = 100
    nprobe: int = 10


@dataclass(frozen=True)
class SelectorPlan:
    """A selector; the keys of other kinds keep their defaults."""

    name: str
    kind: str
    dim: int
    seed: int = 0
    min_candidates: int = 0
    random_first: int = 0
    k: int = 10
    index: IndexPlan = field(default_factory=IndexPlan)
    queues: tuple[QueuePlan, ...] = ()
    bins: tuple[int, ...] = ()
    bounds: tuple[tuple[float, float], ...] = ()
    novelty: float = 0.5


@dataclass(frozen=True)
class BudgetPlan:
    """What one coupling may hold at once."""

    gpus: int
    cores: int


@dataclass(frozen=True)
class CouplingPlan:
    """A coarse-to-fine pipeline with its resolved limits."""

    name: str
    source: str  # a stream ref
    to: str
    selector: str
    setup: str | None
    simulation: str
    ready_buffer: int
    max_pending: int  # selections waiting for setup, in setup or ready, at most
    max_selections_per_iteration: int
    share_gpus: float
    share_cores: float
    budget: BudgetPlan
    max_simulations: int | None  # this coupling's part of manager.max_simulations


@dataclass(frozen=True)
class TargetPlan:
    """Where a feedback loop reports its aggregate."""

    store: str
    namespace: str
    key: str


@dataclass(frozen=True)
class FeedbackPlan:
    """A fine-to-coarse loop."""

    name: str
    source: str  # a stream ref
    to: str
    period: float
    aggregate: str
    workers: int
    max_items: int
    weights_from: str | None  # the selector whose weights weigh items (weighted_mean)
    target: TargetPlan


@dataclass(frozen=True)
class ManagerPlan:
    """The workflow manager's loop."""

    tick: float
    checkpoint_every: float
    stop_after: float | None  # campaign time after which it is complete; None: no limit
    max_simulations: int | None
    allocation: float  # one run's allocation (machine.walltime): it stops, resumable, then
    write_retry_for: float  # how long a refused write to the workspace is tried again


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Plan:
    """The whole resolved campaign."""

    VERSION: ClassVar[int] = 3

    name: str
    description: str
    profile: str | None
    workspace: str
    env: Mapping[str, str]
    machine: MachinePlan
    scheduler: SchedulerPlan
    pools: PoolsPlan
    stores: Mapping[str, StorePlan]
    jobs: Mapping[str, JobPlan]
    streams: Mapping[str, StreamPlan]
    selectors: Mapping[str, SelectorPlan]
    couplings: Mapping[str, CouplingPlan]
    feedback: Mapping[str, FeedbackPlan]
    manager: ManagerPlan
    pythonpath: tuple[str, ...]  # relative to the directory holding the build directory

    # ----------------------------------------------------------------- look-ups
    def stream(self, ref: str) -> StreamPlan:
        """The stream ``scale.stream``; a ``PlanError`` naming the known ones otherwise."""
        return _lookup(self.streams, ref, "stream")

    def job(self, name: str) -> JobPlan:
        """The job type ``name``."""
        return _lookup(self.jobs, name, "job type")

    def coupling(self, name: str) -> CouplingPlan:
        """The coupling ``name``."""
        return _lookup(self.couplings, name, "coupling")

    def store(self, name: str) -> StorePlan:
        """The store ``name``."""
        return _lookup(self.stores, name, "store")

    # ------------------------------------------------------------------- artefact
    def to_data(self) -> dict[str, Any]:
        """The plan as JSON data, version first."""
        return {"plan_version": self.VERSION, **to_data(self)}

    def to_json(self) -> str:
        """plan.json's text: sorted keys, so equal plans are equal bytes."""
        return json.dumps(self.to_data(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_data(cls, data: Any, where: str = "plan") -> Plan:
        """A plan from JSON data; ``PlanError`` for another version or a malformed document."""
        found = data.get("plan_version") if isinstance(data, dict) else None
        if found != cls.VERSION:
            raise PlanError(f"{where}: plan version {found!r}, this mummi reads {cls.VERSION}; "
                            "compile the spec again with this version")
        body = {k: v for k, v in data.items() if k != "plan_version"}
        try:
            plan: Plan = from_data(cls, body, "$")
        except PlanError as exc:
            raise PlanError(f"{where}: {exc}") from None
        return plan

    @classmethod
    def from_json(cls, text: str, where: str = "plan") -> Plan:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PlanError(f"{where}: not a readable plan ({exc}); compile the spec again"
                            ) from None
        return cls.from_data(data, where)

    @classmethod
    def read(cls, path: str | Path) -> Plan:
        """Read ``plan.json``, the only file the runtime reads."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PlanError(f"{path}: no such plan; compile the spec first "
                            "(`mummi compile spec.yaml`)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(f"{path}: not a readable plan ({exc}); compile the spec again"
                            ) from None
        return cls.from_json(text, str(path))


def _lookup(table: Mapping[str, T], name: str, what: str) -> T:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise PlanError(f"no {what} {name!r} in the plan; known: {known}") from None


# ------------------------------------------------------------------------ the codec
def to_data(value: Any) -> Any:
    """Dataclasses, enums, tuples and mappings as JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [to_data(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_data(tp: Any, data: Any, where: str) -> Any:
    """``data`` read as type ``tp`` (the annotations above), refusing anything else."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _record(tp, data, where)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None) and _is(arg, data):
                return from_data(arg, data, where)
        raise PlanError(f"{where}: {data!r} is not a {tp}")
    if origin is tuple:
        if not isinstance(data, list):
            raise PlanError(f"{where}: expected a list, found {data!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_data(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise PlanError(f"{where}: expected {len(args)} values, found {len(data)}")
        return tuple(from_data(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(
            zip(args, data, strict=True)))
    if origin in (Mapping, dict):
        if not isinstance(data, dict):
            raise PlanError(f"{where}: expected a mapping, found {data!r}")
        value_type = typing.get_args(tp)[1]
        return {k: from_data(value_type, v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise PlanError(f"{where}: {data!r} is not one of "
                            f"{', '.join(m.value for m in tp)}") from None
    if not _is(tp, data):
        raise PlanError(f"{where}: {data!r} is not a {getattr(tp, '__name__', tp)}")
    return float(data) if tp is float else data


def _is(tp: Any, data: Any) -> bool:
    """Whether ``data`` can be read as the scalar or container type ``tp``."""
    if tp is float:
        return isinstance(data, (int, float)) and not isinstance(data, bool)
    if tp is int:
        return isinstance(data, int) and not isinstance(data, bool)
    if tp in (str, bool):
        return isinstance(data, tp)
    origin = typing.get_origin(tp)
    if origin is tuple:
        return isinstance(data, list)
    if origin in (Mapping, dict) or dataclasses.is_dataclass(tp):
        return isinstance(data, dict)
    return True  # enums and the rest: from_data decides


def _record(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise PlanError(f"{where}: expected a mapping, found {data!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    extra = sorted(set(data) - set(names))
    missing = [n for n in names if n not in data]
    if extra or missing:
        raise PlanError(f"{where}: {'unknown key(s) ' + ', '.join(extra) if extra else ''}"
                        f"{'; ' if extra and missing else ''}"
                        f"{'missing key(s) ' + ', '.join(missing) if missing else ''}; "
                        "compile the spec again with this version")
    hints = _hints(cls)
    return cls(**{n: from_data(hints[n], data[n], f"{where}.{n}") for n in names})

"""The typed, frozen campaign model; every node knows where in the spec it was written."""

from __future__ import annotations

from dataclasses import dataclass, field

from mummi_spec.errors import SourceLocation

NOWHERE = SourceLocation("<default>", 0, 0)


def _loc() -> SourceLocation:
    return field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Resources:
    """What one instance of a job needs."""

    nodes: int = 1
    tasks: int = 1
    cores_per_task: int = 1
    gpus: int = 0
    memory_gb: float | None = None

    @property
    def cores(self) -> int:
        """Cores per instance."""
        return self.tasks * self.cores_per_task


@dataclass(frozen=True, slots=True)
class Job:
    """A job type of a scale."""

    name: str
    scale: str
    role: str  # persistent | setup | simulation
    command: str
    walltime: float
    resources: Resources
    description: str = ""
    stop: str = ""
    retry_limit: int = 2
    retry_on: tuple[str, ...] = ("failed", "timedout", "lost")
    success_codes: tuple[int, ...] = (0,)
    success_file: str | None = None
    duration: float | None = None
    duration_sd: float | None = None
    failure_rate: float = 0.0
    checkpoints: bool = False
    nested: bool = False  # in a Flux sub-instance of its own
    env: tuple[tuple[str, str], ...] = ()
    loc: SourceLocation = _loc()


@dataclass(frozen=True, slots=True)
class Stream:
    """A data stream a scale emits."""

    name: str
    scale: str
    kind: str  # candidates | feedback
    dim: int
    store: str
    namespace: str
    key: str = "{id}"
    tags: tuple[str, ...] = ()
    every: float | None = None
    count: int = 1
    loc: SourceLocation = _loc()

    @property
    def ref(self) -> str:
        """``scale.stream``, how couplings and feedback name it."""
        return f"{self.scale}.{self.name}"


@dataclass(frozen=True, slots=True)
class Scale:
    """One resolution of the model, with its jobs and streams."""

    name: str
    description: str
    jobs: tuple[Job, ...]
    emits: tuple[Stream, ...]
    loc: SourceLocation = _loc()


@dataclass(frozen=True, slots=True)
class Queue:
    """A farthest-point selector queue."""

    name: str
    ratio: float
    capacity: int | None = None


@dataclass(frozen=True, slots=True)
class Selector:
    """How candidates are chosen."""

    name: str
    kind: str
    dim: int
    k: int = 10
    index: str = "exact"
    nlist: int = 100
    nprobe: int = 10
    queues: tuple[Queue, ...] = ()
    bins: tuple[int, ...] = ()
    bounds: tuple[tuple[float, float], ...] = ()
    novelty: float = 0.5
    min_candidates: int = 0
    random_first: int = 0
    seed: int = 0
    loc: SourceLocation = _loc()


@dataclass(frozen=True, slots=True)
class Coupling:
    """A coarse-to-fine pipeline."""

    name: str
    source_scale: str
    source_stream: str
    to: str
    selector: str
    simulation: str
    setup: str | None = None
    ready_buffer: int = 0
    max_pending: int | None = None
    max_selections_per_iteration: int = 200
    share_gpus: float = 0.0
    share_cores: float = 0.0
    loc: SourceLocation = _loc()


@dataclass(frozen=True, slots=True)
class Feedback:
    """A fine-to-coarse feedback loop."""

    name: str
    source_scale: str
    source_stream: str
    to: str
    period: float
    aggregate: str
    target_store: str
    target_key: str
    target_namespace: str
    workers: int = 1
    max_items: int = 100000
    loc: SourceLocation = _loc()


@dataclass(frozen=True, slots=True)
class Store:
    """A named data store."""

    name: str
    backend: str
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password_env: str | None = None
    retry_for: float = 60.0
    loc: SourceLocation = _loc()


@dataclass(frozen=True, slots=True)
class Scheduler:
    """The scheduler and its options."""

    type: str
    queue: str | None = None
    bank: str | None = None
    host: str | None = None
    qos: str | None = None
    reservation: str | None = None
    options: tuple[tuple[str, str | int | float | bool], ...] = ()
    per_second: float | None = None
    burst: int = 1
    per_iteration: int = 500
    poll: float = 5.0
    startup: float | None = None  # expect.startup: seconds until a free machine starts a job
    loc: SourceLocation = _loc()


@dataclass(frozen=True, slots=True)
class Machine:
    """The allocation."""

    name: str
    nodes: int
    walltime: float
    cores: int
    gpus: int = 0
    memory_gb: float | None = None
    oversubscribe: int = 1
    reserved_manager: int = 1
    reserved_services: int = 0
    loc: SourceLocation = _loc()


@dataclass(frozen=True, slots=True)
class Manager:
    """The workflow manager's loop settings."""

    tick: float = 1.0
    checkpoint_every: float = 60.0
    stop_after: float | None = None
    max_simulations: int | None = None
    write_retry_for: float = 60.0


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole validated campaign, with one profile applied."""

    name: str
    description: str
    file: str
    profile: str | None
    workspace: str
    env: tuple[tuple[str, str], ...]
    variables: tuple[tuple[str, str, str], ...]  # (name, value, source)
    machine: Machine
    scheduler: Scheduler
    stores: tuple[Store, ...]
    scales: tuple[Scale, ...]
    selectors: tuple[Selector, ...]
    couplings: tuple[Coupling, ...]
    feedback: tuple[Feedback, ...]
    manager: Manager
    profiles: tuple[str, ...] = ()
    pythonpath: tuple[str, ...] = ()  # relative to where mummi runs, as the spec's resolve

    def jobs(self) -> tuple[Job, ...]:
        """Every job type, scale by scale."""
        return tuple(j for s in self.scales for j in s.jobs)

    def job(self, name: str) -> Job:
        """The job type called ``name``."""
        return next(j for j in self.jobs() if j.name == name)

    def streams(self) -> tuple[Stream, ...]:
        """Every stream, scale by scale."""
        return tuple(st for s in self.scales for st in s.emits)

    def selector(self, name: str) -> Selector:
        """The selector called ``name``."""
        return next(s for s in self.selectors if s.name == name)

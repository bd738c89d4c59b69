"""The interface for applications: what a job of a campaign reads, writes and is told.

A job started by ``mummi run`` finds everything in its environment (``MUMMI_*``, listed in
docs/applications.md); ``context()`` reads it. Candidates and feedback items go to the stores
the plan names, in the item format of docs/record-format.md, written whole or not at all.
This module imports neither YAML nor JSON Schema: a job pays only for the plan and its stores.

    from mummi_spec import app

    job = app.context()
    cand = job.candidate()                 # a setup or simulation: the selected candidate
    out = job.stream("cg.rdfs")
    out.emit(values, meta={"step": 10})    # a feedback item, keyed by sim and attempt
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from mummi_spec.errors import MummiError, StoreError
from mummi_spec.plan import CouplingPlan, Plan, PlanError, StreamPlan
from mummi_spec.runtime.campaign import Campaign, resolve_workspace
from mummi_spec.runtime.records import Record, RecordError, decode, encode
from mummi_spec.runtime.stores.common import check_name

__all__ = [
    "AppError", "Candidate", "Context", "Stop", "Stream", "Target", "context",
]

# The variables the manager gives every job (docs/applications.md says what each means).
ENV = ("MUMMI_PLAN", "MUMMI_WORKSPACE", "MUMMI_JOB_TYPE", "MUMMI_ATTEMPT", "MUMMI_RESTART",
       "MUMMI_STATE_DIR", "MUMMI_SIM", "MUMMI_CANDIDATE", "MUMMI_COUPLING", "MUMMI_SETUP_DIR")


class AppError(MummiError):
    """Bad input at the application interface: names what is wrong and how to fix it."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate of a stream: its id (the whole key), its encoding, tag and meta."""

    id: str
    values: np.ndarray
    tag: str | None
    meta: dict[str, Any]
    stream: str


@dataclass(frozen=True, slots=True)
class Target:
    """What a feedback loop reported last: the aggregate of every item it has consumed."""

    values: np.ndarray
    iteration: int  # 1, 2, ... one per iteration that consumed new items
    items: int  # items consumed in all, up to this iteration
    loop: str
    meta: dict[str, Any] = field(default_factory=dict)


class Stream:
    """One stream of the plan, to write items to (candidates or feedback)."""

    def __init__(self, ctx: Context, plan: StreamPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self._n = 0

    @property
    def ref(self) -> str:
        return self.plan.ref

    def key(self, *, id: str | None = None, n: int | None = None) -> str:
        """The key an item gets from the stream's template: fields ``{id}`` (a candidate's
        own name), ``{sim}`` and ``{attempt}`` (this job's), ``{n}`` (a counter)."""
        n = self._n if n is None else n
        # An id of its own per attempt, so a restarted producer never rewrites an old one.
        fields = {"id": id if id is not None else f"a{self.ctx.attempt}-{n:06d}",
                  "sim": self.ctx.sim or self.ctx.job_type or "job",
                  "attempt": self.ctx.attempt, "n": n}
        try:
            return str(self.plan.key.format_map(fields))
        except (KeyError, ValueError, IndexError) as exc:
            raise AppError(f"stream {self.ref}: its key template {self.plan.key!r} has a field "
                           f"the application cannot fill ({exc}); use {{id}}, {{sim}}, "
                           "{attempt} and {n}") from None

    def emit(self, values: Any, *, id: str | None = None, tag: str | None = None,
             meta: Mapping[str, Any] | None = None) -> str:
        """Write one item; returns its key (a candidate's id). See ``emit_many``."""
        return self.emit_many([values], ids=None if id is None else [id],
                              tags=None if tag is None else [tag],
                              metas=None if meta is None else [meta])[0]

    def emit_many(self, values: Iterable[Any], *, ids: Sequence[str] | None = None,
                  tags: Sequence[str | None] | None = None,
                  metas: Sequence[Mapping[str, Any]] | None = None) -> list[str]:
        """Write items in one batch, every one checked first: a bad one stops the batch
        before anything is written.

        Each is ``dim`` numbers, finite as float32; a candidate's ``tag`` must be one of the
        stream's tags; ``meta`` a JSON object; each key is a name every store accepts
        (ingest's rules). Items land whole: no reader ever sees half of one.
        """
        st = self.plan
        rows = [self._row(i, v) for i, v in enumerate(values)]
        n = len(rows)
        for name, seq in (("ids", ids), ("tags", tags), ("metas", metas)):
            if seq is not None and len(seq) != n:
                raise AppError(f"stream {self.ref}: {len(seq)} {name} for {n} items; give "
                               "one per item")
        heads: list[tuple[str | None, dict[str, Any]]] = []
        for i in range(n):
            where = f"stream {self.ref}, item {i}"
            tag = tags[i] if tags is not None else None
            if tag is not None and tag not in st.tags:
                raise AppError(f"{where}: tag {tag!r} is none of the stream's tags "
                               f"({', '.join(st.tags) or 'none declared'})")
            meta = metas[i] if metas is not None else {}
            if not isinstance(meta, Mapping):
                raise AppError(f"{where}: meta must be a mapping (a JSON object), not "
                               f"{type(meta).__name__}")
            try:  # what the record's header holds, readable by any JSON parser
                json.dumps(meta, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise AppError(f"{where}: meta is not plain JSON ({exc}); use strings, "
                               "finite numbers, booleans, null, lists and objects") from None
            heads.append((tag, dict(meta)))
        first = self._reserve(n) if n else 0
        items: dict[str, bytes] = {}
        for i, (row, (tag, meta)) in enumerate(zip(rows, heads, strict=True)):
            where = f"stream {self.ref}, item {i}"
            key = self.key(id=ids[i] if ids is not None else None, n=first + i)
            try:
                check_name("candidate id" if st.kind == "candidates" else "key", key,
                           st.namespace)
            except StoreError as exc:
                raise AppError(f"{where}: {exc}; ids and keys are plain names (no '/', "
                               "'\\', '..' nor control characters, no leading '.', at "
                               "most 255 bytes)") from None
            if key in items:
                raise AppError(f"{where}: key {key!r} twice in one batch; give each item "
                               "its own id")
            items[key] = encode(Record(row, tag=tag, sim=self.ctx.sim, meta=meta))
        if items:
            # put_many checks every name first (a taridx store refuses more than check_name
            # does), then writes each item atomically (a rename, a transaction, a tar member
            # appended whole) and journals it where ingest reads a journal.
            try:
                self.ctx.campaign.store(st.store).put_many(st.namespace, items)
            except StoreError as exc:
                raise StoreError(f"stream {self.ref}: {exc}") from None
        return list(items)

    def keys(self) -> list[str]:
        """The keys now live in the stream (a producer resuming skips what it wrote)."""
        st = self.plan
        try:
            return self.ctx.campaign.store(st.store).keys(st.namespace)
        except StoreError as exc:
            raise AppError(f"stream {self.ref}: cannot list its items: {exc}") from None

    def _row(self, i: int, value: Any) -> np.ndarray:
        """Item ``i``'s values as the record holds them (float32), checked."""
        where = f"stream {self.ref}, item {i}"
        try:
            wide = np.asarray(value, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise AppError(f"{where}: values are not numbers ({exc})") from None
        dim = self.plan.dim
        if wide.size != dim:
            raise AppError(f"{where}: {wide.size} values, the stream is {dim}-D; send {dim} "
                           f"numbers (the spec's emits.{self.plan.name}.dim)")
        # Checked as stored: 1e39 is finite here but infinite as float32.
        with np.errstate(over="ignore"):
            row = wide.astype(np.float32)
        if not np.isfinite(row).all():
            raise AppError(f"{where}: values hold NaN or infinity (or beyond float32's "
                           "range, 3.4e38); the manager would reject the item: send finite "
                           "numbers")
        return row

    def _reserve(self, count: int) -> int:
        """The first of ``count`` numbers for ``{n}`` and default ids, never handed out
        before to this job: kept in its state directory (shared by its attempts and every
        process of one, e.g. ``mummi app emit`` run in a loop), else in this object."""
        state = self.ctx.state_dir
        if state is None:
            first, self._n = self._n, self._n + count
            return first
        path = state / ".mummi-app" / f"{self.ref}.next"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AppError(f"stream {self.ref}: cannot keep its item counter in {path} "
                           f"({exc.strerror or exc}); MUMMI_STATE_DIR must be writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # concurrent emitters of one job get apart numbers
            raw = os.pread(fd, 64, 0).strip()
            if raw and not raw.isdigit():
                raise AppError(f"stream {self.ref}: its item counter {path} is damaged "
                               f"({raw[:20]!r}); delete it only if no item was written yet")
            first = max(int(raw or 0), self._n)
            # Fixed width: a rewrite never leaves digits of a longer number behind.
            os.pwrite(fd, f"{first + count:020d}\n".encode(), 0)
        finally:
            os.close(fd)
        self._n = first + count
        return first

    def read(self, key: str) -> Candidate:
        """One item of this stream by its key (a candidate's id)."""
        st = self.plan
        try:
            data = self.ctx.campaign.store(st.store).get(st.namespace, key)
            record = decode(data, st.dim)
        except StoreError as exc:
            raise AppError(f"stream {self.ref}: cannot read {key!r}: {exc}") from None
        except RecordError as exc:
            raise AppError(f"stream {self.ref}: {key!r} is not a usable item: {exc}") from None
        return Candidate(key, np.asarray(record.values, dtype=np.float64), record.tag,
                         dict(record.meta), st.ref)


class Context:
    """One job's view of its campaign; ``context()`` builds it from the job's environment."""

    def __init__(self, plan_path: str | os.PathLike[str], *, workspace: str | None = None,
                 job_type: str | None = None, attempt: int = 1, restart: bool = False,
                 sim: str | None = None, candidate: str | None = None,
                 coupling: str | None = None, setup_dir: str | None = None,
                 state_dir: str | None = None, workdir: str | None = None) -> None:
        self.plan_path = Path(plan_path).resolve()
        try:
            self.plan: Plan = Plan.read(self.plan_path)
        except PlanError as exc:
            raise AppError(str(exc)) from None
        if job_type is not None and job_type not in self.plan.jobs:
            raise AppError(f"job type {job_type!r} is not in the plan; known: "
                           f"{', '.join(sorted(self.plan.jobs))}")
        self.workspace = resolve_workspace(self.plan_path, self.plan, workspace)
        self.campaign = Campaign(self.plan, self.plan_path, self.workspace)
        self.job_type = job_type
        self.attempt = attempt
        self.restart = restart
        self.sim = sim
        self.candidate_id = candidate
        self.coupling = coupling
        self.setup_dir = Path(setup_dir) if setup_dir else None
        self.state_dir = Path(state_dir) if state_dir else None
        self.workdir = Path(workdir) if workdir else Path.cwd()
        self._streams: dict[str, Stream] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **given: Any) -> Context:
        """The context ``mummi run`` gives a job; ``AppError`` naming what is missing.

        ``given`` (``plan_path`` and the constructor's keywords) wins over the environment:
        what a command line passes to a job run by hand.
        """
        raw = environ.get("MUMMI_ATTEMPT") or "1"
        if not raw.isdigit():
            raise AppError(f"MUMMI_ATTEMPT={raw!r} is not a whole number")
        found: dict[str, Any] = {
            "plan_path": environ.get("MUMMI_PLAN") or None,
            "workspace": environ.get("MUMMI_WORKSPACE") or None,
            "job_type": environ.get("MUMMI_JOB_TYPE") or None, "attempt": int(raw),
            "restart": environ.get("MUMMI_RESTART") == "1",
            "sim": environ.get("MUMMI_SIM") or None,
            "candidate": environ.get("MUMMI_CANDIDATE") or None,
            "coupling": environ.get("MUMMI_COUPLING") or None,
            "setup_dir": environ.get("MUMMI_SETUP_DIR") or None,
            "state_dir": environ.get("MUMMI_STATE_DIR") or None}
        found.update({k: v for k, v in given.items() if v is not None})
        plan_path = found.pop("plan_path")
        if not plan_path:
            raise AppError("not run by a campaign: MUMMI_PLAN is not set (the manager sets "
                           "it for every job; to try an application alone, build "
                           "app.Context(plan_path, job_type=..., sim=..., candidate=...))")
        return cls(plan_path, **found)

    # ------------------------------------------------------------------ what it is
    @property
    def role(self) -> str | None:
        """persistent, setup or simulation (None when no job type is known)."""
        return None if self.job_type is None else self.plan.job(self.job_type).role.value

    @property
    def stop(self) -> str:
        """The job type's stop condition (its ``stop:``), as the spec wrote it."""
        return "" if self.job_type is None else self.plan.job(self.job_type).stop

    @property
    def success_file(self) -> str | None:
        """The file the job type's success rule wants in its work directory, written last."""
        return None if self.job_type is None else self.plan.job(self.job_type).success.file

    # ------------------------------------------------------------------ data
    def stream(self, ref: str) -> Stream:
        """A stream of the plan, ``scale.stream``, to emit items to or read them from (the
        same object each time: its counter goes on)."""
        if ref not in self._streams:
            try:
                self._streams[ref] = Stream(self, self.plan.stream(ref))
            except PlanError as exc:
                raise AppError(str(exc)) from None
        return self._streams[ref]

    def candidate(self) -> Candidate:
        """The candidate this setup or simulation works on (its values, tag, meta and id)."""
        if not self.candidate_id:
            raise AppError("this job has no candidate: only setup and simulation jobs do "
                           "(MUMMI_CANDIDATE is set by the manager)")
        return self.stream(self.coupling_plan().source).read(self.candidate_id)

    def target(self, loop: str) -> Target | None:
        """What feedback loop ``loop`` last reported, or None before its first iteration
        (``StoreError`` when its store cannot say)."""
        try:
            fb = self.plan.feedback[loop]
        except KeyError:
            known = ", ".join(sorted(self.plan.feedback)) or "none"
            raise AppError(f"no feedback loop {loop!r} in the plan; known: {known}") from None
        t = fb.target
        store = self.campaign.store(t.store)
        # Only a missing target means "none yet": a store that cannot answer raises.
        if not store.exists(t.namespace, t.key):
            return None
        data = store.get(t.namespace, t.key)
        try:
            record = decode(data)
        except RecordError as exc:
            raise AppError(f"feedback {loop}: the target {t.store}/{t.namespace}/{t.key} is "
                           f"not a record: {exc}") from None
        meta = dict(record.meta)
        return Target(np.asarray(record.values, dtype=np.float64),
                      int(meta.pop("iteration", 0)), int(meta.pop("items", 0)), loop, meta)

    def wait_target(self, loop: str, newer_than: int = 0, *, timeout: float = math.inf,
                    poll: float = 1.0, stop: Stop | None = None) -> Target | None:
        """The target once its iteration is newer than ``newer_than``; None at the timeout
        or when ``stop`` is requested first."""
        deadline = time.monotonic() + timeout
        while True:
            target = self.target(loop)
            if target is not None and target.iteration > newer_than:
                return target
            if (stop is not None and stop.requested) or time.monotonic() >= deadline:
                return None
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))

    def targets_for(self, scale: str | None = None) -> list[str]:
        """The feedback loops that report to ``scale`` (default: this job's scale)."""
        if scale is None:
            if self.job_type is None:
                raise AppError("no job type: name the scale whose feedback loops you want")
            scale = self.plan.job(self.job_type).scale
        return sorted(n for n, f in self.plan.feedback.items() if f.to == scale)

    def close(self) -> None:
        """Release the stores' connections."""
        self.campaign.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def coupling_plan(self) -> CouplingPlan:
        """The coupling this setup or simulation serves: named, found by job type, or the
        only one."""
        if self.coupling:
            try:
                return self.plan.coupling(self.coupling)
            except PlanError as exc:
                raise AppError(f"MUMMI_COUPLING: {exc}") from None
        found = [c for c in self.plan.couplings.values()
                 if self.job_type is None or self.job_type in (c.setup, c.simulation)]
        if len(found) != 1:
            names = ", ".join(sorted(c.name for c in found) or sorted(self.plan.couplings))
            raise AppError(f"cannot tell which coupling this job serves (couplings: {names}): "
                           "set MUMMI_COUPLING (the manager does) or give it as coupling")
        return found[0]


def context() -> Context:
    """The running job's context, from the variables ``mummi run`` sets."""
    return Context.from_env()


class Stop:
    """SIGTERM, noticed: the manager sends it when a campaign ends or stops, or a walltime is
    near, then SIGKILL after the grace period (docs/applications.md). The handler only sets a
    flag, so a store write in progress is never cut; look at ``requested`` between steps."""

    def __init__(self) -> None:
        self.requested = False

    @classmethod
    def install(cls) -> Stop:
        stop = cls()
        signal.signal(signal.SIGTERM, stop._handle)
        return stop

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking within 50 ms of SIGTERM; whether it came."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))
        return self.requested

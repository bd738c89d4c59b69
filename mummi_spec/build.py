"""Schema-shaped data to the frozen model; tolerant, so semantic checks run beside schema errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mummi_spec import model as m
from mummi_spec.sourcemap import JsonPath, SourceMap

T = TypeVar("T")


def _dur(value: Any, default: float | None = None) -> float | None:
    if not isinstance(value, str):
        return default
    try:
        return m.parse_duration(value)
    except ValueError:
        return default


def _items(data: Any, key: str) -> list[tuple[str, dict[str, Any]]]:
    section = data.get(key) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        return []
    return [(k, v) for k, v in section.items() if isinstance(v, dict)]


def _each(pairs: list[tuple[str, dict[str, Any]]], make: Callable[[str, dict[str, Any]], T]
          ) -> tuple[T, ...]:
    # A malformed entry was already reported by the schema; leave it out of the model.
    out = []
    for name, body in pairs:
        try:
            out.append(make(name, body))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return tuple(out)


def _env(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        return ()
    return tuple(sorted((str(k), _scalar(v)) for k, v in raw.items()))


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _split_ref(ref: str) -> tuple[str, str]:
    scale, _, stream = ref.partition(".")
    return scale, stream


def build(data: dict[str, Any], smap: SourceMap, *, file: str, profile: str | None,
          variables: tuple[tuple[str, str, str], ...]) -> m.Spec:
    """Build the model from (mostly) schema-valid data."""
    loc = smap.locate

    def job(scale: str, name: str, b: dict[str, Any], path: JsonPath) -> m.Job:
        r = b.get("resources") or {}
        retry = b.get("retry") or {}
        success = b.get("success") or {}
        expect = b.get("expect") or {}
        return m.Job(
            name=name, scale=scale, role=b["role"], command=b["command"],
            walltime=_dur(b["walltime"], 0.0) or 0.0,
            resources=m.Resources(int(r.get("nodes", 1)), int(r.get("tasks", 1)),
                                  int(r.get("cores_per_task", 1)), int(r.get("gpus", 0))),
            description=str(b.get("description", "")), stop=str(b.get("stop", "")),
            retry_limit=int(retry.get("limit", 2)),
            retry_on=tuple(retry.get("on", ("failed", "timedout", "lost"))),
            success_codes=tuple(success.get("exit_codes", (0,))),
            success_file=success.get("file"),
            duration=_dur(expect.get("duration")), duration_sd=_dur(expect.get("duration_sd")),
            failure_rate=float(expect.get("failure_rate", 0.0)),
            env=_env(b.get("env")), loc=loc((*path, name), key=True))

    def stream(scale: str, name: str, b: dict[str, Any], path: JsonPath) -> m.Stream:
        exp = b.get("expect") or {}
        return m.Stream(
            name=name, scale=scale, kind=b["kind"], dim=int(b["dim"]), store=b["store"],
            namespace=b.get("namespace", name), key=b.get("key", "{id}"),
            tags=tuple(b.get("tags", ())), every=_dur(exp.get("every")),
            count=int(exp.get("count", 1)), loc=loc((*path, name), key=True))

    def scale(name: str, b: dict[str, Any]) -> m.Scale:
        p: JsonPath = ("scales", name)
        jobs = _each(_items(b, "jobs"), lambda n, jb: job(name, n, jb, (*p, "jobs")))
        emits = _each(_items(b, "emits"), lambda n, sb: stream(name, n, sb, (*p, "emits")))
        return m.Scale(name, str(b.get("description", "")), jobs, emits,
                       loc=loc(p, key=True))

    def selector(name: str, b: dict[str, Any]) -> m.Selector:
        idx = b.get("index") or {}
        warm = b.get("warmup") or {}
        queues = tuple(m.Queue(q, float(v["ratio"]), v.get("capacity"))
                       for q, v in (b.get("queues") or {}).items())
        return m.Selector(
            name=name, kind=b["kind"], dim=int(b["dim"]), k=int(b.get("k", 10)),
            index=idx.get("type", "exact"), nlist=int(idx.get("nlist", 100)),
            nprobe=int(idx.get("nprobe", 10)), queues=queues,
            bins=tuple(int(x) for x in b.get("bins", ())),
            bounds=tuple((float(lo), float(hi)) for lo, hi in b.get("bounds", ())),
            novelty=float(b.get("novelty", 0.5)),
            min_candidates=int(warm.get("min_candidates", 0)),
            random_first=int(warm.get("random_first", 0)), seed=int(b.get("seed", 0)),
            loc=loc(("selectors", name), key=True))

    def coupling(name: str, b: dict[str, Any]) -> m.Coupling:
        src_scale, src_stream = _split_ref(b["from"])
        share = b.get("share") or {}
        return m.Coupling(
            name=name, source_scale=src_scale, source_stream=src_stream, to=b["to"],
            selector=b["selector"], simulation=b["simulation"], setup=b.get("setup"),
            ready_buffer=int(b.get("ready_buffer", 0)), max_pending=b.get("max_pending"),
            max_selections_per_iteration=int(b.get("max_selections_per_iteration", 200)),
            share_gpus=float(share.get("gpus", 0.0)), share_cores=float(share.get("cores", 0.0)),
            loc=loc(("couplings", name), key=True))

    def feedback(name: str, b: dict[str, Any]) -> m.Feedback:
        src_scale, src_stream = _split_ref(b["from"])
        t = b["target"]
        return m.Feedback(
            name=name, source_scale=src_scale, source_stream=src_stream, to=b["to"],
            period=_dur(b["period"], 600.0) or 600.0, aggregate=b["aggregate"],
            target_store=t["store"], target_key=t["key"],
            target_namespace=t.get("namespace", name), workers=int(b.get("workers", 1)),
            max_items=int(b.get("max_items", 100000)), loc=loc(("feedback", name), key=True))

    def store(name: str, b: dict[str, Any]) -> m.Store:
        return m.Store(name=name, backend=b["backend"], path=str(b.get("path", name)),
                       host=str(b.get("host", "127.0.0.1")), port=int(b.get("port", 6379)),
                       db=int(b.get("db", 0)), password_env=b.get("password_env"),
                       loc=loc(("stores", name), key=True))

    mach = data.get("machine") or {}
    node = mach.get("node") or {}
    res = mach.get("reserved") or {}
    machine = m.Machine(
        name=str(mach.get("name", "")), nodes=int(mach.get("nodes", 1) or 1),
        walltime=_dur(mach.get("walltime"), 86400.0) or 86400.0,
        cores=int(node.get("cores", 1) or 1), gpus=int(node.get("gpus", 0) or 0),
        memory_gb=node.get("memory_gb"), reserved_manager=int(res.get("manager", 1)),
        reserved_services=int(res.get("services", 0)), loc=loc(("machine",), key=True))
    sch = data.get("scheduler") or {}
    thr = sch.get("throttle") or {}
    scheduler = m.Scheduler(
        type=str(sch.get("type", "local")), queue=sch.get("queue"), bank=sch.get("bank"),
        host=sch.get("host"), qos=sch.get("qos"), reservation=sch.get("reservation"),
        options=_env(sch.get("options")), per_second=thr.get("per_second"),
        per_iteration=int(thr.get("per_iteration", 500)),
        poll=_dur(sch.get("poll"), 5.0) or 5.0, loc=loc(("scheduler",), key=True))
    mgr = data.get("manager") or {}
    manager = m.Manager(
        tick=_dur(mgr.get("tick"), 1.0) or 1.0,
        checkpoint_every=_dur(mgr.get("checkpoint_every"), 60.0) or 60.0,
        stop_after=_dur(mgr.get("stop_after")), max_simulations=mgr.get("max_simulations"))
    name = str(data.get("name", "campaign"))
    return m.Spec(
        name=name, description=str(data.get("description", "")), file=file, profile=profile,
        workspace=str(data.get("workspace", f"./workspace/{name}")), env=_env(data.get("env")),
        variables=variables, machine=machine, scheduler=scheduler,
        stores=_each(_items(data, "stores"), store),
        scales=_each(_items(data, "scales"), scale),
        selectors=_each(_items(data, "selectors"), selector),
        couplings=_each(_items(data, "couplings"), coupling),
        feedback=_each(_items(data, "feedback"), feedback), manager=manager,
        profiles=tuple(data["profiles"]) if isinstance(data.get("profiles"), dict) else ())

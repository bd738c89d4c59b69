"""Schema-shaped data to the frozen model; tolerant, so semantic checks run beside schema errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from mummi_spec import model as m
from mummi_spec.sourcemap import JsonPath, SourceMap
from mummi_spec.units import parse_duration

T = TypeVar("T")


def _dur(value: Any, default: float | None = None) -> float | None:
    if not isinstance(value, str):
        return default
    try:
        return parse_duration(value)
    except ValueError:
        return default


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any, default: int) -> int:
    # Wrong types were reported by the schema; the model just needs a number to carry on.
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _num(value: Any, default: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else default


def _beside(spec_file: str, path: str) -> str:
    """``path`` as written relative to the spec, made relative to where mummi runs."""
    return path if os.path.isabs(path) else os.path.normpath(
        os.path.join(os.path.dirname(spec_file), path))


def _opt_num(value: Any) -> float | None:
    return None if value is None else _num(value, 0.0)


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
        r = _dict(b.get("resources"))
        retry = _dict(b.get("retry"))
        success = _dict(b.get("success"))
        expect = _dict(b.get("expect"))
        return m.Job(
            name=name, scale=scale, role=str(b.get("role", "")),
            command=str(b.get("command", "")), walltime=_dur(b.get("walltime"), 0.0) or 0.0,
            resources=m.Resources(_int(r.get("nodes"), 1), _int(r.get("tasks"), 1),
                                  _int(r.get("cores_per_task"), 1), _int(r.get("gpus"), 0),
                                  _opt_num(r.get("memory_gb"))),
            description=str(b.get("description", "")), stop=str(b.get("stop", "")),
            retry_limit=_int(retry.get("limit"), 2),
            retry_on=tuple(retry.get("on", ("failed", "timedout", "lost"))),
            success_codes=tuple(success.get("exit_codes", (0,))),
            success_file=success.get("file"),
            duration=_dur(expect.get("duration")), duration_sd=_dur(expect.get("duration_sd")),
            failure_rate=_num(expect.get("failure_rate"), 0.0),
            checkpoints=b.get("checkpoints") is True, nested=b.get("nested") is True,
            env=_env(b.get("env")),
            loc=loc((*path, name), key=True))

    def stream(scale: str, name: str, b: dict[str, Any], path: JsonPath) -> m.Stream:
        exp = _dict(b.get("expect"))
        return m.Stream(
            name=name, scale=scale, kind=str(b.get("kind", "")), dim=_int(b.get("dim"), 1),
            store=str(b.get("store", "")), namespace=str(b.get("namespace", name)),
            key=str(b.get("key", "{id}")), tags=tuple(str(x) for x in b.get("tags", ())),
            every=_dur(exp.get("every")),
            count=_int(exp.get("count"), 1), loc=loc((*path, name), key=True))

    def scale(name: str, b: dict[str, Any]) -> m.Scale:
        p: JsonPath = ("scales", name)
        jobs = _each(_items(b, "jobs"), lambda n, jb: job(name, n, jb, (*p, "jobs")))
        emits = _each(_items(b, "emits"), lambda n, sb: stream(name, n, sb, (*p, "emits")))
        return m.Scale(name, str(b.get("description", "")), jobs, emits,
                       loc=loc(p, key=True))

    def selector(name: str, b: dict[str, Any]) -> m.Selector:
        idx = _dict(b.get("index"))
        warm = _dict(b.get("warmup"))
        queues = tuple(m.Queue(q, float(v["ratio"]), v.get("capacity"))
                       for q, v in _dict(b.get("queues")).items())
        return m.Selector(
            name=name, kind=str(b.get("kind", "")), dim=_int(b.get("dim"), 1),
            k=_int(b.get("k"), 10),
            index=idx.get("type", "exact"), nlist=_int(idx.get("nlist"), 100),
            nprobe=_int(idx.get("nprobe"), 10), queues=queues,
            bins=tuple(int(x) for x in b.get("bins", ())),
            bounds=tuple((float(lo), float(hi)) for lo, hi in b.get("bounds", ())),
            novelty=_num(b.get("novelty"), 0.5),
            min_candidates=_int(warm.get("min_candidates"), 0),
            random_first=_int(warm.get("random_first"), 0), seed=_int(b.get("seed"), 0),
            loc=loc(("selectors", name), key=True))

    def coupling(name: str, b: dict[str, Any]) -> m.Coupling:
        # Missing required keys become "" so the schema's message is the only one about them.
        src_scale, src_stream = _split_ref(str(b.get("from", "")))
        share = _dict(b.get("share"))
        return m.Coupling(
            name=name, source_scale=src_scale, source_stream=src_stream, to=str(b.get("to", "")),
            selector=str(b.get("selector", "")), simulation=str(b.get("simulation", "")),
            setup=None if b.get("setup") is None else str(b["setup"]),
            ready_buffer=_int(b.get("ready_buffer"), 0),
            max_pending=_int(b.get("max_pending"), 0) or None,
            max_selections_per_iteration=_int(b.get("max_selections_per_iteration"), 200),
            share_gpus=_num(share.get("gpus"), 0.0), share_cores=_num(share.get("cores"), 0.0),
            loc=loc(("couplings", name), key=True))

    def feedback(name: str, b: dict[str, Any]) -> m.Feedback:
        src_scale, src_stream = _split_ref(str(b.get("from", "")))
        t = _dict(b.get("target"))
        return m.Feedback(
            name=name, source_scale=src_scale, source_stream=src_stream, to=str(b.get("to", "")),
            period=_dur(b.get("period"), 600.0) or 600.0, aggregate=str(b.get("aggregate", "")),
            target_store=str(t.get("store", "")), target_key=str(t.get("key", "")),
            target_namespace=t.get("namespace", name), workers=_int(b.get("workers"), 1),
            max_items=_int(b.get("max_items"), 100000), loc=loc(("feedback", name), key=True))

    def store(name: str, b: dict[str, Any]) -> m.Store:
        return m.Store(name=name, backend=str(b.get("backend", "")), path=str(b.get("path", name)),
                       host=str(b.get("host", "127.0.0.1")), port=_int(b.get("port"), 6379),
                       db=_int(b.get("db"), 0), password_env=b.get("password_env"),
                       retry_for=_dur(b.get("retry_for"), 60.0) or 60.0,
                       loc=loc(("stores", name), key=True))

    mach = _dict(data.get("machine"))
    node = _dict(mach.get("node"))
    res = _dict(mach.get("reserved"))
    machine = m.Machine(
        name=str(mach.get("name", "")), nodes=_int(mach.get("nodes"), 0),
        walltime=_dur(mach.get("walltime"), 86400.0) or 86400.0,
        cores=max(_int(node.get("cores"), 1), 1), gpus=_int(node.get("gpus"), 0),
        memory_gb=_opt_num(node.get("memory_gb")),
        oversubscribe=max(_int(node.get("oversubscribe"), 1), 1),
        reserved_manager=_int(res.get("manager"), 1),
        reserved_services=_int(res.get("services"), 0), loc=loc(("machine",), key=True))
    sch = _dict(data.get("scheduler"))
    thr = _dict(sch.get("throttle"))
    scheduler = m.Scheduler(
        type=str(sch.get("type", "local")), queue=sch.get("queue"), bank=sch.get("bank"),
        host=sch.get("host"), qos=sch.get("qos"), reservation=sch.get("reservation"),
        options=tuple(sorted((str(k), v) for k, v in _dict(sch.get("options")).items()
                             if isinstance(v, (str, int, float)))),
        per_second=_num(thr.get("per_second"), 0.0) or None, burst=_int(thr.get("burst"), 1),
        per_iteration=_int(thr.get("per_iteration"), 500),
        poll=_dur(sch.get("poll"), 5.0) or 5.0,
        startup=_dur(_dict(sch.get("expect")).get("startup")), loc=loc(("scheduler",), key=True))
    mgr = _dict(data.get("manager"))
    manager = m.Manager(
        tick=_dur(mgr.get("tick"), 1.0) or 1.0,
        checkpoint_every=_dur(mgr.get("checkpoint_every"), 60.0) or 60.0,
        stop_after=_dur(mgr.get("stop_after")),
        max_simulations=_int(mgr.get("max_simulations"), 0) or None,
        write_retry_for=_dur(mgr.get("write_retry_for"), 60.0) or 0.0)
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
        profiles=tuple(data["profiles"]) if isinstance(data.get("profiles"), dict) else (),
        pythonpath=tuple(_beside(file, str(p)) for p in data.get("pythonpath") or ()
                         if isinstance(p, str)))

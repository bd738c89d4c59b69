"""Semantic checks beyond the schema: names, references, graph shape, dimensions and fit."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable

from mummi_spec import digraph
from mummi_spec.errors import CycleError, SpecError, SpecWarning, UnknownReferenceError
from mummi_spec.model import Coupling, Spec, Stream
from mummi_spec.plan import NESTED_INSTANCES, adapter_options
from mummi_spec.sourcemap import JsonPath, SourceMap
from mummi_spec.units import TOKENS, format_hms
from mummi_spec.usercode import AGGREGATE_CALL, UserCodeError, import_function, on_path

_TOKEN = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.]*)\)(\[[^\]]*\])?")
# Why a scheduler that cannot run a job in an instance of its own needs none, for the hint.
_UNNESTED = {
    "local": "the local scheduler runs each job as processes of this machine",
    "slurm": "a Slurm job is already an allocation of its own, where $(LAUNCHER) is srun",
    "lsf": "an LSF job is already an allocation of its own, where $(LAUNCHER) is jsrun",
}
# Options that moved out of scheduler.options, and where they went.
_MOVED_OPTIONS = {"nested": "a job type asks for a sub-instance of its own with `nested: true` "
                            "in the job"}


def _unknown(what: str, name: str, known: Iterable[str], path: JsonPath, smap: SourceMap
             ) -> UnknownReferenceError:
    # Callers skip empty names: a missing required key is the schema's to report.
    known = sorted(str(k) for k in known)
    name = str(name)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else (
        f"defined: {', '.join(known)}" if known else "none is defined")
    return UnknownReferenceError(f"unknown {what} '{name}'", smap.locate(path), hint=hint)


def check(spec: Spec, smap: SourceMap) -> list[SpecError]:
    """Every semantic problem (errors and warnings) in ``spec``."""
    out: list[SpecError] = []
    for fn in (_names, _references, _graph, _selectors, _fit, _shares, _commands,
               _scheduler_options, _nested, _aggregates, _idle_data):
        out.extend(fn(spec, smap))
    return out


def _names(spec: Spec, smap: SourceMap) -> list[SpecError]:
    out: list[SpecError] = []
    seen: dict[str, str] = {}
    for job in spec.jobs():
        if job.name in seen:
            out.append(SpecError(
                f"job type '{job.name}' is defined in scale '{job.scale}' and in scale "
                f"'{seen[job.name]}'", job.loc, hint="job type names must be unique across scales"))
        seen.setdefault(job.name, job.scale)
    return out


def _references(spec: Spec, smap: SourceMap) -> list[SpecError]:
    out: list[SpecError] = []
    scales = {s.name: s for s in spec.scales}
    stores = {s.name for s in spec.stores}
    selectors = {s.name for s in spec.selectors}
    streams = {st.ref: st for st in spec.streams()}
    for st in spec.streams():
        if st.store and st.store not in stores:
            out.append(_unknown("store", st.store, stores,
                                ("scales", st.scale, "emits", st.name, "store"), smap))
    for c in spec.couplings:
        p: JsonPath = ("couplings", c.name)
        out.extend(_stream_ref(f"coupling '{c.name}'", f"{c.source_scale}.{c.source_stream}",
                               "candidates", "a coupling selects from", streams, p, smap))
        if c.selector and c.selector not in selectors:
            out.append(_unknown("selector", c.selector, selectors, (*p, "selector"), smap))
        if c.to not in scales:
            if c.to:
                out.append(_unknown("scale", c.to, scales, (*p, "to"), smap))
            continue
        fine_jobs = {j.name: j for j in scales[c.to].jobs}
        for field, role in (("setup", "setup"), ("simulation", "simulation")):
            name = getattr(c, field)
            if not name:
                continue
            if name not in fine_jobs:
                out.append(_unknown(f"job type in scale '{c.to}'", name, fine_jobs,
                                    (*p, field), smap))
            elif fine_jobs[name].role != role:
                out.append(SpecError(
                    f"'{name}' is a {fine_jobs[name].role} job, but coupling '{c.name}' uses it "
                    f"as its {field}", smap.locate((*p, field)),
                    hint=f"set 'role: {role}' on job '{name}', or name a {role} job here"))
    for f in spec.feedback:
        p = ("feedback", f.name)
        out.extend(_stream_ref(f"feedback '{f.name}'", f"{f.source_scale}.{f.source_stream}",
                               "feedback", "feedback aggregates", streams, p, smap))
        if f.to and f.to not in scales:
            out.append(_unknown("scale", f.to, scales, (*p, "to"), smap))
        if f.target_store and f.target_store not in stores:
            out.append(_unknown("store", f.target_store, stores, (*p, "target", "store"), smap))
    used = {n for c in spec.couplings for n in (c.setup, c.simulation) if n}
    for job in spec.jobs():
        if job.role != "persistent" and job.name not in used:
            out.append(SpecWarning(f"{job.role} job '{job.name}' is not used by any coupling",
                                   job.loc, hint="it will never run"))
    return out


def _stream_ref(owner: str, ref: str, kind: str, verb: str, streams: dict[str, Stream],
                path: JsonPath, smap: SourceMap) -> list[SpecError]:
    """Problems with the stream a coupling or feedback loop reads (``from: scale.stream``)."""
    if ref == ".":
        return []  # `from` is missing: the schema says so
    if ref not in streams:
        return [_unknown("stream", ref, streams, (*path, "from"), smap)]
    if streams[ref].kind != kind:
        return [SpecError(f"{owner} reads '{ref}', a {streams[ref].kind} stream",
                          smap.locate((*path, "from")), hint=f"{verb} a '{kind}' stream")]
    return []


def coupling_edges(spec: Spec) -> dict[tuple[str, str], Coupling]:
    """Coupling edges coarse -> fine between declared scales (the first coupling per pair)."""
    names = {s.name for s in spec.scales}
    edges: dict[tuple[str, str], Coupling] = {}
    for c in spec.couplings:
        if c.source_scale in names and c.to in names:
            edges.setdefault((c.source_scale, c.to), c)
    return edges


def _graph(spec: Spec, smap: SourceMap) -> list[SpecError]:
    out: list[SpecError] = []
    edges = coupling_edges(spec)
    succ = digraph.adjacency((s.name for s in spec.scales), edges)
    cycle = digraph.find_cycle(succ)
    if cycle:
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        where = ", ".join(f"'{edges[e].name}' ({edges[e].loc})" for e in cycle)
        out.append(CycleError(f"the couplings form a cycle: {path}", edges[cycle[0]].loc,
                              hint=f"couplings run coarse to fine; break one of {where}"))
        return out
    if any(c.source_scale not in succ or c.to not in succ for c in spec.couplings):
        return out  # an unresolved coupling was reported; reachability would only echo it
    for s in spec.scales:
        dynamic = [j for j in s.jobs if j.role != "persistent"]
        if dynamic and digraph.in_degree(succ, s.name) == 0:
            out.append(SpecError(
                f"scale '{s.name}' has {dynamic[0].role} jobs but no coupling feeds it", s.loc,
                hint="add a coupling with 'to: " + s.name + "' from a coarser scale's candidates"))
        if not dynamic and not succ[s.name] and not digraph.in_degree(succ, s.name):
            out.append(SpecWarning(f"scale '{s.name}' is not coupled to any other scale", s.loc))
    for f in spec.feedback:
        if f.to and f.to == f.source_scale:
            out.append(SpecError(
                f"feedback '{f.name}' goes from scale '{f.to}' to itself",
                smap.locate(("feedback", f.name, "to")),
                hint="feedback runs from a finer scale to the coarser one that feeds it"))
        elif f.to in succ and f.source_scale in succ and \
                not digraph.has_path(succ, f.to, f.source_scale):
            out.append(SpecError(
                f"feedback '{f.name}' goes from '{f.source_scale}' to '{f.to}', but no coupling "
                f"leads from '{f.to}' to '{f.source_scale}'", smap.locate(("feedback", f.name,
                                                                           "to")),
                hint="feedback runs fine -> coarse, against the direction of a coupling"))
    return out


def _selectors(spec: Spec, smap: SourceMap) -> list[SpecError]:
    out: list[SpecError] = []
    streams = {st.ref: st for st in spec.streams()}
    by_name = {s.name: s for s in spec.selectors}
    for sel in spec.selectors:
        p: JsonPath = ("selectors", sel.name)
        own = {"farthest_point": {"k", "index", "queues"}, "binned": {"bins", "bounds", "novelty"},
               "random": set()}
        for kind, keys in own.items():
            if kind == sel.kind:
                continue
            for key in sorted(keys - own.get(sel.kind, set())):
                if smap.has((*p, key)):
                    out.append(SpecError(f"'{key}' applies to {kind} selectors, not {sel.kind}",
                                         smap.locate((*p, key), key=True),
                                         hint=f"remove it, or set 'kind: {kind}'"))
        if sel.kind == "binned":
            if not sel.bins:
                out.append(SpecError(f"binned selector '{sel.name}' needs 'bins'",
                                     sel.loc, hint=f"one bin count per dimension ({sel.dim})"))
            if not sel.bounds:
                out.append(SpecError(f"binned selector '{sel.name}' needs 'bounds'", sel.loc,
                                     hint=f"one [low, high] pair per dimension ({sel.dim})"))
            for key, value in (("bins", sel.bins), ("bounds", sel.bounds)):
                if value and len(value) != sel.dim:
                    out.append(SpecError(
                        f"'{key}' has {len(value)} entries but the selector is {sel.dim}-D",
                        smap.locate((*p, key)), hint=f"give one entry per dimension ({sel.dim})"))
            for i, (lo, hi) in enumerate(sel.bounds):
                if lo >= hi:
                    out.append(SpecError(f"bounds[{i}] is [{lo}, {hi}]: low must be below high",
                                         smap.locate((*p, "bounds", i))))
        if sel.queues:
            total = sum(q.ratio for q in sel.queues)
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                out.append(SpecError(f"queue ratios of '{sel.name}' sum to {total:g}, not 1",
                                     smap.locate((*p, "queues")),
                                     hint="ratios are target fractions of selections"))
    for c in spec.couplings:
        st = streams.get(f"{c.source_scale}.{c.source_stream}")
        found = by_name.get(c.selector)
        if st is None or found is None or st.kind != "candidates":
            continue
        sel = found
        if st.dim != sel.dim:
            out.append(SpecError(
                f"selector '{sel.name}' is {sel.dim}-D but stream '{st.ref}' emits {st.dim}-D "
                "encodings", smap.locate(("couplings", c.name, "selector")),
                hint=f"set 'dim: {st.dim}' on selector '{sel.name}' ({sel.loc})"))
        queues = {q.name for q in sel.queues}
        if len(queues) > 1 and not st.tags:
            out.append(SpecError(
                f"selector '{sel.name}' has {len(queues)} queues but stream '{st.ref}' declares "
                "no tags to route candidates by", st.loc,
                hint=f"add 'tags: [{', '.join(sorted(queues))}]'"))
        for i, tag in enumerate(st.tags):
            if queues and tag not in queues:
                out.append(_unknown(f"queue of selector '{sel.name}' for tag", tag, queues,
                                    ("scales", st.scale, "emits", st.name, "tags", i), smap))
    return out


def _fit(spec: Spec, smap: SourceMap) -> list[SpecError]:
    out: list[SpecError] = []
    mach = spec.machine
    shape = f"a {mach.name or 'machine'} node has {mach.cores} cores and {mach.gpus} GPUs"
    pool = mach.nodes - mach.reserved_manager - mach.reserved_services
    if pool < 1 and mach.nodes >= 1:
        reserved = mach.reserved_manager + mach.reserved_services
        out.append(SpecError(f"{mach.nodes} nodes minus {reserved} reserved leaves none for jobs",
                             smap.locate(("machine", "nodes"))))
    for job in spec.jobs():
        r = job.resources
        p: JsonPath = ("scales", job.scale, "jobs", job.name)
        cores_per_node = math.ceil(r.tasks / r.nodes) * r.cores_per_task
        gpus_per_node = math.ceil(r.gpus / r.nodes)
        if cores_per_node > mach.cores:
            out.append(SpecError(
                f"job '{job.name}' needs {cores_per_node} cores per node", smap.locate((*p,
                                                                                     "resources")),
                hint=f"{shape}; lower tasks or cores_per_task, or spread over more nodes"))
        if gpus_per_node > mach.gpus:
            out.append(SpecError(
                f"job '{job.name}' needs {gpus_per_node} GPUs per node",
                smap.locate((*p, "resources")), hint=f"{shape}"))
        if pool >= 1 and r.nodes > pool:
            out.append(SpecError(f"job '{job.name}' needs {r.nodes} nodes but only {pool} are "
                                 "not reserved", smap.locate((*p, "resources"))))
        if job.walltime > mach.walltime:
            out.append(SpecError(
                f"job '{job.name}' walltime {format_hms(job.walltime)} is longer than the "
                f"allocation ({format_hms(mach.walltime)})", smap.locate((*p, "walltime")),
                hint="shorten it (a job that saves its state can set 'checkpoints: true' and "
                     "continue in the next attempt), or lengthen machine.walltime"))
    return out


def _shares(spec: Spec, smap: SourceMap) -> list[SpecError]:
    out: list[SpecError] = []
    for res in ("gpus", "cores"):
        total = sum(getattr(c, f"share_{res}") for c in spec.couplings)
        if total > 1 + 1e-9:
            first = spec.couplings[0]
            out.append(SpecError(
                f"the couplings' {res} shares sum to {total:g}, more than 1",
                smap.locate(("couplings", first.name, "share", res)),
                hint="shares are fractions of one pool: " + ", ".join(
                    f"{c.name}={getattr(c, f'share_{res}'):g}" for c in spec.couplings)))
    return out


def _commands(spec: Spec, smap: SourceMap) -> list[SpecError]:
    out: list[SpecError] = []
    with_setup = {c.simulation for c in spec.couplings if c.setup}
    for job in spec.jobs():
        p: JsonPath = ("scales", job.scale, "jobs", job.name, "command")
        for m in _TOKEN.finditer(job.command):
            token = m.group(1)
            if token not in TOKENS:
                close = difflib.get_close_matches(token, TOKENS, n=1)
                hint = f"did you mean '$({close[0]})'? " if close else ""
                out.append(SpecError(
                    f"unknown token '$({token})' in the command of job '{job.name}'",
                    smap.locate(p), hint=f"{hint}known tokens: "
                                         + ", ".join(f"$({t})" for t in TOKENS)))
            elif token == "SETUP_DIR" and job.name not in with_setup:
                out.append(SpecError(
                    f"job '{job.name}' uses $(SETUP_DIR) but no coupling runs a setup before it",
                    smap.locate(p)))
            elif token in ("CANDIDATE", "SIM") and job.role == "persistent":
                out.append(SpecError(
                    f"persistent job '{job.name}' uses $({token}), which only spawned jobs have",
                    smap.locate(p)))
    return out


def _scheduler_options(spec: Spec, smap: SourceMap) -> list[SpecError]:
    """Options our own adapters read must be ones they know, of the right type."""
    known = adapter_options(spec.scheduler.type)
    if not known:
        return []  # slurm, lsf: Maestro's batch block takes what it takes
    out: list[SpecError] = []
    for key, value in spec.scheduler.options:
        path: JsonPath = ("scheduler", "options", key)
        want = known.get(key)
        if want is None:
            close = difflib.get_close_matches(key, known, n=1)
            out.append(SpecError(
                f"unknown option '{key}' for the {spec.scheduler.type} scheduler",
                smap.locate(path, key=True),
                hint=(f"{_MOVED_OPTIONS[key]}; " if key in _MOVED_OPTIONS else
                      f"did you mean '{close[0]}'? " if close else "") +
                     f"{spec.scheduler.type} options: {', '.join(sorted(known))}"))
        elif not (isinstance(value, want) and (want is bool or not isinstance(value, bool))):
            out.append(SpecError(
                f"option '{key}' of the {spec.scheduler.type} scheduler must be "
                f"{'an integer' if want is int else 'true or false' if want is bool else 'text'}"
                f", not {value!r}", smap.locate(path)))
    return out


def _nested(spec: Spec, smap: SourceMap) -> list[SpecError]:
    """``nested: true`` asks the scheduler for an instance of the job's own."""
    kind = spec.scheduler.type
    if kind in NESTED_INSTANCES:
        return []
    why = _UNNESTED.get(kind, f"the {kind} scheduler has no instances of its own")
    able = " or ".join(sorted(NESTED_INSTANCES))
    return [SpecError(
        f"job '{job.name}' asks for a nested instance, which the {kind} scheduler cannot give",
        smap.locate(("scales", job.scale, "jobs", job.name, "nested")),
        hint=f"{why}: drop 'nested' (or set it false in the profile for {kind}), "
             f"or use scheduler type {able}")
        for job in spec.jobs() if job.nested]


def _aggregates(spec: Spec, smap: SourceMap) -> list[SpecError]:
    """A ``module:function`` aggregate must import from the spec's pythonpath, and take what
    the feedback loop gives it: found now, not an hour into the run."""
    out: list[SpecError] = []
    paths = [os.path.abspath(p) for p in spec.pythonpath]
    for f in spec.feedback:
        if ":" not in f.aggregate:
            continue
        with on_path(paths):
            try:
                import_function(f.aggregate, 3, AGGREGATE_CALL)
            except UserCodeError as exc:
                where = ", ".join(spec.pythonpath) or "none: add `pythonpath: [dir]`"
                out.append(SpecError(
                    f"feedback '{f.name}': {exc}", smap.locate(("feedback", f.name, "aggregate")),
                    hint=f"the manager imports it from the spec's pythonpath ({where}) and "
                         "from what the Python running mummi finds"))
    return out


def _idle_data(spec: Spec, smap: SourceMap) -> list[SpecError]:
    """A store nothing uses, and a stream no job of its scale can write: legal, but most
    likely a name typed twice or a job left out."""
    out: list[SpecError] = []
    used = {st.store for st in spec.streams()} | {f.target_store for f in spec.feedback}
    for store in spec.stores:
        if store.name not in used:
            out.append(SpecWarning(f"store '{store.name}' is not used by any stream or "
                                   "feedback target", store.loc,
                                   hint="remove it, or name it in a stream's 'store'"))
    writers = {s.name for s in spec.scales for j in s.jobs
               if j.role in ("persistent", "simulation")}
    for st in spec.streams():
        if st.scale not in writers:
            out.append(SpecWarning(
                f"stream '{st.ref}' has no producer: scale '{st.scale}' has no persistent or "
                "simulation job to write it", st.loc,
                hint="add the job that emits it (or ignore this if a program outside the "
                     "campaign writes it, e.g. with `mummi app emit`)"))
    return out

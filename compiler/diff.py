"""Semantic diff of two campaigns: effective settings located in both specs, and their effects.

Both sides go through the front end and the compiler, so what is compared is what would run:
defaults filled in, the profile merged, variables substituted, durations in seconds. Reordered
keys, comments, quoting and spelling (``90s`` or ``1.5m``) are therefore no difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from mummi_spec.compiler.compile import Compiled, compile_loaded
from mummi_spec.errors import SourceLocation, SpecError, SpecErrors
from mummi_spec.frontend import Loaded, load_spec
from mummi_spec.plan import Plan, SelectorPlan, to_data
from mummi_spec.sourcemap import JsonPath

T = TypeVar("T")
U = TypeVar("U")

# Report order; a change belongs to the group named by its path's first key, except job types
# (``scales.<scale>.jobs...``) and the campaign-wide settings, which have no section of their own.
GROUPS = ("campaign", "machine", "scheduler", "stores", "scales", "job types", "couplings",
          "selectors", "feedback")
TOTALS = ("gpu_hours", "node_hours")
_REDIS_ONLY = ("host", "port", "db", "password_env", "retry_for")


@dataclass(frozen=True, slots=True)
class Change:
    """One effective setting that differs: ``kind`` is added, removed or changed."""

    group: str
    kind: str
    path: str
    old: Any
    new: Any
    old_at: SourceLocation | None
    new_at: SourceLocation | None


@dataclass(frozen=True, slots=True)
class Shift:
    """A number of the compiled campaign, before and after (None: absent on that side)."""

    name: str
    old: float | None
    new: float | None


@dataclass(frozen=True, slots=True)
class Side:
    """Which spec and profile one side of the diff is."""

    file: str
    profile: str | None


@dataclass(frozen=True)
class CampaignDiff:
    """Everything ``mummi diff`` reports."""

    old: Side
    new: Side
    changes: tuple[Change, ...]
    concurrency: tuple[Shift, ...]  # job types whose max_concurrent differs
    totals: tuple[Shift, ...]  # TOTALS (per allocation), always both
    artefacts: tuple[tuple[str, str], ...]  # (name, added | removed | changed)
    warnings: tuple[tuple[str, SpecError], ...] = ()  # (added | removed, the warning)
    allocation: Shift = Shift("allocation", None, None)  # seconds, old and new

    @property
    def same(self) -> bool:
        """Whether the two campaigns would run identically."""
        return not self.changes and not self.artefacts

    def to_json(self) -> dict[str, Any]:
        """The stable JSON document of ``mummi diff --json``."""
        def at(loc: SourceLocation | None) -> dict[str, Any] | None:
            return None if loc is None else {"file": loc.file, "line": loc.line,
                                             "column": loc.column}

        def shift(s: Shift) -> dict[str, Any]:
            return {"old": s.old, "new": s.new}

        return {
            "same": self.same,
            "old": {"file": self.old.file, "profile": self.old.profile},
            "new": {"file": self.new.file, "profile": self.new.profile},
            "changes": [{"group": c.group, "kind": c.kind, "path": c.path, "old": c.old,
                         "new": c.new, "old_at": at(c.old_at), "new_at": at(c.new_at)}
                        for c in self.changes],
            "consequences": {
                "max_concurrent": {s.name: shift(s) for s in self.concurrency},
                **{s.name: shift(s) for s in self.totals},
                "allocation_s": shift(self.allocation),
                "artefacts": dict(self.artefacts),
                "warnings": [{"kind": k, "message": w.message, "at": at(w.location)}
                             for k, w in self.warnings],
            },
        }


def _without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def _selector(sel: SelectorPlan) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": sel.kind, "dim": sel.dim, "seed": sel.seed,
                           "warmup": {"min_candidates": sel.min_candidates,
                                      "random_first": sel.random_first}}
    if sel.kind == "farthest_point":
        out |= {"k": sel.k, "index": to_data(sel.index),
                "queues": {q.name: {"ratio": q.ratio, "capacity": q.capacity}
                           for q in sel.queues}}
    elif sel.kind == "binned":
        out |= {"bins": list(sel.bins), "bounds": [list(b) for b in sel.bounds],
                "novelty": sel.novelty}
    return out


def settings(loaded: Loaded | None, plan: Plan) -> dict[str, Any]:
    """The effective settings, shaped like the spec (so paths are where one writes them).

    Built from the plan, whose values have their defaults resolved; what the plan derives
    (concurrency, pools, budgets, caps, journals, feedback weights) is left out here and
    reported as a consequence instead. Without the spec (``loaded`` None: a plan alone, as a
    campaign's workspace keeps it) scales have no description and a coupling's max_pending
    is the resolved one.
    """
    scales: dict[str, Any] = {
        s.name: {"description": s.description, "jobs": {}, "emits": {}}
        for s in loaded.spec.scales} if loaded is not None else {
        name: {"jobs": {}, "emits": {}}
        for name in sorted({j.scale for j in plan.jobs.values()}
                           | {st.scale for st in plan.streams.values()})}
    for name, job in plan.jobs.items():
        scales[job.scale]["jobs"][name] = _without(
            to_data(job), "name", "scale", "coupling", "pool", "max_concurrent", "spawned_by")
    for st in plan.streams.values():
        scales[st.scale]["emits"][st.name] = {
            **_without(to_data(st), "ref", "scale", "name", "every", "count"),
            "expect": {"every": st.every, "count": st.count}}
    written = {c.name: c.max_pending for c in loaded.spec.couplings} if loaded is not None \
        else {n: c.max_pending for n, c in plan.couplings.items()}
    sch = plan.scheduler
    options = to_data(sch.flux) if sch.type == "flux" else \
        to_data(sch.local) if sch.type == "local" else dict(sch.batch)
    m = plan.machine
    return {
        "name": plan.name, "description": plan.description, "profile": plan.profile,
        "workspace": plan.workspace, "env": dict(plan.env),
        "manager": _without(to_data(plan.manager), "allocation"),  # machine.walltime's
        "machine": {"name": m.name, "nodes": m.nodes, "walltime": m.walltime,
                    "node": {"cores": m.cores, "gpus": m.gpus, "memory_gb": m.memory_gb},
                    "reserved": {"manager": m.reserved_manager,
                                 "services": m.reserved_services}},
        "scheduler": {"type": sch.type, "queue": sch.queue, "bank": sch.bank, "host": sch.host,
                      "qos": sch.qos, "reservation": sch.reservation, "options": options,
                      "throttle": {"per_second": sch.per_second, "burst": sch.burst,
                                   "per_iteration": sch.per_iteration},
                      "poll": sch.poll, "expect": {"startup": sch.startup}},
        "stores": {n: _without(to_data(s), "name", "prefix", "journal",
                               *(() if s.backend == "redis" else _REDIS_ONLY))
                   for n, s in plan.stores.items()},
        "scales": scales,
        "selectors": {n: _selector(s) for n, s in plan.selectors.items()},
        "couplings": {n: {**_without(to_data(c), "name", "source", "share_gpus", "share_cores",
                                     "budget", "max_simulations"),
                          "from": c.source, "share": {"gpus": c.share_gpus,
                                                      "cores": c.share_cores},
                          # unset, it follows the buffer and the slots: not a setting
                          "max_pending": written[n]}
                      for n, c in plan.couplings.items()},
        "feedback": {n: {**_without(to_data(f), "name", "source", "weights_from"),
                         "from": f.source} for n, f in plan.feedback.items()},
    }


def locate(loaded: Loaded, path: JsonPath) -> SourceLocation | None:
    """Where ``path`` was written: its key, else its nearest written ancestor's.

    The applied profile's own key wins over the base's, so a profile override points at the
    profile line; a setting nobody wrote points at the section (or spec) that defaulted it.
    The profile name itself is located at the profile's definition (None for the base spec).
    """
    smap = loaded.smap
    prof = loaded.spec.profile
    if path == ("profile",):
        return None if prof is None else smap.keys.get(("profiles", prof))
    for n in range(len(path), 0, -1):
        p = path[:n]
        candidates = [("profiles", prof, *p), p] if prof is not None else [p]
        for q in candidates:
            if q in smap.keys:
                return smap.keys[q]
    return smap.locate(())


def _group(path: JsonPath) -> str:
    if path[0] == "scales" and len(path) > 2 and path[2] == "jobs":
        return "job types"
    return str(path[0]) if path[0] in GROUPS else "campaign"


def _one_side(kind: str, path: JsonPath, value: Any) -> Iterable[tuple[str, JsonPath, Any]]:
    # A new or dropped scale's job types are reported one by one, in their own group.
    if len(path) == 2 and path[0] == "scales":
        yield kind, path, _without(value, "jobs")
        for name in sorted(value["jobs"]):
            yield kind, (*path, "jobs", name), value["jobs"][name]
    else:
        yield kind, path, value


def _walk(old: Any, new: Any, path: JsonPath) -> Iterable[tuple[str, JsonPath, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            p = (*path, key)
            if key not in new:
                yield from ((k, q, v, None) for k, q, v in _one_side("removed", p, old[key]))
            elif key not in old:
                yield from ((k, q, None, v) for k, q, v in _one_side("added", p, new[key]))
            else:
                yield from _walk(old[key], new[key], p)
    elif old != new:
        yield "changed", path, old, new


def changes(old: Loaded | None, old_plan: Plan, new: Loaded, new_plan: Plan
            ) -> tuple[Change, ...]:
    """Every differing setting, by group, then by path; ``old`` None compares the plans'
    settings alone (an old plan without its spec: only the new side is located)."""
    spec = None if old is None else new
    found = [Change(_group(p), kind, ".".join(map(str, p)), a, b,
                    None if kind == "added" or old is None else locate(old, p),
                    None if kind == "removed" else locate(new, p))
             for kind, p, a, b in _walk(settings(old, old_plan), settings(spec, new_plan), ())]
    return tuple(sorted(found, key=lambda c: GROUPS.index(c.group)))


def _comparable(name: str, text: str) -> str:
    # The manifest's spec hash changes with every comment or reformat; that is provenance of
    # the source text, not a difference in the campaign.
    if name != "manifest.json":
        return text
    return json.dumps(_without(json.loads(text), "spec_sha256"), sort_keys=True)


def changed_artefacts(old: dict[str, str], new: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """(name, added | removed | changed) for each compiled file that differs, by name."""
    out = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            out.append((name, "removed"))
        elif name not in old:
            out.append((name, "added"))
        elif _comparable(name, old[name]) != _comparable(name, new[name]):
            out.append((name, "changed"))
    return tuple(out)


def _concurrency(op: Plan, np: Plan) -> tuple[Shift, ...]:
    oj = {n: j.max_concurrent for n, j in op.jobs.items()}
    nj = {n: j.max_concurrent for n, j in np.jobs.items()}
    return tuple(Shift(n, oj.get(n), nj.get(n)) for n in sorted(oj.keys() | nj.keys())
                 if oj.get(n) != nj.get(n))


def _totals(op: Plan, np: Plan) -> tuple[Shift, ...]:
    return tuple(Shift(t, getattr(op.pools, t), getattr(np.pools, t)) for t in TOTALS)


def diff_compiled(old: Loaded, old_build: Compiled, new: Loaded, new_build: Compiled
                  ) -> CampaignDiff:
    """The diff of two loaded and compiled campaigns (pure)."""
    op, np = old_build.plan, new_build.plan
    before = {w.message for w in old_build.warnings}
    after = {w.message for w in new_build.warnings}
    warnings = tuple([("removed", w) for w in old_build.warnings if w.message not in after]
                     + [("added", w) for w in new_build.warnings if w.message not in before])
    return CampaignDiff(Side(old.spec.file, old.spec.profile),
                        Side(new.spec.file, new.spec.profile),
                        changes(old, op, new, np), _concurrency(op, np), _totals(op, np),
                        changed_artefacts(old_build.files, new_build.files), warnings,
                        Shift("allocation", op.manager.allocation, np.manager.allocation))


def diff_plan(old: Side, old_plan: Plan, old_text: str, new: Loaded, new_build: Compiled
              ) -> CampaignDiff:
    """A compiled campaign against a plan alone (a running campaign's, ``old_text`` its
    plan.json): the settings, located in the new spec only, and the plan's consequences."""
    op, np = old_plan, new_build.plan
    artefacts = changed_artefacts({"plan.json": old_text},
                                  {"plan.json": new_build.files["plan.json"]})
    return CampaignDiff(old, Side(new.spec.file, new.spec.profile),
                        changes(None, op, new, np), _concurrency(op, np), _totals(op, np),
                        artefacts, (), Shift("allocation", op.manager.allocation,
                                             np.manager.allocation))


def both(fn: Callable[[T], U], items: tuple[T, T]) -> tuple[U, U]:
    """``fn`` on each side; the errors of both sides at once when either fails."""
    errors: list[SpecError] = []
    out: list[U] = []
    for item in items:
        try:
            out.append(fn(item))
        except SpecErrors as err:
            errors.extend(err.errors)
    if errors:
        raise SpecErrors({str(e): e for e in errors}.values())  # a file on both sides: once
    return out[0], out[1]


def diff_all(old: str | Path, new: str | Path) -> tuple[CampaignDiff, dict[str, CampaignDiff],
                                                        dict[str, str]]:
    """The base specs' diff (what runs in production), then each profile both specs define;
    and the profiles only one of them defines (name -> "old" or "new")."""
    from mummi_spec import profiles
    from mummi_spec.frontend import NO_PROFILE
    from mummi_spec.loader import load_file

    names = both(lambda path: profiles.names(load_file(path)[0]), (old, new))
    base = diff_files(old, new, NO_PROFILE, NO_PROFILE)
    shared = [n for n in names[0] if n in names[1]]
    each = {n: diff_files(old, new, n, n) for n in sorted(shared)}
    alone = {n: "old" for n in names[0] if n not in names[1]} | \
        {n: "new" for n in names[1] if n not in names[0]}
    return base, each, dict(sorted(alone.items()))


def diff_files(old: str | Path, new: str | Path, old_profile: str | None = None,
               new_profile: str | None = None) -> CampaignDiff:
    """Load and compile two specs (nothing is written) and diff them.

    A profile of None means the spec's ``default_profile``; ``NO_PROFILE`` the base spec.
    """
    before, after = both(lambda side: load_spec(side[0], profile=side[1]),
                         ((old, old_profile), (new, new_profile)))
    # Artefacts name the spec file they came from: build the new side under the old name, so
    # that only the campaign, not where it is written, can make them differ.
    renamed = replace(after, spec=replace(after.spec, file=before.spec.file))
    builds = both(compile_loaded, (before, renamed))
    return diff_compiled(before, builds[0], after, builds[1])

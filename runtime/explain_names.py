"""`mummi explain` of a name `mummi status` shows: a stream, coupling, job type, loop, selector,
or the campaign itself: what the record holds about it, counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mummi_spec.plan import to_data
from mummi_spec.runtime.history import History

LISTED = 10  # failures, rejections and iterations listed by name; the ledger has every one


@dataclass(frozen=True)
class Overview:
    """What the record says about one name, as ordered facts (a list value: one per line)."""

    kind: str
    name: str
    facts: dict[str, Any]


def overviews(h: History, name: str) -> list[Overview]:
    """Every kind of name ``name`` is in the campaign's plan, explained."""
    plan = h.plan
    out = []
    for table, kind, fn in ((None, "campaign", _campaign), (plan.streams, "stream", _stream),
                            (plan.couplings, "coupling", _coupling),
                            (plan.jobs, "job type", _job_type),
                            (plan.feedback, "feedback loop", _loop),
                            (plan.selectors, "selector", _selector)):
        if (table is None and name == plan.name) or (table is not None and name in table):
            out.append(Overview(kind, name, fn(h, name)))
    return out


def _counts(h: History, sql: str, *args: Any) -> dict[str, int]:
    return {str(k): int(n) for k, n in h.rows(sql, args)}


def _span(h: History, sql: str, *args: Any) -> str:
    first, last = h.rows(sql, args)[0]
    if first is None:
        return "-"
    return f"+{first - h.started:.1f} s to +{last - h.started:.1f} s"


def _campaign(h: History, name: str) -> dict[str, Any]:
    runs = [f"run {r.run} at +{r.t - h.started:.1f} s"
            + (f" after a {'crash' if r.previous == 'running' else r.previous} run"
               if r.previous else "")
            + (f"; selector(s) {', '.join(r.rebuilt)} rebuilt" if r.rebuilt else "")
            for r in h.runs()]
    return {"outcome": h.meta("outcome"), "profile": h.plan.profile, "runs": runs,
            "candidates arrived": h.rows("SELECT COUNT(*) FROM arrivals")[0][0],
            "select calls": h.rows("SELECT COUNT(*) FROM calls WHERE kind = 'select'")[0][0],
            "sims": _counts(h, "SELECT state, COUNT(*) FROM sims GROUP BY state ORDER BY state"),
            "jobs": _counts(h, "SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")}


def _stream(h: History, name: str) -> dict[str, Any]:
    s = h.plan.streams[name]
    facts: dict[str, Any] = {"kind": s.kind, "dim": s.dim,
                             "store": f"{s.store}:{s.namespace}/{s.key}"}
    if s.kind == "candidates":
        facts |= {
            "arrived": h.rows("SELECT COUNT(*) FROM arrivals a JOIN batches b ON "
                              "a.batch = b.batch WHERE b.stream = ?", (name,))[0][0],
            "batches": h.rows("SELECT COUNT(*) FROM batches WHERE stream = ?", (name,))[0][0],
            "ingest passes with items": h.rows("SELECT COUNT(DISTINCT pass) FROM batches "
                                               "WHERE stream = ?", (name,))[0][0],
            "arrivals": _span(h, "SELECT MIN(t), MAX(t) FROM batches WHERE stream = ?", name),
            "couplings": sorted(c for c, cp in h.plan.couplings.items() if cp.source == name)}
    else:
        facts["consumed by"] = [f"{loop}: {n} items" for loop, n in h.rows(
            "SELECT loop, COUNT(*) FROM consumed GROUP BY loop ORDER BY loop")
            if loop in h.plan.feedback and h.plan.feedback[loop].source == name]
    rejected = h.rows("SELECT key, reason FROM rejected WHERE stream = ? ORDER BY key",
                      (name,))
    facts["rejected"] = len(rejected)
    facts["rejected items"] = [f"{k}: {why}" for k, why in rejected[:LISTED]]
    return facts


def _coupling(h: History, name: str) -> dict[str, Any]:
    c = h.plan.couplings[name]
    return {"from": c.source, "selector": c.selector, "setup": c.setup or "-",
            "simulation": c.simulation,
            "select calls": h.rows("SELECT COUNT(*) FROM calls WHERE coupling = ?",
                                   (name,))[0][0],
            "selections": _span(h, "SELECT MIN(selected_at), MAX(selected_at) FROM sims "
                                   "WHERE coupling = ?", name),
            "sims": _counts(h, "SELECT state, COUNT(*) FROM sims WHERE coupling = ? "
                               "GROUP BY state ORDER BY state", name)}


def _job_type(h: History, name: str) -> dict[str, Any]:
    job = h.plan.jobs[name]
    failed = h.rows("SELECT name, state, exit_code, reason FROM jobs WHERE job_type = ? AND "
                    "state NOT IN ('completed', 'queued', 'running', 'submitting') "
                    "ORDER BY rowid", (name,))
    return {"role": job.role.value, "scale": job.scale,
            "attempts": _counts(h, "SELECT state, COUNT(*) FROM jobs WHERE job_type = ? "
                                   "GROUP BY state ORDER BY state", name),
            "not completed": [f"{n}: {st}" + (f" exit {x}" if x is not None else "")
                              + (f": {why}" if why else "")
                              for n, st, x, why in failed[:LISTED]]}


def _loop(h: History, name: str) -> dict[str, Any]:
    f = h.plan.feedback[name]
    iterations = h.rows("SELECT c.iteration, COUNT(*), (SELECT COUNT(*) FROM fed f WHERE "
                        "f.loop = c.loop AND f.iteration = c.iteration) FROM consumed c WHERE "
                        "c.loop = ? GROUP BY c.iteration ORDER BY c.iteration", (name,))
    t = f.target
    return {"from": f.source, "to": f.to, "aggregate": f.aggregate,
            "target": f"{t.store}:{t.namespace}/{t.key}",
            "iterations": len(iterations),
            "items": sum(n for _, n, _ in iterations),
            "per iteration": [f"iteration {i}: {n} items from {s} sims"
                              for i, n, s in iterations[-LISTED:]]}


def _selector(h: History, name: str) -> dict[str, Any]:
    settings = {k: v for k, v in to_data(h.plan.selectors[name]).items() if k != "name"}
    return {"settings": settings,
            "calls": _counts(h, "SELECT kind, COUNT(*) FROM calls WHERE selector = ? "
                                "GROUP BY kind ORDER BY kind", name),
            "picks per queue": _counts(h, "SELECT p.queue, COUNT(*) FROM picks p JOIN calls "
                                          "c ON c.call = p.call WHERE c.selector = ? "
                                          "GROUP BY p.queue ORDER BY p.queue", name)}

"""`mummi explain` shown: the chain as text (times from the campaign's start), or JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from mummi_spec.runtime.explain import Arrival, Attempt, CandidateChain, SimChain
from mummi_spec.runtime.explain_find import Found, ItemFound, JobFound
from mummi_spec.runtime.explain_names import Overview

_W = 12  # label column


def _t(t: float | None) -> str:
    return "-" if t is None else f"+{t:.2f} s"


def _arrival(a: Arrival) -> str:
    tag = f"tag {a.tag}" if a.tag is not None else "no tag"
    return (f"{'arrived':<{_W}}{_t(a.t)} on stream {a.stream}: ingest pass {a.ingest_pass}, batch "
            f"{a.batch}, item {a.position} of {a.of}, {tag}")


def _attempt(a: Attempt) -> list[str]:
    head = f"{a.name}  {a.state}"
    if a.exit_code is not None:
        head += f", exit {a.exit_code}"
    if a.reason:
        head += f": {a.reason}"
    return [head, f"  scheduler id {a.sched_id or '-'}; submitted {_t(a.submitted)}, started "
                  f"{_t(a.started)}, ended {_t(a.ended)}", f"  directory {a.directory}"]


def _sim(c: SimChain, arrivals: bool = True) -> list[str]:
    end = f" at {_t(c.ended)}" if c.ended is not None else ""
    out = [f"sim {c.sim} (coupling {c.coupling}): {c.state}{end}"
           + (f": {c.reason}" if c.reason else ""),
           f"  {'candidate':<{_W}}{c.candidate}"]
    if arrivals:
        out += [f"  {_arrival(a)}" for a in c.arrivals]
    s = c.selection
    if s is None:
        out.append(f"  {'selected':<{_W}}{_t(c.selected)} (no select call recorded)")
    else:
        score = f", score {s.score:.4g}" if s.score is not None else ", not by score"
        out += [f"  {'selected':<{_W}}{_t(s.t)} by selector {s.selector}: rank {s.rank} in "
                f"queue {s.queue}{score}",
                f"  {'':<{_W}}select call {s.call}: asked {s.asked}, returned {s.returned}, "
                f"after batch {s.after_batch}",
                f"  {'same call':<{_W}}" + (", ".join(
                    f"{m.candidate} (rank {m.rank}, {m.sim or 'selected before'})"
                    for m in s.mates) or "nothing else")]
    out.append(f"  {'attempts':<{_W}}none" if not c.attempts else "  attempts")
    out += [f"    {line}" for a in c.attempts for line in _attempt(a)]
    out.append(f"  {'feedback':<{_W}}no item consumed" if not c.feedback else "  feedback")
    for f in c.feedback:
        out += [f"    {f.loop} iteration {f.iteration} consumed {len(f.items)} item(s) and wrote "
                f"target {f.target} iteration {f.iteration}:", f"      {', '.join(f.items)}"]
    return out


def _candidate(c: CandidateChain) -> list[str]:
    out = [f"candidate {c.candidate}"]
    out += [f"  {_arrival(a)}" for a in c.arrivals]
    out += [f"  {'rejected':<{_W}}on stream {s}: {why}" for s, why in c.rejected]
    if not c.sims:
        out.append(f"  {'selected':<{_W}}never" if c.arrivals else "")
    for sim in c.sims:
        out += [f"  {line}" for line in _sim(sim, arrivals=False)]
    return [line for line in out if line]


def _job(j: JobFound) -> list[str]:
    a = j.attempt
    whose = f"of sim {j.chain.sim}" if j.chain is not None else "(persistent)"
    via = f" (found by {j.via})" if j.via else ""
    out = [f"job {a.name}{via}: {a.job_type} attempt {a.attempt} {whose}"]
    out += [f"  {line}" for line in _attempt(a)]
    if j.chain is not None:
        out += [f"  {line}" for line in _sim(j.chain)]
    return out


def _item(i: ItemFound) -> list[str]:
    out = [f"feedback item {i.key}"]
    for loop, iteration, sim, target in i.consumed:
        out.append(f"  written by {f'sim {sim}' if sim else 'an unnamed writer'}; consumed by "
                   f"loop {loop} iteration {iteration}, which wrote target {target} "
                   f"iteration {iteration}")
    return out


def _overview(o: Overview) -> list[str]:
    out = [f"{o.kind} {o.name}"]
    for key, value in o.facts.items():
        if isinstance(value, list):
            out.append(f"  {key}:" + ("" if value else " none"))
            out += [f"    {v}" for v in value]
        elif isinstance(value, dict):
            out.append(f"  {key}: " + (", ".join(f"{k} {_scalar(v)}" for k, v in value.items())
                                       or "none"))
        else:
            out.append(f"  {key}: {value}")
    return out


def _scalar(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v)


def to_text(found: list[Found]) -> str:
    """Each thing the id names, one block each."""
    blocks = []
    for f in found:
        if isinstance(f, JobFound):
            blocks.append(_job(f))
        elif isinstance(f, SimChain):
            blocks.append(_sim(f))
        elif isinstance(f, CandidateChain):
            blocks.append(_candidate(f))
        elif isinstance(f, ItemFound):
            blocks.append(_item(f))
        else:
            blocks.append(_overview(f))
    return "\n\n".join("\n".join(b) for b in blocks) + "\n"


_KIND = {JobFound: "job", SimChain: "sim", CandidateChain: "candidate",
         ItemFound: "feedback item"}


def to_data(ident: str, found: list[Found]) -> dict[str, Any]:
    """The JSON of ``mummi explain --json``: each thing found, with its kind."""
    return {"id": ident, "found": [
        {"kind": f.kind if isinstance(f, Overview) else _KIND[type(f)],
         **dataclasses.asdict(f)} for f in found]}

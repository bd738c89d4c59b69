"""The status file the manager writes and `mummi run` and `mummi status` read, and its rendering."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from mummi_spec.errors import UsageError
from mummi_spec.runtime.states import CampaignState

STATUS_FILE = "status.json"


def write_status(workspace: Path, status: dict[str, Any]) -> None:
    """Replace the status file atomically, so a reader never sees half of it."""
    path = Path(workspace) / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_status(workspace: Path) -> dict[str, Any] | None:
    """The workspace's status, None if it has none; a ``UsageError`` if the file is not one
    the manager wrote (it is replaced whole, so a reader never sees half of one)."""
    path = Path(workspace) / STATUS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        status = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _damaged(path, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                       ) from None
    problem = _misshapen(status)
    if problem:
        raise _damaged(path, problem)
    return cast("dict[str, Any]", status)


def _damaged(path: Path, problem: str) -> UsageError:
    return UsageError(f"{path}: not a status the manager wrote ({problem}); delete it: the "
                      "manager writes it afresh while the campaign runs (`mummi run`)")


def _num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _text(v: object) -> bool:
    return isinstance(v, str)


def _map(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: isinstance(v, dict) and all(check(x) for x in v.values())


def _record(**fields: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: isinstance(v, dict) and all(k in v and c(v[k]) for k, c in fields.items())


def _pairs(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 and
                                       all(map(_text, p)) for p in v)


# What each key of status.json holds (Manager.snapshot writes them), as the readers use it.
_SHAPE: dict[str, Callable[[object], bool]] = {
    "campaign": _text, "elapsed": _num, "why": _text,
    "allocation_ended": lambda v: isinstance(v, bool),
    "candidates": _map(_record(ingested=_num, rejected=_num, examples=_pairs)),
    "selected": _map(_num), "sims": _map(_num), "jobs": _map(_map(_num)),
    "feedback": _map(_record(iteration=_num, items=_num)),
    "busy": _record(gpus=_num, cores=_num), "pool": _record(gpus=_num, cores=_num),
    "unrunnable": _map(_text), "refused": _record(count=_num, last=_text),
    "writes": _record(retried=_num, last=_text), "lost": _map(_text),
}


def _misshapen(status: object) -> str | None:
    """What is wrong with a parsed status document, or None."""
    if not isinstance(status, dict):
        return f"a JSON {type(status).__name__}, not an object"
    states = [s.value for s in CampaignState]
    if status.get("state") not in states:
        return f"'state' is {json.dumps(status.get('state'))}, not one of {', '.join(states)}"
    for key, fits in _SHAPE.items():
        if key in status and not fits(status[key]):
            return f"'{key}' is {json.dumps(status[key])[:60]}, not what the manager writes there"
    return None


def _jobs_total(status: dict[str, Any], *states: str) -> int:
    return sum(c.get(s, 0) for c in status.get("jobs", {}).values() for s in states)


def _busy(busy: dict[str, Any], pool: dict[str, Any]) -> str:
    """Busy GPUs of the pool, or busy cores where the campaign has no GPUs."""
    if pool.get("gpus", 0):
        return f"GPUs {busy.get('gpus', 0)}/{pool['gpus']}"
    return f"cores {busy.get('cores', 0)}/{pool.get('cores', 0):g}"


def events(status: dict[str, Any], told: set[str]) -> list[str]:
    """What the console says once, beside the progress line: candidates rejected (the first
    few with their reason, then the count) and a scheduler refusing (its reason, each time it
    changes). ``told`` remembers what was said."""
    out = []
    for stream, v in sorted(status.get("candidates", {}).items()):
        for key, why in v.get("examples", []):
            news = f"rejected {stream} item {key!r}: {why}"
            if news not in told:
                told.add(news)
                out.append(news)
        if v.get("outside") and f"outside:{stream}" not in told:
            told.add(f"outside:{stream}")  # once per stream: the count grows, the news not
            out.append(f"warning: {v['outside']}")
        count = v.get("rejected", 0)
        # The count once it passes 10, 100, 1000...: news, not a line every second.
        step = 10 ** (len(str(count)) - 1) if count >= 10 else 0
        if step and f"{stream}#{step}" not in told:
            told.add(f"{stream}#{step}")
            out.append(f"rejected {count} {stream} items so far (every reason is in the "
                       "ledger's rejected table)")
    refusal = status.get("refused", {}).get("last", "")
    if refusal and f"refused:{refusal}" not in told:
        told.add(f"refused:{refusal}")
        out.append(f"the scheduler refuses submissions: {refusal} (backing off, retrying)")
    for what, note in sorted(status.get("lost", {}).items()):
        if f"lost:{note}" not in told:
            told.add(f"lost:{note}")
            out.append(f"lost: {what}: {note}")
    writes = status.get("writes", {})
    if writes.get("last") and f"writes:{writes['last']}" not in told:
        told.add(f"writes:{writes['last']}")
        out.append(f"the workspace refused a write: {writes['last']} ({writes['retried']} "
                   "writes retried with back-off so far, up to manager.write_retry_for each)")
    return out


def progress_line(status: dict[str, Any]) -> str:
    """One line for a live display."""
    cands = sum(v["ingested"] for v in status.get("candidates", {}).values())
    sel = sum(status.get("selected", {}).values())
    sims = status.get("sims", {})
    fb = sum(v["iteration"] for v in status.get("feedback", {}).values())
    busy, pool = status.get("busy", {}), status.get("pool", {})
    return (f"[{status.get('elapsed', 0):7.1f}s] candidates {cands}  selected {sel}  "
            f"jobs q{_jobs_total(status, 'queued', 'submitting')} "
            f"r{_jobs_total(status, 'running')} "
            f"done {_jobs_total(status, 'completed')} "
            f"fail {_jobs_total(status, 'failed', 'timedout')}"
            f"  sims done {sims.get('done', 0)} failed {sims.get('failed', 0)}"
            f"  feedback {fb}  {_busy(busy, pool)}")


def render(status: dict[str, Any]) -> str:
    """The full table for ``mummi status`` and the end of ``mummi run``."""
    out = [f"campaign {status.get('campaign')}: {status.get('state')} after "
           f"{status.get('elapsed', 0):.1f} s"]
    if status.get("why"):
        out.append(f"ended because {status['why']}")
    out.append("")
    out.append(f"{'stream':<24} {'ingested':>9} {'rejected':>9}")
    for name, v in sorted(status.get("candidates", {}).items()):
        out.append(f"{name:<24} {v['ingested']:>9} {v['rejected']:>9}")
    out += [f"warning: {v['outside']}" for _, v in sorted(status.get("candidates", {}).items())
            if v.get("outside")]
    out.append("")
    out.append(f"{'coupling':<24} {'selected':>9}")
    for name, n in sorted(status.get("selected", {}).items()):
        out.append(f"{name:<24} {n:>9}")
    states = ["queued", "running", "completed", "failed", "timedout", "cancelled"]
    out.append("")
    out.append(f"{'job type':<16}" + "".join(f"{s:>11}" for s in states))
    for name, c in sorted(status.get("jobs", {}).items()):
        queued = c.get("queued", 0) + c.get("submitting", 0)
        row = [queued] + [c.get(s, 0) for s in states[1:]]
        out.append(f"{name:<16}" + "".join(f"{v:>11}" for v in row))
    sims = status.get("sims", {})
    out.append("")
    out.append("simulations: " + ", ".join(f"{k} {v}" for k, v in sorted(sims.items())))
    for name, v in sorted(status.get("feedback", {}).items()):
        out.append(f"feedback {name}: {v['iteration']} iterations, {v['items']} items consumed")
    for job_type, why in sorted(status.get("unrunnable", {}).items()):
        out.append(f"job type {job_type} cannot run: {why}; its couplings stopped, and "
                   "`mummi run` again resumes them once the program is there")
    for what, note in sorted(status.get("lost", {}).items()):
        out.append(f"lost: {what}: {note}")
    writes = status.get("writes", {})
    if writes.get("retried"):
        out.append(f"workspace writes retried: {writes['retried']} (the last: "
                   f"{writes['last']})")
    busy, pool = status.get("busy", {}), status.get("pool", {})
    out.append(f"busy now: {busy.get('gpus', 0)}/{pool.get('gpus', 0)} GPUs, "
               f"{busy.get('cores', 0)}/{pool.get('cores', 0):g} cores")
    return "\n".join(out) + "\n"

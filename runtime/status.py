"""The status file the manager writes and `mummi run` and `mummi status` read, and its rendering."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"


def write_status(workspace: Path, status: dict[str, Any]) -> None:
    """Replace the status file atomically, so a reader never sees half of it."""
    path = Path(workspace) / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_status(workspace: Path) -> dict[str, Any] | None:
    try:
        status: dict[str, Any] = json.loads((Path(workspace) / STATUS_FILE).read_text(
            encoding="utf-8"))
        return status
    except (OSError, ValueError):
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
    writes = status.get("writes", {})
    if writes.get("retried"):
        out.append(f"workspace writes retried: {writes['retried']} (the last: "
                   f"{writes['last']})")
    busy, pool = status.get("busy", {}), status.get("pool", {})
    out.append(f"busy now: {busy.get('gpus', 0)}/{pool.get('gpus', 0)} GPUs, "
               f"{busy.get('cores', 0)}/{pool.get('cores', 0):g} cores")
    return "\n".join(out) + "\n"

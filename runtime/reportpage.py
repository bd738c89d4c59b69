"""The campaign report page, report.html: one self-contained file gathered from the workspace."""

from __future__ import annotations

import base64
import functools
import io
import itertools
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mummi_spec import __version__
from mummi_spec.errors import MummiError, SelectorError
from mummi_spec.plan import LEDGER_FILE
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import CONSUMED_SUFFIX
from mummi_spec.runtime.figures import TargetHistory, plot_feedback, plot_selections, plot_timeline
from mummi_spec.runtime.ledgerview import Attempt, LedgerView, Selection
from mummi_spec.runtime.records import RecordError, decode
from mummi_spec.runtime.registry import SELECTORS
from mummi_spec.runtime.report import (
    Covered,
    Out,
    plot_coverage,
    plot_occupancy,
    read_points,
    sample_stream,
)
from mummi_spec.runtime.states import LIVE_ATTEMPTS, AttemptState, SimState
from mummi_spec.runtime.status import read_status, render

REPORT = "report.html"
LISTED = 200  # rows of each failure table; the ledger keeps every one
FEEDBACK_READ = 200_000  # consumed items read back to redraw a target's history, at most
Streams = Mapping[str, Covered]


def coverage_samples(campaign: Campaign, selections: Sequence[Selection]) -> dict[str, Covered]:
    """Per candidate stream that feeds a coupling: a sample of its candidates and the ones
    its couplings selected, read back from the store, and how well these cover those."""
    out = {}
    for stream in sorted({c.source for c in campaign.plan.couplings.values()}):
        feeds = {n for n, c in campaign.plan.couplings.items() if c.source == stream}
        cands, sel = sample_stream(campaign, stream,
                                   [s.candidate for s in selections if s.coupling in feeds])
        if len(cands):
            out[stream] = Covered.of(cands, sel)
    return out


def coverage_lines(streams: Streams) -> list[str]:
    """One line per stream for summary.txt: how well the selections cover the candidates."""
    return [f"coverage {name}: covering radius {c.radius:.3f}, mean distance to nearest "
            f"selected {c.mean:.3f}, over {len(c.candidates)} candidates"
            for name, c in sorted(streams.items())]


def write_report(campaign: Campaign, out: Path | None = None,
                 streams: Streams | None = None) -> Path:
    """Write the report page (default ``<workspace>/report.html``) atomically; returns it."""
    path = Path(out) if out is not None else campaign.workspace / REPORT
    text = render_page(gather(campaign, streams))
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


@functools.cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("mummi_spec.templates", "report"),
                             undefined=jinja2.StrictUndefined, autoescape=True,
                             keep_trailing_newline=True)
    return env.get_template("report.html.j2")


def render_page(context: Mapping[str, Any]) -> str:
    """The page's HTML for what ``gather`` returned."""
    return str(_template().render(**context))


def _png(draw: Callable[[Out], None]) -> str:
    """A figure as a data URI."""
    buf = io.BytesIO()
    draw(buf)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.2f}" if seconds < 36000 else f"{seconds / 3600:,.0f}"


def gather(campaign: Campaign, streams: Streams | None = None) -> dict[str, Any]:
    """Everything the page shows, read from the workspace (ledger, status.json, checkpoints,
    stores) in one ledger snapshot."""
    ws = campaign.workspace
    plan = campaign.plan
    status = read_status(ws) or {}
    with LedgerView(ws / LEDGER_FILE) as view, view.snapshot():
        sels = view.selections()
        attempts = view.attempts()
        occupancy = view.occupancy()
        pipelines = view.pipelines()
        rejected = view.rejected()
        consumed = {n: view.consumed(n) for n in plan.feedback}
        fb_state = view.feedback()
    times = [t for a in attempts for t in (a.submitted, a.ended) if t is not None]
    now = float(status.get("elapsed") or max(times + [s.selected for s in sels] + [0.0]))
    if streams is None:
        streams = coverage_samples(campaign, sels)
    return {
        "name": plan.name, "description": plan.description, "profile": plan.profile,
        "state": status.get("state", "unknown (no status.json yet)"),
        "elapsed": f"{now:,.1f} s", "why": status.get("why", ""),
        "version": __version__,
        "cards": _cards(status, sels, attempts, occupancy, plan.pools.gpus_held),
        "summary": render(status) if status else "",
        "occupancy": _occupancy(occupancy, plan.pools.gpus_held, plan.pools.cores_held),
        "timeline": {"png": _png(lambda o: plot_timeline(attempts, now, o)),
                     "rows": _job_rows(attempts)},
        "coverage": _coverage(streams),
        "feedback": _feedback(campaign, consumed, fb_state),
        "failures": _failures(ws, sels, attempts, status, rejected),
        "selections": _selections(campaign, sels, pipelines, now),
    }


def _cards(status: Mapping[str, Any], sels: Sequence[Selection], attempts: Sequence[Attempt],
           occupancy: Sequence[tuple[float, int, int, int, int]], gpus: int
           ) -> list[tuple[str, str]]:
    """The headline numbers."""
    cands = status.get("candidates", {})
    states = Counter(s.state for s in sels)
    flowing = len(sels) - states[SimState.DONE] - states[SimState.FAILED]
    gpu_s = sum(a[1] * (b[0] - a[0]) for a, b in itertools.pairwise(occupancy))
    span = occupancy[-1][0] - occupancy[0][0] if len(occupancy) > 1 else 0.0
    out = [("candidates ingested", f"{sum(v['ingested'] for v in cands.values()):,}"),
           ("candidates rejected", f"{sum(v['rejected'] for v in cands.values()):,}"),
           ("selected", f"{len(sels):,}"),
           ("simulations done", f"{states[SimState.DONE]:,}"),
           ("simulations failed", f"{states[SimState.FAILED]:,}"),
           ("in the pipelines", f"{flowing:,}"),
           ("job attempts", f"{len(attempts):,}"),
           ("attempts failed or timed out",
            f"{sum(a.state in (AttemptState.FAILED, AttemptState.TIMEDOUT) for a in attempts):,}"),
           ("feedback iterations",
            f"{sum(v['iteration'] for v in status.get('feedback', {}).values()):,}")]
    if gpus:
        out.append(("GPU-hours used", _hours(gpu_s)))
        out.append(("mean GPU occupancy", f"{100 * gpu_s / (span * gpus):.0f} %" if span else "-"))
    return out


def _occupancy(rows: Sequence[tuple[float, int, int, int, int]], gpus: int, cores: float
               ) -> dict[str, Any]:
    return {"png": _png(lambda o: plot_occupancy(rows, gpus, cores, o)), "gpus": gpus,
            "cores": f"{cores:g}", "peak_gpus": max((r[1] for r in rows), default=0),
            "peak_cores": max((r[2] for r in rows), default=0), "samples": len(rows)}


def _job_rows(attempts: Sequence[Attempt]) -> list[dict[str, Any]]:
    """Per job type: attempts by outcome and the median run time of the completed ones."""
    out = []
    for job_type in sorted({a.job_type for a in attempts}):
        mine = [a for a in attempts if a.job_type == job_type]
        ends = Counter("live" if a.state in LIVE_ATTEMPTS else a.state.value for a in mine)
        runs = [a.ended - a.started for a in mine if a.state == AttemptState.COMPLETED
                and a.started is not None and a.ended is not None]
        out.append({"job_type": job_type, "attempts": len(mine), **{
            k: ends[k] for k in ("live", "completed", "failed", "timedout", "cancelled", "lost")},
            "median": f"{float(np.median(runs)):,.1f} s" if runs else "-"})
    return out


def _coverage(streams: Streams) -> dict[str, Any]:
    rows = [{"stream": name, "candidates": len(c.candidates), "selected": len(c.selected),
             "radius": f"{c.radius:.3f}", "mean": f"{c.mean:.3f}"}
            for name, c in sorted(streams.items())]
    return {"rows": rows, "png": _png(lambda o: plot_coverage(streams, o)) if rows else ""}


def _feedback(campaign: Campaign, consumed: Mapping[str, Mapping[int, list[str]]],
              state: Mapping[str, tuple[int, int, dict[str, Any]]]) -> dict[str, Any]:
    histories, rows = [], []
    for name, loop in sorted(campaign.plan.feedback.items()):
        h = target_history(campaign, name, consumed.get(name, {}))
        histories.append(h)
        iterations, items, _ = state.get(name, (0, 0, {}))
        t = loop.target
        rows.append({"loop": name, "source": loop.source, "to": loop.to,
                     "aggregate": loop.aggregate, "iterations": iterations, "consumed": items,
                     "target": f"{t.store}/{t.namespace}/{t.key}", "shows": h.label})
    return {"rows": rows, "png": _png(lambda o: plot_feedback(histories, o)) if rows else ""}


def target_history(campaign: Campaign, loop: str, consumed: Mapping[int, list[str]]
                   ) -> TargetHistory:
    """A loop's target after each iteration, redrawn from the items each consumed (they stay
    in the stream's ``-consumed`` namespace); exact for mean and sum. The weights of a
    weighted mean are not recorded, so its history is the plain mean; a user function's is
    not redrawn (it is the user's code). The target's present value is read from its store."""
    cfg = campaign.plan.feedback[loop]
    stream = campaign.stream(cfg.source)
    its = max(consumed, default=0)
    items = [len(consumed.get(i, [])) for i in range(1, its + 1)]
    final, final_it = None, None
    try:
        rec = decode(campaign.store(cfg.target.store).get(cfg.target.namespace, cfg.target.key))
        final, final_it = rec.values.astype(np.float64), int(rec.meta.get("iteration", its))
    except (MummiError, RecordError, ValueError, TypeError):
        pass  # no target yet, or not one of ours: the page says none
    kind = cfg.aggregate
    if ":" in kind or sum(items) > FEEDBACK_READ or not items:
        why = "the user function's results are not recorded" if ":" in kind else \
            f"more than {FEEDBACK_READ:,} items" if items else "no iteration yet"
        return TargetHistory(loop, items, None, f"target now ({why})", final, final_it)
    keys = [k for i in range(1, its + 1) for k in consumed.get(i, [])]
    read, values = read_points(campaign, cfg.source, stream.namespace + CONSUMED_SUFFIX, keys)
    where = dict(zip(read, values, strict=True))
    total, n, out = np.zeros(stream.dim), 0, []
    for i in range(1, its + 1):
        for key in consumed.get(i, []):
            if key in where:
                total, n = total + where[key], n + 1
        out.append(total if kind == "sum" else total / max(n, 1))
    label = {"sum": "target (sum) after each iteration",
             "mean": "target (mean) after each iteration"}.get(
        kind, "plain mean after each iteration (the weights are not recorded); x: the "
              "weighted target now")
    return TargetHistory(loop, items, np.array(out), label, final, final_it)


def _rel(ws: Path, path: str) -> str:
    """A workdir relative to the workspace when it is inside it (shorter, same meaning)."""
    try:
        return str(Path(path).relative_to(ws))
    except ValueError:
        return path


def _failures(ws: Path, sels: Sequence[Selection], attempts: Sequence[Attempt],
              status: Mapping[str, Any], rejected: tuple[dict[str, int], list[tuple[str, str, str]]]
              ) -> dict[str, Any]:
    failed = [s for s in sels if s.state == SimState.FAILED]
    bad = sorted((a for a in attempts if a.state in (AttemptState.FAILED, AttemptState.TIMEDOUT)),
                 key=lambda a: (a.ended or 0.0, a.name))
    return {
        "sims": [{"sim": s.sim, "coupling": s.coupling, "candidate": s.candidate,
                  "reason": s.reason or "no reason recorded"} for s in failed[:LISTED]],
        "sims_more": max(0, len(failed) - LISTED),
        "attempts": [{"name": a.name, "job_type": a.job_type, "attempt": a.attempt,
                      "state": a.state.value, "exit": "-" if a.exit_code is None else a.exit_code,
                      "reason": a.reason or "", "sched_id": a.sched_id or "-",
                      "ended": f"{a.ended:,.1f}" if a.ended is not None else "-",
                      "workdir": _rel(ws, a.workdir)} for a in bad[:LISTED]],
        "attempts_more": max(0, len(bad) - LISTED),
        "unrunnable": sorted(status.get("unrunnable", {}).items()),
        "rejected": sorted(rejected[0].items()), "rejected_examples": rejected[1],
    }


def _selections(campaign: Campaign, sels: Sequence[Selection],
                pipelines: Mapping[str, Counter[str]], now: float) -> dict[str, Any]:
    plan = campaign.plan
    rows = [{"coupling": n, "selector": c.selector, "source": c.source,
             "ready_buffer": c.ready_buffer, "total": sum(pipelines.get(n, Counter()).values()),
             **{s.value: pipelines.get(n, Counter())[s.value] for s in SimState}}
            for n, c in sorted(plan.couplings.items())]
    return {"rows": rows, "queues": queue_counts(campaign),
            "png": _png(lambda o: plot_selections(sels, now, sorted(plan.couplings), o))}


def queue_counts(campaign: Campaign) -> list[dict[str, Any]]:
    """Candidates waiting and selected per queue of each selector, from its last checkpoint
    (the ledger does not record a selection's queue)."""
    out = []
    for name, settings in sorted(campaign.plan.selectors.items()):
        path = campaign.workspace / "checkpoints" / f"{name}.npz"
        note = ""
        stats = None
        if path.exists():
            sel = SELECTORS.get(settings.kind)(settings)
            try:
                sel.load(path)
                stats = sel.stats()
            except SelectorError as exc:
                note = f"checkpoint unreadable: {exc}"
        else:
            note = "no checkpoint yet"
        if stats is None:
            out.append({"selector": name, "kind": settings.kind, "queue": "-", "candidates": "-",
                        "selected": "-", "note": note})
            continue
        for queue, (cands, chosen) in sorted(stats.per_queue.items()):
            out.append({"selector": name, "kind": settings.kind, "queue": queue,
                        "candidates": cands, "selected": chosen,
                        "note": f"{stats.discarded:,} discarded" if stats.discarded else ""})
    return out

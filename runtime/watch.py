"""`mummi status --watch`: a live terminal view of a campaign, redrawn in place until it ends."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mummi_spec.plan import LEDGER_FILE
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ledgerview import Event, LedgerView
from mummi_spec.runtime.states import AttemptState, SimState
from mummi_spec.runtime.status import STATUS_FILE, read_status
from mummi_spec.units import format_hms

REFRESH = 1.0  # seconds between two looks at the workspace
PRINTED = 30  # lines of each view printed to a pipe or a file
STALE = 30.0  # status.json older than this while "running": say the manager may be gone
ENDED = ("complete", "stopped")
PIPE = ("candidates", "selected", "waiting", "setup", "ready", "running", "done", "failed")
JOBS = ("queued", "running", "completed", "failed", "cancelled")
# A job attempt's state as the view's columns count it.
JOB_COLUMN = {AttemptState.SUBMITTING: "queued", AttemptState.QUEUED: "queued",
              AttemptState.RUNNING: "running", AttemptState.COMPLETED: "completed",
              AttemptState.FAILED: "failed", AttemptState.TIMEDOUT: "failed",
              AttemptState.CANCELLED: "cancelled", AttemptState.LOST: "cancelled"}


@dataclass(frozen=True)
class View:
    """What one screen shows, read at one moment."""

    name: str
    state: str
    elapsed: float
    busy: tuple[int, int, float, float]  # GPUs busy, GPU pool, cores busy, core pool
    pipelines: dict[str, dict[str, int | str]]  # coupling -> PIPE column -> value
    jobs: dict[str, Counter[str]]  # job type -> JOBS column -> count
    feedback: list[str]
    events: list[Event]
    failures: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def look(campaign: Campaign, events: int = 40) -> View:
    """Read status.json and one snapshot of the ledger."""
    ws = campaign.workspace
    plan = campaign.plan
    status = read_status(ws) or {}
    with LedgerView(ws / LEDGER_FILE) as view, view.snapshot():
        pipes = view.pipelines()
        attempts = view.attempt_counts()
        recent = view.events(events)
        failed = view.failed_attempts(latest=3)
    cands = status.get("candidates", {})
    pipelines: dict[str, dict[str, int | str]] = {}
    for name, c in sorted(plan.couplings.items()):
        n = pipes.get(name, Counter())
        pipelines[name] = {
            "candidates": cands.get(c.source, {}).get("ingested", 0),
            "selected": sum(n.values()), "waiting": n[SimState.SELECTED.value],
            "setup": n[SimState.SETUP.value],
            "ready": f"{n[SimState.READY.value]}/{c.ready_buffer}",
            "running": n[SimState.SIMULATING.value], "done": n[SimState.DONE.value],
            "failed": n[SimState.FAILED.value]}
    jobs: dict[str, Counter[str]] = {t: Counter() for t in sorted(plan.jobs)}
    for (job_type, state), count in attempts.items():
        jobs.setdefault(job_type, Counter())[JOB_COLUMN[AttemptState(state)]] += count
    busy, pool = status.get("busy", {}), status.get("pool", {})
    notes = [f"job type {t} cannot run: {why}" for t, why in
             sorted(status.get("unrunnable", {}).items())]
    if status.get("refused", {}).get("last"):
        notes.append(f"the scheduler refuses submissions: {status['refused']['last']}")
    state = status.get("state", "starting (no status.json yet)")
    if state == "running":
        age = _age(ws / STATUS_FILE)
        if age > STALE:
            notes.append(f"status.json has not changed for {age:.0f} s: is the manager still "
                         "running? (`mummi run` resumes a campaign whose manager died)")
    if status.get("why"):
        notes.append(f"ended because {status['why']}")
    return View(
        name=plan.name, state=state, elapsed=float(status.get("elapsed", 0.0)),
        busy=(int(busy.get("gpus", 0)), int(pool.get("gpus", 0)), float(busy.get("cores", 0)),
              float(pool.get("cores", 0))),
        pipelines=pipelines, jobs=jobs,
        feedback=[f"feedback {n}: {v['iteration']} iterations, {v['items']} items consumed"
                  for n, v in sorted(status.get("feedback", {}).items())],
        events=recent,
        failures=[f"{a.name} {a.state.value}" + (f" (exit {a.exit_code})"
                                                  if a.exit_code is not None else "")
                  + (f": {a.reason}" if a.reason else "") for a in failed],
        notes=notes)


def _age(path: os.PathLike[str]) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


def _when(t: float) -> str:
    return f"{t:7.1f}s" if t < 3600 else format_hms(t)


def _table(first: str, columns: Sequence[str], rows: dict[str, Any]) -> Table:
    # One space between columns: nine of them fit in 80 columns.
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False,
                  header_style="bold")
    table.add_column(first, no_wrap=True, overflow="ellipsis", max_width=24)
    for c in columns:
        table.add_column(c, justify="right", no_wrap=True)
    for name, row in rows.items():
        table.add_row(name, *(str(row.get(c, 0)) for c in columns))
    return table


def screen(view: View, height: int) -> RenderableType:
    """The view laid out for a terminal ``height`` lines high: the last events fill what the
    tables leave."""
    g, gp, c, cp = view.busy
    head = Text.assemble((view.name, "bold"), f"  {view.state}  {view.elapsed:.1f} s  ",
                         (f"GPUs {g}/{gp}", "bold cyan"), "  ",
                         (f"cores {c:g}/{cp:g}", "bold cyan"))
    parts: list[RenderableType] = [head, Text(""),
                                   _table("coupling", PIPE, view.pipelines), Text(""),
                                   _table("job type", JOBS, view.jobs)]
    # One line each, cut at the terminal's width: the layout below counts them.
    tail = [Text(line, overflow="ellipsis", no_wrap=True) for line in view.feedback]
    tail += [Text("failed: " + f, style="red", overflow="ellipsis", no_wrap=True)
             for f in view.failures]
    tail += [Text(n, style="yellow", overflow="ellipsis", no_wrap=True) for n in view.notes]
    # head, blank, each table with its header line, the blank between them; then the
    # events (a blank and a title first) and the tail (a blank first).
    used = 5 + len(view.pipelines) + len(view.jobs) + (1 + len(tail) if tail else 0)
    room = height - used - 2
    if room > 0 and view.events:
        parts += [Text(""), Text("last events", style="bold")]
        parts += [Text(f"{_when(e.t)} {e.text}", overflow="ellipsis", no_wrap=True)
                  for e in view.events[-room:]]
    if tail:
        parts += [Text(""), *tail]
    return Group(*parts)


def watch(campaign: Campaign, console: Console, stop: threading.Event,
          every: float = REFRESH) -> View:
    """Redraw until the campaign ends or ``stop`` is set; returns the last view.

    On a terminal the view is redrawn in place on the alternate screen, and printed once
    more on the normal one at the end (it stays in the scrollback); elsewhere (a pipe, a
    log) each view that differs from the last is printed, plainly.
    """
    last = look(campaign)
    if not console.is_terminal:
        shown = None
        while True:
            text = _plain(console, last)
            if text != shown:
                console.print(screen(last, PRINTED))
                console.print()
                shown = text
            if last.ended or stop.wait(every):
                return last
            last = look(campaign)
    with Live(screen(last, console.height), console=console, screen=True,
              auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as live:
        while not last.ended and not stop.wait(every):
            last = look(campaign)
            live.update(screen(last, console.height), refresh=True)
    # Left in the scrollback, with room below it for what follows (a line, the prompt).
    console.print(screen(last, console.height - 2))
    return last


def _plain(console: Console, view: View) -> str:
    """A view as text, without its clock: a pipe gets a new view only when something moved."""
    with console.capture() as cap:
        console.print(screen(dataclasses.replace(view, elapsed=0.0), PRINTED))
    return cap.get()

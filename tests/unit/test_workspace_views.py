"""What the report page, the live view and diff read from a workspace, on hand-made ledgers:
the plan it keeps, lanes of the timeline, a target's history, the view at 80x24 and in a pipe."""

from __future__ import annotations

import io
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.errors import UsageError
from mummi_spec.frontend import load_spec
from mummi_spec.runtime import watch
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import CONSUMED_SUFFIX
from mummi_spec.runtime.figures import lanes
from mummi_spec.runtime.ledger import JobRow, Ledger
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.reportpage import target_history
from mummi_spec.runtime.states import AttemptState, Holder
from mummi_spec.runtime.status import write_status
from mummi_spec.runtime.workspace import claim, open_workspace
from tests.conftest import SPECS


@pytest.fixture
def campaign(tmp_path: Path) -> Iterator[Campaign]:
    """rasraf's local campaign (two couplings, seven job types), claimed, with no history."""
    compiled = compile_loaded(load_spec(SPECS / "rasraf-3scale.yaml", profile="local"))
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "plan.json").write_text(compiled.files["plan.json"])
    c = Campaign.open(tmp_path / "build" / "plan.json", tmp_path / "ws")
    c.workspace.mkdir()
    ledger = Ledger(c.workspace / "ledger.sqlite")
    lease = claim(c, ledger, Holder.MANAGER, 1.0)
    ledger.set_meta("started", "1000.0")
    lease.release()  # claimed by a manager that has ended
    ledger.close()
    yield c
    c.close()


def test_the_ledger_keeps_the_plan_that_started_the_campaign(campaign: Campaign) -> None:
    ws = campaign.workspace
    built = campaign.plan_path.read_text()
    found, text = open_workspace(ws)
    assert text == built and found.plan == campaign.plan and found.workspace == ws
    # A workspace claimed before the ledger kept its plan: the plan is asked for, and checked.
    db = sqlite3.connect(ws / "ledger.sqlite")
    with db:
        db.execute("DELETE FROM meta WHERE key = 'plan'")
    db.close()
    with pytest.raises(UsageError, match=r"pass --plan build/plan\.json"):
        open_workspace(ws)
    assert open_workspace(ws, campaign.plan_path)[1] == built
    other = ws.parent / "other.json"
    other.write_text(built.replace("rasraf", "other", 1))
    with pytest.raises(UsageError, match="not the plan that started the campaign"):
        open_workspace(ws, other)


@pytest.mark.parametrize("seed", range(5))
def test_lanes_never_overlap_and_are_as_few_as_the_busiest_moment(seed: int) -> None:
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, 100, 300)
    spans = [(float(s), float(s + d)) for s, d in zip(starts, rng.uniform(0, 20, 300),
                                                      strict=True)]
    lane = lanes(spans)
    for i, (a, b) in enumerate(spans):
        for j, (c, d) in enumerate(spans[:i]):
            assert lane[i] != lane[j] or b <= c or d <= a
    busiest = max(sum(a <= t < b for a, b in spans) for t, _ in spans)
    assert max(lane) + 1 == busiest


def test_a_targets_history_is_redrawn_from_the_consumed_items(campaign: Campaign) -> None:
    name, loop = next((n, f) for n, f in sorted(campaign.plan.feedback.items())
                      if f.aggregate != "weighted_mean" and ":" not in f.aggregate)
    stream = campaign.stream(loop.source)
    store = campaign.store(stream.store)
    rng = np.random.default_rng(1)
    values = {f"item{i:03d}": rng.normal(size=stream.dim).astype(np.float32) for i in range(9)}
    for key, v in values.items():
        store.put(stream.namespace + CONSUMED_SUFFIX, key, encode(Record(v)))
    consumed = {1: ["item000", "item001"], 2: ["item002"], 3: [f"item{i:03d}" for i in
                                                              range(3, 9)]}
    h = target_history(campaign, name, consumed)
    assert h.items == [2, 1, 6] and h.values is not None
    for it in (1, 2, 3):
        keys = [k for i in range(1, it + 1) for k in consumed[i]]
        rows = np.array([values[k] for k in keys], dtype=np.float64)
        want = rows.sum(0) if loop.aggregate == "sum" else rows.mean(0)
        np.testing.assert_allclose(h.values[it - 1], want, rtol=1e-6)
    assert h.final is None  # nothing reported to the target yet


def _history(campaign: Campaign, jobs: int) -> None:
    """``jobs`` finished attempts per job type, every tenth failed with a long reason."""
    ledger = Ledger(campaign.workspace / "ledger.sqlite")
    for job_type in sorted(campaign.plan.jobs):
        for i in range(jobs):
            name = f"{job_type}.{i}"
            ledger.add_job(JobRow(name, job_type, None, 1, AttemptState.SUBMITTING, None,
                                  str(campaign.workspace / "runs" / name), 0, 1), 1000.0 + i)
            state = AttemptState.FAILED if i % 10 == 9 else AttemptState.COMPLETED
            ledger.set_job(name, state, exit_code=1 if i % 10 == 9 else 0,
                           reason="a reason long enough to need more than eighty columns to "
                                  "be written out in full" if i % 10 == 9 else None,
                           t=1001.0 + i, started=1000.5 + i)
    ledger.close()


def _console(height: int = 24) -> Console:
    return Console(file=io.StringIO(), width=80, height=height, force_terminal=True,
                   color_system=None, highlight=False)


@pytest.mark.parametrize("height", [24, 20])
def test_the_view_fills_the_terminal_and_the_events_take_what_is_left(
        campaign: Campaign, height: int) -> None:
    _history(campaign, 40)
    write_status(campaign.workspace, {"state": "running", "elapsed": 50.0,
                                      "unrunnable": {"aa_sim": "exit 127: not found"}})
    view = watch.look(campaign)
    console = _console(height)
    console.print(watch.screen(view, height))
    lines = console.file.getvalue().rstrip("\n").split("\n")  # type: ignore[attr-defined]
    assert max(len(line) for line in lines) <= 80 and len(lines) == height
    assert sum(line.startswith("failed: ") for line in lines) == 3
    assert "job type aa_sim cannot run: exit 127: not found" in lines
    rows = [word for line in lines for word in line.split()[:1]]
    assert set(campaign.plan.couplings) <= set(rows) and set(campaign.plan.jobs) <= set(rows)
    # 19 lines of tables, titles, blanks and failures; the newest events fill the rest.
    events = [line for line in lines if re.match(r"\s+\d+\.\ds ", line)]
    assert len(events) == height - 19
    assert events[-1].startswith("   40.0s createsim.39 failed (exit 1): a reason long")


def test_a_pipe_gets_each_view_once_and_the_watch_ends_with_the_campaign(
        campaign: Campaign) -> None:
    _history(campaign, 3)
    write_status(campaign.workspace, {"state": "complete", "elapsed": 9.0,
                                      "why": "it was done"})
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)  # not a terminal
    last = watch.watch(campaign, console, threading.Event(), every=0.01)
    assert last.ended
    text = out.getvalue()
    assert "\x1b" not in text and text.count("rasraf-3scale  complete  9.0 s") == 1
    assert "ended because it was done" in text


def test_a_stopped_watch_returns_at_once_with_the_campaign_still_running(
        campaign: Campaign) -> None:
    write_status(campaign.workspace, {"state": "running", "elapsed": 1.0})
    stop = threading.Event()
    stop.set()
    out = io.StringIO()
    last = watch.watch(campaign, Console(file=out, width=80, color_system=None), stop)
    assert not last.ended and out.getvalue().count("running  1.0 s") == 1


def test_watch_arguments_are_checked_in_one_line(campaign: Campaign, capsys) -> None:
    from mummi_spec.cli import main

    ws = str(campaign.workspace)
    for argv, message in (
            (["status", ws, "--every", "2"], "--every: only with --watch"),
            (["status", "--watch", ws, "--every", "0"], "--every 0: give a refresh interval"),
            (["status", "--watch", ws + "-missing"], "no ledger.sqlite; is this a campaign"),
            (["report", ws + "-missing"], "no ledger.sqlite; is this a campaign")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err

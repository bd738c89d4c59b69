"""mummi replay on a campaign the real manager ran in virtual time (tests/steering.py)."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.plan import Plan
from mummi_spec.runtime.history import History, candidates
from mummi_spec.runtime.ledger import CallKind
from mummi_spec.runtime.replay import ReplayError, When, build, replay
from tests import steering
from tests.steering import Finished

COUPLING = "gen-to-cg"


def with_selector(plan: Plan, **changes: object) -> Plan:
    sel = dataclasses.replace(plan.selectors["pick"], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(plan, selectors={"pick": sel})


def selected(ws: Path) -> list[str]:
    db = sqlite3.connect(ws / "ledger.sqlite")
    try:
        return [c for c, in db.execute("SELECT candidate FROM sims ORDER BY seq")]
    finally:
        db.close()


def test_a_campaign_replayed_against_its_own_plan_picks_the_same_in_the_same_order(
        finished: Finished, history: History) -> None:
    r = replay(history, finished.plan)
    (c,) = r.couplings
    assert c.recorded.picked == selected(finished.ws)
    assert c.replay.picked == c.recorded.picked and c.identical
    assert c.overlap == len(c.recorded.picked) == 10
    # Call by call, with the same ranks, queues and scores.
    for old, new in zip(c.recorded.asked, c.replay.asked, strict=True):
        assert (old.t, old.asked) == (new.t, new.asked)
        assert [(p.candidate, p.how) for p in old.picks] == \
            [(p.candidate, p.how) for p in new.picks]
    assert r.calls == len(c.recorded.asked) and r.notes == []


def test_the_record_of_when_each_call_came_is_what_makes_the_replay_exact(
        finished: Finished, history: History) -> None:
    """Given every candidate before the first call, the same selector and the same asks pick
    otherwise: the campaign's picks depend on what had arrived by each call."""
    selectors, feeder = build(finished.plan, history)
    feeder.feed("pick", batch=10**9)
    sel = selectors["pick"]
    asks = [c.asked for c in history.calls(CallKind.SELECT)]
    early = [i for n in asks for i in sel.select(n)]
    assert len(early) == 10
    assert early != selected(finished.ws)


def test_another_k_and_a_random_selector_answer_the_same_calls(
        finished: Finished, history: History) -> None:
    calls = history.calls(CallKind.SELECT)
    for plan in (with_selector(finished.plan, k=1),
                 with_selector(finished.plan, kind="random", queues=())):
        (c,) = replay(history, plan).couplings
        assert [a.asked for a in c.replay.asked] == [x.asked for x in calls]
        assert len(c.replay.picked) == 10
        assert c.replay.picked != c.recorded.picked
        assert c.overlap == len(set(c.replay.picked) & set(selected(finished.ws)))
        assert c.recorded.picked == selected(finished.ws)  # what really happened, unchanged
    (k1,) = replay(history, with_selector(finished.plan, k=1)).couplings
    assert k1.replay.settings["k"] == 1 and k1.recorded.settings["k"] == 3
    (rnd,) = replay(history, with_selector(finished.plan, kind="random", queues=())).couplings
    assert rnd.replay.queues == {"default": 10} and rnd.recorded.queues == {"default": 10}
    assert all(p.how.score is None for a in rnd.replay.asked for p in a.picks)


def test_coverage_is_the_distance_to_the_nearest_selection_over_every_candidate(
        finished: Finished, history: History) -> None:
    (c,) = replay(history, with_selector(finished.plan, k=1)).couplings
    keys, points = candidates(history.batches(), "gen.latent", 3)
    assert c.candidates == len(keys) == steering.WAVE * steering.WAVES  # c_bad never arrived
    pts = points.astype(np.float64)
    for side in (c.recorded, c.replay):
        chosen = pts[[keys.index(k) for k in side.picked]]
        nearest = np.array([min(np.linalg.norm(p - s) for s in chosen) for p in pts])
        assert side.covering_radius == pytest.approx(nearest.max(), rel=1e-9)
        assert side.mean_nearest == pytest.approx(nearest.mean(), rel=1e-9)


def test_a_replay_is_deterministic(finished: Finished, history: History) -> None:
    plan = with_selector(finished.plan, kind="random", queues=(), seed=5)
    for when in When:
        a, b = replay(history, plan, when), replay(history, plan, when)
        assert [c.replay.picked for c in a.couplings] == [c.replay.picked for c in b.couplings]


def test_budget_asks_when_the_new_plans_policy_would(finished: Finished,
                                                     history: History) -> None:
    same = replay(history, finished.plan, When.BUDGET)
    (c,) = same.couplings
    assert len(c.replay.picked) == 10  # the plan's cap, as the campaign reached it
    assert all(a.asked <= 2 for a in c.replay.asked)  # max_selections_per_iteration
    assert any("budget" in n for n in same.notes)
    coupling = dataclasses.replace(finished.plan.couplings[COUPLING], max_simulations=4,
                                   max_selections_per_iteration=1)
    fewer = dataclasses.replace(finished.plan, couplings={COUPLING: coupling})
    (c,) = replay(history, fewer, When.BUDGET).couplings
    assert len(c.replay.picked) == 4 and {a.asked for a in c.replay.asked} == {1}
    (r,) = replay(history, fewer, When.RECORDED).couplings  # recorded: the campaign's asks
    assert len(r.replay.picked) == 10


@pytest.mark.parametrize(("change", "path", "says"), [
    ("rename", ("couplings", "gen-to-cgg"), "coupling 'gen-to-cgg' is not in the recorded"),
    ("source", ("couplings", COUPLING, "from"), "takes candidates from 'cg.other'"),
    ("dim", ("selectors", "pick", "dim"), "selector 'pick' is 4-D but the campaign recorded "
                                          "3-D encodings"),
])
def test_a_plan_that_cannot_take_the_record_is_refused_with_the_place(
        finished: Finished, history: History, change: str, path: tuple[str, ...],
        says: str) -> None:
    plan = finished.plan
    c = plan.couplings[COUPLING]
    if change == "rename":
        plan = dataclasses.replace(plan, couplings={"gen-to-cgg": dataclasses.replace(
            c, name="gen-to-cgg")})
    elif change == "source":
        plan = dataclasses.replace(plan, couplings={COUPLING: dataclasses.replace(
            c, source="cg.other")})
    else:
        plan = with_selector(plan, dim=4)
    with pytest.raises(ReplayError) as err:
        replay(history, plan)
    assert says in err.value.message and err.value.path == path
    if change == "rename":
        assert err.value.hint == f"did you mean '{COUPLING}'?"


def test_a_campaign_stopped_and_resumed_replays_exactly(tmp_path: Path) -> None:
    """A stop checkpoints the selector after the last ingest pass; the resumed manager's first
    calls stand for every batch recorded before it (the selector has them all)."""
    done = steering.run(tmp_path, interrupt="stop")
    h = History(done.ws)
    try:
        assert [r.previous for r in h.runs()] == [None, "stopped"]
        r = replay(h, done.plan)
    finally:
        h.close()
    (c,) = r.couplings
    assert c.identical and c.recorded.picked == selected(done.ws) and r.notes == []


def test_a_resumed_manager_stands_for_every_batch_recorded_before_it(tmp_path: Path) -> None:
    """Its selector, restored from the stop's checkpoint, has them all: a call it makes before
    the next batch must say so, or a replay would make it with fewer."""
    from mummi_spec.runtime.campaign import Campaign
    from tests.unit.test_manager import FakeScheduler, Rig

    rig = Rig(tmp_path, steering.plan())
    sched = FakeScheduler()
    m = rig.manager(sched)
    c = Campaign.open(rig.plan_path, rig.ws)
    try:
        rng = np.random.default_rng(0)
        steering.write_wave(c.store("latent"), rng, 0)
        rig.tick(m)
        steering.write_wave(c.store("latent"), rng, 1)  # taken in by the stop's last pass
        m.stop("stopped")
        m.release()  # as the manager step does last
        rig.managers.remove(m)
        m = rig.manager(sched)
        assert m.selectors["pick"].batch == m.ledger.last_batch() == 2
    finally:
        c.close()
        rig.close()


def test_a_restart_after_a_crash_is_noted(tmp_path: Path) -> None:
    done = steering.run(tmp_path, interrupt="crash")
    h = History(done.ws)
    try:
        (_, again) = h.runs()
        assert again.previous == "running"
        notes = replay(h, done.plan).notes
    finally:
        h.close()
    assert any(f"restarted after a crash at +{again.t - h.started:.1f} s" in n for n in notes)


def test_a_selector_rebuilt_without_a_checkpoint_is_noted(tmp_path: Path,
                                                          finished: Finished) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(finished.ws, ws)
    db = sqlite3.connect(ws / "ledger.sqlite")
    db.execute("INSERT INTO runs (t, previous, rebuilt) VALUES (1012.0, 'stopped', 'pick')")
    db.commit()
    db.close()
    h = History(ws)
    try:
        notes = replay(h, finished.plan).notes
    finally:
        h.close()
    assert notes == ["selector(s) pick restarted without a checkpoint at +12.0 s: rebuilt from "
                     "the ledger, not replayable exactly after that"]


def test_a_workspace_without_a_record_is_refused(tmp_path: Path) -> None:
    from mummi_spec.errors import UsageError
    from mummi_spec.runtime.ledger import Ledger

    with pytest.raises(UsageError, match="not a campaign workspace"):
        History(tmp_path)
    with pytest.raises(UsageError, match="no such directory"):
        History(tmp_path / "nowhere")
    Ledger(tmp_path / "ledger.sqlite").close()  # a ledger, but no campaign ever started
    with pytest.raises(UsageError, match="never started"):
        History(tmp_path)
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(UsageError, match="ledger schema 2, written by a mummi without the "
                                         "steering record"):
        History(tmp_path)


def test_the_feedback_loops_weights_calls_are_replayed_in_their_place(
        finished: Finished, history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    """A weights call ranks the candidates new since the last call: made at another moment,
    their ranks could differ in the last bit, so the replay makes it where it was made."""
    from mummi_spec.runtime.selectors.farthest_point import FarthestPointSelector

    seen: list[int] = []
    real = FarthestPointSelector.weights

    def weights(self: FarthestPointSelector, normalize: bool = True) -> dict[str, float]:
        seen.append(self.stats().selected)
        return real(self, normalize)

    monkeypatch.setattr(FarthestPointSelector, "weights", weights)
    replay(history, finished.plan)
    recorded = []
    for call in history.calls():  # selections made before each recorded weights call
        if call.kind == CallKind.WEIGHTS:
            recorded.append(sum(len(c.picks) for c in history.calls(CallKind.SELECT)
                                if c.call < call.call))
    assert seen == recorded and len(seen) >= 3


def test_candidates_the_new_selector_refuses_are_counted(finished: Finished,
                                                        history: History) -> None:
    """A farthest-point selector with two queues takes no untagged candidate: the replay
    selects nothing and says why, as the runtime would have."""
    from mummi_spec.plan import QueuePlan

    plan = with_selector(finished.plan, queues=(QueuePlan("a", 0.5), QueuePlan("b", 0.5)))
    r = replay(history, plan)
    (c,) = r.couplings
    assert c.replay.picked == [] and c.replay.covering_radius == float("inf")
    (note,) = [n for n in r.notes if "refused" in n]
    assert note.startswith(f"selector 'pick' of the new spec refused {c.candidates} of the "
                           f"{c.candidates} candidates it was given, first 'c_0000': no tag")

"""The SQLite ledger: round trips, atomic transactions, consumed feedback, reopening, versions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.errors import LedgerError
from mummi_spec.plan import Plan
from mummi_spec.runtime.history import History
from mummi_spec.runtime.ledger import (
    SCHEMA_VERSION,
    CallKind,
    CallRow,
    JobRow,
    Ledger,
    PickRow,
    SimRow,
    pick_rows,
)
from mummi_spec.runtime.selectors.base import Pick
from tests import steering


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ws" / "ledger.sqlite"  # the workspace does not exist yet


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    db = Ledger(path)
    yield db
    db.close()


def fill(db: Ledger) -> None:
    """One of everything the ledger keeps."""
    db.set_meta("plan_sha256", "abc")
    db.add_sims([("cg-000001", "s2c", "structure_000004", 1, 10.0),
                 ("cg-000002", "s2c", "structure_000009", 2, 10.0),
                 ("aa-000003", "c2a", "cg-000001_f3", 3, 11.5)])
    db.set_sim("cg-000001", "setup")
    db.set_sim("cg-000001", "ready", setup_dir="/ws/runs/cg-000001/createsim.1")
    db.set_sim("cg-000002", "failed", reason="createsim: failed exit code 1", t=20.0)
    db.add_job(JobRow("cg-000001.createsim.1", "createsim", "cg-000001", 1, "submitting", None,
                      "/ws/runs/cg-000001/createsim.1", 1, 6), t=12.0)
    db.set_job("cg-000001.createsim.1", "queued", sched_id="4242")
    db.set_job("cg-000001.createsim.1", "completed", exit_code=0, t=30.0)
    db.add_job(JobRow("generator.1", "generator", None, 1, "submitting", None,
                      "/ws/runs/persistent/generator.1", 8, 48), t=1.0)
    db.commit_feedback("cg-to-sampler", 1, 2, {"sum": [1.0, 2.0], "weight": 2.0},
                       ["fb_a_000000", "fb_b_000000"])
    db.reject("structures.latent", [("structure_000666", "values contain NaN or infinity")])
    db.record_occupancy(1.5, 2, 12, 2, 1)
    db.record_occupancy(0.5, 1, 6, 1, 0)


def check_filled(db: Ledger) -> None:
    assert db.meta("plan_sha256") == "abc"
    assert db.meta("schema_version") == str(SCHEMA_VERSION)
    assert db.meta("nothing") is None
    assert db.sims() == [
        SimRow("cg-000001", "s2c", "structure_000004", 1, "ready",
               "/ws/runs/cg-000001/createsim.1", None),
        SimRow("cg-000002", "s2c", "structure_000009", 2, "failed", None,
               "createsim: failed exit code 1"),
        SimRow("aa-000003", "c2a", "cg-000001_f3", 3, "selected", None, None)]
    assert [s.sim for s in db.sims(["selected", "failed"])] == ["cg-000002", "aa-000003"]
    assert db.selected_candidates("s2c") == {"structure_000004", "structure_000009"}
    assert db.selected_candidates("nope") == set()
    assert db.next_seq() == 4
    assert db.sim_candidates()["aa-000003"] == ("c2a", "cg-000001_f3")
    assert db.jobs() == [
        JobRow("cg-000001.createsim.1", "createsim", "cg-000001", 1, "completed", "4242",
               "/ws/runs/cg-000001/createsim.1", 1, 6, 0, None),
        JobRow("generator.1", "generator", None, 1, "submitting", None,
               "/ws/runs/persistent/generator.1", 8, 48, None, None)]
    assert [j.name for j in db.jobs(["submitting", "queued", "running"])] == ["generator.1"]
    assert db.feedback_state("cg-to-sampler") == (1, 2, {"sum": [1.0, 2.0], "weight": 2.0})
    assert db.rejected("structures.latent") == {"structure_000666"}
    assert db.occupancy() == [(0.5, 1, 6, 1, 0), (1.5, 2, 12, 2, 1)]


def test_round_trips(ledger: Ledger) -> None:
    fill(ledger)
    check_filled(ledger)


def test_empty_ledger(ledger: Ledger) -> None:
    assert ledger.sims() == []
    assert ledger.jobs() == []
    assert ledger.next_seq() == 1
    assert ledger.feedback_state("loop") == (0, 0, {})
    assert ledger.consumed("loop", ["a", "b"]) == set()


def test_updates_keep_what_they_do_not_mention(ledger: Ledger) -> None:
    ledger.add_sims([("s", "c", "k", 1, 0.0)])
    ledger.set_sim("s", "setup", setup_dir="/a", reason="first")
    ledger.set_sim("s", "ready")
    row = ledger.sims()[0]
    assert (row.state, row.setup_dir, row.reason) == ("ready", "/a", "first")
    ledger.add_job(JobRow("j", "t", "s", 1, "submitting", None, "/w", 1, 1), t=0.0)
    ledger.set_job("j", "queued", sched_id="7")
    ledger.set_job("j", "failed", exit_code=2, reason="exit code 2")
    assert ledger.jobs()[0] == JobRow("j", "t", "s", 1, "failed", "7", "/w", 1, 1, 2,
                                      "exit code 2")


def test_first_rejection_reason_is_kept(ledger: Ledger) -> None:
    ledger.reject("st", [("k", "first"), ("k", "second")])
    ledger.reject("st", [("k", "third")])
    assert ledger.rejected("st") == {"k"}
    reasons = sqlite3.connect(ledger.path).execute("SELECT reason FROM rejected").fetchall()
    assert reasons == [("first",)]


def test_exception_inside_a_transaction_rolls_back(ledger: Ledger) -> None:
    ledger.add_sims([("kept", "c", "k0", 1, 0.0)])
    with pytest.raises(RuntimeError, match="crash"), ledger.transaction() as db:
        db.execute("INSERT INTO sims (sim, coupling, candidate, seq, state, selected_at)"
                   " VALUES ('gone', 'c', 'k1', 2, 'selected', 0)")
        db.execute("UPDATE sims SET state = 'failed' WHERE sim = 'kept'")
        raise RuntimeError("crash")
    assert [(s.sim, s.state) for s in ledger.sims()] == [("kept", "selected")]
    ledger.set_meta("after", "1")  # the connection is usable again
    assert ledger.meta("after") == "1"


def test_a_failing_batch_leaves_nothing(ledger: Ledger) -> None:
    ledger.add_sims([("s1", "c", "k1", 1, 0.0)])
    with pytest.raises(sqlite3.IntegrityError):  # k1 again: a candidate is selected once
        ledger.add_sims([("s2", "c", "k2", 2, 0.0), ("s3", "c", "k1", 3, 0.0)])
    assert [s.sim for s in ledger.sims()] == ["s1"]


def test_commit_feedback_and_consumed(ledger: Ledger) -> None:
    keys = [f"fb_{i:06d}" for i in range(1234)]  # more than one SQLite parameter chunk
    ledger.commit_feedback("loop", 1, 1000, {"sum": [3.0], "weight": 1000.0}, keys[:1000])
    assert ledger.consumed("loop", keys) == set(keys[:1000])
    assert ledger.consumed("other", keys) == set()  # per loop
    ledger.commit_feedback("loop", 2, 1234, {"sum": [4.0], "weight": 1234.0}, keys[1000:])
    assert ledger.consumed("loop", keys) == set(keys)
    assert ledger.feedback_state("loop") == (2, 1234, {"sum": [4.0], "weight": 1234.0})


def test_committing_a_consumed_key_again_changes_nothing(ledger: Ledger) -> None:
    ledger.commit_feedback("loop", 1, 2, {"sum": [2.0], "weight": 2.0}, ["a", "b"])
    with pytest.raises(sqlite3.IntegrityError):
        ledger.commit_feedback("loop", 2, 4, {"sum": [9.0], "weight": 4.0}, ["c", "a"])
    assert ledger.consumed("loop", ["a", "b", "c"]) == {"a", "b"}
    assert ledger.feedback_state("loop") == (1, 2, {"sum": [2.0], "weight": 2.0})


def test_reopen_after_close_keeps_everything(path: Path) -> None:
    first = Ledger(path)
    fill(first)
    first.close()
    again = Ledger(path)
    try:
        check_filled(again)
    finally:
        again.close()


def test_a_ledger_of_another_schema_version_is_refused(path: Path) -> None:
    old = Ledger(path)
    old.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    old.close()
    with pytest.raises(LedgerError, match=f"schema {SCHEMA_VERSION + 1}.*new workspace"):
        Ledger(path)


def test_a_file_that_is_not_a_ledger_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database, just some bytes " * 64)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(path)


def test_open_readonly_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger here"):
        Ledger.open_readonly(tmp_path / "ledger.sqlite")
    assert not (tmp_path / "ledger.sqlite").exists()  # and nothing was created


def test_open_readonly_reads_and_cannot_write(ledger: Ledger) -> None:
    fill(ledger)
    ro = Ledger.open_readonly(ledger.path)
    try:
        assert ro.execute("SELECT COUNT(*) FROM sims").fetchone() == (3,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.execute("DELETE FROM sims")
    finally:
        ro.close()


# ------------------------------------------------------------------ the steering record
def test_batches_round_trip_with_their_exact_encodings_numbered_over_every_stream(
        ledger: Ledger) -> None:
    ledger.set_meta("plan", steering.plan().to_json())
    pts = np.array([[0.1, 1e-8, -3.0], [np.nan, 2.5, 7.0]], dtype=np.float32)
    assert ledger.record_batch("gen.latent", 4, 10.5, ["a", "b"], None, pts) == 1
    assert ledger.record_batch("cg.other", 1, 11.0, ["x"], ["q1"], pts[:1]) == 2
    assert ledger.record_batch("gen.latent", 5, 12.0, ["c\udcff"], [None], pts[1:] * 2) == 3
    assert (ledger.last_batch(), ledger.last_pass("gen.latent"), ledger.last_pass("no")) \
        == (3, 5, 0)
    h = History(ledger.path.parent)
    try:
        assert isinstance(h.plan, Plan)
        got = h.batches()
        assert [(b.batch, b.stream, b.ingest_pass, b.t, b.keys, b.tags) for b in got] == [
            (1, "gen.latent", 4, 10.5, ("a", "b"), None),
            (2, "cg.other", 1, 11.0, ("x",), ("q1",)),
            (3, "gen.latent", 5, 12.0, ("c\udcff",), None)]
        np.testing.assert_array_equal(got[0].points, pts)  # bit for bit, NaN included
        assert [b.batch for b in h.batches(["gen.latent"])] == [1, 3]
    finally:
        h.close()


def test_calls_keep_their_picks_and_the_sims_they_became(path: Path) -> None:
    db = Ledger(path)
    db.set_meta("plan", steering.plan().to_json())
    first = db.next_call()
    call = CallRow(first, CallKind.SELECT, "pick", "gen-to-cg", 5.0, 3, 2,
                   pick_rows(["k1", "k0"], [Pick("q", 1.5), Pick("q")]))
    db.add_sims([("cg-000001", "gen-to-cg", "k1", 1, 5.0)], call)  # k0: the book had it
    db.record_call(CallRow(db.next_call(), CallKind.WEIGHTS, "pick", None, 6.0, 0, 2))
    db.close()
    again = Ledger(path)  # numbering goes on after a restart
    assert again.next_call() == first + 2
    again.close()
    h = History(path.parent)
    try:
        assert h.calls() == [
            CallRow(first, CallKind.SELECT, "pick", "gen-to-cg", 5.0, 3, 2,
                    (PickRow("k1", Pick("q", 1.5), "cg-000001"), PickRow("k0", Pick("q")))),
            CallRow(first + 1, CallKind.WEIGHTS, "pick", None, 6.0, 0, 2)]
        assert [c.call for c in h.calls(CallKind.WEIGHTS)] == [first + 1]
    finally:
        h.close()


def test_feedback_items_keep_their_sim_and_runs_their_start(ledger: Ledger) -> None:
    ledger.commit_feedback("loop", 1, 4, {"sum": [1.0], "weight": 4.0}, ["a", "b", "c", "d"],
                           ["cg-000001", None, "cg-000002", "cg-000001"])
    ledger.record_run(1.0, None, [])
    ledger.record_run(9.0, "running", ["pick", "other"])
    db = sqlite3.connect(ledger.path)
    assert db.execute("SELECT * FROM fed ORDER BY sim").fetchall() == [
        ("loop", 1, "cg-000001", '["a", "d"]'), ("loop", 1, "cg-000002", '["c"]')]
    assert db.execute("SELECT run, t, previous, rebuilt FROM runs").fetchall() == [
        (1, 1.0, None, ""), (2, 9.0, "running", "pick,other")]


def test_states_print_as_the_words_the_workspace_stores():
    """`mummi run`'s last line and every message print a state as its word on every Python
    (3.11's f-string of a str-mixin enum is ``CampaignState.STOPPED``)."""
    from mummi_spec.runtime.states import AttemptState, CampaignState, Holder, SimState

    for state in (*CampaignState, *SimState, *AttemptState, *Holder):
        assert f"{state}" == str(state) == "{}".format(state) == state.value  # noqa: UP032

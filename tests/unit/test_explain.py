"""mummi explain on a campaign the real manager ran in virtual time (tests/steering.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from mummi_spec.runtime.explain import CandidateChain, SimChain
from mummi_spec.runtime.explain_find import ItemFound, JobFound, UnknownIdError, find
from mummi_spec.runtime.explain_names import Overview
from mummi_spec.runtime.explain_render import to_data, to_text
from mummi_spec.runtime.history import History
from tests import steering
from tests.steering import Finished


@pytest.fixture
def db(finished: Finished) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(finished.ws / "ledger.sqlite")
    yield conn
    conn.close()


def one(h: History, ident: str, kind: type) -> object:
    found = [f for f in find(h, ident) if isinstance(f, kind)]
    assert len(found) == 1, found
    return found[0]


def test_every_sim_is_explained_from_arrival_to_the_feedback_it_fed(
        finished: Finished, history: History, db: sqlite3.Connection) -> None:
    sims = db.execute("SELECT sim, candidate, state FROM sims ORDER BY seq").fetchall()
    assert len(sims) == 10
    for sim, cand, state in sims:
        c = one(history, sim, SimChain)
        assert isinstance(c, SimChain)
        assert (c.sim, c.candidate, c.state, c.coupling) == (sim, cand, state, "gen-to-cg")
        (arrival,) = c.arrivals
        batch, t = db.execute("SELECT a.batch, b.t FROM arrivals a JOIN batches b ON "
                              "a.batch = b.batch WHERE a.key = ?", (cand,)).fetchone()
        assert (arrival.stream, arrival.batch) == ("gen.latent", batch)
        assert arrival.t == pytest.approx(t - history.started)
        s = c.selection
        assert s is not None and s.selector == "pick" and s.queue == "default"
        picks = db.execute("SELECT candidate, rank, sim FROM picks WHERE call = ? ORDER BY "
                           "rank", (s.call,)).fetchall()
        assert (cand, s.rank, sim) in picks and s.returned == len(picks)
        assert [(m.candidate, m.rank, m.sim) for m in s.mates] == \
            [p for p in picks if p[0] != cand]
        jobs = db.execute("SELECT name, state, sched_id, exit_code, workdir FROM jobs WHERE "
                          "sim = ? ORDER BY rowid", (sim,)).fetchall()
        assert [(a.name, a.state, a.sched_id, a.exit_code) for a in c.attempts] == \
            [j[:4] for j in jobs]
        assert all(a.directory == f"runs/{sim}/{a.job_type}.{a.attempt}" for a in c.attempts)
        fed = sorted(k for it in c.feedback for k in it.items)
        assert fed == sorted(finished.items[sim])
        assert all(it.loop == "cg-to-gen" and it.target == "latent:target/model"
                   for it in c.feedback)
        text = to_text([c])
        assert sim in text and cand in text and all(j[0] in text for j in jobs)


def test_a_failed_attempt_shows_its_exit_code_and_its_retry(finished: Finished,
                                                             history: History) -> None:
    job = one(history, finished.failed_setup, JobFound)
    assert isinstance(job, JobFound)
    assert (job.attempt.state, job.attempt.exit_code) == ("failed", 1)
    assert job.chain is not None
    names = [a.name for a in job.chain.attempts]
    assert names[:2] == [finished.failed_setup, finished.failed_setup.replace(".1", ".2")]
    assert "failed, exit 1" in to_text([job])


def test_a_scheduler_id_finds_its_attempt(history: History, db: sqlite3.Connection) -> None:
    name, sched_id = db.execute("SELECT name, sched_id FROM jobs WHERE sim IS NOT NULL "
                                "LIMIT 1").fetchone()
    job = one(history, sched_id, JobFound)
    assert isinstance(job, JobFound)
    assert job.attempt.name == name and job.via == f"scheduler id {sched_id}"


def test_candidates_not_selected_and_rejected(history: History) -> None:
    c = one(history, "c_0806", CandidateChain)  # the last wave came after the cap
    assert isinstance(c, CandidateChain)
    assert c.sims == [] and len(c.arrivals) == 1 and "selected    never" in to_text([c])
    bad = one(history, "c_bad", CandidateChain)
    assert isinstance(bad, CandidateChain)
    assert bad.arrivals == [] and bad.rejected[0][0] == "gen.latent"
    assert "not a record" in bad.rejected[0][1]


def test_a_feedback_item_names_its_sim_and_iteration(finished: Finished,
                                                     history: History) -> None:
    sim, keys = sorted(finished.items.items())[0]
    item = one(history, keys[0], ItemFound)
    assert isinstance(item, ItemFound)
    ((loop, iteration, by, target),) = item.consumed
    assert (loop, by, target) == ("cg-to-gen", sim, "latent:target/model") and iteration >= 1


@pytest.mark.parametrize(("name", "kind", "fact", "value"), [
    ("steering-test", "campaign", "sims", {"done": 10}),
    ("gen.latent", "stream", "arrived", steering.WAVE * steering.WAVES),
    ("gen.latent", "stream", "rejected", 1),
    ("gen-to-cg", "coupling", "sims", {"done": 10}),
    ("createsim", "job type", "attempts", {"completed": 10, "failed": 1}),
    ("cg-to-gen", "feedback loop", "items", 20),
    ("pick", "selector", "picks per queue", {"default": 10}),
])
def test_every_name_status_shows_is_explained(history: History, name: str, kind: str,
                                              fact: str, value: object) -> None:
    (o,) = [f for f in find(history, name) if isinstance(f, Overview) and f.kind == kind]
    assert o.facts[fact] == value
    assert to_text([o]).startswith(f"{kind} {name}\n")


def test_an_unknown_id_names_the_closest(history: History) -> None:
    with pytest.raises(UnknownIdError, match=r"no candidate, sim, job, .* 'cg-00001' in "
                                             r"campaign 'steering-test'; did you mean "
                                             r".*'cg-000001'"):
        find(history, "cg-00001")
    with pytest.raises(UnknownIdError, match=r"`mummi status` and summary\.txt show"):
        find(history, "zzzzzzzzzzzzzzzzzzzz")


def test_json_names_each_kind(history: History) -> None:
    data = to_data("cg-000001", find(history, "cg-000001"))
    assert data["id"] == "cg-000001"
    assert [f["kind"] for f in data["found"]] == ["sim"]
    assert data["found"][0]["selection"]["selector"] == "pick"

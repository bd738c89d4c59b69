"""A crash between an attempt's ledger row and the scheduler's answer: recovery asks for the
job by the attempt's unique name before counting it lost (fake scheduler and clock)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import ClassVar

import pytest

from mummi_spec.errors import SchedulerError
from mummi_spec.runtime.ledger import JobRow, Ledger
from mummi_spec.runtime.manager import Manager
from mummi_spec.runtime.schedulers._common import check_name
from mummi_spec.runtime.schedulers.base import JobRequest
from tests.unit.test_manager import (  # noqa: F401  (fixtures used by name)
    COUPLING,
    FakeScheduler,
    Rig,
    assert_each_candidate_once,
    compiled,
    finish,
    make_rig,
)


class NamingScheduler(FakeScheduler):
    """The fake scheduler with ``find``: it knows every job it took by its unique name."""

    finds_by_name: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []
        self.since: list[float] = []
        self.down = ""  # when set, find fails with this reason

    def find(self, names: Sequence[str], since: float) -> dict[str, str]:
        self.asked.append(list(names))
        self.since.append(since)
        if self.down:
            raise SchedulerError(self.down)
        return {r.sched_name: i for i, r in self.requests.items() if r.sched_name in names}


def crash_in_the_window(rig: Rig, m: Manager, sched: FakeScheduler,
                        monkeypatch: pytest.MonkeyPatch, *, taken: bool) -> JobRow:
    """Kill the manager while it submits the first setup: after the scheduler took the job
    (``taken``) or before. Returns the attempt's row as the crash left it."""
    rig.tick(m)
    submit = sched.submit

    def dies(job: JobRequest) -> str:
        if taken:
            submit(job)
        raise KeyboardInterrupt  # the process is going down mid-submit

    monkeypatch.setattr(sched, "submit", dies)
    with pytest.raises(KeyboardInterrupt):
        rig.tick(m)
    monkeypatch.undo()
    recorded = rig.clock.now()
    rig.crash(m)
    ledger = Ledger(rig.ws / "ledger.sqlite")
    (row,) = (j for j in ledger.jobs() if j.job_type == "createsim")
    assert ledger.oldest_submitting() == recorded  # what find is told to search from
    ledger.close()
    assert (row.state, row.sched_id) == ("submitting", None)
    return row


def setups(sched: FakeScheduler) -> list[str]:
    """Ids of the setup jobs the scheduler took, in order."""
    return [i for i, r in sched.requests.items() if r.job_type == "createsim"]


@pytest.mark.parametrize("ended", [False, True], ids=["queued", "ended-before-restart"])
def test_a_job_taken_before_the_crash_is_found_by_name_and_tracked_not_resubmitted(
        make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        ended: bool) -> None:
    rig = make_rig(cap=1)
    rig.candidates(5)
    sched = NamingScheduler()
    row = crash_in_the_window(rig, rig.manager(sched), sched, monkeypatch, taken=True)
    (first,) = setups(sched)
    if ended:
        sched.end(first)
    m = rig.manager(sched)
    assert sched.asked == [[row.sched_name]]
    assert sched.since == [rig.clock.now()]  # the clock has not moved since the crash
    (adopted,) = (j for j in m.ledger.jobs() if j.job_type == "createsim")
    assert (adopted.name, adopted.state, adopted.sched_id) == (row.name, "queued", first)
    # One attempt holds the sim's GPU, as before the crash: nothing counted twice.
    assert list(m.book.live) == ["generator.1", row.name]
    assert m.book.used[COUPLING][0] == 1
    rig.tick(m)
    if ended:  # the next poll sees it ended, and the sim moves on from it
        assert m.ledger.jobs(["completed"])[0].sched_id == first
    finish(rig, m, sched)
    assert setups(sched) == [first]  # never submitted again
    assert_each_candidate_once(m)


def test_a_job_the_scheduler_never_took_is_lost_and_submitted_again(
        make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    rig = make_rig(cap=1)
    rig.candidates(5)
    sched = NamingScheduler()
    row = crash_in_the_window(rig, rig.manager(sched), sched, monkeypatch, taken=False)
    m = rig.manager(sched)
    assert [row.sched_name] in sched.asked
    (lost,) = m.ledger.jobs(["lost"])
    assert (lost.name, lost.reason) == (row.name, "manager restarted")
    rig.tick(m)
    assert [sched.requests[i].name for i in setups(sched)] == [
        row.name.replace(".createsim.1", ".createsim.2")]
    finish(rig, m, sched)


def test_without_find_a_job_taken_in_the_window_runs_twice_as_documented(
        make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # An adapter without the ability (docs/reliability.md, known limits) keeps the old rule.
    rig = make_rig(cap=1)
    rig.candidates(5)
    sched = FakeScheduler()
    assert not sched.finds_by_name
    crash_in_the_window(rig, rig.manager(sched), sched, monkeypatch, taken=True)
    m = rig.manager(sched)
    rig.tick(m)
    assert len(setups(sched)) == 2
    finish(rig, m, sched)


def test_a_scheduler_that_cannot_be_asked_leaves_the_old_rule_with_a_warning(
        make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig(cap=1)
    rig.candidates(5)
    sched = NamingScheduler()
    row = crash_in_the_window(rig, rig.manager(sched), sched, monkeypatch, taken=True)
    sched.down = "squeue failed (exit 1): slurmctld is not responding"
    with caplog.at_level(logging.WARNING, logger="mummi.manager"):
        m = rig.manager(sched)
    assert "slurmctld is not responding" in caplog.text
    assert [j.name for j in m.ledger.jobs(["lost"])] == [row.name]
    finish(rig, m, sched)


def test_job_names_are_unique_per_campaign_and_the_same_after_a_restart(
        make_rig: Callable[..., Rig]) -> None:  # noqa: F811
    names = []
    for rig in (make_rig(), make_rig()):  # two campaigns of one plan, side by side
        rig.candidates(5)
        sched = NamingScheduler()
        m = rig.manager(sched)
        rig.tick(m)
        rig.tick(m)
        rig.crash(m)
        m = rig.manager(sched)  # the same campaign again
        rig.tick(m)
        rows = m.ledger.jobs()
        requests = {r.name: r.sched_name for r in sched.requests.values()}
        assert {j.name: j.sched_name for j in rows} == requests  # as recorded, as submitted
        prefixes = {j.sched_name[:-len(j.name)] for j in rows if j.sched_name}
        assert len(prefixes) == 1  # one prefix for every attempt, before and after restart
        assert {check_name(n) for n in requests.values()} == set(requests.values())
        names.append(prefixes.pop())
    assert names[0] != names[1]
    assert all(n.startswith("manager-test.") for n in names)

"""A scheduler that refuses every submission: the manager backs off up to 60 s, then recovers."""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Sequence

from mummi_spec.errors import SchedulerError
from mummi_spec.runtime.schedulers.base import JobRequest
from mummi_spec.runtime.submitter import _MAX_BACKOFF
from tests.unit.test_manager import (  # noqa: F401  (fixtures used by name)
    COUPLING,
    FakeScheduler,
    Rig,
    compiled,
    finish,
    make_rig,
    sim_states,
)

WINDOW = 600.0  # ten minutes of refusals, in ticks of one second


def test_refusing_every_submission_backs_off_exponentially_and_nothing_is_lost(
        make_rig: Callable[..., Rig]) -> None:  # noqa: F811  (the imported fixture)
    rig = make_rig(cap=6)
    rig.candidates(20)
    sched = FakeScheduler()
    sched.refuse = 10**9
    tried: list[float] = []  # clock time of each refused submission
    refuse = sched.submit

    def submit(job: JobRequest) -> str:
        tried.append(rig.clock.now())
        return refuse(job)

    sched.submit = submit  # type: ignore[method-assign]
    m = rig.manager(sched)
    start = rig.clock.now()
    while rig.clock.now() - start < WINDOW:
        # A refused generator is not an exhausted source: the campaign goes on.
        assert rig.tick(m) is None
    rounds = sorted(set(tried))
    gaps = [b - a for a, b in itertools.pairwise(rounds)]
    # Growing gaps up to the cap, then the cap: no tight loop, however long the outage.
    assert gaps[:6] == [1, 2, 4, 8, 16, 32]  # one doubling per refused round, not per job
    assert gaps[6:] == [_MAX_BACKOFF] * (len(gaps) - 6)
    assert len(tried) < 30  # against 600 ticks with submissions due
    assert sched.requests == {}
    # Every refused attempt is in the ledger as lost, not charged to its sim.
    rows = m.ledger.jobs()
    assert len(rows) == len(tried) and {r.state for r in rows} == {"lost"}
    assert all(ends == [] for ends in m.book.history.values())
    # The scheduler comes back: within one back-off everything goes through and completes.
    sched.refuse = 0
    back = rig.clock.now()
    while not sched.requests:
        rig.tick(m)
    assert rig.clock.now() - back <= _MAX_BACKOFF
    finish(rig, m, sched)
    assert m.submitter.backoff == 1.0
    assert len(sim_states(m)) == m.book.pipes[COUPLING].cap == 6


def test_a_batch_the_scheduler_cannot_take_at_all_is_refused_job_by_job(
        make_rig: Callable[..., Rig]) -> None:  # noqa: F811  (the imported fixture)
    """Submissions go out in batches (``submit_many``); one that fails as a whole (no
    connection to the broker) is each of its jobs refused, not a crashed manager."""
    rig = make_rig(cap=6)
    rig.candidates(20)
    sched = FakeScheduler()

    def unreachable(jobs: Sequence[JobRequest]) -> list[str | SchedulerError]:
        raise SchedulerError("cannot connect to the Flux broker at local:///nowhere")

    sched.submit_many = unreachable  # type: ignore[method-assign]
    m = rig.manager(sched)
    assert rig.tick(m) is None
    rows = m.ledger.jobs()
    assert rows and {r.state for r in rows} == {"lost"}
    assert m.submitter.refused == len(rows)
    assert m.submitter.refusal.startswith("cannot connect to the Flux broker")
    assert m.submitter.backoff > 1.0  # and backs off


def test_a_job_whose_directory_the_disk_refused_in_a_batch_is_submitted_once_alone(
        make_rig: Callable[..., Rig]) -> None:  # noqa: F811  (the imported fixture)
    """``submit_many`` answers a job whose directory could not be made with its ``OSError``
    (it never reached the scheduler); the submitter submits that one again alone, through
    the write retries, and the rest of its batch as they were: every job once."""
    rig = make_rig(cap=6)
    rig.candidates(20)
    sched = FakeScheduler()
    plain = sched.submit
    full = {"batch": 1, "alone": 1}  # ENOSPC for the first batch's first job, then once more

    def submit(job: JobRequest) -> str:
        if full["alone"] and not full["batch"]:
            full["alone"] -= 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(job.workdir))
        return plain(job)

    def submit_many(jobs: Sequence[JobRequest]) -> list[str | SchedulerError | OSError]:
        if full["batch"]:
            full["batch"] = 0
            first = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(jobs[0].workdir))
            return [first, *map(plain, jobs[1:])]
        return list(map(submit, jobs))

    sched.submit = submit  # type: ignore[method-assign]
    sched.submit_many = submit_many  # type: ignore[method-assign]
    m = rig.manager(sched)
    assert rig.tick(m) is None
    names = sched.names()
    assert names and len(names) == len(set(names))  # nothing twice
    rows = m.ledger.jobs()
    assert {r.name for r in rows} == set(names)  # and nothing refused or lost
    assert m.submitter.refused == 0 and m.writes.retried == 1
    finish(rig, m, sched)
    assert len(sim_states(m)) == m.book.pipes[COUPLING].cap == 6

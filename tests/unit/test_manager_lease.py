"""The manager and its workspace's lease: one manager, stops through the ledger, a lost lease."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from mummi_spec.errors import LeaseLostError
from mummi_spec.runtime import lease
from mummi_spec.runtime.lease import WorkspaceHeldError, take
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.states import Holder
from tests.unit.test_manager import (  # noqa: F401  (fixtures used by name)
    FakeScheduler,
    Rig,
    compiled,
    launch,
    make_rig,
)


@pytest.fixture(autouse=True)
def renew_every_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake clock's ticks come faster than the once-a-second limit on renewals."""
    monkeypatch.setattr(lease, "RENEW_EVERY", 0.0)


def test_a_second_manager_on_a_live_workspace_refuses_and_writes_nothing(
        make_rig: Callable[..., Rig]) -> None:  # noqa: F811  (the imported fixture)
    rig, _, m = launch(make_rig, 20, cap=6)
    rig.tick(m)
    jobs = m.ledger.jobs()
    second = FakeScheduler()
    other = rig.manager(second, start=False)
    with pytest.raises(WorkspaceHeldError, match=r"held by manager pid \d+ on host"):
        other.start()
    assert second.requests == {}  # no persistent job started twice, nothing marked lost
    assert m.ledger.jobs() == jobs
    rig.tick(m)  # the first goes on


def test_a_stop_recorded_in_the_workspace_stops_the_manager_at_its_next_tick(
        make_rig: Callable[..., Rig]) -> None:  # noqa: F811  (the imported fixture)
    rig, sched, m = launch(make_rig, 20, cap=6)
    rig.tick(m)
    submitted = len(sched.requests)
    assert m.lease is not None
    elsewhere = Ledger(rig.ws / "ledger.sqlite")  # `mummi stop`, from any node
    try:
        assert elsewhere.stop_lease(m.lease.token, "`mummi stop`, pid 7 on host login1")
    finally:
        elsewhere.close()
    assert rig.tick(m) == "stopped"
    assert m.why == "a stop was requested (`mummi stop`, pid 7 on host login1)"
    assert len(sched.requests) == submitted  # nothing spawned on the way out


def test_a_stop_asked_before_the_manager_started_stops_it_at_once(
        make_rig: Callable[..., Rig]) -> None:  # noqa: F811  (the imported fixture)
    rig = make_rig()
    rig.candidates(20)
    run = Ledger(rig.ws / "ledger.sqlite")  # `mummi run` waiting for its manager step
    try:
        launcher = take(run, rig.ws, Holder.LAUNCHER, 1.0)
        launcher.request_stop("a stop signal to `mummi run`")
    finally:
        run.close()
    sched = FakeScheduler()
    m = rig.manager(sched, start=False, run_token=launcher.token)
    assert m.run() == "stopped"
    rig.managers.remove(m)
    assert sched.requests == {}  # not even the persistent generator
    status = json.loads((rig.ws / "status.json").read_text())
    assert status["state"] == "stopped"
    assert "a stop signal to `mummi run`" in status["why"]


def test_a_manager_that_lost_its_lease_ends_without_touching_the_workspace(
        make_rig: Callable[..., Rig]) -> None:  # noqa: F811  (the imported fixture)
    rig = make_rig()
    rig.candidates(20)
    sched = FakeScheduler()
    m = rig.manager(sched, start=False)
    taken: list[str] = []

    def stall_and_be_taken_over() -> None:
        # Stalled past the bound (SIGSTOP, a hung file system): another manager takes over.
        if taken:
            return
        with m.ledger.transaction() as db:
            db.execute("UPDATE lease SET heartbeat = heartbeat - 1000")
        other = Ledger(rig.ws / "ledger.sqlite")
        taken.append(take(other, rig.ws, Holder.MANAGER, 1.0).token)
        other.close()

    rig.clock.on_sleep = stall_and_be_taken_over
    with pytest.raises(LeaseLostError, match="lost the workspace"):
        m.run()
    rig.managers.remove(m)
    assert sched.cancelled == [] and sched.closed  # the new holder's jobs, not its own
    # No "stopped" written over the new holder's status.
    assert json.loads((rig.ws / "status.json").read_text())["state"] == "running"
    check = Ledger(rig.ws / "ledger.sqlite")
    try:
        row = check.lease()
        assert row is not None and row.token == taken[0] and row.released is None
        assert check.meta("outcome") == "running"
    finally:
        check.close()

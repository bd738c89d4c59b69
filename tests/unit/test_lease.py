"""The workspace's lease: who may take it, when a holder is presumed dead, hand-over, fencing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mummi_spec.errors import LeaseLostError
from mummi_spec.runtime import lease as lease_mod
from mummi_spec.runtime.lease import (
    LEASE_FLOOR,
    WorkspaceHeldError,
    describe,
    free,
    local_pid,
    process_identity,
    stale_after,
    take,
)
from mummi_spec.runtime.ledger import LeaseRow, Ledger
from mummi_spec.runtime.states import Holder


@pytest.fixture(autouse=True)
def renew_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each renew writes and reads (the once-a-second limit has its own test)."""
    monkeypatch.setattr(lease_mod, "RENEW_EVERY", 0.0)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def ledger(ws: Path) -> Iterator[Ledger]:
    db = Ledger(ws / "ledger.sqlite")
    yield db
    db.close()


def elsewhere(token: str = "t-other", *, holder: Holder = Holder.MANAGER, silent: float = 0.0,
              stale: float = 60.0) -> LeaseRow:
    """A holder on another node: nothing here can tell from its pid whether it lives."""
    now = time.time()
    return LeaseRow(token, holder, "node7", "", 4242, now - silent, now - silent, stale)


def put(ledger: Ledger, row: LeaseRow) -> None:
    assert ledger.take_lease(row, lambda _: True) is None


def test_the_bound_is_ten_periods_and_never_under_a_minute() -> None:
    assert stale_after(0.2) == LEASE_FLOOR == 60.0
    assert stale_after(30.0) == 300.0


def test_a_free_workspace_is_taken_and_a_live_holder_refuses_the_next(
        ledger: Ledger, ws: Path) -> None:
    first = take(ledger, ws, Holder.MANAGER, 1.0)
    row = ledger.lease()
    assert row is not None and row.token == first.token and row.released is None
    assert row.pid == process_identity_pid(row) and row.holder is Holder.MANAGER
    other = Ledger(ws / "ledger.sqlite")  # a second process would open its own connection
    try:
        with pytest.raises(WorkspaceHeldError, match=r"held by manager pid \d+ on host .*"
                                                     r"`mummi stop .*` stops it") as held:
            take(other, ws, Holder.MANAGER, 1.0)
        assert held.value.holder.token == first.token
    finally:
        other.close()
    assert ledger.lease() == row  # untouched


def process_identity_pid(row: LeaseRow) -> int:
    """The pid a process identity names (it ends ``:<pid>:<start time>``)."""
    return int(row.proc.rsplit(":", 2)[1])


def test_a_holder_elsewhere_is_taken_over_only_once_its_heartbeat_is_past_its_bound(
        ledger: Ledger, ws: Path) -> None:
    put(ledger, elsewhere(silent=59.0))
    with pytest.raises(WorkspaceHeldError, match="manager pid 4242 on host node7"):
        take(ledger, ws, Holder.MANAGER, 1.0)
    put(ledger, elsewhere(silent=61.0))
    taken = take(ledger, ws, Holder.MANAGER, 1.0)
    row = ledger.lease()
    assert row is not None and row.token == taken.token and row.host != "node7"


def test_a_holder_of_this_host_that_has_ended_is_taken_over_at_once(
        ledger: Ledger, ws: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    identity = process_identity(child.pid)
    assert identity  # this test needs /proc (Linux)
    put(ledger, dataclasses.replace(elsewhere(), host="here", proc=identity, pid=child.pid))
    assert local_pid(ledger.lease()) == child.pid  # type: ignore[arg-type]
    with pytest.raises(WorkspaceHeldError):  # alive, heartbeat fresh
        take(ledger, ws, Holder.MANAGER, 1.0)
    child.communicate(b"")  # it ends
    row = ledger.lease()
    assert row is not None and local_pid(row) is None and free(row, time.time())
    take(ledger, ws, Holder.MANAGER, 1.0)


def test_a_reused_pid_is_not_the_holder(ledger: Ledger) -> None:
    import os

    me = process_identity(os.getpid())
    reused = me.rsplit(":", 1)[0] + ":1"  # our pid, another start time
    row = dataclasses.replace(elsewhere(), proc=reused, pid=os.getpid())
    assert free(row, time.time())
    assert not free(dataclasses.replace(row, proc=me), time.time())


def test_a_manager_launched_by_mummi_run_takes_the_lease_it_was_handed_and_its_stop(
        ledger: Ledger, ws: Path) -> None:
    launcher = take(ledger, ws, Holder.LAUNCHER, 1.0)
    # Asked to stop during the queue wait: the manager that starts later must see it.
    assert launcher.request_stop("a stop signal to `mummi run`")
    with pytest.raises(WorkspaceHeldError, match="no longer holds it"):
        take(ledger, ws, Holder.MANAGER, 1.0, handover="a-token-of-another-run")
    manager = take(ledger, ws, Holder.MANAGER, 1.0, handover=launcher.token)
    assert manager.row.holder is Holder.MANAGER and manager.row.stop == (
        "a stop signal to `mummi run`")
    with pytest.raises(LeaseLostError):  # the launcher no longer renews it
        launcher.renew()
    assert manager.renew() == "a stop signal to `mummi run`"


def test_a_run_token_never_takes_over_a_live_manager_nor_a_released_lease(
        ledger: Ledger, ws: Path) -> None:
    launcher = take(ledger, ws, Holder.LAUNCHER, 1.0)
    take(ledger, ws, Holder.MANAGER, 1.0, handover=launcher.token)
    second = Ledger(ws / "ledger.sqlite")
    try:
        # The same step started twice (a scheduler's requeue): the live one keeps it.
        with pytest.raises(WorkspaceHeldError):
            take(second, ws, Holder.MANAGER, 1.0, handover=launcher.token)
    finally:
        second.close()
    ledger.release_lease(launcher.token, time.time())
    run = Ledger(ws / "ledger.sqlite")  # the next `mummi run`, another process
    try:
        again = take(run, ws, Holder.LAUNCHER, 1.0)
        again.release()
    finally:
        run.close()
    # Its `mummi run` gave up (stopped, cancelled): a late manager step must not start.
    with pytest.raises(WorkspaceHeldError, match="no longer holds it"):
        take(ledger, ws, Holder.MANAGER, 1.0, handover=again.token)


def test_a_new_holding_starts_without_the_last_ones_stop(ledger: Ledger, ws: Path) -> None:
    first = take(ledger, ws, Holder.MANAGER, 1.0)
    first.request_stop("`mummi stop`")
    first.release()
    assert take(ledger, ws, Holder.MANAGER, 1.0).row.stop is None


def test_a_manager_that_lost_its_lease_commits_nothing(ledger: Ledger, ws: Path) -> None:
    mine = take(ledger, ws, Holder.MANAGER, 1.0)
    ledger.add_sims([("s1", "c", "k1", 1, 0.0)])
    # It stalls past the bound (SIGSTOP, a hung file system) and another takes over.
    with ledger.transaction() as db:
        db.execute("UPDATE lease SET heartbeat = heartbeat - 1000")
    other = Ledger(ws / "ledger.sqlite")
    try:
        theirs = take(other, ws, Holder.MANAGER, 1.0)
        with pytest.raises(LeaseLostError):
            ledger.add_sims([("s2", "c", "k2", 2, 0.0)])
        with pytest.raises(LeaseLostError, match="lost the workspace"):
            mine.renew()
        mine.release()  # not ours any more: no error, and the new holder keeps it
        row = other.lease()
        assert row is not None and row.token == theirs.token and row.released is None
        assert [s.sim for s in other.sims()] == ["s1"]
    finally:
        other.close()


def test_released_leases_free_the_workspace(ledger: Ledger, ws: Path) -> None:
    first = take(ledger, ws, Holder.MANAGER, 1.0)
    first.release()
    row = ledger.lease()
    assert row is not None and row.released is not None and free(row, time.time())
    with pytest.raises(LeaseLostError):  # the fence outlives the release
        ledger.add_sims([("s1", "c", "k1", 1, 0.0)])


def test_status_lines_name_the_holder_and_its_heartbeat() -> None:
    now = time.time()
    assert describe(None, now) == "manager: none has run here yet"
    live = elsewhere(silent=2.0)
    assert describe(live, now) == "manager: manager pid 4242 on host node7, heartbeat 2.0 s ago"
    assert "asked to stop by `mummi stop`" in describe(
        dataclasses.replace(live, stop="`mummi stop`"), now)
    assert "presumed dead" in describe(elsewhere(silent=75.0), now)
    assert "its manager step has not started yet" in describe(
        elsewhere(holder=Holder.LAUNCHER), now)
    gone = dataclasses.replace(live, released=now - 3.0)
    assert describe(gone, now) == ("manager: none running (manager pid 4242 on host node7 "
                                   "released the workspace 3.0 s ago)")


def test_without_proc_only_the_heartbeat_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    lease_mod._place.cache_clear()
    monkeypatch.setattr(lease_mod, "_place", lambda: "")
    assert process_identity(1) == ""
    row = dataclasses.replace(elsewhere(), proc="")
    assert not free(row, time.time()) and local_pid(row) is None


def test_a_holder_renews_at_most_once_a_second(ledger: Ledger, ws: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease_mod, "RENEW_EVERY", 1.0)
    clock = [100.0]
    monkeypatch.setattr(lease_mod.time, "monotonic", lambda: clock[0])
    mine = take(ledger, ws, Holder.MANAGER, 1.0)
    beat = mine.row.heartbeat
    ledger.stop_lease(mine.token, "`mummi stop`")
    clock[0] += 0.5
    assert mine.renew() is None  # not read yet: no write, no read within the second
    assert ledger.lease().heartbeat == beat  # type: ignore[union-attr]
    clock[0] += 0.5
    assert mine.renew() == "`mummi stop`"
    assert ledger.lease().heartbeat > beat  # type: ignore[union-attr]

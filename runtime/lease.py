"""One manager per workspace: a lease in the ledger, renewed every tick, that carries stops."""

from __future__ import annotations

import functools
import os
import socket
import time
import uuid
from pathlib import Path

from mummi_spec.errors import LeaseLostError, UsageError
from mummi_spec.runtime.ledger import LeaseRow, Ledger
from mummi_spec.runtime.states import Holder

# A holder silent for LEASE_TICKS of its renewal periods, and at least LEASE_FLOOR seconds, is
# presumed dead: its lease may be taken over. The floor keeps a live manager whose tick waits
# on a slow scheduler or file system from losing its lease; the nodes sharing a workspace must
# keep their clocks within a small part of it of each other (NTP does).
LEASE_TICKS = 10
LEASE_FLOOR = 60.0
# A holder writes its heartbeat, and reads the stop request, at most once a second of wall
# time: every tick at the usual tick lengths, not hundreds of times a second under
# `mummi simulate`'s virtual clock.
RENEW_EVERY = 1.0
TOKEN_ENV = "MUMMI_RUN_TOKEN"  # the run token `mummi run` hands to its manager step


def stale_after(period: float) -> float:
    """How long a holder that renews every ``period`` seconds may be silent before it is
    presumed dead."""
    return max(LEASE_FLOOR, LEASE_TICKS * period)


class WorkspaceHeldError(UsageError):
    """Another live process holds the workspace; ``holder`` is its lease."""

    def __init__(self, message: str, holder: LeaseRow) -> None:
        super().__init__(message)
        self.holder = holder


@functools.cache
def _place() -> str:
    """This boot of this machine and this pid namespace: where a pid names one process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        return f"{boot}:{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def process_identity(pid: int) -> str:
    """Process ``pid`` of this place, told apart from a later one given the same pid by its
    start time; "" where /proc cannot say, or when it has ended (a zombie has)."""
    place = _place()
    if not place:
        return ""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may hold spaces and ')'
    if len(fields) < 20 or fields[0] == "Z":
        return ""
    return f"{place}:{pid}:{fields[19]}"


def gone(row: LeaseRow) -> bool:
    """The holder was a process of this machine and pid namespace that has ended. Elsewhere
    nothing can be told from a pid: only the heartbeat counts."""
    here = _place()
    return bool(here) and row.proc.startswith(f"{here}:{row.pid}:") \
        and process_identity(row.pid) != row.proc


def silent(row: LeaseRow, now: float) -> float:
    """Seconds since the holder's last heartbeat."""
    return max(0.0, now - row.heartbeat)


def free(row: LeaseRow | None, now: float) -> bool:
    """Nobody holds the workspace: never held, released, or its holder presumed dead."""
    return row is None or row.released is not None or silent(row, now) > row.stale_after \
        or gone(row)


def may_take(current: LeaseRow | None, handover: str | None, now: float) -> bool:
    """Whether a new holder may take the lease. A manager that `mummi run` launched
    (``handover``, its run token) takes only the lease it was handed, never over a live
    manager; any other holder takes a free lease."""
    if handover is None:
        return free(current, now)
    return current is not None and current.token == handover and current.released is None \
        and (current.holder is Holder.LAUNCHER or free(current, now))


def who(row: LeaseRow) -> str:
    """The holder in a few words, for messages."""
    if row.holder is Holder.LAUNCHER:
        return (f"`mummi run` pid {row.pid} on host {row.host} (its manager step has not "
                "started yet)")
    return f"manager pid {row.pid} on host {row.host}"


def describe(row: LeaseRow | None, now: float) -> str:
    """Who holds the workspace, for ``mummi status``."""
    if row is None:
        return "manager: none has run here yet"
    if row.released is not None:
        return (f"manager: none running ({row.holder.value} pid {row.pid} on host {row.host} "
                f"released the workspace {max(0.0, now - row.released):.1f} s ago)")
    age = silent(row, now)
    if gone(row):
        return (f"manager: {who(row)} has ended without releasing the workspace; `mummi run` "
                "takes it over")
    if age > row.stale_after:
        return (f"manager: {who(row)} last heartbeat {age:.1f} s ago, past the {row.stale_after:g}"
                " s bound: presumed dead; `mummi run` takes the campaign over")
    stop = f"; asked to stop by {row.stop}" if row.stop else ""
    return f"manager: {who(row)}, heartbeat {age:.1f} s ago{stop}"


def take(ledger: Ledger, workspace: Path, holder: Holder, period: float, *,
         handover: str | None = None) -> Lease:
    """Take the workspace's lease for this process, renewing every ``period`` seconds, or
    raise ``WorkspaceHeldError`` naming the live holder."""
    now = time.time()
    pid = os.getpid()
    row = LeaseRow(handover or uuid.uuid4().hex, holder, socket.gethostname(),
                   process_identity(pid), pid, now, now, stale_after(period))
    current = ledger.take_lease(row, lambda cur: may_take(cur, handover, now))
    if current is not None:
        if handover is not None and (current.token != handover or current.released):
            raise WorkspaceHeldError(
                f"workspace {workspace}: the `mummi run` that launched this manager no longer "
                f"holds it ({describe(current, now)}); this manager does not start", current)
        raise WorkspaceHeldError(
            f"workspace {workspace} is held by {who(current)}, heartbeat "
            f"{silent(current, now):.1f} s ago; one manager per workspace: `mummi run` "
            f"follows it, `mummi stop {workspace}` stops it", current)
    if holder is Holder.MANAGER:
        ledger.fence = row.token
    return Lease(ledger, ledger.lease() or row)


class Lease:
    """The holder's side: a heartbeat every tick, which reads the stop request; a release."""

    def __init__(self, ledger: Ledger, row: LeaseRow) -> None:
        self.ledger = ledger
        self.row = row
        self.lost = False
        self._renewed = time.monotonic()

    @property
    def token(self) -> str:
        return self.row.token

    def renew(self) -> str | None:
        """A heartbeat now (if RENEW_EVERY has passed since the last). Returns who asked this
        holder to stop, if anyone has; raises ``LeaseLostError`` once another process holds
        the workspace."""
        if time.monotonic() - self._renewed < RENEW_EVERY:
            return self.row.stop
        self._renewed = time.monotonic()
        try:
            row = self.ledger.renew_lease(self.token, self.row.holder, time.time())
        except LeaseLostError:
            row = None
        if row is None:
            self.lost = True
            held = self.ledger.lease()
            now = time.time()
            raise LeaseLostError(f"{self.ledger.path.parent}: this process lost the workspace "
                                 f"({describe(held, now)}); it stops without touching it")
        self.row = row
        return row.stop

    def request_stop(self, by: str) -> bool:
        """Ask this holding (or the manager it was handed to) to stop."""
        return self.ledger.stop_lease(self.token, by)

    def release(self) -> None:
        """Leave the workspace; a lost lease is not ours to release."""
        if self.lost:
            return
        try:
            self.ledger.release_lease(self.token, time.time())
        except LeaseLostError:
            self.lost = True


def local_pid(row: LeaseRow) -> int | None:
    """The holder's pid when it is a live process of this machine and pid namespace, so that
    a signal can reach it at once; None elsewhere (the stop request in the ledger is what
    counts, the signal only saves waiting for the next tick)."""
    return row.pid if row.proc and process_identity(row.pid) == row.proc else None


def requester(what: str) -> str:
    """Who asks for a stop, as the lease records it: ``what`` and this process."""
    return f"{what}, pid {os.getpid()} on host {socket.gethostname()}"

"""`mummi run` following a campaign: its progress line, stop signals, and a study cancelled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from mummi_spec.errors import MummiError

if TYPE_CHECKING:
    from mummi_spec.runtime.ledger import LeaseRow, Ledger

REFRESH = 1.0  # seconds between two looks at the workspace: the display, the launcher's heartbeat
# A stop that always stops: after the second Ctrl-C or SIGTERM (or the first, before the
# manager step has started), Maestro gets CANCEL_WAIT seconds to cancel its steps, then its
# process group SIGTERM and, KILL_WAIT seconds later, SIGKILL. `mummi run` ends within
# STOP_BOUND of that signal, whatever the scheduler does (docs/reliability.md).
CANCEL_WAIT = 10.0
KILL_WAIT = 5.0
STOP_BOUND = REFRESH + CANCEL_WAIT + 2 * KILL_WAIT


class Signals:
    """Counts SIGINT and SIGTERM while installed (the handler only counts: the loop that polls
    does the work, never inside a handler)."""

    def __init__(self) -> None:
        self.count = 0
        self.seen = 0  # how many the loop has acted on
        self._old: dict[int, Any] = {}

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.count += 1

    def new(self) -> int:
        """Signals that arrived since the last call."""
        fresh, self.seen = self.count - self.seen, self.count
        return fresh

    def __enter__(self) -> Signals:
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class Display:
    """The live progress line (rewritten on a terminal, one line per change otherwise) and
    the news beside it, from status.json."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = ""
        self.told: set[str] = set()
        self.suffix = ""

    def say(self, text: str) -> None:
        print(("\r\033[K" if self.tty and self.last else "") + text, flush=True)
        self.last = ""

    def show(self, ws: Path) -> None:
        from mummi_spec.runtime.status import events, progress_line, read_status

        try:
            status = read_status(ws)
        except MummiError:  # scribbled on: the manager's next write replaces it
            return
        if status is None:
            return
        for news in events(status, self.told):
            self.say(news)
        line = progress_line(status) + self.suffix
        if self.tty:
            print("\r" + line, end="", flush=True)
        elif line.split("]", 1)[-1] != self.last.split("]", 1)[-1]:
            print(line, flush=True)
        self.last = line

    def close(self) -> None:
        if self.tty and self.last:
            print()


class Study:
    """The Maestro process `mummi run` started (in its own process group), and its cancel."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, env: dict[str, str],
                 log: Any, *, queued_steps: bool) -> None:
        self.proc = proc
        self.out = out
        self.env = env
        self.log = log
        # Under a batch scheduler Maestro's conductor polls its steps and can cancel them
        # (scancel...); the local adapter blocks in its running step, so only signals reach it.
        self.queued_steps = queued_steps

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for Maestro to end; whether it has."""
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def cancel(self) -> None:
        """End the study within CANCEL_WAIT + 2 KILL_WAIT seconds: `maestro cancel` (its steps'
        scheduler jobs, queued or running), then its process group's end by signal."""
        if self.proc.poll() is not None:
            return
        if self.queued_steps and self.out.is_dir():
            deadline = time.monotonic() + CANCEL_WAIT
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(["maestro", "cancel", "-y", str(self.out)], env=self.env,
                               stdout=self.log, stderr=subprocess.STDOUT, timeout=CANCEL_WAIT,
                               check=False)
            if self.wait(max(0.0, deadline - time.monotonic())):
                return
        # Its local steps (the manager, say) are in its process group: all of it must end, not
        # only Maestro, which may die at SIGTERM while a hung step ignores it.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + KILL_WAIT
            try:
                os.killpg(self.proc.pid, sig)
                while time.monotonic() < deadline:
                    self.wait(0.1)  # reaps Maestro, whose zombie would keep the group
                    os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return


def follow_other(ws: Path, ledger: Ledger, held: LeaseRow, signals: Signals,
                 display: Display) -> str:
    """Follow a campaign another process holds until it ends. Returns ``"ended"`` (its lease
    released), ``"free"`` (its holder presumed dead: the caller takes over) or
    ``"interrupted"`` (Ctrl-C or SIGTERM: this process stops following, the campaign goes on)."""
    from mummi_spec.runtime.lease import free, who
    from mummi_spec.runtime.states import Holder

    display.say(f"campaign already running: {who(held)}; following it — Ctrl-C stops "
                f"following, `mummi stop {ws}` stops the campaign")
    while True:
        time.sleep(REFRESH)
        if signals.new():
            display.say(f"stopped following; the campaign goes on (`mummi stop {ws}` stops it)")
            return "interrupted"
        row = ledger.lease()
        now = time.time()
        if row is None or (row.token != held.token and free(row, now)):
            return "free"
        if row.released is not None:
            return "ended"
        if free(row, now):
            display.say(f"{who(row)} is gone (last heartbeat {now - row.heartbeat:.1f} s ago); "
                        "taking the campaign over")
            return "free"
        if row.token != held.token or row.holder is not held.holder:
            display.say(f"the campaign is now held by {who(row)}; following it"
                        if row.holder is Holder.LAUNCHER or row.token != held.token
                        else f"its manager started: {who(row)}")
            held = row
        display.show(ws)

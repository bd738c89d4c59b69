"""A campaign running in the background (`mummi run`), which a test freezes to read it at one
moment: while its manager is stopped (SIGSTOP) neither its ledger nor its status.json moves."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mummi_spec.errors import LedgerError
from mummi_spec.runtime.ledger import Ledger, read_lease
from mummi_spec.runtime.states import Holder
from tests.conftest import SPECS

T = TypeVar("T")
DEADLINE = 240.0  # seconds to wait for any one condition: generous, the machine is shared


def wait_for(what: str, check: Callable[[], T | None], deadline: float = DEADLINE) -> T:
    """Poll ``check`` until it returns something true."""
    end = time.monotonic() + deadline
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(0.05)


def query(ws: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the ledger the way any SQLite client would (read-only)."""
    db = sqlite3.connect(f"file:{ws / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


class Running:
    """``mummi run SPEC`` in ``cwd``, its output in ``cwd/run.out``."""

    def __init__(self, cwd: Path, spec: Path = SPECS / "mini.yaml",
                 workspace: str = "workspace/mini-mummi-local") -> None:
        self.cwd = cwd
        self.ws = cwd / workspace
        env = dict(os.environ, USER=os.environ.get("USER", "root"))
        env.pop("MUMMI_WORKSPACE", None)
        self.log = (cwd / "run.out").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mummi_spec", "run", str(spec)],
                                     cwd=cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def claimed(self) -> bool:
        """Whether `mummi run` has claimed the workspace (its ledger keeps the plan)."""
        try:
            return bool(query(self.ws, "SELECT 1 FROM meta WHERE key = 'plan'"))
        except sqlite3.Error:  # not there yet, or its tables not yet made
            return False

    def output(self) -> str:
        return (self.cwd / "run.out").read_text(errors="replace")

    def manager(self) -> int:
        """The manager's pid, once it runs."""
        def pid() -> int | None:
            assert self.proc.poll() is None, f"the campaign ended early:\n{self.output()}"
            try:  # the holder of the workspace's lease, once the manager has taken it
                db = Ledger.open_readonly(self.ws / "ledger.sqlite")
            except LedgerError:
                return None
            try:
                row = read_lease(db)
            finally:
                db.close()
            if row is None or row.holder is not Holder.MANAGER or row.released is not None:
                return None
            try:
                os.kill(row.pid, 0)
            except OSError:
                return None
            return row.pid
        return wait_for("the manager to start", pid)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads((self.ws / "status.json").read_text())
        return status

    def running_jobs(self) -> int:
        if not (self.ws / "status.json").exists():
            return 0
        return int(query(self.ws, "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND "
                                  "sim IS NOT NULL")[0][0])

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The manager stopped: the workspace holds still until the block ends."""
        pid = self.manager()
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def finish(self) -> int:
        """Wait for `mummi run` to end; its exit code."""
        try:
            code = self.proc.wait(timeout=DEADLINE)
        finally:
            self.log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # the manager stops cleanly
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _by(ws: Path, table: str, group: str) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for name, state, n in query(ws, f"SELECT {group}, state, COUNT(*) FROM {table} "
                                    f"GROUP BY {group}, state"):
        out.setdefault(name, Counter())[state] = n
    return out


def pipelines(ws: Path) -> dict[str, Counter[str]]:
    """coupling -> sims per state, from the ledger."""
    return _by(ws, "sims", "coupling")


def attempts(ws: Path) -> dict[str, Counter[str]]:
    """job type -> attempts per state, from the ledger."""
    return _by(ws, "jobs", "job_type")

"""`mummi status`: a running or finished campaign's state, and who holds it, from its workspace."""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mummi_spec.cli._shared import Exit
from mummi_spec.errors import LedgerError, UsageError

if TYPE_CHECKING:
    from mummi_spec.runtime.ledger import LeaseRow


def lease_of(ws: Path) -> LeaseRow | None:
    """The workspace's lease, read without writing anything; None without a ledger."""
    from mummi_spec.runtime.ledger import Ledger, read_lease

    try:
        db = Ledger.open_readonly(ws / "ledger.sqlite")
    except LedgerError:
        return None
    try:
        return read_lease(db)
    except sqlite3.Error:
        return None
    finally:
        db.close()


def run(args: argparse.Namespace) -> int:
    """Print a campaign's state and its manager: host, pid, heartbeat age."""
    from mummi_spec.runtime.lease import describe, free
    from mummi_spec.runtime.status import read_status, render

    ws = Path(args.workspace)
    status = read_status(ws)
    row = lease_of(ws)
    now = time.time()
    if status is None:
        if row is None:
            raise UsageError(f"{ws}: no status.json; is this a campaign workspace (the "
                             "`workspace:` of the spec, e.g. ./workspace/<name>)?")
        print(f"campaign in {ws}: no status yet")
    else:
        if status.get("state") == "running" and free(row, now):
            status["state"] = "not running (the manager ended without finishing; `mummi run` "\
                              "resumes it)"
        print(render(status), end="")
    print(describe(row, now))
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show a running or finished campaign")
    p.add_argument("workspace", help="the campaign's workspace directory")
    p.set_defaults(func=run)

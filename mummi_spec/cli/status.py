"""`mummi status`: a running or finished campaign's state and who holds it, from its workspace;
live with --watch."""

from __future__ import annotations

import argparse
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mummi_spec.cli._shared import Exit, plan_arg
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
    if args.watch:
        return watch(args)
    given = [f"--{n}" for n in ("every", "plan") if getattr(args, n) is not None]
    if given:
        raise UsageError(f"{' and '.join(given)}: only with --watch")
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


def watch(args: argparse.Namespace) -> int:
    """Redraw the campaign's state in place until it ends or Ctrl-C; both exit 0."""
    from rich.console import Console

    from mummi_spec.runtime import watch as live
    from mummi_spec.runtime.workspace import open_workspace

    every = live.REFRESH if args.every is None else args.every
    if not every > 0:
        raise UsageError(f"--every {every:g}: give a refresh interval in seconds above 0")
    campaign, _ = open_workspace(args.workspace, args.plan)
    stop = threading.Event()
    # Ctrl-C ends the loop between two redraws, so the terminal is always given back whole.
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        last = live.watch(campaign, Console(highlight=False), stop, every)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        campaign.close()
    if not last.ended:
        print(f"stopped watching; the campaign goes on (`mummi status {args.workspace}`)")
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show a running or finished campaign (live: --watch)")
    p.add_argument("workspace", help="the campaign's workspace directory")
    p.add_argument("--watch", "-w", action="store_true",
                   help="redraw in place until the campaign ends (Ctrl-C quits): pipelines "
                        "per coupling, jobs per type, busy GPUs and cores, the last events "
                        "and failures")
    p.add_argument("--every", type=float, metavar="SECONDS",
                   help="with --watch: seconds between two redraws (default: 1)")
    plan_arg(p, "with --watch: ")
    p.set_defaults(func=run)

"""`mummi stop`: ask a campaign's manager to stop, through its workspace, wherever it runs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit

DEFAULT_WAIT = 300.0  # seconds `mummi stop` waits for the manager to leave the workspace
POLL = 0.5


def run(args: argparse.Namespace) -> int:
    """Record a stop request for the workspace's holder, then wait until it has left."""
    from mummi_spec.runtime.lease import describe, free, requester, who
    from mummi_spec.runtime.ledger import Ledger
    from mummi_spec.runtime.status import read_status

    ws = Path(args.workspace)
    Ledger.open_readonly(ws / "ledger.sqlite").close()  # no campaign here: say so, create none
    ledger = Ledger(ws / "ledger.sqlite")
    try:
        row = ledger.lease()
        now = time.time()
        if row is None or free(row, now):
            print(f"nothing to stop in {ws}: {describe(row, now)}")
            return Exit.OK
        ledger.stop_lease(row.token, requester("`mummi stop`"))
        print(f"stop requested: {who(row)} stops at its next tick")
        deadline = now + args.wait
        while time.time() < deadline:
            time.sleep(POLL)
            cur = ledger.lease()
            if cur is None or cur.token != row.token or cur.released is not None:
                status = read_status(ws) or {}
                print(f"stopped: campaign {status.get('campaign', ws.name)} is "
                      f"{status.get('state', 'not started')}; `mummi run` resumes it")
                return Exit.OK
            if free(cur, time.time()):
                print(f"{describe(cur, time.time())}; nothing runs in {ws}")
                return Exit.OK
    finally:
        ledger.close()
    if args.wait > 0:
        print(f"mummi: {who(row)} still holds {ws} after {args.wait:g} s; it stops at its "
              f"next tick (`mummi status {ws}` shows its heartbeat)", file=sys.stderr)
        return Exit.FAILED
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser("stop", help="stop a running campaign through its workspace")
    p.add_argument("workspace", help="the campaign's workspace directory")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                   help=f"how long to wait for the manager to stop (default {DEFAULT_WAIT:g}; "
                        "0: return at once)")
    p.set_defaults(func=run)

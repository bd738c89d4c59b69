"""`mummi status`: a running or finished campaign's state, from its workspace."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit
from mummi_spec.cli.steps import manager_pid
from mummi_spec.errors import UsageError


def run(args: argparse.Namespace) -> int:
    """Print a campaign's state."""
    from mummi_spec.runtime.status import read_status, render

    ws = Path(args.workspace)
    status = read_status(ws)
    if status is None:
        raise UsageError(f"{ws}: no status.json; is this a campaign workspace (the `workspace:` "
                         "of the spec, e.g. ./workspace/<name>)?")
    if status.get("state") == "running" and manager_pid(ws) is None:
        status["state"] = "not running (the manager ended without finishing; `mummi run` "\
                          "resumes it)"
    print(render(status), end="")
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show a running or finished campaign")
    p.add_argument("workspace", help="the campaign's workspace directory")
    p.set_defaults(func=run)

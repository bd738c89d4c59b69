"""`mummi explain`: the recorded history of one candidate, sim, job or name of a campaign."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit


def run(args: argparse.Namespace) -> int:
    """Print everything the workspace's record says about the id."""
    from mummi_spec.runtime.explain_find import find
    from mummi_spec.runtime.explain_render import to_data, to_text
    from mummi_spec.runtime.history import History

    history = History(args.workspace)
    try:
        found = find(history, args.id)
    finally:
        history.close()
    if args.json:
        print(json.dumps(to_data(args.id, found), indent=1, sort_keys=True))
    else:
        print(to_text(found), end="")
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "explain", help="the whole history of a candidate, sim or job of a campaign",
        description="Everything the campaign's ledger records about ID: for a candidate, sim "
                    "or job attempt (or a scheduler id), the stream it arrived on and when, "
                    "the select call that chose it (rank, queue, score, what else it picked), "
                    "every setup and simulation attempt (scheduler id, exit code, reason, "
                    "directory), the feedback items its simulation wrote and the iterations "
                    "that consumed them; for a stream, coupling, job type, feedback loop, "
                    "selector or the campaign's name, what the record counts for it. See "
                    "docs/steering.md.")
    p.add_argument("workspace", type=Path, metavar="WORKSPACE",
                   help="the campaign's workspace directory")
    p.add_argument("id", metavar="ID", help="a candidate, sim, job attempt, scheduler id, "
                                            "feedback item or name from `mummi status`")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=run)

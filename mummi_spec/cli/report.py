"""`mummi report`: the campaign report page of a workspace, written on demand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit, plan_arg


def run(args: argparse.Namespace) -> int:
    """Write report.html for a running or finished campaign."""
    from mummi_spec.runtime.reportpage import write_report
    from mummi_spec.runtime.workspace import open_workspace

    campaign, _ = open_workspace(args.workspace, args.plan)
    try:
        path = write_report(campaign, args.output)
    finally:
        campaign.close()
    print(path)
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="write a campaign's report page (report.html)",
        description="Write one self-contained HTML page (figures inline, nothing fetched) "
                    "about a running or finished campaign: summary, occupancy, jobs over "
                    "time, coverage, feedback targets, failures with reasons, selections. "
                    "`mummi run` writes it at the end of every run, next to summary.txt.")
    p.add_argument("workspace", help="the campaign's workspace directory")
    p.add_argument("-o", "--output", type=Path,
                   help="where to write the page (default: WORKSPACE/report.html)")
    plan_arg(p)
    p.set_defaults(func=run)

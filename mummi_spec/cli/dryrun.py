"""`mummi dry-run`: the jobs, resource plan, steps and graph; nothing is submitted or written."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit, chosen_profile, load_and_compile, profile_args


def run(args: argparse.Namespace) -> int:
    """Show what a campaign would run."""
    from mummi_spec.dryrun import report, to_text

    loaded, compiled = load_and_compile(args.spec, chosen_profile(args))
    if args.format == "json":
        print(json.dumps(report(loaded.spec, compiled), indent=2, sort_keys=True))
    elif args.format == "dot":
        print(compiled.files["graph.dot"], end="")
    elif args.format == "mermaid":
        print(compiled.files["graph.mmd"], end="")
    else:
        print(to_text(report(loaded.spec, compiled)), end="")
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser("dry-run", help="show the jobs, resource plan and graph; submit nothing")
    p.add_argument("spec", type=Path)
    p.add_argument("--format", choices=("text", "json", "dot", "mermaid"), default="text")
    profile_args(p)
    p.set_defaults(func=run)

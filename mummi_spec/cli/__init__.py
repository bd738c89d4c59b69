"""The `mummi` command line: ``main`` imports every command; no command imports ``main``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mummi_spec import __version__
from mummi_spec.cli import (
    app,
    compile,
    diff,
    dryrun,
    explain,
    replay,
    report,
    run,
    simulate,
    status,
    steps,
    stop,
    validate,
)
from mummi_spec.cli._shared import error_handler

# In `mummi --help` order: check, build, inspect, run, watch, stop, steer (replay, explain,
# report), predict; the study's steps, then what a job's own program calls, last.
COMMANDS = (validate, compile, dryrun, diff, run, status, stop, replay, explain, report,
            simulate, steps, app)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mummi", description="Validate, compile, inspect and run ML-driven multiscale "
                                  "simulation campaigns.")
    parser.add_argument("--version", action="version", version=f"mummi-spec {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mummi`` with ``argv``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with error_handler(args.debug) as code:
        code[0] = int(args.func(args))
    return code[0]

"""The `mummi` command line: a thin argparse shell over the library, exit codes in one place."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from enum import IntEnum
from pathlib import Path

from mummi_spec import __version__
from mummi_spec.errors import MummiError, SpecError, SpecErrors


class Exit(IntEnum):
    """Process exit codes."""

    OK = 0
    # diff found changes, or a run stopped because a job type cannot start (exit 126/127);
    # a campaign that completes with sims failed after their retries ends 0
    DIFFERENCES = 1
    USER_ERROR = 2  # bad spec or arguments (argparse uses 2 as well)
    INTERNAL_ERROR = 3
    INTERRUPTED = 130


def _sources(err: SpecErrors) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in err.errors:
        if e.location and e.location.file not in out:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                out[e.location.file] = Path(e.location.file).read_text(encoding="utf-8")
    return out


@contextlib.contextmanager
def error_handler(debug: bool) -> Iterator[list[int]]:
    """Map exceptions to messages and exit codes; tracebacks only for bugs with --debug."""
    code = [int(Exit.OK)]
    try:
        yield code
    except SpecErrors as err:
        print(err.render(_sources(err)), file=sys.stderr)
        n = len(err.errors)
        print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
        code[0] = Exit.USER_ERROR
    except MummiError as err:
        print(f"mummi: error: {err}", file=sys.stderr)
        code[0] = Exit.USER_ERROR
    except BrokenPipeError:
        # The reader went away (`mummi dry-run ... | head`); that is not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    except KeyboardInterrupt:
        print("mummi: interrupted", file=sys.stderr)
        code[0] = Exit.INTERRUPTED
    except Exception as err:
        if debug:
            raise
        print(f"mummi: internal error: {type(err).__name__}: {err}\n"
              "  this is a bug in mummi-spec; re-run with --debug for the traceback",
              file=sys.stderr)
        code[0] = Exit.INTERNAL_ERROR


def print_warnings(warnings: Sequence[SpecError], source: str | None) -> None:
    """Warnings go to stderr, rendered like errors."""
    for w in warnings:
        print(w.render(source), file=sys.stderr)


def _profile_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--profile", "-p", metavar="NAME",
                   help="apply this profile (default: the spec's default_profile)")
    g.add_argument("--no-profile", action="store_true",
                   help="use the base spec even if it names a default profile")


def chosen_profile(args: argparse.Namespace) -> str | None:
    """The --profile/--no-profile choice as the front end takes it."""
    from mummi_spec.frontend import NO_PROFILE

    return NO_PROFILE if args.no_profile else args.profile


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a spec (and every profile, unless one is named) and summarise it."""
    from mummi_spec.compiler.resources import plan_resources
    from mummi_spec.frontend import load_spec, validate_everything
    from mummi_spec.summary import summarize

    if args.profile is None and not args.no_profile:
        loaded, problems = validate_everything(args.spec)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise SpecErrors(errors)
        default = loaded[None].data.get("default_profile") if None in loaded else None
        shown = loaded.get(default) or loaded.get(None) or next(iter(loaded.values()))
        warns = [p for p in problems if p.severity == "warning"]
        others = len(loaded) - 1
        note = (f"profile '{shown.spec.profile}', the spec's default; base and {others} "
                "profile(s) checked") if shown.spec.profile else \
            f"base spec; {others} profile(s) checked too"
    else:
        shown = load_spec(args.spec, profile=chosen_profile(args))
        warns = list(shown.warnings)
        note = f"profile '{shown.spec.profile}'" if shown.spec.profile else "base spec"
    _, plan_problems = plan_resources(shown.spec, shown.smap)
    plan_errors = [p for p in plan_problems if p.severity == "error"]
    if plan_errors:
        raise SpecErrors(plan_errors)
    seen = {str(w) for w in warns}
    warns += [p for p in plan_problems if str(p) not in seen]
    print_warnings(sorted(warns, key=SpecError.sort_key), shown.text)
    print(summarize(shown.spec, note))
    return Exit.OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mummi", description="Validate, compile, inspect and run ML-driven multiscale "
                                  "simulation campaigns.")
    parser.add_argument("--version", action="version", version=f"mummi-spec {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check a spec: every error at once, file:line:col")
    p.add_argument("spec", type=Path)
    _profile_args(p)
    p.set_defaults(func=cmd_validate)

    from mummi_spec import commands

    commands.register(sub, _profile_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mummi`` with ``argv``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with error_handler(args.debug) as code:
        code[0] = int(args.func(args))
    return code[0]

"""What every command shares: exit codes, the error handler, profiles, load and compile."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from mummi_spec.errors import MummiError, SpecError, SpecErrors, UsageError

if TYPE_CHECKING:
    from mummi_spec.compiler.compile import Compiled
    from mummi_spec.frontend import Loaded


class Exit(IntEnum):
    """Process exit codes."""

    OK = 0
    # diff found changes, or a run stopped because a job type cannot start (exit 126/127);
    # a campaign that completes with sims failed after their retries ends 0
    DIFFERENCES = 1
    FAILED = 1  # the same code, for a run: the work is not done
    USER_ERROR = 2  # bad spec or arguments (argparse uses 2 as well)
    INTERNAL_ERROR = 3
    RESUMABLE = 75  # EX_TEMPFAIL: the allocation ended before the campaign; run it again
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


def profile_args(p: argparse.ArgumentParser) -> None:
    """--profile NAME | --no-profile."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--profile", "-p", metavar="NAME",
                   help="apply this profile (default: the spec's default_profile)")
    g.add_argument("--no-profile", action="store_true",
                   help="use the base spec even if it names a default profile")


def plan_arg(p: argparse.ArgumentParser, when: str = "") -> None:
    """--plan PLAN: for a workspace whose ledger does not keep the plan it was started with."""
    p.add_argument("--plan", type=Path,
                   help=f"{when}the plan.json the campaign was started with, for a workspace "
                        "whose ledger does not keep it (started by an older mummi)")


def chosen_profile(args: argparse.Namespace) -> str | None:
    """The --profile/--no-profile choice as the front end takes it."""
    from mummi_spec.frontend import NO_PROFILE

    return NO_PROFILE if args.no_profile else args.profile


def load_and_compile(spec: Path, profile: str | None, *, nodes: int | None = None
                     ) -> tuple[Loaded, Compiled]:
    """Load a spec with a profile, compile it in memory and print its warnings.

    ``nodes`` replaces ``machine.nodes`` first (the resource plan follows).
    """
    import dataclasses

    from mummi_spec.compiler.compile import compile_loaded
    from mummi_spec.frontend import load_spec

    loaded = load_spec(spec, profile=profile)
    if nodes is not None:
        m = loaded.spec.machine
        reserved = m.reserved_manager + m.reserved_services
        if nodes <= reserved:
            raise UsageError(f"--nodes {nodes} leaves no node for jobs: the spec reserves "
                             f"{reserved} (machine.reserved)")
        changed = dataclasses.replace(loaded.spec, machine=dataclasses.replace(m, nodes=nodes))
        loaded = dataclasses.replace(loaded, spec=changed)
    compiled = compile_loaded(loaded)
    print_warnings(compiled.warnings, loaded.text)
    return loaded, compiled



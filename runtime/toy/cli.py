"""Command line of the toy applications: arguments, dispatch and exit codes in one place."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mummi_spec.errors import MummiError, StoreError
from mummi_spec.runtime.toy._model import TERMINATED, TerminatedError, ToyFailureError

FAILED = 1  # the job failed as a real application can (the manager may retry it)
USER_ERROR = 2  # bad arguments, plan or environment: a retry would fail the same way
INTERRUPTED = 130


def _number(low: float, high: float | None = None, kind: type = float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text} is not {span}")
        return value  # type: ignore[no-any-return]

    return parse


def parser() -> argparse.ArgumentParser:
    """``python -m mummi_spec.runtime.toy generator|setup|simulate``."""
    top = argparse.ArgumentParser(
        prog="python -m mummi_spec.runtime.toy",
        description="Toy multiscale applications; all data goes through the plan's stores.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        plan = os.environ.get("MUMMI_PLAN")  # the manager sets it; --plan wins
        p.add_argument("--plan", required=not plan, default=plan, type=Path,
                       help="the compiled plan.json (default: $MUMMI_PLAN)")
        p.add_argument("--seed", type=int, default=0, help="seed of every random draw (0)")
        return p

    g = command("generator", "coarse model: write candidates to a stream, steered by feedback")
    g.add_argument("--stream", required=True, metavar="SCALE.STREAM",
                   help="the candidates stream to write")
    g.add_argument("--count", type=_number(0, kind=int), default=100,
                   help="candidates to write (100)")
    g.add_argument("--every", type=_number(0), default=0.05, metavar="SECONDS",
                   help="pace between candidates (0.05)")
    g.add_argument("--poll", type=_number(0), default=1.0, metavar="SECONDS",
                   help="how often to re-read the feedback targets (1.0)")

    def job_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workdir", required=True, type=Path, help="where outputs go")
        p.add_argument("--success-file", metavar="NAME",
                       help="file written last on success (default: the plan's, '' for none)")
        p.add_argument("--coupling", metavar="NAME",
                       help="the coupling served (default: $MUMMI_COUPLING, else from the job)")

    s = command("setup", "setup job: prepare a simulation system from one candidate")
    s.add_argument("--candidate", metavar="KEY", help="candidate key (default: $MUMMI_CANDIDATE)")
    job_args(s)
    s.add_argument("--fail-rate", type=_number(0, 1), default=0.0, metavar="F",
                   help="probability of a simulated failure, per candidate and attempt (0)")
    s.add_argument("--seconds", type=_number(0), default=0.45, metavar="S",
                   help="typical run time; the actual one is 2/3 to 4/3 of it (0.45)")

    m = command("simulate", "simulation job: random walk writing frames and feedback")
    m.add_argument("--sim", help="simulation id (default: $MUMMI_SIM)")
    m.add_argument("--setup", required=True, type=Path, metavar="DIR",
                   help="the setup job's work directory")
    job_args(m)
    m.add_argument("--stop", default="", help="'N steps' runs N steps; anything else 20")
    m.add_argument("--frames", metavar="SCALE.STREAM", help="stream to write a frame per step")
    m.add_argument("--feedback", metavar="SCALE.STREAM", help="stream to write feedback items")
    m.add_argument("--step-seconds", type=_number(0), default=0.1, metavar="S",
                   help="wall time per step (0.1)")
    m.add_argument("--hang-rate", type=_number(0, 1), default=0.0, metavar="F",
                   help="probability that an attempt hangs until its walltime kills it, per "
                        "candidate and attempt (0)")
    return top


def dispatch(args: argparse.Namespace) -> int:
    # Imported here so `--help` and argument errors cost no numpy import.
    if args.command == "generator":
        from mummi_spec.runtime.toy import generator

        return generator.run(args.plan, args.stream, args.count, args.every, args.poll, args.seed)
    if args.command == "setup":
        from mummi_spec.runtime.toy import setup

        return setup.run(args.plan, args.candidate, args.workdir, args.fail_rate,
                         args.success_file, args.seconds, args.coupling, args.seed)
    from mummi_spec.runtime.toy import simulate

    return simulate.run(args.plan, args.sim, args.setup, args.workdir, args.stop, args.frames,
                        args.feedback, args.success_file, args.step_seconds, args.coupling,
                        args.seed, args.hang_rate)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one toy application; exit 0 done, 1 failed, 2 unusable input, 143 on SIGTERM."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message (or the help)
        return int(exc.code or 0)
    prefix = f"toy {args.command}"
    try:
        return dispatch(args)
    except TerminatedError:
        print(f"{prefix}: terminated", file=sys.stderr)
        return TERMINATED
    except (ToyFailureError, StoreError) as exc:
        print(f"{prefix}: failed: {exc}", file=sys.stderr)
        return FAILED
    except MummiError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return INTERRUPTED

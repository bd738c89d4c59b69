"""`mummi app`: the application interface (mummi_spec.app) for shell scripts and compiled codes."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mummi_spec.cli._shared import Exit

if TYPE_CHECKING:
    import numpy as np

    from mummi_spec.app import Context

NPY_MAGIC = b"\x93NUMPY"


def _environ(args: argparse.Namespace) -> dict[str, str]:
    """The job's MUMMI_* variables, ``--plan`` over ``$MUMMI_PLAN``."""
    env = {k: v for k, v in os.environ.items() if k.startswith("MUMMI_")}
    if args.plan:
        env["MUMMI_PLAN"] = str(Path(args.plan).resolve())
    return env


def _context(args: argparse.Namespace) -> Context:
    from mummi_spec.app import AppError, Context

    env = _environ(args)
    if not env.get("MUMMI_PLAN"):
        raise AppError("not in a campaign: MUMMI_PLAN is not set (the manager sets it for "
                       "every job); outside one, give --plan build/plan.json")
    return Context.from_env(env)


def _items(stream: str, source: str, data: bytes) -> list[np.ndarray]:
    """The items of one input: a .npy or JSON array, 1-D (one item) or 2-D (one per row)."""
    import numpy as np

    from mummi_spec.app import AppError

    name = "stdin" if source == "-" else source
    try:
        if data.startswith(NPY_MAGIC):
            array = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            array = np.asarray(json.loads(data), dtype=np.float64)
        array = np.asarray(array, dtype=np.float64)
    except (ValueError, TypeError, OSError) as exc:
        raise AppError(f"stream {stream}: {name} is neither a .npy array nor a JSON array of "
                       f"numbers ({exc})") from None
    if array.ndim == 1:
        return [array]
    if array.ndim == 2:
        return list(array)
    raise AppError(f"stream {stream}: {name} holds a {array.ndim}-D array; give one item "
                   "(1-D, its values) or one item per row (2-D)")


def emit(args: argparse.Namespace) -> int:
    """Write the items of every FILE to a stream in one batch; print their keys."""
    from mummi_spec.app import AppError

    meta: Any = None
    if args.meta is not None:
        try:
            meta = json.loads(args.meta)
        except ValueError as exc:
            raise AppError(f"stream {args.stream}: --meta is not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise AppError(f"stream {args.stream}: --meta must be a JSON object, e.g. "
                           "'{\"step\": 10}'")
    if args.files.count("-") > 1:
        raise AppError(f"stream {args.stream}: '-' (stdin) given twice")
    rows: list[np.ndarray] = []
    for source in args.files:
        try:
            data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        except OSError as exc:
            raise AppError(f"stream {args.stream}: cannot read {source} "
                           f"({exc.strerror or exc})") from None
        rows += _items(args.stream, source, data)
    with _context(args) as ctx:
        stream = ctx.stream(args.stream)  # an unknown stream fails before anything is written
        n = len(rows)
        keys = stream.emit_many(rows, ids=args.id, tags=None if args.tag is None
                                else [args.tag] * n, metas=None if meta is None else [meta] * n)
    for key in keys:
        print(key)
    return Exit.OK


def _texts(values: np.ndarray) -> list[str]:
    """Each value as the shortest text that reads back as the same float32."""
    import numpy as np

    return [str(np.float32(v)) for v in values]


def _show(args: argparse.Namespace, values: np.ndarray, fields: dict[str, Any]) -> None:
    """Values to ``--out`` (.npy, float32), or with every field as ``--json``, or one line."""
    import numpy as np

    texts = _texts(values)
    if args.out is not None:
        with open(args.out, "wb") as out:  # the name as given: np.save would add .npy
            np.save(out, np.asarray(values, dtype=np.float32))
    elif args.json:
        print(json.dumps({**fields, "values": [float(t) for t in texts]}))
    else:
        print(" ".join(texts))


def candidate(args: argparse.Namespace) -> int:
    """The candidate this setup or simulation job works on."""
    with _context(args) as ctx:
        c = ctx.candidate()
    _show(args, c.values, {"id": c.id, "stream": c.stream, "tag": c.tag, "meta": c.meta})
    return Exit.OK


def target(args: argparse.Namespace) -> int:
    """What a feedback loop reported last; with --wait, once it is newer than that."""
    import math

    waiting = args.wait is not None or args.timeout is not None
    newer = args.wait or 0
    with _context(args) as ctx:
        if waiting:
            t = ctx.wait_target(args.loop, newer,
                                timeout=math.inf if args.timeout is None else args.timeout,
                                poll=args.poll)
        else:
            t = ctx.target(args.loop)
    if t is None:
        said = f"nothing newer than iteration {newer}" if waiting else "nothing yet"
        print(f"mummi app: feedback loop {args.loop} has reported {said}", file=sys.stderr)
        return Exit.FAILED
    _show(args, t.values, {"loop": t.loop, "iteration": t.iteration, "items": t.items,
                           "meta": t.meta})
    return Exit.OK


def env(args: argparse.Namespace) -> int:
    """The job's context as JSON: its variables and what the plan says of its job type."""
    variables = _environ(args)
    with _context(args) as ctx:
        info = {
            "plan": str(ctx.plan_path), "workspace": str(ctx.workspace),
            "job_type": ctx.job_type, "role": ctx.role, "stop": ctx.stop,
            "attempt": ctx.attempt, "restart": ctx.restart, "sim": ctx.sim,
            "candidate": ctx.candidate_id, "coupling": ctx.coupling,
            "setup_dir": None if ctx.setup_dir is None else str(ctx.setup_dir),
            "state_dir": None if ctx.state_dir is None else str(ctx.state_dir),
            "targets": ctx.targets_for() if ctx.job_type else [],
            "variables": dict(sorted(variables.items())),
        }
    print(json.dumps(info, indent=2))
    return Exit.OK


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an iteration number (0, 1, ...)")
    return int(text)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "app", help="for a job's own program: emit items, read its candidate or a target",
        description="The application interface for shell scripts and compiled codes. Inside "
                    "a job, the MUMMI_* variables the manager sets say which campaign and job "
                    "it is; outside one, give --plan. Errors exit 2 and write nothing.")
    cmds = p.add_subparsers(dest="app_command", metavar="SUBCOMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plan", metavar="PLAN",
                        help="the compiled plan.json (default: $MUMMI_PLAN)")

    def command(name: str, help_: str, description: str, func: Any) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = cmds.add_parser(name, parents=[common], help=help_,
                                                     description=description)
        q.set_defaults(func=func)
        return q

    def output(q: argparse.ArgumentParser) -> None:
        g = q.add_mutually_exclusive_group()
        g.add_argument("--out", metavar="FILE.npy", help="write the values to a .npy file "
                       "(float32) instead of printing them")
        g.add_argument("--json", action="store_true",
                       help="print every field as one JSON object (default: the values)")

    e = command("emit", "write items to a stream; prints keys", "Write items to a stream in "
                "one batch (all checked first) and print each key written.", emit)
    e.add_argument("stream", metavar="STREAM", help="the stream, scale.name")
    e.add_argument("files", nargs="+", metavar="FILE",
                   help=".npy or JSON array: 1-D is one item, 2-D one item per row; - is stdin")
    e.add_argument("--id", action="append", metavar="ID",
                   help="the item's id (once per item, in order; default: numbered)")
    e.add_argument("--tag", help="tag of every item (one of the stream's tags)")
    e.add_argument("--meta", metavar="JSON", help="JSON object kept with every item")

    output(command("candidate", "this job's selected candidate",
                   "The candidate this setup or simulation job works on.", candidate))

    t = command("target", "what a feedback loop reported last", "The latest target of a "
                "feedback loop; exit 1 if there is none (newer than --wait) yet.", target)
    t.add_argument("loop", metavar="LOOP", help="the feedback loop's name")
    t.add_argument("--wait", type=_count, metavar="NEWER_THAN",
                   help="wait for an iteration newer than this one (0: the first)")
    t.add_argument("--timeout", type=_seconds, metavar="S",
                   help="stop waiting after S seconds (default: wait for ever)")
    t.add_argument("--poll", type=_seconds, default=1.0, metavar="S",
                   help="how often to look while waiting (default: 1)")
    output(t)

    command("env", "this job's context as JSON", "The job's MUMMI_* variables, its role and "
            "stop condition, and the feedback loops reporting to its scale.", env)

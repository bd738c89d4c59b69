"""`mummi replay`: what another spec's selectors would have picked from a campaign's candidates."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit, chosen_profile, load_and_compile, profile_args
from mummi_spec.errors import SpecError, SpecErrors, UsageError


def run(args: argparse.Namespace) -> int:
    """Replay the workspace's record against the spec's selectors; print, plot."""
    from mummi_spec.runtime.history import History
    from mummi_spec.runtime.replay import ReplayError, When, replay
    from mummi_spec.runtime.replay_render import plot, to_data, to_text

    if args.plot is not None:  # before the work, not after it
        if args.plot.suffix.lower() != ".png":
            raise UsageError(f"--plot {args.plot}: the picture is a PNG; name a .png file")
        if not args.plot.parent.is_dir():
            raise UsageError(f"--plot {args.plot}: no directory {args.plot.parent} to write "
                             "it in")
    history = History(args.workspace)  # the workspace first: the cheaper mistake to catch
    try:
        loaded, compiled = load_and_compile(args.spec, chosen_profile(args))
        try:
            result = replay(history, compiled.plan, When(args.when))
        except ReplayError as exc:
            raise SpecErrors([SpecError(exc.message, loaded.smap.locate(exc.path),
                                        hint=exc.hint)]) from None
    finally:
        history.close()
    if args.plot:
        try:
            plot(result, args.plot)
        except OSError as exc:
            raise UsageError(f"--plot {args.plot}: cannot write it ({exc.strerror})") from None
    if args.json:
        print(json.dumps(to_data(result, history.started), indent=1, sort_keys=True))
    else:
        print(to_text(result, str(args.workspace), str(args.spec), compiled.plan.profile),
              end="")
        if args.plot:
            print(f"wrote {args.plot}")
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay", help="replay a campaign's candidates against another spec's selectors",
        description="Give the candidates a campaign received, in their arrival order, to the "
                    "selectors of NEW_SPEC (the real selector classes, built fresh), asking "
                    "for selections when the campaign asked (or when NEW_SPEC's policy would: "
                    "--when budget), and compare with what the campaign really picked: "
                    "selections per queue, overlap, covering radius, mean distance to the "
                    "nearest selection. Replayed against its own spec, a campaign's "
                    "selections come back exactly. See docs/steering.md.")
    p.add_argument("workspace", type=Path, metavar="WORKSPACE",
                   help="the campaign's workspace directory")
    p.add_argument("spec", type=Path, metavar="NEW_SPEC", help="the spec whose selectors replay")
    profile_args(p)
    p.add_argument("--when", choices=("recorded", "budget"), default="recorded",
                   help="ask for selections when the campaign asked, as many as it asked "
                        "(recorded, the default), or when NEW_SPEC's budgets would (budget)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE",
                   help="draw candidates and both selections in the encoding space (PNG)")
    p.set_defaults(func=run)

"""`mummi simulate`: predict a campaign's occupancy in virtual time before spending node-hours."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit, chosen_profile, load_and_compile, profile_args

PAPER_RATE = 100 / 60  # SC'21: "We configured our runs to submit ~100 jobs/min"


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    """Compile the spec, run its manager in virtual time, print and write the prediction."""
    from mummi_spec.runtime.simulate.report import metrics, to_text, write_all
    from mummi_spec.runtime.simulate.run import Options, simulate

    # The resource plan is recomputed for --nodes.
    _, compiled = load_and_compile(args.spec, chosen_profile(args), nodes=args.nodes)
    plan = compiled.plan
    options = Options(hours=args.hours, seed=args.seed, start=args.start, startup=args.startup,
                      per_second=args.throttle, items_per_hour=args.items_per_hour)
    # The manager logs every failed job; a day of a large campaign has thousands.
    logging.getLogger("mummi").setLevel(logging.ERROR)
    began = time.perf_counter()
    result = simulate(plan, options)
    took = time.perf_counter() - began
    out = args.output or Path(f"simulate-{plan.name}")
    paths = write_all(result, out)
    print(to_text(metrics(result)), end="")
    print(f"\nsimulated {args.hours:g} h in {took:.1f} s; wrote "
          + ", ".join(str(p) for p in paths.values()))
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate", help="predict occupancy and throughput in virtual time; submit nothing",
        description="Run the compiled campaign's workflow manager against a simulated machine "
                    "and scheduler in virtual time: job durations, failure rates and data "
                    "rates come from the spec's `expect` blocks (else the papers' figures). "
                    "Prints a summary and writes occupancy.png, jobs.png, occupancy.csv and "
                    "summary.txt.")
    p.add_argument("spec", type=Path)
    profile_args(p)
    p.add_argument("--hours", type=_positive(float), default=24.0,
                   help="simulated duration (default: 24)")
    p.add_argument("--nodes", type=_positive(int),
                   help="override machine.nodes (the resource plan is recomputed)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    p.add_argument("--start", choices=("warm", "cold"), default="warm",
                   help="warm (default): resume a loaded campaign, every GPU's simulation cut "
                        "short by the previous allocation and the ready buffers full, as each "
                        "SC'21 allocation did; cold: the campaign's first allocation")
    p.add_argument("--throttle", type=_positive(float), nargs="?", const=PAPER_RATE,
                   metavar="PER_SECOND",
                   help="submissions per second (default: the spec's scheduler.throttle); "
                        "without a value, SC'21's ~100 jobs/min")
    p.add_argument("--startup", type=float, metavar="SECONDS",
                   help="scheduler start-up delay (default: scheduler.expect.startup, else 10)")
    p.add_argument("--items-per-hour", type=_positive(float), default=1000.0, metavar="N",
                   help="most store items per stream and simulated hour; faster streams are "
                        "thinned, each item standing for several (default: 1000)")
    p.add_argument("-o", "--output", type=Path,
                   help="where the plots, CSV and summary go (default: ./simulate-<campaign>)")
    p.set_defaults(func=run)

"""Subcommands beyond validate: each a small function over the compiler and runtime APIs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cmd_compile(args: argparse.Namespace) -> int:
    """Compile a spec into a build directory."""
    from mummi_spec.cli import chosen_profile, print_warnings
    from mummi_spec.compiler.compile import compile_loaded
    from mummi_spec.compiler.emit import write
    from mummi_spec.frontend import load_spec

    loaded = load_spec(args.spec, profile=chosen_profile(args))
    compiled = compile_loaded(loaded)
    print_warnings(compiled.warnings, loaded.text)
    paths = write(args.output, compiled.files)
    prof = loaded.spec.profile or "none"
    print(f"compiled {args.spec} (profile {prof}) into {args.output}/: {len(paths)} files")
    for name in compiled.files:
        print(f"  {name}")
    return 0


def cmd_dry_run(args: argparse.Namespace) -> int:
    """Show the jobs, resource plan, steps and graph; nothing is submitted or written."""
    import json

    from mummi_spec.cli import chosen_profile, print_warnings
    from mummi_spec.compiler.compile import compile_loaded
    from mummi_spec.compiler.dryrun import report, to_text
    from mummi_spec.frontend import load_spec

    loaded = load_spec(args.spec, profile=chosen_profile(args))
    compiled = compile_loaded(loaded)
    print_warnings(compiled.warnings, loaded.text)
    if args.format == "json":
        print(json.dumps(report(loaded.spec, compiled), indent=2, sort_keys=True))
    elif args.format == "dot":
        print(compiled.files["graph.dot"], end="")
    elif args.format == "mermaid":
        print(compiled.files["graph.mmd"], end="")
    else:
        print(to_text(report(loaded.spec, compiled)), end="")
    return 0


def register(sub: Any, profile_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the compile/dry-run/diff/run/status/simulate subcommands to ``sub``."""
    p = sub.add_parser("compile", help="write the Maestro study, job templates and runtime plan")
    p.add_argument("spec", type=Path)
    p.add_argument("-o", "--output", type=Path, default=Path("build"),
                   help="build directory (default: ./build)")
    profile_args(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("dry-run", help="show the jobs, resource plan and graph; submit nothing")
    p.add_argument("spec", type=Path)
    p.add_argument("--format", choices=("text", "json", "dot", "mermaid"), default="text")
    profile_args(p)
    p.set_defaults(func=cmd_dry_run)

    from mummi_spec import diffcmd  # `mummi diff` lives in its own module

    diffcmd.register(sub, profile_args)
    from mummi_spec import runcmd

    runcmd.register(sub, profile_args)
    from mummi_spec import simcmd

    simcmd.register(sub, profile_args)

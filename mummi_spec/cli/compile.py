"""`mummi compile`: the Maestro study, job templates and runtime plan, written to a build."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit, chosen_profile, load_and_compile, profile_args


def run(args: argparse.Namespace) -> int:
    """Compile a spec into a build directory."""
    from mummi_spec.compiler.emit import write

    loaded, compiled = load_and_compile(args.spec, chosen_profile(args))
    paths = write(args.output, compiled.files)
    prof = loaded.spec.profile or "none"
    print(f"compiled {args.spec} (profile {prof}) into {args.output}/: {len(paths)} files")
    for name in compiled.files:
        print(f"  {name}")
    return Exit.OK


def register(sub: Any) -> None:
    p = sub.add_parser("compile", help="write the Maestro study, job templates and runtime plan")
    p.add_argument("spec", type=Path)
    p.add_argument("-o", "--output", type=Path, default=Path("build"),
                   help="build directory (default: ./build)")
    profile_args(p)
    p.set_defaults(func=run)

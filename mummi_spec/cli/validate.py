"""`mummi validate`: every error at once, then a one-screen summary of a valid spec."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit, chosen_profile, print_warnings, profile_args
from mummi_spec.errors import SpecError, SpecErrors


def run(args: argparse.Namespace) -> int:
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


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a spec: every error at once, file:line:col")
    p.add_argument("spec", type=Path)
    profile_args(p)
    p.set_defaults(func=run)

"""`mummi diff`: the semantic difference of two campaigns, as text or JSON."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mummi_spec.cli._shared import (
    Exit,
    chosen_profile,
    load_and_compile,
    plan_arg,
    profile_args,
)
from mummi_spec.errors import UsageError
from mummi_spec.units import per_allocation

if TYPE_CHECKING:
    from mummi_spec.compiler.diff import CampaignDiff, Side
    from mummi_spec.errors import SourceLocation
    from mummi_spec.wsdiff import WorkspaceDiff

# plan.json keeps durations in seconds; the text says so.
_DURATIONS = {"walltime", "poll", "tick", "checkpoint_every", "stop_after", "period", "every",
              "duration", "duration_sd", "startup", "retry_for", "write_retry_for"}
_MARK = {"added": "+", "removed": "-", "changed": "~"}
_WIDTH = 48


def _value(path: str, v: Any) -> str:
    if v is None:
        return "null"
    if path.rsplit(".", 1)[-1] in _DURATIONS and isinstance(v, (int, float)):
        return f"{v:g}s"
    text = json.dumps(v, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _at(loc: SourceLocation | None) -> str:
    return "-" if loc is None else f"{loc.file}:{loc.line}"


def _number(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"


def to_text(d: CampaignDiff) -> str:
    """The human-readable report of ``mummi diff``."""
    def side(mark: str, s: Side) -> str:
        return f"{mark} {s.file} ({f'profile {s.profile}' if s.profile else 'base spec'})"

    out = [side("---", d.old), side("+++", d.new)]
    if d.same:
        return "\n".join([*out, "no differences: the two campaigns are the same", ""])
    group = None
    for c in d.changes:
        if c.group != group:
            group = c.group
            n = sum(x.group == group for x in d.changes)
            out.append(f"{group} ({n} change{'s' if n != 1 else ''})")
        if c.kind == "changed":
            what = f"{_value(c.path, c.old)} → {_value(c.path, c.new)}"
        else:
            what = _value(c.path, c.new if c.kind == "added" else c.old)
        out.append(f"  {_MARK[c.kind]} {c.path}: {what}")
        out.append(f"      {_at(c.old_at)} → {_at(c.new_at)}")
    out.append("consequences")
    if d.concurrency:
        out.append("  max concurrent instances:")
        width = max(len(s.name) for s in d.concurrency)
        out += [f"    {s.name:<{width}}  {_number(s.old)} → {_number(s.new)}"
                for s in d.concurrency]
    else:
        out.append("  max concurrent instances: unchanged for every job type")
    per = per_allocation(d.allocation.new or d.allocation.old or 0.0)
    for s in d.totals:
        label = s.name.replace("_", "-").replace("gpu", "GPU")
        same = " (unchanged)" if s.old == s.new else ""
        out.append(f"  {label} {per}: {_number(s.old)} → {_number(s.new)}{same}")
    for kind, w in d.warnings:
        out.append(f"  {_MARK[kind]} warning: {w.message}  ({_at(w.location)})")
    listed = ", ".join(n if k == "changed" else f"{n} ({k})" for n, k in d.artefacts)
    out += textwrap.wrap(f"compiled artefacts that differ: {listed or 'none'}", width=100,
                         initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join([*out, ""])


def ws_text(w: WorkspaceDiff) -> str:
    """The human-readable report of ``mummi diff WORKSPACE NEW_SPEC``."""
    out = [f"campaign {w.campaign} ({w.state})", to_text(w.plan).rstrip("\n")]
    if w.jobs:
        out.append("job types and their jobs now")
        width = max(len(j.job_type) for j in w.jobs)
        out.append(f"  {'':<{width}}  {'role':<10} {'queued':>6} {'running':>7} {'later':>6}"
                   "  what changes")
        for j in w.jobs:
            what = ", ".join(j.fields) or j.kind
            out.append(f"  {j.job_type:<{width}}  {j.role:<10} {j.queued:>6} {j.running:>7} "
                       f"{j.later:>6}  {what}")
            out += textwrap.wrap(j.effect, width=100, initial_indent=f"  {'':<{width}}  ",
                                 subsequent_indent=f"  {'':<{width}}  ")
    for s in w.selectors:
        out.append(f"selector {s.name} ({', '.join(s.fields)}): {s.why}")
    out.append("what needs a restart" if w.restarts else "what needs a restart: nothing")
    out += [f"  {r}" for r in w.restarts]
    out.append("the workspace")
    out += [f"  {line}" for line in w.verdict]  # unwrapped: its commands copy whole
    return "\n".join([*out, ""])


def run_workspace(args: argparse.Namespace) -> int:
    """A workspace's campaign against a spec: what the change does to its jobs now."""
    from mummi_spec import profiles
    from mummi_spec.frontend import NO_PROFILE
    from mummi_spec.loader import load_file
    from mummi_spec.runtime.workspace import open_workspace
    from mummi_spec.wsdiff import workspace_diff

    if args.old_profile is not None:
        raise UsageError(f"--old-profile: {args.old} is a workspace, whose campaign's profile "
                         "is the one it was started with; use --new-profile or --profile")
    campaign, text = open_workspace(args.old, args.plan)
    try:
        ran = campaign.plan.profile
        chosen = args.new_profile if args.new_profile is not None else chosen_profile(args)
        if chosen is None:  # the profile the campaign runs, which the new spec must have
            chosen = NO_PROFILE if ran is None else ran
            if ran is not None and ran not in profiles.names(load_file(args.new)[0]):
                raise UsageError(f"{args.new}: no profile '{ran}', which the campaign in "
                                 f"{args.old} runs; choose one with --profile NAME or "
                                 "--no-profile")
        loaded, compiled = load_and_compile(args.new, chosen)
        w = workspace_diff(campaign, text, loaded, compiled)
    finally:
        campaign.close()
    if args.json:
        print(json.dumps(w.to_json(), indent=2, sort_keys=True, ensure_ascii=False))
    else:
        print(ws_text(w), end="")
    return Exit.OK if w.same else Exit.DIFFERENCES


def run(args: argparse.Namespace) -> int:
    """Compare two campaigns; exit 0 when they are the same, 1 when they differ."""
    from mummi_spec.compiler.diff import diff_all, diff_files

    if args.old.is_dir():
        return run_workspace(args)
    if args.plan is not None:
        raise UsageError(f"--plan: only with a workspace ({args.old} is not a directory)")
    chosen = args.profile is not None or args.no_profile or \
        args.old_profile is not None or args.new_profile is not None
    if chosen:
        both = chosen_profile(args)
        d = diff_files(args.old, args.new,
                       both if args.old_profile is None else args.old_profile,
                       both if args.new_profile is None else args.new_profile)
        if args.json:
            print(json.dumps(d.to_json(), indent=2, sort_keys=True, ensure_ascii=False))
        else:
            print(to_text(d), end="")
        return Exit.OK if d.same else Exit.DIFFERENCES
    # The base specs first: what runs in production; then each profile, saying which.
    base, each, alone = diff_all(args.old, args.new)
    same = base.same and all(d.same for d in each.values()) and not alone
    if args.json:
        doc = {"same": same, "base": base.to_json(),
               "profiles": {n: d.to_json() for n, d in each.items()}, "only_in": alone}
        print(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False))
        return Exit.OK if same else Exit.DIFFERENCES
    out = [to_text(base)]
    for name, d in each.items():
        out.append(to_text(d) if not d.same else
                   f"profile {name}: no differences between the two specs\n")
    out += [f"profile {name}: only in the {side} spec\n" for name, side in alone.items()]
    print("\n".join(out), end="")
    return Exit.OK if same else Exit.DIFFERENCES


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diff", help="what changed between two campaigns, and what it does to the build "
                     "(or to a running campaign: diff WORKSPACE NEW_SPEC)",
        description="Compare two campaigns setting by setting (defaults and profiles applied), "
                    "with each change's file:line in both specs and its effect on the compiled "
                    "campaign: the base specs first (what runs in production), then each "
                    "profile both define, unless a profile is chosen. Given a campaign's "
                    "workspace instead of the old spec, compare the plan it runs with the new "
                    "spec (in the profile the campaign runs) and say what the change would do "
                    "to its queued and running jobs, what needs a restart, and whether the "
                    "workspace would take the new plan. Exit 0 when they are the same, 1 when "
                    "they differ, 2 on error.")
    p.add_argument("old", type=Path, help="the spec before, or a campaign's workspace")
    p.add_argument("new", type=Path, help="the spec after (may be the same file)")
    profile_args(p)
    for side in ("old", "new"):
        p.add_argument(f"--{side}-profile", metavar="NAME",
                       help=f"profile for the {side} side only; '' for its base spec "
                            "(overrides --profile/--no-profile)")
    p.add_argument("--json", action="store_true", help="a JSON document instead of text")
    plan_arg(p, "with a workspace: ")
    p.set_defaults(func=run)

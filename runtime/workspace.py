"""A campaign's workspace: where it may lie, its directory, and the one plan it takes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mummi_spec.errors import UsageError
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.schedulers._common import shell_safe


def claim(campaign: Campaign, ledger: Ledger) -> None:
    """Claim the workspace for this plan, or refuse a plan other than the one that started it."""
    digest = hashlib.sha256(campaign.plan_path.read_bytes()).hexdigest()
    found = ledger.meta("plan_sha256")
    if found is None:
        ledger.set_meta("plan_sha256", digest)
        ledger.set_meta("campaign", campaign.plan.name)
    elif found != digest:
        raise UsageError(
            f"workspace {campaign.workspace} holds campaign '{ledger.meta('campaign')}' started "
            "from a different plan.json; resuming it with this plan would mix two campaigns. "
            "Use another --workspace, or recompile the spec the campaign was started with")


def refuse_inside(build: Path, workspace: Path) -> None:
    """Refuse a workspace inside the build directory: the next compile replaces the build whole."""
    build, inside = build.resolve(), workspace.resolve()
    if inside.is_relative_to(build):
        beside = build.parent / (inside.relative_to(build) if inside != build else "workspace")
        raise UsageError(
            f"workspace {_shown(workspace)} lies inside the build directory {_shown(build)}, "
            "which every compile replaces whole (it would delete the ledger); put the workspace "
            f"outside it, e.g. --workspace {_shown(beside)}")


def make(workspace: Path) -> None:
    """Create the workspace directory, or say which part of its path is not a directory."""
    try:
        workspace.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(p for p in (workspace, *workspace.parents) if p.exists())
        raise UsageError(
            f"workspace {_shown(workspace)}: {_shown(blocker)} is a file, not a directory; "
            "choose another --workspace (or the spec's workspace:)") from None


def refuse_unquotable(workspace: Path, scheduler: str) -> None:
    """Refuse a workspace path the scheduler's command line would misread (a space, a quote):
    Maestro pastes it unquoted into ``sbatch``/``bsub`` for every step and job."""
    if not shell_safe(str(workspace)):
        raise UsageError(
            f"workspace {str(workspace)!r} holds a space or shell character, which the "
            f"{scheduler} scheduler cannot take: Maestro passes paths to its command line "
            "unquoted, so not one step would start; choose a workspace path of letters, "
            "digits and _.,:@%+=/- (--workspace or the spec's workspace:)")


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it."""
    rel = os.path.relpath(path)
    return path.as_posix() if rel.startswith("..") else rel

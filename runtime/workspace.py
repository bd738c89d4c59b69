"""A campaign's workspace: where it may lie, its directory, the one plan it takes, then its
lease (one manager)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from pathlib import Path

from mummi_spec.errors import UsageError
from mummi_spec.plan import LEDGER_FILE, Plan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.lease import Lease, take
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.schedulers._common import shell_safe
from mummi_spec.runtime.states import Holder

_NAME_PART = 24  # of the campaign's name in its jobs' names: enough to tell whose they are


def claim(campaign: Campaign, ledger: Ledger, holder: Holder, period: float, *,
          handover: str | None = None) -> Lease:
    """Claim the workspace for this plan and this process, renewing every ``period``
    seconds: refuse a plan other than the one that started it, then take the lease or raise
    ``WorkspaceHeldError`` naming its live holder (lease.py)."""
    text = campaign.plan_path.read_bytes()
    found = ledger.meta("plan_sha256")
    if found is None:
        ledger.set_meta("plan_sha256", digest(text))
        ledger.set_meta("campaign", campaign.plan.name)
        # The plan itself, for the commands that read a campaign from its workspace alone
        # (the build may be gone: `mummi replay`, `explain`, `report`, `diff`).
        ledger.set_meta("plan", text.decode("utf-8"))
    elif found != digest(text):
        raise UsageError(
            f"workspace {campaign.workspace} holds campaign '{ledger.meta('campaign')}' started "
            "from a different plan.json; resuming it with this plan would mix two campaigns. "
            "Use another --workspace, or recompile the spec the campaign was started with")
    if ledger.meta("campaign_id") is None:  # drawn once: its jobs' names at the scheduler
        ledger.set_meta("campaign_id", uuid.uuid4().hex)
    return take(ledger, campaign.workspace, holder, period, handover=handover)


def job_prefix(campaign: Campaign, campaign_id: str) -> str:
    """``<campaign name>.<10 hex digits>``, the start of every job name at the scheduler.

    The digits hash the id drawn when the workspace was first claimed with the workspace's
    path: the same for every run of the campaign, so a restarted manager looks for the names
    an earlier one used; another campaign, or a copy of this workspace elsewhere, gets other
    names. Each attempt's name is kept in the ledger, so a moved workspace still finds the
    jobs it submitted before the move.
    """
    identity = f"{campaign.workspace}\0{campaign_id}".encode()
    return f"{campaign.plan.name[:_NAME_PART]}.{hashlib.sha256(identity).hexdigest()[:10]}"


def digest(data: bytes) -> str:
    """The fingerprint a workspace knows its plan by (``plan_sha256`` in its ledger)."""
    return hashlib.sha256(data).hexdigest()


def started_with(ws: Path) -> str | None:
    """The sha256 of the plan that started the campaign in ``ws`` (None: never claimed)."""
    return _meta(Path(ws), "plan_sha256").get("plan_sha256")


def _meta(ws: Path, *keys: str) -> dict[str, str]:
    """Values of the ledger's meta table, read-only."""
    db = Ledger.open_readonly(ws / LEDGER_FILE)
    try:
        rows = db.execute(f"SELECT key, value FROM meta WHERE key IN ({','.join('?' * len(keys))})",
                          keys).fetchall()
    except sqlite3.Error as exc:
        raise UsageError(f"{ws / LEDGER_FILE}: not a readable ledger ({exc})") from None
    finally:
        db.close()
    return {str(k): str(v) for k, v in rows}


def open_workspace(ws: str | os.PathLike[str], plan: str | os.PathLike[str] | None = None
                   ) -> tuple[Campaign, str]:
    """The campaign a workspace holds and the text of the plan that started it, as its ledger
    keeps it (or from ``plan``, checked against the ledger's sha256, for a workspace claimed
    before the ledger kept its plan), for the commands that only read a campaign.

    The campaign's ``plan_path`` is where the plan was read: ``plan``, or the ledger."""
    ws = Path(ws)
    if not (ws / LEDGER_FILE).is_file():
        raise UsageError(f"{ws}: no {LEDGER_FILE}; is this a campaign workspace (the `workspace:` "
                         "of the spec, e.g. ./workspace/<name>)?")
    meta = _meta(ws, "plan", "plan_sha256")
    if plan is None:
        if "plan" not in meta:
            raise UsageError(f"{ws}: its ledger does not keep the plan that started it (a "
                             "campaign started by an older mummi); pass --plan "
                             "build/plan.json, the plan it was started with")
        text, source = meta["plan"], ws / LEDGER_FILE
    else:
        source = Path(plan)
        try:
            data = source.read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{source}: cannot read the plan ({exc})") from None
        found = meta.get("plan_sha256")
        if found is not None and found != digest(data):
            raise UsageError(f"{source}: not the plan that started the campaign in {ws} "
                             "(another sha256); pass the build/plan.json it was started with")
    return Campaign(Plan.from_json(text, str(source)), source, ws.resolve()), text


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

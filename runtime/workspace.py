"""A workspace belongs to one campaign and one manager: its plan, then its lease."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

from mummi_spec.errors import UsageError
from mummi_spec.plan import Plan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.lease import Lease, take
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.states import Holder

LEDGER = "ledger.sqlite"


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
        # (the build may be gone).
        ledger.set_meta("plan", text.decode("utf-8"))
    elif found != digest(text):
        raise UsageError(
            f"workspace {campaign.workspace} holds campaign '{ledger.meta('campaign')}' started "
            "from a different plan.json; resuming it with this plan would mix two campaigns. "
            "Use another --workspace, or recompile the spec the campaign was started with")
    return take(ledger, campaign.workspace, holder, period, handover=handover)


def digest(data: bytes) -> str:
    """The fingerprint a workspace knows its plan by (``plan_sha256`` in its ledger)."""
    return hashlib.sha256(data).hexdigest()


def started_with(ws: Path) -> str | None:
    """The sha256 of the plan that started the campaign in ``ws`` (None: never claimed)."""
    return _meta(Path(ws), "plan_sha256").get("plan_sha256")


def _meta(ws: Path, *keys: str) -> dict[str, str]:
    """Values of the ledger's meta table, read-only."""
    db = Ledger.open_readonly(ws / LEDGER)
    try:
        rows = db.execute(f"SELECT key, value FROM meta WHERE key IN ({','.join('?' * len(keys))})",
                          keys).fetchall()
    except sqlite3.Error as exc:
        raise UsageError(f"{ws / LEDGER}: not a readable ledger ({exc})") from None
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
    if not (ws / LEDGER).is_file():
        raise UsageError(f"{ws}: no {LEDGER}; is this a campaign workspace (the `workspace:` "
                         "of the spec, e.g. ./workspace/<name>)?")
    meta = _meta(ws, "plan", "plan_sha256")
    if plan is None:
        if "plan" not in meta:
            raise UsageError(f"{ws}: its ledger does not keep the plan that started it (a "
                             "campaign started by an older mummi); pass --plan "
                             "build/plan.json, the plan it was started with")
        text, source = meta["plan"], ws / LEDGER
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

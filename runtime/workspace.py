"""A workspace belongs to one campaign: the plan that started it is the only one it takes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

from mummi_spec.errors import UsageError
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ledger import Ledger

LEDGER = "ledger.sqlite"
# The plan that started the campaign, kept beside its ledger: `mummi report`, `status --watch`
# and `diff WORKSPACE` read the campaign from its workspace alone, wherever its build went.
PLAN_COPY = "plan.json"
REFUSAL = ("resuming it with this plan would mix two campaigns. Use another --workspace, or "
           "recompile the spec the campaign was started with")


def digest(data: bytes) -> str:
    """The fingerprint a workspace knows its plan by."""
    return hashlib.sha256(data).hexdigest()


def claim(campaign: Campaign, ledger: Ledger) -> None:
    """Claim the workspace for this plan, or refuse a plan other than the one that started it."""
    data = campaign.plan_path.read_bytes()
    found = ledger.meta("plan_sha256")
    if found is None:
        ledger.set_meta("plan_sha256", digest(data))
        ledger.set_meta("campaign", campaign.plan.name)
    elif found != digest(data):
        raise UsageError(
            f"workspace {campaign.workspace} holds campaign '{ledger.meta('campaign')}' started "
            f"from a different plan.json; {REFUSAL}")
    _keep(campaign.workspace / PLAN_COPY, data)


def _keep(path: Path, data: bytes) -> None:
    """Write the plan copy (atomically) unless it is there already."""
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def started_with(ws: Path) -> str | None:
    """The sha256 of the plan that started the campaign in ``ws`` (None: never claimed)."""
    db = Ledger.open_readonly(Path(ws) / LEDGER)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'plan_sha256'").fetchone()
    except sqlite3.Error as exc:
        raise UsageError(f"{ws / LEDGER}: not a readable ledger ({exc})") from None
    finally:
        db.close()
    return None if row is None else str(row[0])


def open_workspace(ws: str | os.PathLike[str], plan: str | os.PathLike[str] | None = None
                   ) -> Campaign:
    """The campaign a workspace holds, opened with the plan that started it (its copy, or
    ``plan`` for a workspace older than the copy), for the commands that only read it."""
    ws = Path(ws)
    if not (ws / LEDGER).is_file():
        raise UsageError(f"{ws}: no {LEDGER}; is this a campaign workspace (the `workspace:` "
                         "of the spec, e.g. ./workspace/<name>)?")
    path = Path(plan) if plan is not None else ws / PLAN_COPY
    if not path.is_file():
        raise UsageError(f"{ws}: no {PLAN_COPY} (a workspace started before mummi kept a copy "
                         "of its plan); pass --plan build/plan.json, the plan it was started "
                         "with")
    found = started_with(ws)
    if found is not None and found != digest(path.read_bytes()):
        raise UsageError(f"{path}: not the plan that started the campaign in {ws} (another "
                         "sha256); pass the build/plan.json it was started with")
    return Campaign.open(path, ws)

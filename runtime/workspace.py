"""A workspace belongs to one campaign: the plan that started it is the only one it takes."""

from __future__ import annotations

import hashlib
import uuid

from mummi_spec.errors import UsageError
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ledger import Ledger

_NAME_PART = 24  # of the campaign's name in its jobs' names: enough to tell whose they are


def claim(campaign: Campaign, ledger: Ledger) -> str:
    """Claim the workspace for this plan, or refuse a plan other than the one that started it.

    Returns the prefix of the names its jobs get at the scheduler (``job_prefix``).
    """
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
    if ledger.meta("campaign_id") is None:
        ledger.set_meta("campaign_id", uuid.uuid4().hex)
    return job_prefix(campaign, ledger.meta("campaign_id") or "")


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

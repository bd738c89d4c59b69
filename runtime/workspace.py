"""A workspace belongs to one campaign and one manager: its plan, then its lease."""

from __future__ import annotations

import hashlib

from mummi_spec.errors import UsageError
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.lease import Lease, take
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.states import Holder


def claim(campaign: Campaign, ledger: Ledger, holder: Holder, period: float, *,
          handover: str | None = None) -> Lease:
    """Claim the workspace for this plan and this process, renewing every ``period``
    seconds: refuse a plan other than the one that started it, then take the lease or raise
    ``WorkspaceHeldError`` naming its live holder (lease.py)."""
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
    return take(ledger, campaign.workspace, holder, period, handover=handover)

"""A workspace belongs to one campaign: the plan that started it is the only one it takes."""

from __future__ import annotations

import hashlib

from mummi_spec.errors import UsageError
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ledger import Ledger


def claim(campaign: Campaign, ledger: Ledger) -> None:
    """Claim the workspace for this plan, or refuse a plan other than the one that started it."""
    text = campaign.plan_path.read_bytes()
    digest = hashlib.sha256(text).hexdigest()
    found = ledger.meta("plan_sha256")
    if found is None:
        ledger.set_meta("plan_sha256", digest)
        ledger.set_meta("campaign", campaign.plan.name)
        # The plan itself, for `mummi replay` and `mummi explain` (the build may be gone).
        ledger.set_meta("plan", text.decode("utf-8"))
    elif found != digest:
        raise UsageError(
            f"workspace {campaign.workspace} holds campaign '{ledger.meta('campaign')}' started "
            "from a different plan.json; resuming it with this plan would mix two campaigns. "
            "Use another --workspace, or recompile the spec the campaign was started with")

"""The study's own steps, `mummi prepare` and `mummi manager`, which Maestro runs."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit


def _campaign(args: argparse.Namespace) -> Any:
    from mummi_spec.runtime.campaign import Campaign

    return Campaign.open(args.plan, args.workspace)


def prepare(args: argparse.Namespace) -> int:
    """The study's first step: the workspace layout, and every store opened once."""
    from mummi_spec.runtime.workspace import make

    campaign = _campaign(args)
    make(campaign.workspace)
    for sub in ("runs", "checkpoints"):
        (campaign.workspace / sub).mkdir(parents=True, exist_ok=True)
    names = sorted(campaign.plan.stores)
    for name in names:
        campaign.store(name).keys("probe")  # a store that cannot open fails here, not mid-run
    campaign.close()
    print(f"workspace {campaign.workspace} ready; stores: {', '.join(names)}")
    return Exit.OK


def _logging(workspace: Path) -> None:
    root = logging.getLogger("mummi")
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in (logging.FileHandler(workspace / "manager.log"),
                    logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def manager(args: argparse.Namespace) -> int:
    """The study's manager step: the workflow manager of one campaign, until it ends."""
    from mummi_spec.runtime.lease import TOKEN_ENV
    from mummi_spec.runtime.manager import Manager
    from mummi_spec.runtime.registry import SCHEDULERS
    from mummi_spec.runtime.states import CampaignState
    from mummi_spec.runtime.summary import finish
    from mummi_spec.runtime.workspace import make

    campaign = _campaign(args)
    ws = campaign.workspace
    make(ws)
    _logging(ws)
    settings = campaign.plan.scheduler
    # The lease `mummi run` took for this step; the jobs the manager starts have no use for it.
    token = os.environ.pop(TOKEN_ENV, None) or None
    mgr = Manager(campaign, SCHEDULERS.get(settings.type)(settings), run_token=token)

    def stop(signum: int, _frame: Any) -> None:
        logging.getLogger("mummi.manager").info(
            "%s: stopping spawning, checkpointing", signal.Signals(signum).name)
        mgr.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        outcome = mgr.run()
        if outcome == CampaignState.FAILED:  # nothing more is written: say why, and end
            print(f"mummi: error: campaign {campaign.plan.name} failed: {mgr.why}",
                  file=sys.stderr)
            return Exit.FAILED
        finish(mgr)
    finally:
        mgr.release()  # last: `mummi run` takes a released lease as the end, summary written
        mgr.ledger.close()
    print(f"campaign {campaign.plan.name} {outcome}")
    return Exit.OK


def register(sub: Any) -> None:
    for name, func, text in (("prepare", prepare, "study step: lay out the workspace"),
                             ("manager", manager, "study step: the workflow manager")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--plan", type=Path, required=True, help="the compiled plan.json")
        p.add_argument("--workspace", help="campaign workspace (default: the plan's)")
        p.set_defaults(func=func)

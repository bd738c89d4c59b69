"""The end of a campaign: summary table, occupancy and coverage plots, the report page."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mummi_spec.plan import LEDGER_FILE
from mummi_spec.runtime.ledgerview import LedgerView
from mummi_spec.runtime.report import plot_coverage, plot_occupancy
from mummi_spec.runtime.reportpage import coverage_lines, coverage_samples, write_report
from mummi_spec.runtime.states import SimState
from mummi_spec.runtime.status import read_status, render

if TYPE_CHECKING:
    from mummi_spec.runtime.manager import Manager

log = logging.getLogger("mummi.manager")

FAILED_NAMED = 50  # failed simulations named with their reason; the ledger keeps every one


def finish(manager: Manager) -> None:
    """Write ``summary.txt``, ``occupancy.png``, ``coverage.png`` and ``report.html``; a
    figure or the page failing only logs."""
    ws = manager.ws
    status = read_status(ws) or {}
    with LedgerView(ws / LEDGER_FILE) as view:
        streams = coverage_samples(manager.campaign, view.selections())
    lines = coverage_lines(streams) + _failures(manager)
    text = render(status) + "".join(line + "\n" for line in lines)
    path = ws / "summary.txt"
    manager.writes.run(path, lambda: path.write_text(text, encoding="utf-8"))
    pools = manager.plan.pools
    try:
        plot_occupancy(manager.ledger.occupancy(), pools.gpus_held, pools.cores_held,
                       ws / "occupancy.png")
        plot_coverage(streams, ws / "coverage.png")
    except Exception:
        log.exception("could not draw the plots")
    try:
        write_report(manager.campaign, streams=streams)
    except Exception:
        log.exception("could not write the report page")


def _failures(manager: Manager) -> list[str]:
    """One line per failed simulation: the counts alone do not say what to look at."""
    failed = manager.ledger.sims([SimState.FAILED])
    lines = [f"failed {s.sim} ({s.candidate}): {s.reason or 'no reason recorded'}"
             for s in failed[:FAILED_NAMED]]
    if len(failed) > FAILED_NAMED:
        lines.append(f"... and {len(failed) - FAILED_NAMED} more failed simulations "
                     "(table sims of ledger.sqlite)")
    return lines

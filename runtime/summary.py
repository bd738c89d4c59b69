"""The end of a campaign: summary table, occupancy and coverage plots in the workspace."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from mummi_spec.runtime.report import coverage_distance, plot_coverage, plot_occupancy
from mummi_spec.runtime.status import read_status, render

if TYPE_CHECKING:
    from mummi_spec.runtime.manager import Manager

log = logging.getLogger("mummi.manager")


def finish(manager: Manager) -> None:
    """Write ``summary.txt``, ``occupancy.png`` and ``coverage.png``; a plot failure only logs."""
    ws = manager.ws
    status = read_status(ws) or {}
    streams: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    lines = []
    chosen = {cand for _, cand, _ in manager.sims.values()}
    for name, ingest in sorted(manager.ingests.items()):
        if not ingest.points:
            continue
        ids = list(ingest.points)
        cands = np.vstack([ingest.points[i] for i in ids])
        sel = np.vstack([ingest.points[i] for i in ids if i in chosen] or
                        [np.zeros((0, cands.shape[1]))])
        streams[name] = (cands, sel)
        lines.append(f"coverage {name}: mean distance to nearest selected "
                     f"{coverage_distance(cands, sel):.3f} over {len(cands)} candidates")
    text = render(status) + "".join(line + "\n" for line in lines)
    (ws / "summary.txt").write_text(text, encoding="utf-8")
    res = manager.plan["resources"]
    try:
        plot_occupancy(manager.ledger.occupancy(), res["gpu_pool"],
                       res["gpu_pool"] * res["cores_per_gpu"] + res["cpu_pool"],
                       ws / "occupancy.png")
        plot_coverage(streams, ws / "coverage.png")
    except Exception:  # noqa: BLE001  (a campaign's results never hinge on a plot)
        log.exception("could not draw the plots")

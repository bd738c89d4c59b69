"""The end of a campaign: summary table, occupancy and coverage plots in the workspace."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from mummi_spec.errors import StoreError
from mummi_spec.runtime.campaign import key_glob
from mummi_spec.runtime.ingest import unsafe_keys
from mummi_spec.runtime.records import RecordError, decode
from mummi_spec.runtime.report import (
    coverage_distance,
    covering_radius,
    plot_coverage,
    plot_occupancy,
)
from mummi_spec.runtime.states import SimState
from mummi_spec.runtime.status import read_status, render
from mummi_spec.runtime.stores.common import read_each

if TYPE_CHECKING:
    from mummi_spec.runtime.manager import Manager

log = logging.getLogger("mummi.manager")

SAMPLE = 20_000  # candidates per stream read back for the coverage plot
FAILED_NAMED = 50  # failed simulations named with their reason; the ledger keeps every one


def finish(manager: Manager) -> None:
    """Write ``summary.txt``, ``occupancy.png`` and ``coverage.png``; a plot failure only logs."""
    ws = manager.ws
    status = read_status(ws) or {}
    streams: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    lines = []
    chosen = {sim.candidate for sim in manager.book.sims.values()}
    for name in sorted(manager.ingests):
        cands, sel = _sample(manager, name, chosen)
        if not len(cands):
            continue
        streams[name] = (cands, sel)
        lines.append(f"coverage {name}: covering radius {covering_radius(cands, sel):.3f}, "
                     f"mean distance to nearest selected {coverage_distance(cands, sel):.3f}, "
                     f"over {len(cands)} candidates")
    lines += _failures(manager)
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


def _failures(manager: Manager) -> list[str]:
    """One line per failed simulation: the counts alone do not say what to look at."""
    failed = manager.ledger.sims([SimState.FAILED])
    lines = [f"failed {s.sim} ({s.candidate}): {s.reason or 'no reason recorded'}"
             for s in failed[:FAILED_NAMED]]
    if len(failed) > FAILED_NAMED:
        lines.append(f"... and {len(failed) - FAILED_NAMED} more failed simulations "
                     "(table sims of ledger.sqlite)")
    return lines


def _sample(manager: Manager, stream: str, chosen: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``SAMPLE`` candidates of a stream read back from its store, and the selected ones."""
    cfg = manager.campaign.stream(stream)
    store = manager.campaign.store(cfg.store)
    every = store.keys(cfg.namespace, key_glob(cfg.key))
    keys = sorted(set(every[:: max(1, len(every) // SAMPLE)]) | (chosen & set(every)))
    points, picked = [], []
    refused = {k for k, _ in unsafe_keys(cfg.namespace, keys)}
    keys = [k for k in keys if k not in refused]
    for key, blob in zip(keys, read_each(store, cfg.namespace, keys), strict=True):
        if isinstance(blob, StoreError):
            continue  # gone or unreadable now; the plot does without it
        try:
            values = decode(blob, cfg.dim).values
        except RecordError:
            continue  # rejected at ingest already, with its reason in the ledger
        points.append(values)
        if key in chosen:
            picked.append(values)
    dim = cfg.dim
    return (np.vstack(points) if points else np.zeros((0, dim)),
            np.vstack(picked) if picked else np.zeros((0, dim)))

"""A small finished campaign for the replay and explain tests: the real manager in virtual time.

Candidates arrive in waves between ticks, so select calls interleave with arrivals as in a real
campaign; a fake scheduler runs the jobs (one createsim fails and is retried); each finished
simulation writes two feedback items, which a weighted-mean loop (weights from the selector)
consumes; one item is not a record and is rejected at ingest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import load_spec_text
from mummi_spec.plan import Plan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.schedulers.base import JobState
from mummi_spec.runtime.stores.base import Store
from tests.unit.test_manager import SPEC as MANAGER_SPEC
from tests.unit.test_manager import FakeScheduler, Rig


def _edit(text: str, changes: dict[str, str]) -> str:
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


# The manager tests' campaign in 3-D, with a farthest-point selector, a shallow pipeline (so
# selections come over many ticks), a feedback stream and a loop weighted by the selector.
SPEC = _edit(MANAGER_SPEC, {
    "name: manager-test": "name: steering-test",
    "dim: 2, store: latent": "dim: 3, store: latent",
    "retry: {limit: 1, on: [failed]}}\n": "retry: {limit: 1, on: [failed]}}\n"
    '    emits: {fb: {kind: feedback, dim: 3, store: latent, key: "fb_{sim}_{n}"}}\n',
    "selectors: {pick: {kind: random, dim: 2}}":
        "selectors:\n  pick: {kind: farthest_point, dim: 3, k: 3,\n"
        "         warmup: {min_candidates: 6, random_first: 1}}",
    "ready_buffer: 2, max_pending: 8,\n              max_selections_per_iteration: 50":
        "ready_buffer: 1, max_pending: 3,\n              max_selections_per_iteration: 2",
    "manager: {tick: 1s, checkpoint_every: 10m, max_simulations: 12}":
        "feedback:\n  cg-to-gen: {from: cg.fb, to: gen, period: 3s, aggregate: weighted_mean,\n"
        "              target: {store: latent, namespace: target, key: model}}\n"
        "manager: {tick: 1s, checkpoint_every: 10m, max_simulations: 10}",
})

WAVE = 7  # candidates per wave
WAVES = 9
INTERRUPT_AT = 9  # the step a stop or crash comes at: a wave written, not yet ingested


@dataclass
class Finished:
    """The campaign's workspace and plan, and what the test wrote."""

    ws: Path
    plan: Plan
    items: dict[str, list[str]]  # sim -> feedback item keys it wrote
    failed_setup: str  # the createsim attempt made to fail


def plan() -> Plan:
    return compile_loaded(load_spec_text(SPEC)).plan


def write_wave(store: Store, rng: np.random.Generator, wave: int) -> None:
    """``WAVE`` candidates around a random centre, keys ``c_<wave><i>``."""
    centre = rng.normal(size=3) * 4
    store.put_many("latent", {f"c_{wave:02d}{i:02d}": encode(Record(centre + rng.normal(size=3)))
                              for i in range(WAVE)})


def run(root: Path, interrupt: str | None = None) -> Finished:
    """Run the campaign to its end; the manager is stopped and its ledger closed.

    ``interrupt``: ``"stop"`` (a clean stop, as at Ctrl-C) or ``"crash"`` (the process dies)
    in the middle, and a new manager resumes the campaign.
    """
    rig = Rig(root, plan())
    sched = FakeScheduler()
    m = rig.manager(sched)
    rng = np.random.default_rng(7)
    items: dict[str, list[str]] = {}
    failed = ""
    c = Campaign.open(rig.plan_path, rig.ws)
    store = c.store("latent")
    outcome = None
    try:
        for step in range(400):
            wave = step // 3
            if step % 3 == 0 and wave < WAVES:
                write_wave(store, rng, wave)
                if wave == 2:
                    store.put("latent", "c_bad", b"not a record")
            for i in sched.live():
                job = sched.requests[i]
                if job.job_type == "generator" or step % 4:
                    continue
                if job.job_type == "createsim" and not failed:
                    failed = job.name
                    sched.end(i, JobState.FAILED, 1)
                    continue
                sched.end(i)
                if job.job_type == "cganalysis":
                    sim = job.name.split(".")[0]
                    keys = [f"fb_{sim}_{n}" for n in range(2)]
                    store.put_many("fb", {k: encode(Record(rng.normal(size=3), sim=sim))
                                          for k in keys})
                    items[sim] = keys
            if step == INTERRUPT_AT and interrupt is not None:
                if interrupt == "stop":
                    m.stop("stopped")
                    m.release()  # as the manager step does last
                    rig.managers.remove(m)
                else:
                    rig.crash(m)
                m = rig.manager(sched)
            outcome = rig.tick(m)
            if outcome is not None:
                break
    finally:
        c.close()
        m.stop(outcome or "stopped")
        rig.managers.remove(m)
    assert outcome == "complete", outcome
    return Finished(rig.ws, rig.plan(), items, failed)

"""Benchmark one feedback iteration end to end: find, read, aggregate, ledger commit, move.

    python benchmarks/bench_feedback.py [--quick] [--json out.json]

The workload is the SC'21 CG-to-continuum loop (``cg-to-macro`` of ``specs/rasraf-3scale.yaml``,
compiled without a profile): RDF records of 240 float32 values under ``rdf_sim_{sim}_{n}`` keys,
written by 1,000 simulations, aggregated as a weighted mean with the weights the manager passes
(the selector weight of each frame's simulation, looked up through the ledger), with the plan's
loop settings (``workers: 100``: reads in parallel chunks of 1,000 keys). One
``FeedbackLoop.iterate()`` is timed per run, on a fresh ledger, after every frame was published
with ``put_many`` (timed apart). Sizes: 1,000 / 10,000 / 70,000 frames (SC'21 Fig. 7).

Stores: Redis on 127.0.0.1:6390 (``scripts/services start redis``; ``MUMMI_REDIS_HOST`` and
``MUMMI_REDIS_PORT`` override), each run under a fresh key prefix, purged after; and the
filesystem store in a temporary directory (``BENCH_DIR`` chooses where), for comparison.
The Redis baseline does the same find, read, mean and move with bare redis-py (SCAN, MGET,
pipelined RENAME, numpy over the raw value bytes) and nothing else: no record checks, no ledger.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import redis
from benchlib import clock, main, peak_mb, reset_peak, row, skipped

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.plan import Plan, StorePlan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import FeedbackLoop, selector_weights
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.records import Record, decode, encode

REDIS_HOST = os.environ.get("MUMMI_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("MUMMI_REDIS_PORT", "6390"))
SPEC = Path(__file__).resolve().parent.parent / "specs" / "rasraf-3scale.yaml"
LOOP = "cg-to-macro"
SIMS = 1_000
TARGET = 20_000  # frames/s


def _plan() -> Plan:
    plan = compile_loaded(load_spec(SPEC, profile=NO_PROFILE)).plan
    models = StorePlan(name="models", backend="filesystem", path="ml")  # the loop's target
    return replace(plan, stores={**plan.stores, "models": models})


def _source(plan: Plan) -> str:
    """The store of the loop's stream: the one each run replaces."""
    return plan.stream(plan.feedback[LOOP].source).store


def _redis_store(plan: Plan, prefix: str) -> StorePlan:
    """The plan's Redis store of the loop's stream (its journal setting kept: none), on the
    benchmark's server, without a password, under ``prefix``."""
    return replace(plan.store(_source(plan)), backend="redis", host=REDIS_HOST, port=REDIS_PORT,
                   password_env=None, prefix=prefix)


def _frames(plan: Plan, count: int) -> tuple[dict[str, bytes], np.ndarray, list[str]]:
    """``count`` RDF records from ``SIMS`` simulations, their values, and each one's sim."""
    dim = plan.stream(plan.feedback[LOOP].source).dim
    values = np.random.default_rng(count).random((count, dim), dtype=np.float32)
    sims = [f"cg-{i % SIMS:06d}" for i in range(count)]
    frames = {f"rdf_sim_{sim}_{i:08d}": encode(Record(values[i], sim=sim))
              for i, sim in enumerate(sims)}
    return frames, values, sims


class _Run:
    """One workspace: a campaign on ``store``, a fresh ledger with the sims, the loop."""

    def __init__(self, plan: Plan, store: StorePlan, ws: Path) -> None:
        stream = plan.stream(plan.feedback[LOOP].source)
        self.namespace = stream.namespace
        plan = replace(plan, stores={**plan.stores, stream.store: store})
        self.campaign = Campaign(plan, ws / "plan.json", ws)
        self.store = self.campaign.store(stream.store)
        self.ledger = Ledger(ws / "ledger.sqlite")
        self.ledger.add_sims((f"cg-{i:06d}", "macro-to-cg", f"patch-{i:06d}", i + 1, 0.0)
                             for i in range(SIMS))
        self.loop = FeedbackLoop(LOOP, self.campaign, self.ledger,
                                 selector_weights(self.ledger, _weights))

    def close(self) -> None:
        self.ledger.close()
        self.campaign.close()


def _weights() -> dict[str, float]:
    """The selector's weight of each simulation's candidate (what the manager looks up)."""
    return {f"patch-{i:06d}": 1.0 + i % 7 for i in range(SIMS)}


def _expected(values: np.ndarray, sims: list[str]) -> np.ndarray:
    table = _weights()
    w = np.array([table[f"patch-{s[3:]}"] for s in sims])
    return (w[:, None] * values.astype(np.float64)).sum(axis=0) / w.sum()


def _check(run: _Run, count: int, expected: np.ndarray) -> None:
    """The iteration consumed every frame once and reported the weighted mean."""
    assert run.store.keys(run.namespace) == []
    assert len(run.store.keys(run.namespace + "-consumed")) == count
    target = run.loop.target
    got = decode(run.loop.target_store.get(*target)).values
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5)


def _bare(client: redis.Redis, prefix: str, namespace: str, dim: int) -> np.ndarray:
    """Find, read, mean and move with bare redis-py, the way its documentation suggests."""
    head = f"{prefix}:{namespace}::"
    keys = list(set(client.scan_iter(match=f"{head}rdf_sim_*", count=10_000)))
    blobs: list[bytes] = []
    for start in range(0, len(keys), 10_000):
        blobs.extend(client.mget(keys[start:start + 10_000]))
    values = np.frombuffer(b"".join(b[-4 * dim:] for b in blobs), dtype="<f4")
    mean = values.reshape(-1, dim).mean(axis=0, dtype=np.float64)
    for start in range(0, len(keys), 10_000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start:start + 10_000]:
            pipe.rename(key, key.replace(b"::", b"-consumed::", 1))
        pipe.execute()
    return mean


def _one(plan: Plan, store: StorePlan, frames: dict[str, bytes],
         expected: np.ndarray) -> tuple[float, float]:
    """Seconds to publish and to run one iteration, in a fresh workspace."""
    with tempfile.TemporaryDirectory(prefix="bench-feedback-",
                                     dir=os.environ.get("BENCH_DIR")) as tmp:
        run = _Run(plan, store, Path(tmp))
        try:
            put_s, _ = clock(run.store.put_many, run.namespace, frames)
            took, result = clock(run.loop.iterate)
            assert result.consumed == len(frames), result
            _check(run, len(frames), expected)
            if store.backend == "redis":
                run.store.purge()  # type: ignore[attr-defined]
        finally:
            run.close()
    return put_s, took


def _redis_missing() -> str:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"no redis-server on {REDIS_HOST}:{REDIS_PORT} ({exc}); scripts/services start"
    finally:
        client.close()
    return ""


def _size_rows(plan: Plan, count: int, repeats: int, redis_ok: bool
               ) -> list[dict[str, Any]]:
    frames, values, sims = _frames(plan, count)
    expected = _expected(values, sims)
    dim = values.shape[1]
    size = f"{count:,} frames x {dim} values"
    rows = []
    if redis_ok:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, protocol=2)
        ours: list[float] = []
        puts: list[float] = []
        bare: list[float] = []
        peaks: list[float] = []
        for _ in range(repeats):  # ours and bare redis-py alternately: load hits both
            prefix = f"bench-{uuid.uuid4().hex}"
            reset_peak()  # ours only, not the baseline's keys and replies
            put_s, took = _one(plan, _redis_store(plan, prefix), frames, expected)
            peaks.append(peak_mb())
            puts.append(put_s)
            ours.append(took)
            client.mset({f"{prefix}:rdfs::{k}": v for k, v in frames.items()})
            took, mean = clock(_bare, client, prefix, "rdfs", dim)
            np.testing.assert_allclose(mean, values.mean(axis=0, dtype=np.float64), rtol=1e-6)
            bare.append(took)
            for part in range(0, count, 10_000):  # leave the server as we found it
                client.delete(*[f"{prefix}:rdfs-consumed::{k}"
                                for k in list(frames)[part:part + 10_000]])
        client.close()
        rows.append(row("feedback", "feedback iteration, Redis (find, read, aggregate, "
                        "ledger, move)", size, ours, n=count, unit="frames/s",
                        met=count / median(ours) > TARGET, baseline_s=median(bare),
                        baseline_is="bare redis-py SCAN + MGET + mean + pipelined RENAME",
                        peak=max(peaks)))
        rows.append(row("feedback", "  publishing those frames, Redis put_many", size, puts,
                        n=count, unit="frames/s", target="-", peak=max(peaks)))
    else:
        rows.append(skipped("feedback", "feedback iteration, Redis", size, _redis_missing()))
    reset_peak()
    fs_store = StorePlan(name=_source(plan), backend="filesystem", path="rdfs")
    fs = [_one(plan, fs_store, frames, expected)[1] for _ in range(2)]
    rows.append(row("feedback", "feedback iteration, filesystem (comparison)", size, fs,
                    n=count, unit="frames/s", target="-", peak=peak_mb()))
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows at 1,000 / 10,000 / 70,000 frames (``quick``: 1,000 and 10,000, fewer runs)."""
    plan = _plan()
    redis_ok = not _redis_missing()
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 70_000)
    rows = []
    for count in sizes:  # 3 runs at 70,000: each takes ~6 s with the baseline
        rows += _size_rows(plan, count, 3 if quick or count > 10_000 else 5, redis_ok)
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))

"""A feedback iteration through a real redis-server: publish, find, read, aggregate, consume."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.runtime.stores.redis import RedisStore
from tests import plans

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_server: dict[str, object], tmp_path: Path):
    prefix = f"itest-{uuid.uuid4().hex}"
    # As a campaign configures it: feedback namespaces are not journaled (ingest reads only
    # candidate streams from a journal).
    config = plans.store("redis", "feedback", prefix=prefix, **redis_server)
    opened = RedisStore(config, tmp_path)
    yield opened
    opened.purge()
    assert opened.keys("rdfs") == [] and opened.keys("processed_rdfs") == []
    opened.close()


def test_feedback_iteration_counts_exactly(store: RedisStore) -> None:
    rng = np.random.default_rng(1)
    frames = rng.random((5_000, 100), dtype=np.float32)
    items = {f"rdf_sim_{i % 50}_{i:08d}.npz": frames[i].tobytes() for i in range(5_000)}
    store.put_many("rdfs", items)
    store.put_many("rdfs", {f"other_{i}": b"not a frame" for i in range(100)})

    found = store.keys("rdfs", "rdf_sim_*")
    assert found == sorted(items)
    assert len(store.keys("rdfs", "rdf_sim_7_*")) == 100

    # Take the first half, as a capped iteration would, and aggregate exactly what was read.
    batch = found[:2_500]
    values = store.get_many("rdfs", batch)
    mean = np.frombuffer(b"".join(values), dtype=np.float32).reshape(-1, 100).mean(axis=0)
    order = [int(k[-12:-4]) for k in batch]
    np.testing.assert_allclose(mean, frames[order].mean(axis=0), rtol=1e-6)

    store.move("rdfs", batch, "processed_rdfs")
    assert len(store.keys("rdfs", "rdf_sim_*")) == 2_500
    assert store.keys("processed_rdfs") == batch
    assert len(store.keys("rdfs")) == 2_600

    # The next iteration sees only what is new.
    rest = store.keys("rdfs", "rdf_sim_*")
    assert set(rest).isdisjoint(batch) and len(rest) + len(batch) == 5_000
    store.move("rdfs", rest, "processed_rdfs")
    assert store.keys("rdfs", "rdf_sim_*") == []
    assert store.keys("processed_rdfs") == sorted(items)
    assert store.get_many("processed_rdfs", sorted(items)) == [items[k] for k in sorted(items)]
    assert store.purge() == 5_100  # every key the store made (no journal), nothing else

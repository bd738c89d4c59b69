"""A candidate stream of mini.yaml on a real store, its sampler and a ledger: restartable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import load_spec
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ingest import Guarded, Ingest
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.registry import SELECTORS
from tests.conftest import SPECS

STREAM = "structures.latent"
PLAN = compile_loaded(load_spec(SPECS / "mini.yaml")).plan


class Rig:
    """mini.yaml's candidate stream on a real store, its sampler, a ledger; restartable."""

    def __init__(self, tmp_path: Path, backend: str) -> None:
        # The latent store on ``backend``, journaling the candidates as a campaign's does.
        latent = dataclasses.replace(PLAN.stores["latent"], backend=backend, path="latent")
        plan = dataclasses.replace(PLAN, stores={**PLAN.stores, "latent": latent})
        self.tmp_path, self.plan = tmp_path, plan
        self.campaign = Campaign(plan, tmp_path / "plan.json", tmp_path / "ws")
        self.store = self.campaign.store("latent")
        self.namespace = self.campaign.stream(STREAM).namespace
        self.ledger = Ledger(tmp_path / "ws" / "ledger.sqlite")
        self.ingest = self.start(())

    def start(self, known: tuple[str, ...] | set[str]) -> Ingest:
        """A new Ingest, as a restarted manager builds it (``known``: its checkpoint)."""
        return Ingest(STREAM, self.campaign, self.ledger, [self.sampler()], known)

    def sampler(self) -> Guarded:
        """A new selector as the plan configures it, with no checkpoint."""
        cfg = self.plan.selectors["sampler"]
        return Guarded(SELECTORS.get(cfg.kind)(cfg, seed=0))

    def write(self, *ids: int) -> None:
        """``structure_<i>`` at the point (i, ..., i)."""
        self.store.put_many(self.namespace, {f"structure_{i}": encode(Record(np.full(8, i)))
                                             for i in ids})

    def write_points(self, points: np.ndarray) -> list[str]:
        """One candidate per row, ``structure_p<row>``; returns their ids."""
        names = [f"structure_p{i}" for i in range(len(points))]
        self.store.put_many(self.namespace, {n: encode(Record(p))
                                             for n, p in zip(names, points, strict=True)})
        return names

    def rejected(self) -> dict[str, str]:
        rows = self.ledger._rows("SELECT key, reason FROM rejected")
        return {k.decode("utf-8", "surrogatepass") if isinstance(k, bytes) else k: why
                for k, why in rows}

    def close(self) -> None:
        self.ledger.close()
        self.campaign.close()

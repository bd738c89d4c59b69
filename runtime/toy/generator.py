"""Toy coarse model: a Gaussian mixture whose centres move with feedback, emitting candidates."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mummi_spec.errors import StoreError, UsageError
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.records import Record, RecordError, decode, encode
from mummi_spec.runtime.toy._model import (
    StopFlag,
    TerminatedError,
    projection,
    rng,
    stream_key,
)

SPREAD = 3.0  # scale of the mixture centres
NOISE = 0.5  # spread of a candidate around its centre: clusters stay apart
SHIFT = 2.0  # largest move of the centres per feedback loop and dimension
BATCH_SECONDS = 0.5  # a batch holds at most this much pacing, so the manager sees items soon
MAX_BATCH = 16


class Mixture:
    """The model: one centre per tag (or four), all shifted by what the feedback loops say."""

    def __init__(self, stream_name: str, dim: int, tags: list[str], seed: int) -> None:
        self.name, self.dim, self.tags, self.seed = stream_name, dim, tags, seed
        self.centres = rng(seed, stream_name, "centres").normal(0.0, SPREAD, (len(tags) or 4, dim))
        self.shift = np.zeros(dim)
        self.iteration = 0

    def update(self, aggregates: Mapping[str, tuple[np.ndarray, int]]) -> None:
        """Move the centres by a fixed seeded map of each loop's latest aggregate."""
        shift = np.zeros(self.dim)
        for loop, (values, _) in sorted(aggregates.items()):
            proj = projection(self.dim, values.size, self.seed, "feedback", loop)
            shift += SHIFT * np.tanh(proj @ values.astype(np.float64))
        self.shift = shift
        self.iteration = max((it for _, it in aggregates.values()), default=0)

    def candidate(self, i: int) -> Record:
        """Candidate ``i``: noise from the seed and ``i`` alone, centre from the model."""
        centres = self.centres + self.shift
        # Components in turn, so every tag occurs as soon as there are as many candidates.
        point = centres[i % len(centres)] + NOISE * rng(self.seed, self.name, i).standard_normal(
            self.dim)
        # The tag is the nearest centre: a property of the point, as a real classifier's is.
        tag = self.tags[int(np.argmin(((centres - point) ** 2).sum(axis=1)))] if self.tags else None
        return Record(point, tag=tag, meta={"n": i, "model": self.iteration})


class FeedbackReader:
    """The latest record at every feedback target aimed at one scale."""

    def __init__(self, campaign: Campaign, scale: str) -> None:
        self.campaign = campaign
        loops = sorted(campaign.plan.feedback.items())
        self.loops = {name: loop.target for name, loop in loops if loop.to == scale}
        self.latest: dict[str, tuple[np.ndarray, int]] = {}
        self._bad: set[str] = set()

    def read(self) -> bool:
        """Re-read every target; whether anything changed."""
        changed = False
        for loop, target in self.loops.items():
            try:
                data = self.campaign.store(target.store).get(target.namespace, target.key)
                record = decode(data)
            except StoreError:
                continue  # no aggregate yet
            except RecordError as exc:
                if loop not in self._bad:  # say it once, not every second
                    print(f"toy generator: ignoring feedback of loop {loop!r}: {exc}",
                          file=sys.stderr)
                    self._bad.add(loop)
                continue
            iteration = int(record.meta.get("iteration", 1))
            old = self.latest.get(loop)
            if old is None or old[1] != iteration or not np.array_equal(old[0], record.values):
                self.latest[loop] = (record.values, iteration)
                changed = True
        return changed


def run(plan: Path, stream_name: str, count: int, every: float, poll: float, seed: int) -> int:
    """Write ``count`` candidates to the stream, one per ``every`` seconds; 0 when done."""
    stop = StopFlag.install()
    campaign = Campaign.open(plan)
    try:
        stream = campaign.stream(stream_name)
        if stream.kind != "candidates":
            raise UsageError(f"stream {stream_name!r} holds {stream.kind}, not candidates")
        store, namespace = campaign.store(stream.store), stream.namespace
        model = Mixture(stream_name, stream.dim, list(stream.tags), seed)
        feedback = FeedbackReader(campaign, stream.scale)
        # A retry continues the same sequence: what an earlier attempt wrote stays as it was.
        existing = set(store.keys(namespace))
        per_batch = MAX_BATCH if every <= 0 else max(1, min(MAX_BATCH, int(BATCH_SECONDS / every)))
        batch: dict[str, bytes] = {}
        written = skipped = 0
        print(f"toy generator: {count} candidates to {stream_name} "
              f"({len(existing)} already there)", flush=True)
        start = next_poll = time.monotonic()
        try:
            for i in range(count):
                key = stream_key(stream_name, stream, n=i, sim="gen")
                if key in existing:
                    skipped += 1
                    continue
                # Deadlines from the start, so time spent writing does not slow the pace.
                stop.sleep_until(start + written * every)
                if time.monotonic() >= next_poll:
                    if feedback.read():
                        model.update(feedback.latest)
                        print(f"toy generator: model {model.iteration}", flush=True)
                    next_poll = time.monotonic() + poll
                batch[key] = encode(model.candidate(i))
                written += 1
                if len(batch) >= per_batch:
                    store.put_many(namespace, batch)
                    batch = {}
        except TerminatedError:
            store.put_many(namespace, batch)  # finished records are worth keeping
            raise
        store.put_many(namespace, batch)
        print(f"toy generator: wrote {written}, skipped {skipped}", flush=True)
        return 0
    finally:
        campaign.close()


"""Toy coarse model: a Gaussian mixture whose centres move with feedback, emitting candidates."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mummi_spec import app
from mummi_spec.errors import UsageError
from mummi_spec.runtime.toy._model import (
    StopFlag,
    TerminatedError,
    job_context,
    projection,
    rng,
)

SPREAD = 3.0  # scale of the mixture centres
NOISE = 0.5  # spread of a candidate around its centre: clusters stay apart
SHIFT = 2.0  # largest move of the centres per feedback loop and dimension
BATCH_SECONDS = 0.5  # a batch holds at most this much pacing, so the manager sees items soon
MAX_BATCH = 16


class Item(NamedTuple):
    """A candidate as the model makes it: its encoding, its queue's tag, what it came from."""

    values: np.ndarray
    tag: str | None
    meta: dict[str, Any]


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

    def candidate(self, i: int) -> Item:
        """Candidate ``i``: noise from the seed and ``i`` alone, centre from the model."""
        centres = self.centres + self.shift
        # Components in turn, so every tag occurs as soon as there are as many candidates.
        point = centres[i % len(centres)] + NOISE * rng(self.seed, self.name, i).standard_normal(
            self.dim)
        # The tag is the nearest centre: a property of the point, as a real classifier's is.
        tag = self.tags[int(np.argmin(((centres - point) ** 2).sum(axis=1)))] if self.tags else None
        return Item(point, tag, {"n": i, "model": self.iteration})


class FeedbackReader:
    """The latest aggregate of every feedback loop aimed at one scale."""

    def __init__(self, ctx: app.Context, scale: str) -> None:
        self.ctx = ctx
        self.loops = ctx.targets_for(scale)
        self.latest: dict[str, tuple[np.ndarray, int]] = {}
        self._bad: set[str] = set()

    def read(self) -> bool:
        """Re-read every target; whether anything changed."""
        changed = False
        for loop in self.loops:
            try:
                target = self.ctx.target(loop)
            except app.AppError as exc:
                if loop not in self._bad:  # say it once, not every second
                    print(f"toy generator: ignoring feedback of loop {loop!r}: {exc}",
                          file=sys.stderr)
                    self._bad.add(loop)
                continue
            if target is None:
                continue  # no aggregate yet
            old = self.latest.get(loop)
            if old is None or old[1] != target.iteration or \
                    not np.array_equal(old[0], target.values):
                self.latest[loop] = (target.values, target.iteration)
                changed = True
        return changed


def run(plan: Path, stream_name: str, count: int, every: float, poll: float, seed: int) -> int:
    """Write ``count`` candidates to the stream, one per ``every`` seconds; 0 when done."""
    stop = StopFlag.install()
    with job_context(plan) as ctx:
        out = ctx.stream(stream_name)
        if out.plan.kind != "candidates":
            raise UsageError(f"stream {stream_name!r} holds {out.plan.kind}, not candidates")
        model = Mixture(stream_name, out.plan.dim, list(out.plan.tags), seed)
        feedback = FeedbackReader(ctx, out.plan.scale)
        # A retry continues the same sequence: what an earlier attempt wrote stays as it was.
        existing = set(out.keys())
        per_batch = MAX_BATCH if every <= 0 else max(1, min(MAX_BATCH, int(BATCH_SECONDS / every)))
        batch: list[tuple[str, Item]] = []
        written = skipped = 0
        print(f"toy generator: {count} candidates to {stream_name} "
              f"({len(existing)} already there)", flush=True)
        start = next_poll = time.monotonic()
        try:
            for i in range(count):
                cid = f"{i:06d}"
                if out.key(id=cid) in existing:
                    skipped += 1
                    continue
                # Deadlines from the start, so time spent writing does not slow the pace.
                stop.sleep_until(start + written * every)
                if time.monotonic() >= next_poll:
                    if feedback.read():
                        model.update(feedback.latest)
                        print(f"toy generator: model {model.iteration}", flush=True)
                    next_poll = time.monotonic() + poll
                batch.append((cid, model.candidate(i)))
                written += 1
                if len(batch) >= per_batch:
                    _emit(out, batch)
                    batch = []
        except TerminatedError:
            _emit(out, batch)  # finished records are worth keeping
            raise
        _emit(out, batch)
        print(f"toy generator: wrote {written}, skipped {skipped}", flush=True)
        return 0


def _emit(out: app.Stream, batch: list[tuple[str, Item]]) -> None:
    out.emit_many([r.values for _, r in batch], ids=[i for i, _ in batch],
                  tags=[r.tag for _, r in batch], metas=[r.meta for _, r in batch])

"""Replay's moving parts: recorded batches given to fresh selectors, and the calls they answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mummi_spec.runtime.history import Batch
from mummi_spec.runtime.ledger import PickRow
from mummi_spec.runtime.selectors.base import Selector


@dataclass(frozen=True)
class Asked:
    """One select call and what it returned."""

    t: float
    asked: int
    picks: tuple[PickRow, ...]


class Feeder:
    """Gives each selector the recorded batches of its streams, in order, up to a point."""

    def __init__(self, batches: list[Batch], selectors: Mapping[str, Selector],
                 streams: Mapping[str, set[str]]) -> None:
        self.batches = batches
        self.selectors = selectors
        self.streams = streams
        self.next = dict.fromkeys(selectors, 0)  # index into batches, per selector
        self.given = dict.fromkeys(selectors, 0)  # items given, per selector
        self.refused: dict[str, list[tuple[str, str]]] = {n: [] for n in selectors}

    def feed(self, name: str, *, batch: int | None = None, t: float | None = None) -> None:
        """Every batch numbered up to ``batch`` (or recorded at ``t`` or before) not yet given."""
        i, sel, streams = self.next[name], self.selectors[name], self.streams[name]
        while i < len(self.batches):
            b = self.batches[i]
            if (batch is not None and b.batch > batch) or (t is not None and b.t > t):
                break
            if b.stream in streams:
                result = sel.add(list(b.keys), b.points, None if b.tags is None else list(b.tags))
                self.given[name] += len(b.keys)
                self.refused[name] += result.rejected
            i += 1
        self.next[name] = i

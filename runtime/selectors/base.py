"""The selector interface: add candidate encodings, select the most novel, checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class Outside:
    """Accepted points beyond a selector's declared bounds (kept, in the edge bins): how
    many, and per dimension (0-based, as ``bounds`` lists them) its bounds and how many lay
    below and above them."""

    points: int
    dims: Mapping[int, tuple[float, float, int, int]]  # dim -> (low, high, below, above)


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``Selector.add`` did with a batch: how many it kept, why it refused the rest, and
    how many of those it kept lie outside its bounds (selectors with bounds only)."""

    accepted: int
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (candidate id, reason)
    outside: Outside | None = None


@dataclass(frozen=True, slots=True)
class SelectorStats:
    """Counts for progress displays and the ledger."""

    candidates: int
    selected: int
    discarded: int
    per_queue: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # queue -> (cands, sel)


@dataclass(frozen=True, slots=True)
class Pick:
    """How one selected id was chosen: its queue, and the score it was chosen by.

    ``score`` is the kind's own measure at the moment of the pick (farthest-point: the mean
    distance to its k nearest selected points), None when the pick was not made by score (a
    warm-up's random picks, a random or binned selector's picks).
    """

    queue: str
    score: float | None = None


@runtime_checkable
class Selector(Protocol):
    """Chooses candidates to spawn finer simulations from.

    Implementations are built as ``cls(settings)`` from the selector's ``SelectorPlan``
    (``kind``, ``dim``, the seed and the kind's own settings).
    """

    key: ClassVar[str]
    dim: int

    def add(
        self, ids: Sequence[str], points: np.ndarray, tags: Sequence[str | None] | None = None
    ) -> AddResult:
        """Add candidates (``points`` is ``len(ids) x dim``); cheap, ranks are computed lazily.

        ``tags`` route each candidate to a queue. Known ids, NaN rows and unknown tags are
        refused per item, never by raising for the whole batch.
        """
        ...

    def add_selected(
        self, ids: Sequence[str], points: np.ndarray, tags: Sequence[str | None] | None = None
    ) -> AddResult:
        """Record candidates chosen before a restart as selected, as ``select`` would have.

        For a selector rebuilt without a usable checkpoint: later picks, ranks and weights
        then account for them. Ids already selected are left alone; candidates are taken.
        """
        ...

    def select(self, k: int) -> list[str]:
        """Return up to ``k`` ids, most novel first, and mark them selected."""
        ...

    def last_picks(self) -> list[Pick]:
        """How each id the last ``select`` returned was chosen, in the same order."""
        ...

    def weights(self, normalize: bool = True) -> dict[str, float]:
        """A weight per selected id (how many candidates it stands for), for feedback."""
        ...

    def stats(self) -> SelectorStats:
        """Current counts."""
        ...

    def known_ids(self) -> list[str]:
        """Every id ever added (candidates, selected and discarded), for a restart's ingest."""
        ...

    def save(self, path: Path) -> None:
        """Write the full state to ``path`` atomically (write elsewhere, then rename)."""
        ...

    def load(self, path: Path) -> None:
        """Replace the state with what ``save`` wrote; raise ``SelectorError`` if unreadable."""
        ...


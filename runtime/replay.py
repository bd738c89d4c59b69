"""`mummi replay`: the candidates a campaign received, through another spec's selectors.

The recorded campaign's selectors were given batches of candidates and asked for picks; the
steering record (ledger.py) keeps both in order. A replay builds the new plan's selectors
(the real classes, from the registry) and gives them the same batches, asking for picks when
the campaign asked, as many as it asked (``recorded``), or when the new plan's own policy
would, with jobs taking as long as the campaign's did (``budget``, replay_budget.py).
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mummi_spec.errors import MummiError
from mummi_spec.plan import Plan, to_data
from mummi_spec.runtime.history import History, candidates
from mummi_spec.runtime.ledger import CallKind, CallRow, pick_rows
from mummi_spec.runtime.registry import SELECTORS
from mummi_spec.runtime.replay_budget import at_budget
from mummi_spec.runtime.replay_feed import Asked, Feeder
from mummi_spec.runtime.report import nearest_distances
from mummi_spec.runtime.selectors.base import Selector

JsonPath = tuple[str | int, ...]


class When(str, enum.Enum):
    """When a replay asks the new selectors for picks."""

    RECORDED = "recorded"  # at the campaign's own select calls, as many as it asked
    BUDGET = "budget"  # when the new plan's book and policy would (replay_budget.py)


class ReplayError(MummiError):
    """The new plan cannot replay the campaign; ``path`` is where in the new spec, to locate."""

    def __init__(self, message: str, path: JsonPath, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.path, self.hint = message, path, hint


@dataclass(frozen=True)
class Side:
    """One selector's picks for one coupling, and how well they cover the candidates."""

    selector: str
    settings: dict[str, Any]  # the selector's plan entry, without its name
    asked: list[Asked]  # its select calls for the coupling
    picked: list[str]  # the selections, in order (an id the coupling had already is skipped)
    queues: dict[str, int]
    covering_radius: float
    mean_nearest: float


@dataclass(frozen=True)
class CouplingReplay:
    """The recorded and the replayed selections of one coupling, side by side."""

    coupling: str
    stream: str
    candidates: int  # distinct candidates the stream delivered with finite encodings
    recorded: Side
    replay: Side
    overlap: int  # selections both made

    @property
    def identical(self) -> bool:
        """The same selections in the same order."""
        return self.recorded.picked == self.replay.picked


@dataclass(frozen=True)
class Replay:
    """A whole replay: per coupling, and what the reader must know about it."""

    campaign: str
    when: When
    batches: int
    arrivals: int
    calls: int  # recorded select calls
    couplings: list[CouplingReplay]
    notes: list[str]
    points: dict[str, np.ndarray] = field(repr=False)  # per coupling: its candidates
    index: dict[str, dict[str, int]] = field(repr=False)  # per coupling: id -> row of points


def check(recorded: Plan, new: Plan) -> None:
    """Refuse a new plan that cannot take the campaign's candidates (``ReplayError``)."""
    if not new.couplings:
        raise ReplayError("the new spec has no couplings, so no selector to replay", ())
    for name, c in sorted(new.couplings.items()):
        old = recorded.couplings.get(name)
        if old is None:
            close = difflib.get_close_matches(name, list(recorded.couplings), 1)
            raise ReplayError(
                f"coupling '{name}' is not in the recorded campaign (its couplings: "
                f"{', '.join(sorted(recorded.couplings))})", ("couplings", name),
                hint=f"did you mean '{close[0]}'?" if close else None)
        if c.source != old.source:
            raise ReplayError(f"coupling '{name}' takes candidates from '{c.source}' but the "
                              f"campaign's took them from '{old.source}'",
                              ("couplings", name, "from"), hint=f"from: {old.source}")
        sel, dim = new.selectors[c.selector], recorded.stream(old.source).dim
        if sel.dim != dim:
            hint = (f"replay with the profile the campaign ran with (--profile "
                    f"{recorded.profile})" if recorded.profile != new.profile
                    else f"dim: {dim}")
            raise ReplayError(f"selector '{sel.name}' is {sel.dim}-D but the campaign "
                              f"recorded {dim}-D encodings from stream '{old.source}'",
                              ("selectors", sel.name, "dim"), hint=hint)


def build(plan: Plan, history: History) -> tuple[dict[str, Selector], Feeder]:
    """The new plan's selectors, fresh, and a feeder of the recorded batches to them."""
    names = sorted({c.selector for c in plan.couplings.values()})
    selectors = {n: SELECTORS.get(plan.selectors[n].kind)(plan.selectors[n]) for n in names}
    streams = {n: {c.source for c in plan.couplings.values() if c.selector == n}
               for n in names}
    return selectors, Feeder(history.batches(), selectors, streams)


def at_recorded(plan: Plan, recorded: Plan, selectors: Mapping[str, Selector],
                feeder: Feeder, calls: list[CallRow]) -> dict[str, list[Asked]]:
    """Every recorded call replayed in order on the new plan's selectors: a select asks the
    coupling's new selector for as many, after the same batches; a feedback loop's weights
    call goes to the new selectors of the couplings the recorded selector served."""
    out: dict[str, list[Asked]] = {name: [] for name in plan.couplings}
    served: dict[str, set[str]] = {}
    for name, c in recorded.couplings.items():
        if name in plan.couplings:
            served.setdefault(c.selector, set()).add(plan.couplings[name].selector)
    after = dict.fromkeys(selectors, 0)  # monotone per selector, whoever shared it before
    for call in calls:
        if call.kind == CallKind.WEIGHTS:
            targets = sorted(served.get(call.selector, ()))
        elif call.coupling is not None and call.coupling in plan.couplings:
            targets = [plan.couplings[call.coupling].selector]
        else:
            continue
        for name in targets:
            after[name] = max(after[name], call.after_batch)
            feeder.feed(name, batch=after[name])
            sel = selectors[name]
            if call.kind == CallKind.WEIGHTS:
                sel.weights(normalize=False)
                continue
            ids = sel.select(call.asked)
            asked = Asked(call.t, call.asked, pick_rows(ids, sel.last_picks()))
            out[str(call.coupling)].append(asked)
    return out


def recorded_calls(calls: Iterable[CallRow]) -> dict[str, list[Asked]]:
    """The campaign's own select calls, per coupling, in the replay's shape."""
    out: dict[str, list[Asked]] = {}
    for call in calls:
        if call.kind == CallKind.SELECT and call.coupling is not None:
            out.setdefault(call.coupling, []).append(Asked(call.t, call.asked, call.picks))
    return out


def side(selector: str, plan: Plan, asked: list[Asked], points: np.ndarray,
         index: Mapping[str, int]) -> Side:
    """What one selector picked for a coupling; an id the coupling had is skipped, as the
    book skips it."""
    picked: list[str] = []
    queues: dict[str, int] = {}
    chosen: set[str] = set()
    for a in asked:
        for p in a.picks:
            if p.candidate not in chosen:
                chosen.add(p.candidate)
                picked.append(p.candidate)
                queues[p.how.queue] = queues.get(p.how.queue, 0) + 1
    rows = [index[c] for c in picked if c in index]
    near = nearest_distances(points, points[rows])  # one pass for both figures
    radius, mean = (float(near.max()), float(near.mean())) if len(near) and rows \
        else (math.inf, math.inf)
    settings = {k: v for k, v in to_data(plan.selectors[selector]).items() if k != "name"}
    return Side(selector, settings, asked, picked, dict(sorted(queues.items())), radius, mean)


def notes_of(history: History, recorded: Plan, plan: Plan, when: When, feeder: Feeder
             ) -> list[str]:
    """What the reader must know to trust the comparison."""
    out = []
    for run in history.runs():
        at = f"+{run.t - history.started:.1f} s"
        if run.previous == "running":
            out.append(f"the manager restarted after a crash at {at}: its selectors went on "
                       "from a checkpoint older than the ledger, which a replay from the "
                       "start does not, so the recorded picks after that may differ")
        if run.rebuilt:
            out.append(f"selector(s) {', '.join(run.rebuilt)} restarted without a checkpoint "
                       f"at {at}: rebuilt from the ledger, not replayable exactly after that")
    for name, refused in sorted(feeder.refused.items()):
        if refused:
            key, why = refused[0]
            out.append(f"selector '{name}' of the new spec refused {len(refused)} of the "
                       f"{feeder.given[name]} candidates it was given, first {key!r}: {why}")
    left = sorted(set(recorded.couplings) - set(plan.couplings))
    if left:
        out.append(f"not in the new spec, so not replayed: coupling(s) {', '.join(left)}")
    if when == When.BUDGET:
        out.append("budget: selections asked when the new spec's policy would, every "
                   f"{plan.manager.tick:g} s; each job takes as long as the campaign's own "
                   "job of its type with the same start order (cycling); no job fails")
    return out


def replay(history: History, plan: Plan, when: When = When.RECORDED) -> Replay:
    """Replay ``history`` against ``plan``'s selectors."""
    recorded = history.plan
    check(recorded, plan)
    calls = history.calls()
    selectors, feeder = build(plan, history)
    if when == When.RECORDED:
        ours = at_recorded(plan, recorded, selectors, feeder, calls)
    else:
        ours = at_budget(plan, history, selectors, feeder)
    theirs = recorded_calls(calls)
    results, points, index = [], {}, {}
    for name, c in sorted(plan.couplings.items()):
        keys, pts = candidates(feeder.batches, c.source, recorded.stream(c.source).dim)
        points[name] = pts
        index[name] = {k: i for i, k in enumerate(keys)}
        old = side(recorded.couplings[name].selector, recorded, theirs.get(name, []),
                   pts, index[name])
        new = side(c.selector, plan, ours[name], pts, index[name])
        results.append(CouplingReplay(name, c.source, len(keys), old, new,
                                      len(set(old.picked) & set(new.picked))))
    return Replay(recorded.name, when, len(feeder.batches),
                  sum(len(b.keys) for b in feeder.batches),
                  sum(len(v) for v in theirs.values()), results,
                  notes_of(history, recorded, plan, when, feeder), points, index)

"""The report page's other figures: jobs over time, feedback targets, selections over time."""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mummi_spec.runtime.ledgerview import Attempt, Selection
from mummi_spec.runtime.report import Out, pyplot, save
from mummi_spec.runtime.states import AttemptState, SimState

# An attempt's colour says how it ended; still live ones are blue.
COLOURS = {AttemptState.COMPLETED: "#2ca02c", AttemptState.FAILED: "#d62728",
           AttemptState.TIMEDOUT: "#ff7f0e", AttemptState.CANCELLED: "#7f7f7f",
           AttemptState.LOST: "#9467bd", AttemptState.RUNNING: "#1f77b4"}
WAITING = "#c7c7c7"  # submitted, not started yet
COMPONENTS = 6  # a target's components drawn over the iterations, at most


@dataclass(frozen=True)
class TargetHistory:
    """One feedback loop over its iterations, as far as the ledger and the stores tell."""

    loop: str
    items: Sequence[int]  # items consumed by iteration 1, 2, ...
    values: np.ndarray | None  # iterations x dim: the aggregate after each (None: unknown)
    label: str  # what ``values`` is
    final: np.ndarray | None  # what the target holds now
    final_iteration: int | None


def lanes(spans: Sequence[tuple[float, float]]) -> list[int]:
    """A lane for each span so that spans in one lane never overlap, as few lanes as the
    busiest moment needs (by start, into the lane that freed first)."""
    free: list[tuple[float, int]] = []  # (when it frees, lane), a heap
    out = [0] * len(spans)
    made = 0
    for i in sorted(range(len(spans)), key=lambda i: (spans[i][0], i)):
        start, end = spans[i]
        if free and free[0][0] <= start:
            lane = heapq.heappop(free)[1]
        else:
            lane, made = made, made + 1
        heapq.heappush(free, (end, lane))
        out[i] = lane
    return out


def _seconds_or_hours(t_max: float) -> tuple[float, str]:
    return (3600.0, "h") if t_max > 3 * 3600 else (1.0, "s")


def plot_timeline(attempts: Sequence[Attempt], now: float, out: Out) -> None:
    """One band per job type, each attempt a bar from its submission (grey while it waits)
    through its run (coloured by how it ended) on its own lane."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    plt = pyplot()
    by_type: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        if a.submitted is not None:
            by_type[a.job_type].append(a)
    types = sorted(by_type)
    scale, unit = _seconds_or_hours(now)
    fig, ax = plt.subplots(figsize=(9, max(2.2, 0.8 * len(types) + 1.2)))
    band_pts = 0.8 * fig.get_figheight() * 72 / max(1, len(types)) * 0.75
    seen: set[AttemptState] = set()
    for row, job_type in enumerate(types):
        group = by_type[job_type]
        spans = [(a.submitted or 0.0, a.ended if a.ended is not None else now) for a in group]
        lane_of = lanes(spans)
        n = max(lane_of) + 1
        width = float(np.clip(band_pts / n, 0.3, 8.0))
        wait, run, colours = [], [], []
        for a, (start, end), lane in zip(group, spans, lane_of, strict=True):
            y = row - 0.4 + 0.8 * (lane + 0.5) / n
            began = a.started if a.started is not None else end
            wait.append([(start / scale, y), (began / scale, y)])
            if a.started is not None:
                state = a.state if a.ended is not None else AttemptState.RUNNING
                run.append([(a.started / scale, y), (end / scale, y)])
                colours.append(COLOURS.get(state, "#1f77b4"))
                seen.add(state)
        ax.add_collection(LineCollection(wait, colors=WAITING, linewidths=width))
        ax.add_collection(LineCollection(run, colors=colours, linewidths=width))
    ax.set_yticks(range(len(types)), types)
    ax.set_ylim(-0.6, len(types) - 0.4)
    ax.set_xlim(0, max(now, 1e-9) / scale * 1.01)
    ax.invert_yaxis()
    ax.set_xlabel(f"campaign time ({unit})")
    handles = [Line2D([], [], color=WAITING, lw=4, label="waiting")] + [
        Line2D([], [], color=COLOURS[s], lw=4, label=s.value) for s in COLOURS if s in seen]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_title("Jobs over time, per job type")
    save(fig, out)


def plot_feedback(loops: Sequence[TargetHistory], out: Out) -> None:
    """Per loop: items consumed per iteration, and the target's first components over them."""
    plt = pyplot()
    fig, axes = plt.subplots(max(1, len(loops)), 2, figsize=(10, 3.2 * max(1, len(loops))),
                             squeeze=False)
    for (left, right), h in zip(axes, loops, strict=False):
        its = np.arange(1, len(h.items) + 1)
        left.bar(its, h.items, color="C0")
        left.set_xlabel("iteration")
        left.set_ylabel("items consumed")
        left.set_title(f"{h.loop}: items per iteration", fontsize="small")
        shown = 0
        if h.values is not None and len(h.values):
            shown = min(COMPONENTS, h.values.shape[1])
            for c in range(shown):
                right.plot(its[:len(h.values)], h.values[:, c], marker=".", color=f"C{c}",
                           label=f"component {c}")
        if h.final is not None and h.final_iteration is not None:
            shown = shown or min(COMPONENTS, len(h.final))
            right.scatter([h.final_iteration] * shown, h.final[:shown], marker="x", s=40,
                          c=[f"C{c}" for c in range(shown)], zorder=3,
                          label="the target now")
        right.set_xlabel("iteration")
        right.set_title(f"{h.loop}: the target's first {shown} components", fontsize="small")
        if shown:
            right.legend(fontsize="x-small", ncols=2)
    save(fig, out)


def plot_selections(selections: Sequence[Selection], now: float, couplings: Sequence[str],
                    out: Out) -> None:
    """Selections made, and simulations done and failed, over time, per coupling."""
    plt = pyplot()
    scale, unit = _seconds_or_hours(now)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, name in enumerate(sorted(couplings)):
        mine = [s for s in selections if s.coupling == name]
        for what, times, style in (
                ("selected", [s.selected for s in mine], "-"),
                ("done", [s.ended for s in mine if s.state == SimState.DONE], "--"),
                ("failed", [s.ended for s in mine if s.state == SimState.FAILED], ":")):
            t = np.sort([x for x in times if x is not None]) / scale
            if len(t):
                ax.step(np.r_[0.0, t, now / scale], np.r_[0, np.arange(1, len(t) + 1), len(t)],
                        where="post", ls=style, color=f"C{i}", label=f"{name} {what}")
    ax.set_xlabel(f"campaign time ({unit})")
    ax.set_ylabel("simulations")
    ax.set_title("Selections and their outcomes over time")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="upper left")
    save(fig, out)

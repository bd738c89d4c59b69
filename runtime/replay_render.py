"""A replay shown: the side-by-side table, its JSON, and the picture in the encoding space."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mummi_spec.runtime.replay import CouplingReplay, Replay, Side, When
from mummi_spec.runtime.replay_feed import Asked
from mummi_spec.runtime.report import principal_axes, project

_WHEN = {When.RECORDED: "when the campaign asked, as many as it asked (--when recorded)",
         When.BUDGET: "when the new spec's policy would (--when budget)"}


def _number(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "-"


def _value(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v)


def _settings(old: Side, new: Side) -> list[tuple[str, str, str]]:
    """The selector's kind, then every setting the two sides set differently."""
    rows = [("selector", old.selector, new.selector),
            ("  kind", str(old.settings["kind"]), str(new.settings["kind"]))]
    for key in sorted(set(old.settings) | set(new.settings)):
        a, b = old.settings.get(key), new.settings.get(key)
        if key != "kind" and a != b:
            rows.append((f"  {key}", _value(a) if a is not None else "-",
                         _value(b) if b is not None else "-"))
    if len(rows) == 2 and old.settings == new.settings:
        rows.append(("  settings", "the same", "the same"))
    return rows


def _coupling(c: CouplingReplay) -> list[str]:
    old, new = c.recorded, c.replay
    rows = _settings(old, new)
    rows += [("select calls", str(len(old.asked)), str(len(new.asked))),
             ("selections", str(len(old.picked)), str(len(new.picked)))]
    for q in sorted(set(old.queues) | set(new.queues)):
        rows.append((f"  queue {q}", str(old.queues.get(q, 0)), str(new.queues.get(q, 0))))
    rows += [("covering radius", _number(old.covering_radius), _number(new.covering_radius)),
             ("mean nearest selected", _number(old.mean_nearest), _number(new.mean_nearest))]
    w = max(12, *(len(r[1]) for r in rows))
    out = [f"coupling {c.coupling} (stream {c.stream}, {c.candidates} candidates)",
           f"  {'':<24}{'recorded':<{w + 2}}replay"]
    out += [f"  {a:<24}{b:<{w + 2}}{d}" for a, b, d in rows]
    out.append(f"  {'overlap':<24}{c.overlap} of the {len(old.picked)} recorded selections "
               "were replayed")
    same = "yes: the same selections in the same order" if c.identical else "no"
    out.append(f"  {'identical':<24}{same}")
    return out


def to_text(r: Replay, workspace: str, spec: str, profile: str | None) -> str:
    """The report ``mummi replay`` prints."""
    out = [f"replay of campaign {r.campaign} ({workspace}): {r.arrivals} candidates in "
           f"{r.batches} batches, {r.calls} select calls",
           f"against {spec} ({f'profile {profile}' if profile else 'base spec'}), "
           f"selections asked {_WHEN[r.when]}", ""]
    for c in r.couplings:
        out += [*_coupling(c), ""]
    out += [f"note: {n}" for n in r.notes]
    return "\n".join(out).rstrip("\n") + "\n"


def _calls(asked: list[Asked], t0: float) -> list[dict[str, Any]]:
    return [{"t": round(a.t - t0, 3), "asked": a.asked,
             "picks": [{"id": p.candidate, "queue": p.how.queue, "score": p.how.score}
                       for p in a.picks]}
            for a in asked]


def _side(s: Side, t0: float) -> dict[str, Any]:
    return {"selector": s.selector, "settings": s.settings, "selections": s.picked,
            "queues": s.queues, "covering_radius": _finite(s.covering_radius),
            "mean_nearest": _finite(s.mean_nearest), "calls": _calls(s.asked, t0)}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def to_data(r: Replay, t0: float) -> dict[str, Any]:
    """The JSON of ``mummi replay --json`` (times in seconds from the campaign's start)."""
    return {"campaign": r.campaign, "when": r.when.value, "batches": r.batches,
            "arrivals": r.arrivals, "calls": r.calls, "notes": r.notes,
            "couplings": {c.coupling: {
                "stream": c.stream, "candidates": c.candidates, "overlap": c.overlap,
                "identical": c.identical, "recorded": _side(c.recorded, t0),
                "replay": _side(c.replay, t0)} for c in r.couplings}}


def plot(r: Replay, path: Path) -> None:
    """One panel per coupling: its candidates, the recorded and the replayed selections, on
    the first two principal axes of the candidates (signs fixed: the same picture each time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(r.couplings))
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 5), squeeze=False)
    for ax, c in zip(axes[0], r.couplings, strict=False):
        pts, index = r.points[c.coupling], r.index[c.coupling]
        if not len(pts):
            ax.set_title(f"{c.coupling}: no candidates", fontsize="small")
            continue
        basis = principal_axes(pts)
        xy = project(pts, basis)
        ax.scatter(xy[:, 0], xy[:, 1], s=5, c="0.75", label=f"candidates ({len(pts)})")
        for s, style in ((c.recorded, {"s": 90, "facecolors": "none", "edgecolors": "C0",
                                       "linewidths": 1.5}),
                         (c.replay, {"s": 40, "c": "C3", "marker": "x"})):
            rows = [index[k] for k in s.picked if k in index]
            which = "recorded" if s is c.recorded else "replay"
            ax.scatter(xy[rows, 0], xy[rows, 1], label=f"{which}: {s.selector} "
                       f"({s.settings['kind']}), {len(rows)}", **style)
        ax.set_xlabel("principal axis 1")
        ax.set_ylabel("principal axis 2")
        ax.set_title(f"{c.coupling}: overlap {c.overlap}, covering radius "
                     f"{_number(c.recorded.covering_radius)} → "
                     f"{_number(c.replay.covering_radius)}", fontsize="small")
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)

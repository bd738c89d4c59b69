"""Scales, couplings and feedback as a graph, drawn as Graphviz dot and Mermaid."""

from __future__ import annotations

import json
from typing import NamedTuple

from mummi_spec import digraph
from mummi_spec.model import Spec

_ROLE_ORDER = {"persistent": 0, "setup": 1, "simulation": 2}


class _Edge(NamedTuple):
    kind: str  # "coupling" (coarse -> fine) or "feedback" (fine -> coarse)
    name: str
    source: str
    target: str
    label: str


def _labels(spec: Spec) -> dict[str, str]:
    labels = {}
    for s in spec.scales:
        # In pipeline order, not source order, so that reordering a spec changes no artefact.
        ordered = sorted(s.jobs, key=lambda j: (_ROLE_ORDER.get(j.role, len(_ROLE_ORDER)), j.name))
        jobs = ", ".join(j.name for j in ordered)
        labels[s.name] = f"{s.name}\\n{jobs}" if jobs else s.name
    return labels


def _edges(spec: Spec) -> list[_Edge]:
    edges = []
    for c in spec.couplings:
        chain = " -> ".join(x for x in (c.setup, c.simulation) if x)
        edges.append(_Edge("coupling", c.name, c.source_scale, c.to,
                           f"{c.name}: {c.source_stream} [{c.selector}] {chain}"))
    for f in spec.feedback:
        edges.append(_Edge("feedback", f.name, f.source_scale, f.to,
                           f"{f.name}: {f.source_stream} ({f.aggregate})"))
    return sorted(edges)


def _order(spec: Spec) -> list[str]:
    """Scales coarse to fine along the couplings, ties by name."""
    succ = digraph.adjacency(sorted(s.name for s in spec.scales),
                             ((c.source_scale, c.to) for c in spec.couplings))
    return digraph.topological_order(succ)


def _q(text: str) -> str:
    return json.dumps(text)


def to_dot(spec: Spec) -> str:
    """Graphviz source, deterministic."""
    labels = _labels(spec)
    lines = [f"digraph {_q(spec.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    lines += [f"  {_q(n)} [label={_q(labels[n])}];" for n in _order(spec)]
    for e in _edges(spec):
        style = ", style=dashed" if e.kind == "feedback" else ""
        lines.append(f"  {_q(e.source)} -> {_q(e.target)} [label={_q(e.label)}{style}];")
    return "\n".join([*lines, "}"]) + "\n"


def to_mermaid(spec: Spec) -> str:
    """Mermaid flowchart source, deterministic."""
    labels = _labels(spec)
    ids = {n: f"s{i}" for i, n in enumerate(_order(spec))}
    lines = ["flowchart LR"]
    lines += [f"  {ids[n]}[\"{labels[n].replace(chr(92) + 'n', '<br/>')}\"]" for n in ids]
    for e in _edges(spec):
        arrow = "-.->" if e.kind == "feedback" else "-->"
        label = e.label.replace('"', "'").replace("|", "/")
        lines.append(f"  {ids[e.source]} {arrow}|\"{label}\"| {ids[e.target]}")
    return "\n".join(lines) + "\n"

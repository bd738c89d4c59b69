"""Scales, couplings and feedback as a graph, drawn as Graphviz dot and Mermaid."""

from __future__ import annotations

import json

import networkx as nx

from mummi_spec.model import Spec

_ROLE_ORDER = {"persistent": 0, "setup": 1, "simulation": 2}


def campaign_graph(spec: Spec) -> nx.MultiDiGraph:
    """Scales as nodes; coupling edges coarse -> fine, feedback edges fine -> coarse."""
    g = nx.MultiDiGraph()
    for s in spec.scales:
        # In pipeline order, not source order, so that reordering a spec changes no artefact.
        ordered = sorted(s.jobs, key=lambda j: (_ROLE_ORDER.get(j.role, len(_ROLE_ORDER)), j.name))
        jobs = ", ".join(j.name for j in ordered)
        g.add_node(s.name, label=f"{s.name}\\n{jobs}" if jobs else s.name)
    for c in spec.couplings:
        chain = " -> ".join(x for x in (c.setup, c.simulation) if x)
        g.add_edge(c.source_scale, c.to, key=c.name, kind="coupling",
                   label=f"{c.name}: {c.source_stream} [{c.selector}] {chain}")
    for f in spec.feedback:
        g.add_edge(f.source_scale, f.to, key=f.name, kind="feedback",
                   label=f"{f.name}: {f.source_stream} ({f.aggregate})")
    return g


def _order(g: nx.MultiDiGraph) -> list[str]:
    couplings = nx.DiGraph((u, v) for u, v, d in g.edges(data=True) if d["kind"] == "coupling")
    couplings.add_nodes_from(g.nodes)
    return list(nx.lexicographical_topological_sort(couplings))


def _q(text: str) -> str:
    return json.dumps(text)


def to_dot(spec: Spec) -> str:
    """Graphviz source, deterministic."""
    g = campaign_graph(spec)
    lines = [f"digraph {_q(spec.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    lines += [f"  {_q(n)} [label={_q(g.nodes[n]['label'])}];" for n in _order(g)]
    for u, v, k, d in sorted(g.edges(keys=True, data=True), key=lambda e: (e[3]["kind"], e[2])):
        style = ", style=dashed" if d["kind"] == "feedback" else ""
        lines.append(f"  {_q(u)} -> {_q(v)} [label={_q(d['label'])}{style}];")
    return "\n".join([*lines, "}"]) + "\n"


def to_mermaid(spec: Spec) -> str:
    """Mermaid flowchart source, deterministic."""
    g = campaign_graph(spec)
    ids = {n: f"s{i}" for i, n in enumerate(_order(g))}
    lines = ["flowchart LR"]
    lines += [f"  {ids[n]}[\"{g.nodes[n]['label'].replace(chr(92) + 'n', '<br/>')}\"]"
              for n in ids]
    for u, v, _k, d in sorted(g.edges(keys=True, data=True), key=lambda e: (e[3]["kind"], e[2])):
        arrow = "-.->" if d["kind"] == "feedback" else "-->"
        label = d["label"].replace('"', "'").replace("|", "/")
        lines.append(f"  {ids[u]} {arrow}|\"{label}\"| {ids[v]}")
    return "\n".join(lines) + "\n"

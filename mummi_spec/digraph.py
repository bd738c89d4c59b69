"""The few directed-graph operations a campaign needs: cycles, reachability, stable order.

A campaign has a handful of scales, so plain dicts do; a graph library cost `mummi compile`
a tenth of a second at import, more than the compile's own work on these graphs.
"""

from __future__ import annotations

from collections.abc import Iterable
from heapq import heapify, heappop, heappush
from itertools import pairwise

Edge = tuple[str, str]


def adjacency(nodes: Iterable[str], edges: Iterable[Edge]) -> dict[str, list[str]]:
    """Successors of each node, in the order the nodes and edges were given."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for u, v in edges:
        succ.setdefault(u, [])
        succ.setdefault(v, [])
        if v not in succ[u]:
            succ[u].append(v)
    return succ


def find_cycle(succ: dict[str, list[str]]) -> list[Edge]:
    """The edges of the first cycle a depth-first search meets, or [] if there is none."""
    done: set[str] = set()
    for root in succ:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        todo = [iter(succ[root])]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return list(pairwise([*path[path.index(nxt):], nxt]))
            if nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                todo.append(iter(succ[nxt]))
    return []


def has_path(succ: dict[str, list[str]], source: str, target: str) -> bool:
    """Whether ``target`` can be reached from ``source`` (a node reaches itself)."""
    seen = {source}
    todo = [source]
    while todo:
        node = todo.pop()
        if node == target:
            return True
        for nxt in succ.get(node, []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def in_degree(succ: dict[str, list[str]], node: str) -> int:
    """How many distinct nodes have an edge into ``node``."""
    return sum(node in targets for targets in succ.values())


def topological_order(succ: dict[str, list[str]]) -> list[str]:
    """Nodes sorted so every edge points forward, ties broken by name (deterministic).

    The caller guarantees there is no cycle (checks reject cyclic couplings first).
    """
    indeg = {n: in_degree(succ, n) for n in succ}
    ready = [n for n, d in indeg.items() if d == 0]
    heapify(ready)
    order: list[str] = []
    while ready:
        node = heappop(ready)
        order.append(node)
        for nxt in succ[node]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                heappush(ready, nxt)
    return order

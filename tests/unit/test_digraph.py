"""The graph helpers behind the coupling checks and the drawn campaign graph."""

from __future__ import annotations

from mummi_spec import digraph


def test_cycle_reached_only_from_a_later_root_is_found() -> None:
    succ = digraph.adjacency(["a", "b", "c", "d"], [("a", "b"), ("c", "d"), ("d", "c")])
    assert digraph.find_cycle(succ) == [("c", "d"), ("d", "c")]


def test_self_loop_is_a_cycle_and_a_chain_is_not() -> None:
    assert digraph.find_cycle(digraph.adjacency(["x"], [("x", "x")])) == [("x", "x")]
    chain = digraph.adjacency(["a", "b", "c"], [("a", "b"), ("b", "c"), ("a", "c")])
    assert digraph.find_cycle(chain) == []


def test_paths_follow_edge_direction() -> None:
    succ = digraph.adjacency(["cg", "aa", "macro"], [("macro", "cg"), ("cg", "aa")])
    assert digraph.has_path(succ, "macro", "aa")
    assert not digraph.has_path(succ, "aa", "macro")
    assert digraph.has_path(succ, "aa", "aa")


def test_duplicate_edges_count_once() -> None:
    succ = digraph.adjacency(["a", "b"], [("a", "b"), ("a", "b")])
    assert succ == {"a": ["b"], "b": []}
    assert digraph.in_degree(succ, "b") == 1


def test_topological_order_breaks_ties_by_name() -> None:
    succ = digraph.adjacency(["z", "m", "a"], [("z", "m")])
    assert digraph.topological_order(succ) == ["a", "z", "m"]

"""orchestra.core.graph: the one cycle check and the one order for tasks and workflow steps."""

from __future__ import annotations

import pytest

from orchestra.core.graph import any_cycle, find_cycle, topo_order


def test_no_cycle_in_a_diamond():
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert any_cycle(graph) is None
    assert all(find_cycle(graph, node) is None for node in graph)


def test_a_cycle_is_reported_as_a_path_that_ends_where_it_began():
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    assert find_cycle(graph, "a") == ["a", "b", "c", "a"]
    # Reached from outside the loop, the path is the loop only.
    assert find_cycle(graph, "d") == ["a", "b", "c", "a"]
    cycle = any_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_a_node_on_itself_is_a_cycle():
    assert find_cycle({"a": ["a"]}, "a") == ["a", "a"]


def test_dependencies_outside_the_graph_are_no_cycle():
    assert find_cycle({"a": ["gone"]}, "a") is None
    assert topo_order({"a": ["gone"], "b": ["a"]}) == ["a", "b"]


def test_a_long_chain_does_not_hit_the_recursion_limit():
    n = 20_000
    graph = {f"t{i}": [f"t{i + 1}"] for i in range(n)}
    assert find_cycle(graph, "t0") is None
    graph[f"t{n}"] = ["t0"]
    cycle = find_cycle(graph, "t0")
    assert cycle is not None and len(cycle) == n + 2


def test_topological_order_puts_dependencies_first_and_keeps_ties_in_order():
    graph = {"merge": ["test", "review"], "review": ["test"], "test": ["build"], "build": [], "docs": []}
    order = topo_order(graph)
    assert order == ["build", "test", "review", "merge", "docs"]
    for node, deps in graph.items():
        assert all(order.index(d) < order.index(node) for d in deps)
    assert topo_order({"x": [], "y": [], "z": []}) == ["x", "y", "z"]


def test_topological_order_of_a_cycle_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        topo_order({"a": ["b"], "b": ["a"]})

"""Dependency graphs: tasks on tasks, workflow steps on steps. One cycle check, one order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping


def find_cycle(graph: Mapping[str, Iterable[str]], start: str) -> list[str] | None:
    """A cycle reachable from `start`, as a path that ends where it began, or None.

    Iterative, so long dependency chains cannot hit the recursion limit.
    """
    done: set[str] = set()
    path: list[str] = [start]
    on_path: set[str] = {start}
    stack: list[Iterator[str]] = [iter(graph.get(start, ()))]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            node = path.pop()
            on_path.discard(node)
            done.add(node)
            continue
        if nxt in on_path:
            return path[path.index(nxt) :] + [nxt]
        if nxt in done:
            continue
        path.append(nxt)
        on_path.add(nxt)
        stack.append(iter(graph.get(nxt, ())))
    return None


def any_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle anywhere in the graph, or None."""
    for node in graph:
        cycle = find_cycle(graph, node)
        if cycle:
            return cycle
    return None


def topo_order(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Nodes so that each comes after everything it depends on; ties keep the mapping's order.

    The graph must be acyclic (check with any_cycle first); dependencies outside it are ignored.
    """
    done: set[str] = set()
    ordered: list[str] = []
    pending = [n for n in graph]
    while pending:
        for node in pending:
            if all(d in done or d not in graph for d in graph[node]):
                ordered.append(node)
                done.add(node)
                pending.remove(node)
                break
        else:
            raise ValueError("the graph has a cycle")
    return ordered

"""No module of orchestra imports itself back through a cycle.

The import-linter contract `acyclic_siblings` (pyproject.toml, run by .ci/run) checks
the packages' children against each other, but not a package's own `__init__`: a
cycle such as executors/__init__.py -> executors/local.py -> executors/__init__.py
passes it. This test checks the whole module graph, counting imports inside
functions and under TYPE_CHECKING, and names the cycle it finds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import grimp
import pytest

import orchestra

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Groups of modules that import each other through some path (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            for other in imported:
                if other not in index:
                    index[other] = low[other] = len(index)
                    stack.append(other)
                    on_stack.add(other)
                    work.append((other, iter(sorted(graph.find_modules_directly_imported_by(other)))))
                    break
                if other in on_stack:
                    low[module] = min(low[module], index[other])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == module:
                            break
                    if len(group) > 1 or graph.direct_import_exists(importer=module, imported=module):
                        groups.append(sorted(group))
    return groups


def describe_cycle(graph: grimp.ImportGraph, group: list[str]) -> str:
    """One cycle through the group's first module, each import with its line."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to `start`
        module = frontier.pop(0)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if other == start:
                cycle = [*paths[module], start]
                lines = []
                for importer, imported in itertools.pairwise(cycle):
                    details = graph.get_import_details(importer=importer, imported=imported)
                    where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details)
                    lines.append(f"  {importer} -> {imported}  ({where})")
                return " -> ".join(cycle) + "\n" + "\n".join(lines)
            if other in members and other not in paths:
                paths[other] = [*paths[module], other]
                frontier.append(other)
    return " <-> ".join(group)


def test_the_graph_is_this_checkout() -> None:
    assert Path(orchestra.__file__).resolve().parent == ROOT / "orchestra", (
        f"orchestra is imported from {orchestra.__file__}, not this checkout; run pytest from {ROOT}"
    )


def test_no_module_imports_itself_back() -> None:
    graph = grimp.build_graph("orchestra", exclude_type_checking_imports=False, cache_dir=None)
    assert len(graph.modules) > 50  # the whole package, not an empty graph
    cycles = [describe_cycle(graph, group) for group in strongly_connected(graph)]
    assert not cycles, "import cycles (move the code down a layer, or pass the value in):\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    ("imports", "expected"),
    [
        ([("p", "p.a"), ("p.a", "p.b")], []),
        ([("p", "p.a"), ("p.a", "p")], [["p", "p.a"]]),  # through a package's __init__
        ([("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")], [["p.a", "p.b", "p.c"]]),
        ([("p.a", "p.a")], [["p.a"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(imports: list[tuple[str, str]], expected: list[list[str]]) -> None:
    graph = grimp.ImportGraph()
    for importer, imported in imports:
        graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="import x")
    assert strongly_connected(graph) == expected
    for group in expected:
        assert describe_cycle(graph, group).startswith(group[0] + " -> ")

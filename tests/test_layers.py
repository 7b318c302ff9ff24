"""Rules of the layered code that the import linter cannot see, checked on the source.

* A task's state changes only through Task's methods (core/task.py), which check
  every move against the state machine; a workflow record's state only in
  core/workflow.py. Nothing else assigns an attribute named `state`.
* An import inside a function is there to keep start-up fast, and says so: every
  one carries a comment naming what it saves (pyproject.toml has the import rules).
* core is the pure domain: the standard library and nothing else.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
PACKAGE = ROOT / "orchestra"
STATE_OWNERS = {"orchestra/core/task.py", "orchestra/core/workflow.py"}


def sources() -> Iterator[tuple[str, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def state_writes(source: str) -> list[tuple[int, str]]:
    """(line, what) for every write to an attribute named `state`, however it is spelled."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "state" and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.append((node.lineno, f"{ast.unparse(node)} {'deleted' if isinstance(node.ctx, ast.Del) else 'set'}"))
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            literal = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
            if name.split(".")[-1] in ("setattr", "__setattr__", "delattr", "__delattr__") and literal == ["state"]:
                found.append((node.lineno, f"{name}(..., 'state', ...)"))
            elif name.split(".")[-1] == "replace" and any(k.arg == "state" for k in node.keywords):
                found.append((node.lineno, f"{name}(..., state=...)"))
    return sorted(found)


def function_imports_without_comment(source: str) -> list[tuple[int, str]]:
    """(line, import) for every import inside a function whose lines carry no comment."""
    comments = {
        tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT
    }
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and in_function:
                lines = range(child.lineno, (child.end_lineno or child.lineno) + 1)
                if not comments.intersection(lines):
                    found.append((child.lineno, ast.unparse(child)))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def test_state_changes_only_through_the_owners_methods() -> None:
    offences = [
        f"{name}:{line}: {what}"
        for name, source in sources()
        if name not in STATE_OWNERS
        for line, what in state_writes(source)
    ]
    assert not offences, (
        "state is changed only through Task's methods (start, finish, cancel, ...) or in core/workflow.py:\n"
        + "\n".join(offences)
    )


def test_every_import_inside_a_function_says_what_start_up_time_it_saves() -> None:
    offences = [
        f"{name}:{line}: {text}"
        for name, source in sources()
        for line, text in function_imports_without_comment(source)
    ]
    assert not offences, (
        "move these imports to the top of the module, or add a comment saying what start-up time "
        "the function-level import saves (e.g. '# rich costs ~30 ms: only --watch pays'):\n" + "\n".join(offences)
    )


def test_core_uses_the_standard_library_only() -> None:
    offences = []
    for name, source in sources():
        if not name.startswith("orchestra/core/"):
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if not (top in sys.stdlib_module_names or top == "__future__" or module.startswith("orchestra.core")):
                    offences.append(f"{name}:{node.lineno}: {module}")
    assert not offences, "core imports the standard library and orchestra.core only:\n" + "\n".join(offences)


def test_the_owners_are_where_they_were() -> None:
    names = {name for name, _ in sources()}
    assert names >= STATE_OWNERS
    task = (ROOT / "orchestra/core/task.py").read_text(encoding="utf-8")
    assert state_writes(task), "core/task.py no longer sets state: update STATE_OWNERS"


@pytest.mark.parametrize(
    "snippet",
    [
        "task.state = State.FAILED",
        "self.store.load(x).state = 'failed'",
        "task.state += ''",
        "task.state: State = State.FAILED",
        "a, task.state = 1, 2",
        "for task.state in states: pass",
        "with open(p) as task.state: pass",
        "del task.state",
        "setattr(task, 'state', State.FAILED)",
        "object.__setattr__(task, 'state', State.FAILED)",
        "task = dataclasses.replace(task, state=State.FAILED)",
    ],
)
def test_the_scan_finds_every_spelling_of_a_state_write(snippet: str) -> None:
    assert [line for line, _ in state_writes(snippet)] == [1]


@pytest.mark.parametrize(
    "snippet",
    [
        "if task.state == State.FAILED: pass",
        "store.append_event(task_id, 'finished', state='cancelled')",
        "text.replace('state', 'status')",
        "task.finish(State.FAILED, 'boom')",
        "request['state'] = PENDING",  # a request file's field, not a task
    ],
)
def test_the_scan_leaves_reads_and_other_things_alone(snippet: str) -> None:
    assert state_writes(snippet) == []


def test_the_import_scan() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    import json\n"
        "    from rich import text  # ~30 ms: only --watch pays\n"
        "    from a import (\n"
        "        b,  # a comment on any of its lines will do\n"
        "    )\n"
        "    def g():\n"
        "        import csv\n"
    )
    assert function_imports_without_comment(source) == [(3, "import json"), (9, "import csv")]

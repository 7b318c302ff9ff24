"""Helpers shared by the hardening tests (a unique module name: test directories share one import path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from conftest import Orch, git  # noqa: E402

__all__ = ["Orch", "git", "merge_json", "plant_task", "run_json"]


def run_json(orch: Orch, *args: str) -> tuple[int, Any]:
    proc = orch.run(*args, "--json")
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"orchestra {' '.join(args)} --json: {proc.stdout}\n{proc.stderr}") from exc


def merge_json(orch: Orch, ref: str, *args: str) -> tuple[int, dict[str, Any]]:
    return run_json(orch, "merge", ref, *args)


def plant_task(repo: Path, task_id: str, **fields: Any) -> Path:
    """Write a task file by hand, as an older or another orchestra might have left it; the index is rebuilt."""
    head = git(repo, "rev-parse", "HEAD")
    data: dict[str, Any] = {
        "id": task_id,
        "prompt": "planted",
        "role": "generalist",
        "title": "planted",
        "base_ref": "HEAD",
        "base_sha": head,
        "branch": f"orchestra/{task_id}-planted",
        "worktree": str(repo / ".orchestra" / "worktrees" / task_id),
        "state": "queued",
        "schema_version": 2,
    }
    data.update(fields)
    state = repo / ".orchestra"
    (state / "tasks").mkdir(parents=True, exist_ok=True)
    path = state / "tasks" / f"{task_id}.json"
    path.write_text(json.dumps(data))
    (state / "index.stale").touch()  # the next reader rebuilds the index from the task files
    return path


def git_ok(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ))


# -- MCP: `orchestra serve` as a subprocess, driven by the SDK's stdio client ------------------------


def mcp_run(orch: Orch, scenario: Any, env: dict[str, str] | None = None) -> None:
    """Run `async scenario(session)` against `orchestra serve` in the repo (autostart is the caller's to set)."""
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "orchestra", "serve"], env=env or orch.env, cwd=str(orch.repo)
    )

    async def main() -> None:
        with open(orch.repo.parent / "serve-stderr.log", "a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                await scenario(session)

    try:
        anyio.run(main)
    except BaseExceptionGroup as group:
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            group = group.exceptions[0]
        raise group from None


async def mcp_call(session: Any, tool: str, **arguments: Any) -> tuple[Any, str]:
    result = await session.call_tool(tool, arguments)
    text = "\n".join(c.text for c in result.content if c.type == "text")
    assert not result.is_error, f"{tool} failed: {text}"
    return result.structured_content, text


async def mcp_error(session: Any, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    text = "\n".join(c.text for c in result.content if c.type == "text")
    assert result.is_error, f"{tool}({arguments}) should have failed, got: {text}"
    return text


async def mcp_read(session: Any, uri: str) -> str:
    result = await session.read_resource(uri)
    return "".join(getattr(c, "text", "") for c in result.contents)


def plant_tasks(repo: Path, tasks: list[dict[str, Any]]) -> None:
    """Many task files at once (fields as in plant_task); the next reader rebuilds the index."""
    head = git(repo, "rev-parse", "HEAD")
    state = repo / ".orchestra"
    (state / "tasks").mkdir(parents=True, exist_ok=True)
    for fields in tasks:
        task_id = fields["id"]
        data: dict[str, Any] = {
            "prompt": "planted",
            "role": "generalist",
            "title": "planted",
            "base_ref": "HEAD",
            "base_sha": head,
            "branch": f"orchestra/{task_id}-planted",
            "worktree": str(state / "worktrees" / task_id),
            "state": "queued",
            "schema_version": 2,
            "created_at": 1.0,
        }
        data.update(fields)
        (state / "tasks" / f"{task_id}.json").write_text(json.dumps(data))
    (state / "index.stale").touch()

"""The fixes the layered core brought: the CLI and the MCP server agree, and roles behave as documented.

Each test here failed on the flat design (cc42a15): the MCP server and the CLI each
checked input and applied defaults themselves, and disagreed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from orchestra.app import Orchestra
from orchestra.core.task import State


def git(cwd: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _role_file(repo: Path, name: str, text: str) -> None:
    roles = repo / ".orchestra" / "roles"
    roles.mkdir(parents=True, exist_ok=True)
    (roles / f"{name}.toml").write_text(text)


@contextlib.asynccontextmanager
async def _mcp(orch: Any) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "orchestra", "serve"], env=orch.env, cwd=str(orch.repo)
    )
    with open(orch.repo.parent / "serve-stderr.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def _mcp_calls(orch: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[bool, str, Any]]:
    """Call MCP tools in order over a real `orchestra serve`; (is_error, text, structured) for each."""
    out: list[tuple[bool, str, Any]] = []

    async def main() -> None:
        async with _mcp(orch) as session:
            for tool, arguments in calls:
                result = await session.call_tool(tool, arguments)
                text = "\n".join(c.text for c in result.content if c.type == "text")
                out.append((bool(result.is_error), text, result.structured_content))

    anyio.run(main)
    return out


def _stop_scheduler(orch: Any) -> None:
    pid = Orchestra(orch.repo).status().scheduler_pid
    if pid and pid > 0:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def test_assign_role_accepts_a_role_defined_in_the_repository(orch) -> None:
    _role_file(orch.repo, "docwriter", 'extends = "documenter"\ndescription = "Docs, our way."\n')
    tid = orch.submit("write the docs")
    task = Orchestra(orch.repo).assign_role(tid, "docwriter")
    assert task.role == "docwriter"
    orch.run("config", "set", "autostart", "false", check=True)
    ((failed, text, data),) = _mcp_calls(orch, [("assign_role", {"task_id": tid, "role": "documenter"})])
    assert not failed, text
    assert data["task"]["role"] == "documenter"
    assert orch.show(tid)["role"] == "documenter"


def test_a_task_switched_to_reviewer_gets_the_verdict_contract(orch) -> None:
    tid = orch.submit("look at it\n@fake text I looked; no verdict given.")
    Orchestra(orch.repo).assign_role(tid, "reviewer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    argv = orch.invocations()[0]["argv"]
    assert argv[argv.index("--tools") + 1] == "Read,Grep,Glob"
    assert json.loads(argv[argv.index("--json-schema") + 1])["required"] == ["verdict", "comments", "summary"]
    assert task["state"] == "failed" and task["error"].startswith("no verdict")


def test_budget_usd_in_a_role_file_caps_its_tasks(orch) -> None:
    _role_file(orch.repo, "frugal", 'extends = "implementer"\nbudget_usd = 0.5\n')
    shown = orch.run("roles", "show", "frugal", "--json", check=True).stdout
    assert json.loads(shown)["budget_usd"] == 0.5
    tid = orch.submit("cheap work", "--role", "frugal")
    assert orch.work().returncode == 0
    argv = orch.invocations()[0]["argv"]
    assert argv[argv.index("--max-budget-usd") + 1] == "0.5"
    assert orch.show(tid)["state"] == "succeeded"
    _role_file(orch.repo, "broken", 'extends = "implementer"\nbudget_usd = "lots"\n')
    bad = orch.run("roles")
    assert bad.returncode == 1 and "budget_usd" in bad.stderr and "broken.toml" in bad.stderr


def test_workflow_show_only_reads(orch) -> None:
    wf_id = orch.run("workflow", "start", "--no-start", "feature", "Add a thing", check=True).stdout.strip()
    record = orch.repo / ".orchestra" / "workflows" / f"{wf_id}.json"
    (design,) = json.loads(record.read_text())["instances"]
    core = Orchestra(orch.repo)

    def finished(task: Any) -> None:  # the design step ended, and no hook has moved the workflow on yet
        task.claim(0)
        task.finish(State.SUCCEEDED, None)

    core.store.update(design["task"], finished)
    before = (record.read_bytes(), len(core.summaries()))
    for args in (["workflow", "show", wf_id], ["workflow", "show", wf_id, "--json"], ["workflow", "list"]):
        orch.run(*args, check=True)
    assert (record.read_bytes(), len(core.summaries())) == before
    # Moving it on is the scheduler's job.
    orch.run("worker", "--until-idle", "--max-concurrent", "1", timeout=120)
    assert len(json.loads(record.read_text())["instances"]) > 1


def test_mcp_merge_uses_the_configured_strategy_and_starts_the_resolver(orch) -> None:
    orch.run("config", "set", "merge_strategy", "squash", check=True)
    orch.run("config", "set", "autostart", "false", check=True)  # `serve` would start one otherwise
    tid = orch.submit(
        "a file\n@fake write one.txt 1\n@fake commit Add one\n@fake write two.txt 2\n@fake commit Add two"
    )
    assert orch.work().returncode == 0
    before = git(orch.repo, "rev-parse", "main")
    ((failed, text, data),) = _mcp_calls(orch, [("merge", {"ref": tid, "into": "main"})])
    assert not failed and data["merge"]["strategy"] == "squash", text
    assert git(orch.repo, "rev-parse", "main^") == before  # one commit, one parent: a squash
    assert git(orch.repo, "show", "main:two.txt") == "2"

    # A conflict with resolve=true starts a resolver, and a scheduler to run it.
    (orch.repo / "clash.txt").write_text("main\n")
    git(orch.repo, "add", "clash.txt")
    git(orch.repo, "commit", "-qm", "main side")
    other = orch.submit("clash\n@fake write clash.txt task\\n\n@fake commit Task side", "--base", f"{before}")
    assert orch.work().returncode == 0
    orch.run("config", "set", "autostart", "true", check=True)
    try:
        ((failed, text, data),) = _mcp_calls(orch, [("merge", {"ref": other, "into": "main", "resolve": True})])
        assert not failed, text
        assert data["merge"]["status"] == "conflict" and data["merge"]["resolve_task"]
        # Started detached: it holds the scheduler's claim once its process is up, a moment after the call.
        orch.wait_for(
            lambda: Orchestra(orch.repo).status().scheduler_pid, timeout=60, what="a scheduler for the resolver"
        )
    finally:
        _stop_scheduler(orch)

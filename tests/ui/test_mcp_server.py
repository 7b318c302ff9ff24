"""`orchestra serve` as a real subprocess, driven by the MCP SDK's own stdio client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from orchestra.git.repo import find_root
from orchestra.store.paths import Paths
from orchestra.store.scheduler import scheduler_pid

EXPECTED_TOOLS = {
    "submit_task",
    "list_processes",
    "process_details",
    "respond_to_process",
    "manage_queue",
    "stop_process",
    "configure_orchestrator",
    "assign_role",
    "create_workflow",
    "status_dashboard",
    "wait_for_task",
    "merge",
    "retry_task",
    "set_budget",
    "list_workflows",
    "show_workflow",
    "show_diff",
    "push_branch",
    "cancel_workflow",
    "wait_for_workflow",
}


@pytest.fixture
def served(orch: Any) -> Any:
    """The orch fixture, plus: the scheduler `serve` starts is stopped afterwards."""
    yield orch
    paths = Paths(find_root(orch.repo))
    pid = scheduler_pid(paths)
    if pid and pid > 0:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def connect(orch: Any, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "orchestra", "serve", *args], env=orch.env, cwd=str(orch.repo)
    )
    with open(orch.repo.parent / "serve-stderr.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def run(orch: Any, scenario: Callable[[ClientSession], Awaitable[None]], *args: str) -> None:
    async def main() -> None:
        async with connect(orch, *args) as session:
            await scenario(session)

    try:
        anyio.run(main)
    except BaseExceptionGroup as group:  # the task groups of the client wrap a failed assertion
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            group = group.exceptions[0]
        raise group from None


async def call(session: ClientSession, tool: str, **arguments: Any) -> Any:
    result = await session.call_tool(tool, arguments)
    text = "\n".join(c.text for c in result.content if c.type == "text")
    assert not result.is_error, f"{tool} failed: {text}"
    assert text.strip(), f"{tool} returned no readable text"
    assert isinstance(result.structured_content, dict)
    return result.structured_content, text


async def error(session: ClientSession, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    text = "\n".join(c.text for c in result.content if c.type == "text")
    assert result.is_error, f"{tool}({arguments}) should have failed, got: {text}"
    return text


async def read_text(session: ClientSession, uri: str) -> str:
    result = await session.read_resource(uri)
    return "".join(getattr(c, "text", "") for c in result.contents)


def test_tools_and_resources_are_listed_with_descriptions_and_annotations(served: Any) -> None:
    async def scenario(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == EXPECTED_TOOLS
        for tool in tools.values():
            assert tool.description and "\n" not in tool.description.strip(), tool.name
            assert tool.annotations is not None, tool.name
            assert tool.annotations.read_only_hint is not None
            assert tool.annotations.destructive_hint is not None
            assert tool.annotations.idempotent_hint is not None
            assert tool.output_schema is not None, tool.name
            for name, prop in tool.input_schema.get("properties", {}).items():
                assert prop.get("description"), f"{tool.name}.{name} has no description"
        assert tools["status_dashboard"].annotations.read_only_hint is True
        assert tools["stop_process"].annotations.destructive_hint is True
        assert tools["submit_task"].annotations.read_only_hint is False

        resources = {str(r.uri) for r in (await session.list_resources()).resources}
        templates = {t.uri_template for t in (await session.list_resource_templates()).resource_templates}
        assert resources == {"orchestra://status", "orchestra://roles", "orchestra://workflows"}
        assert templates == {"orchestra://tasks/{id}/log", "orchestra://roles/{name}", "orchestra://workflows/{name}"}

        roles = json.loads(await read_text(session, "orchestra://roles"))
        assert "reviewer" in roles
        reviewer = json.loads(await read_text(session, "orchestra://roles/reviewer"))
        assert reviewer["name"] == "reviewer" and reviewer["system_prompt"]
        with pytest.raises(Exception, match="known roles"):
            await session.read_resource("orchestra://roles/wizard")
        status = await read_text(session, "orchestra://status")
        assert str(served.repo) in status and "scheduler" in status

    run(served, scenario)


def test_submitted_task_runs_and_its_log_resolves(served: Any) -> None:
    prompt = "Write the notes.\n@fake text hello from the agent\n@fake write notes.txt hi\n@fake commit Add notes"
    submitted: dict[str, Any] = {}

    async def scenario(session: ClientSession) -> None:
        data, text = await call(session, "submit_task", prompt=prompt, title="notes", priority=3)
        submitted.update(data["task"])
        task_id = data["task"]["id"]
        assert data["task"]["state"] == "queued" and data["task"]["priority"] == 3
        assert task_id in text

        data, text = await call(session, "wait_for_task", task_id=task_id, timeout_seconds=40)
        assert data["ended"] is True, text
        assert data["task"]["state"] == "succeeded"
        assert "ended" in text

        log = await read_text(session, f"orchestra://tasks/{task_id}/log")
        assert "hello from the agent" in log
        with pytest.raises(Exception, match="no task"):
            await session.read_resource("orchestra://tasks/ffffffff/log")

        data, text = await call(session, "process_details", task_id=task_id[:6], transcript_lines=50)
        assert data["task"]["id"] == task_id
        assert any("hello from the agent" in line for line in data["transcript"])
        assert "transcript" in text and "notes" in text

        data, text = await call(session, "list_processes", states=["succeeded"])
        assert [t["id"] for t in data["tasks"]] == [task_id]
        assert data["tasks"][0]["elapsed_seconds"] is not None
        data, _ = await call(session, "list_processes", roles=["reviewer"])
        assert data["tasks"] == []

        data, text = await call(session, "status_dashboard")
        assert data["counts"]["succeeded"] == 1
        assert task_id in text

        data, text = await call(session, "show_diff", ref=task_id)
        assert data["summary"] == "+1 −0 · 1 file" and data["diff_truncated"] is False
        assert "+hi" in data["diff"] and "Add notes" in text and "notes.txt | 1 +" in text
        data, _ = await call(session, "show_diff", ref=task_id, stat_only=True)
        assert data["diff"] is None and data["commits"][0]["subject"] == "Add notes"

    run(served, scenario)
    files = subprocess.run(
        ["git", "show", "--stat", "--format=", submitted["branch"]],
        cwd=served.repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "notes.txt" in files


def test_wait_returns_while_running_and_stop_ends_the_agent(served: Any) -> None:
    async def scenario(session: ClientSession) -> None:
        data, _ = await call(session, "submit_task", prompt="@fake text started\n@fake sleep 60")
        task_id = data["task"]["id"]
        data, text = await call(session, "wait_for_task", task_id=task_id, timeout_seconds=1)
        assert data["ended"] is False and data["outcome"] == "still_going"
        assert "still going" in text and "wait_for_task again" in text

        # The agent may still be starting; stopping needs it running.
        for _ in range(100):
            state = (await call(session, "process_details", task_id=task_id))[0]["task"]["state"]
            if state == "running":
                break
            await anyio.sleep(0.1)
        assert "confirm" in await error(session, "stop_process", all=True)
        data, text = await call(session, "stop_process", task_id=task_id)
        assert data["stopping"] == [task_id]
        data, _ = await call(session, "wait_for_task", task_id=task_id, timeout_seconds=30)
        assert data["ended"] and data["task"]["state"] == "cancelled"
        data, text = await call(session, "stop_process", all=True, confirm=True)
        assert data["stopping"] == [] and "no running agents" in text

        data, text = await call(session, "retry_task", task_id=task_id)
        assert data["task"]["state"] == "queued"
        await call(session, "stop_process", all=True, confirm=True)

    run(served, scenario)


def test_queue_roles_and_settings_without_a_scheduler(served: Any) -> None:
    served.run("config", "set", "autostart", "false", check=True)

    async def scenario(session: ClientSession) -> None:
        first = (await call(session, "submit_task", prompt="first", title="first"))[0]
        assert first["scheduler_started"] is False
        second = (await call(session, "submit_task", prompt="second", title="second"))[0]["task"]["id"]
        first_id = first["task"]["id"]

        data, text = await call(session, "manage_queue")
        assert [r["id"] for r in data["queue"]] == [first_id, second]
        data, text = await call(session, "manage_queue", action="set_priority", task_id=second, priority=9)
        assert [r["id"] for r in data["queue"]] == [second, first_id]
        assert "priority 9" in text
        data, text = await call(session, "manage_queue", action="remove", task_id=first_id)
        assert [r["id"] for r in data["queue"]] == [second]
        assert served.state(first_id) == "cancelled"

        data, _ = await call(session, "assign_role", task_id=second, role="reviewer")
        assert data["task"]["role"] == "reviewer"
        assert served.show(second)["role"] == "reviewer"

        data, text = await call(session, "configure_orchestrator")
        assert data["settings"]["autostart"]["value"] is False and "max_concurrent" in text
        data, _ = await call(session, "configure_orchestrator", key="max_concurrent", value=3)
        assert data["value"] == 3
        data, text = await call(session, "configure_orchestrator", key="max_concurrent")
        assert data["value"] == 3 and "3" in text
        data, text = await call(session, "configure_orchestrator", key="max_concurrent", unset=True)
        assert data["value"] == 4 and "(the default)" in text
        data, _ = await call(session, "configure_orchestrator", key="max_concurrent")
        assert data["value"] == 4
        await call(session, "configure_orchestrator", key="max_concurrent", value=3)

        data, _ = await call(session, "status_dashboard")
        assert data["scheduler_pid"] is None and data["counts"]["queued"] == 1

    run(served, scenario)
    assert json.loads(served.run("config", "get", "max_concurrent", check=True).stdout) == 3


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("submit_task", {"prompt": "x", "role": "wizard"}, "known roles: "),
    ("submit_task", {"prompt": "   "}, "empty prompt"),
    ("submit_task", {"prompt": "x", "priority": 5000}, "between -1000 and 1000"),
    ("submit_task", {"prompt": "x", "depends_on": ["abcdef12"]}, "no task abcdef12"),
    ("submit_task", {"prompt": "x", "base": "--output=/tmp/x"}, "--output"),
    ("submit_task", {"prompt": "x", "timeout": "soon"}, "timeout"),
    ("submit_task", {"prompt": "x", "timeout": -5}, "greater than zero"),
    ("submit_task", {"role": "generalist"}, "prompt"),
    ("list_processes", {"states": ["sleeping"]}, "queued"),
    ("process_details", {"task_id": "abcdef12"}, "no task abcdef12"),
    ("process_details", {"task_id": "../../etc"}, "id"),
    ("process_details", {"task_id": "{first}", "transcript_lines": 100000}, "less than or equal"),
    ("manage_queue", {"action": "explode"}, "set_priority"),
    ("manage_queue", {"action": "set_priority", "priority": 1}, "needs task_id"),
    ("manage_queue", {"action": "set_priority", "task_id": "{first}"}, "needs priority"),
    ("manage_queue", {"action": "remove", "task_id": "abcdef12"}, "no task abcdef12"),
    ("stop_process", {}, "task_id"),
    ("stop_process", {"all": True}, "confirm=true"),
    ("stop_process", {"task_id": "{first}"}, "not running"),
    ("configure_orchestrator", {"key": "bogus"}, "bogus"),
    ("configure_orchestrator", {"key": "max_concurrent", "value": "lots"}, "max_concurrent"),
    ("configure_orchestrator", {"key": "max_concurrent", "value": 2, "unset": True}, "not both"),
    ("configure_orchestrator", {"key": "gate", "unset": True}, "not changed over MCP"),
    ("assign_role", {"task_id": "{first}", "role": "wizard"}, "known roles: "),
    ("assign_role", {"task_id": "abcdef12", "role": "reviewer"}, "no task abcdef12"),
    ("wait_for_task", {"task_id": "{first}", "timeout_seconds": 500}, "less than or equal to 50"),
    ("wait_for_task", {"task_id": "abcdef12"}, "no task abcdef12"),
    ("retry_task", {"task_id": "{first}"}, "only finished tasks"),
    ("respond_to_process", {"task_id": "abcdef12", "allow": True}, "no task abcdef12"),
    ("respond_to_process", {"task_id": "{first}"}, "nothing to answer"),
    ("respond_to_process", {"task_id": "{first}", "allow": True}, "no pending permission request"),
    ("create_workflow", {"template": "no-such-template", "request": "x"}, "known: bug-fix"),
    ("create_workflow", {"template": "feature", "request": " "}, "empty request"),
    ("merge", {"ref": "abcdef12"}, "abcdef12"),
    ("set_budget", {"task_id": "{first}", "budget_usd": "lots"}, "expected an amount in USD"),
    ("show_workflow", {"workflow_id": "wzzzzz"}, "no workflow wzzzzz"),
    ("wait_for_workflow", {"workflow_id": "wzzzzz", "timeout_seconds": 0}, "timeout_seconds"),
    ("cancel_workflow", {"workflow_id": "wzzzzz"}, "no workflow wzzzzz"),
    ("show_diff", {"ref": "{first}"}, "has not started yet"),
    ("push_branch", {"ref": "nosuch"}, "no task or workflow"),
]


def test_bad_arguments_get_helpful_errors_and_the_server_keeps_working(served: Any) -> None:
    served.run("config", "set", "autostart", "false", check=True)
    covered = {tool for tool, _, _ in BAD_CALLS}
    # status_dashboard takes no arguments, so there is nothing to get wrong.
    assert covered | {"status_dashboard", "list_workflows"} >= EXPECTED_TOOLS  # no arguments to get wrong

    async def scenario(session: ClientSession) -> None:
        first = (await call(session, "submit_task", prompt="stay queued"))[0]["task"]["id"]
        for tool, arguments, expected in BAD_CALLS:
            arguments = {k: (v.replace("{first}", first) if isinstance(v, str) else v) for k, v in arguments.items()}
            message = await error(session, tool, **arguments)
            assert expected in message, f"{tool}({arguments}): {message!r} lacks {expected!r}"
            assert "Traceback" not in message
        data, _ = await call(session, "list_processes")
        assert [t["id"] for t in data["tasks"]] == [first]
        assert data["tasks"][0]["state"] == "queued" and data["tasks"][0]["role"] == "generalist"

    run(served, scenario)


def test_stdout_carries_only_json_rpc(served: Any) -> None:
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "submit_task",
                "arguments": {"prompt": "@fake text hi\n@fake bash echo noisy; echo loud >&2"},
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "submit_task", "arguments": {"prompt": "x", "role": "wizard"}},
        },
        {"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "orchestra://status"}},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "no_such_tool", "arguments": {}}},
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestra", "serve"],
        cwd=served.repo,
        env=served.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        assert proc.stdin and proc.stdout and proc.stderr
        for message in messages:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            while "id" in message:  # a request: read until its reply
                line = proc.stdout.readline()
                assert line, "the server closed stdout"
                lines.append(line)
                if json.loads(line).get("id") == message["id"]:
                    break
        proc.stdin.close()
        lines.extend(proc.stdout.read().splitlines())
        stderr = proc.stderr.read()
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    replies = [json.loads(line) for line in lines if line.strip()]  # every line is JSON ...
    assert all(r.get("jsonrpc") == "2.0" for r in replies)  # ... and JSON-RPC
    by_id = {r["id"]: r for r in replies if "id" in r}
    assert set(by_id) == {1, 2, 3, 4, 5}
    assert not by_id[2]["result"].get("isError")
    assert by_id[3]["result"]["isError"] and "known roles" in by_id[3]["result"]["content"][0]["text"]
    assert "Traceback" not in stderr


def test_serve_refuses_a_path_that_is_not_a_repository(served: Any, tmp_path: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    proc = served.run_process("serve", "--repo", str(outside), input="")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert proc.stderr.startswith("orchestra: error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_other_commands_do_not_import_the_sdk(served: Any) -> None:
    code = "import sys, orchestra.ui.cli, orchestra.app; assert 'mcp' not in sys.modules, 'mcp imported'"
    subprocess.run([sys.executable, "-c", code], env=served.env, check=True)


def test_respond_answers_a_permission_request_and_continues_a_session(served: Any) -> None:
    prompt = "guarded\n@fake ask bash printf allowed > effect.txt\n@fake text carried on"
    submitted: dict[str, Any] = {}

    async def scenario(session: ClientSession) -> None:
        task_id = (await call(session, "submit_task", prompt=prompt))[0]["task"]["id"]
        submitted["id"] = task_id
        data, text = await call(session, "wait_for_task", task_id=task_id, timeout_seconds=45)
        assert data["outcome"] == "awaiting_input" and not data["ended"], text
        assert "respond_to_process" in text and "printf allowed" in text
        details, text = await call(session, "process_details", task_id=task_id)
        request = details["pending_request"]
        assert request and request["tool_name"] == "Bash", details
        assert details["task"]["state"] == "awaiting_input"
        assert "printf allowed > effect.txt" in text
        dashboard, _ = await call(session, "status_dashboard")
        assert [t["id"] for t in dashboard["awaiting_input"]] == [task_id]

        data, text = await call(session, "respond_to_process", task_id=task_id, allow=True)
        assert data["task"]["id"] == task_id
        # Answered: waiting goes on until the agent has read the answer and finished.
        data, _ = await call(session, "wait_for_task", task_id=task_id, timeout_seconds=45)
        assert data["outcome"] == "ended" and data["task"]["state"] == "succeeded"

        message = await error(session, "respond_to_process", task_id=task_id, allow=True)
        assert "no pending permission request" in message
        data, _ = await call(session, "respond_to_process", task_id=task_id, text="Now the docs.\n@fake text more")
        assert data["task"]["state"] == "queued"
        data, _ = await call(session, "wait_for_task", task_id=task_id, timeout_seconds=45)
        assert data["ended"] and data["task"]["state"] == "succeeded" and data["task"]["attempts"] == 2

    run(served, scenario)
    branch = served.show(submitted["id"])["branch"]
    shown = subprocess.run(["git", "show", f"{branch}:effect.txt"], cwd=served.repo, capture_output=True, text=True)
    assert shown.stdout == "allowed"


def test_workflows_and_merge(served: Any) -> None:
    async def scenario(session: ClientSession) -> None:
        templates = json.loads(await read_text(session, "orchestra://workflows"))
        assert "feature" in templates
        feature = json.loads(await read_text(session, "orchestra://workflows/feature"))
        assert feature["name"] == "feature"
        with pytest.raises(Exception, match="no-such"):
            await session.read_resource("orchestra://workflows/no-such")

        gate = served.repo.parent / "never-opened"  # the workflow runs until it is cancelled
        data, text = await call(
            session, "create_workflow", template="feature", request=f"Add a greeting.\n@fake wait-for {gate}"
        )
        workflow = data["workflow"]
        assert workflow["template"] == "feature" and workflow["instances"]
        assert workflow["id"] in text
        listed, text = await call(session, "list_workflows")  # as `orchestra workflow list`
        assert [w["id"] for w in listed["workflows"]] == [workflow["id"]] and workflow["id"] in text
        waited, text = await call(session, "wait_for_workflow", workflow_id=workflow["id"], timeout_seconds=1)
        assert waited["outcome"] == "still_going" and not waited["ended"], text
        assert f"workflow {workflow['id']} running" in text and "wait_for_workflow again" in text
        await call(session, "cancel_workflow", workflow_id=workflow["id"])
        waited, text = await call(session, "wait_for_workflow", workflow_id=workflow["id"][:4])
        assert waited["ended"] and waited["workflow"]["state"] == "cancelled", text
        assert "no workflow wzzzzz" in await error(session, "wait_for_workflow", workflow_id="wzzzzz")
        await call(session, "stop_process", all=True, confirm=True)

        prompt = "Add a file.\n@fake write merged.txt yes\n@fake commit Add merged.txt"
        task_id = (await call(session, "submit_task", prompt=prompt, title="mergeable"))[0]["task"]["id"]
        data, _ = await call(session, "wait_for_task", task_id=task_id, timeout_seconds=45)
        assert data["task"]["state"] == "succeeded"
        data, text = await call(session, "merge", ref=task_id, into="main")
        assert data["ended"] and data["merge"]["ok"], text
        assert "unknown merge strategy" in await error(session, "merge", ref=task_id, strategy="octopus")

    run(served, scenario)
    shown = subprocess.run(["git", "show", "main:merged.txt"], cwd=served.repo, capture_output=True, text=True)
    assert shown.stdout.strip() == "yes"

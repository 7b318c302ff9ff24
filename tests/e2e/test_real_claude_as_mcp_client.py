"""The real Claude Code CLI as the MCP client of `orchestra serve`: the way a person's Claude Code
drives orchestra (`claude mcp add orchestra -- orchestra serve`).

The CLI's model is the Messages-API stub (fixtures/messages_stub.py), scripted to call orchestra's
tools; the agents orchestra starts are the fake claude. What is checked is what the real CLI makes
of orchestra's server: that it connects, lists the tools, calls them with the arguments a model
gives, and hands their results back to the model, and that a task submitted this way runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_CLAUDE, ROOT, _kill_background_scheduler, git, make_repo
from real_claude import claude_or_skip, messages_stub

ms = messages_stub()
pytestmark = pytest.mark.e2e


def _tool_results(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for line in lines
        if line.get("type") == "user"
        for c in line["message"]["content"]
        if isinstance(c, dict) and c.get("type") == "tool_result"
    ]


def test_claude_code_submits_a_task_through_orchestra_serve_and_waits_for_it(tmp_path: Path) -> None:
    binary = claude_or_skip()
    repo = make_repo(tmp_path / "repo")
    try:
        _drive(binary, repo, tmp_path)
    finally:
        _kill_background_scheduler(repo)  # the one `serve` started


def _drive(binary: str, repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    agent = "Add a greeting.\n@fake write greeting.txt hello\n@fake commit Add greeting"
    script = {
        "scenarios": {
            "drive": [
                {"tool_use": {"name": "mcp__orchestra__submit_task", "input": {"prompt": agent, "title": "greet"}}},
                {"tool_use": {"name": "mcp__orchestra__list_processes", "input": {}}},
                {"text": "Submitted."},
            ]
        }
    }
    server_env = {
        "PYTHONPATH": str(ROOT),
        "ORCHESTRA_CLAUDE": str(FAKE_CLAUDE),
        "FAKE_CLAUDE_LOG": str(tmp_path / "fake.jsonl"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "orchestra": {"command": sys.executable, "args": ["-m", "orchestra", "serve"], "env": server_env}
                }
            }
        )
    )
    allowed = "mcp__orchestra__submit_task,mcp__orchestra__list_processes"
    argv = [binary, "-p", "[[scenario:drive]] hand this to orchestra", "--output-format", "stream-json", "--verbose"]
    argv += ["--mcp-config", str(config), "--strict-mcp-config", "--allowedTools", allowed]
    with ms.MessagesStub(script) as stub:
        proc = subprocess.run(
            argv,
            cwd=repo,
            env=ms.claude_env(stub.base_url, home),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    init = next(line for line in lines if line.get("type") == "system" and line.get("subtype") == "init")
    assert {"name": "orchestra", "status": "connected"}.items() <= init["mcp_servers"][0].items(), init["mcp_servers"]
    tools = set(init["tools"])
    assert {"mcp__orchestra__submit_task", "mcp__orchestra__wait_for_task", "mcp__orchestra__merge"} <= tools
    submitted, listed = _tool_results(lines)
    assert not submitted.get("is_error") and not listed.get("is_error"), (submitted, listed)
    task_id = json.loads(
        submitted["content"] if isinstance(submitted["content"], str) else submitted["content"][0]["text"]
    )["task"]["id"]
    assert task_id in json.dumps(listed["content"])
    assert lines[-1]["type"] == "result" and lines[-1]["result"] == "Submitted."

    # The task the model submitted runs under the scheduler `serve` started, as any other.
    env = {**os.environ, **server_env}

    def orchestra(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "orchestra", *args]
        return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=120)

    waited = orchestra("wait", task_id, "--timeout", "90s")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    showed = orchestra("show", task_id, "--json")
    assert showed.returncode == 0, showed.stderr
    shown = json.loads(showed.stdout)
    assert shown["state"] == "succeeded" and shown["title"] == "greet"
    assert git(repo, "show", f"{shown['branch']}:greeting.txt") == "hello"

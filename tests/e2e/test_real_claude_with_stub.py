"""The real Claude Code CLI runs against the Messages API stub (fixtures/messages_stub.py).

Moved from tooling/test_messages_stub.py, which keeps the stub's own HTTP contract.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from real_claude import claude_or_skip, messages_stub

ROOT = Path(__file__).resolve().parents[2]


ms = messages_stub()


# ----------------------------------------------------------------------------- real CLI


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _run_claude(binary, stub, tmp_path, prompt, *args, env_extra=None):
    repo = tmp_path / "repo"
    home = tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init")
    cmd = [binary, "-p", prompt, "--output-format", "stream-json", "--verbose", *args]
    proc = subprocess.run(
        cmd,
        cwd=repo,
        env=ms.claude_env(stub.base_url, home, **(env_extra or {})),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print("argv:", cmd)
    print("exit:", proc.returncode)
    print("stdout:\n" + proc.stdout)
    print("stderr:\n" + proc.stderr)
    print("requests:", [(r["method"], r["path"]) for r in stub.requests])
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return repo, proc, lines


@pytest.mark.e2e
def test_real_claude_writes_a_file_through_the_stub(tmp_path):
    binary = claude_or_skip()
    content = f"hello from the stub {os.getpid()}\n"
    with ms.MessagesStub({"vars": {"content": content}}) as stub:
        repo, proc, lines = _run_claude(
            binary,
            stub,
            tmp_path,
            "[[scenario:write-file]] write hello.txt",
            "--permission-mode",
            "acceptEdits",
        )
    assert proc.returncode == 0
    assert (repo / "hello.txt").read_text() == content
    init = next(l for l in lines if l["type"] == "system" and l.get("subtype") == "init")
    assert init["permissionMode"] == "acceptEdits"
    last = lines[-1]
    assert last["type"] == "result" and last["subtype"] == "success" and last["is_error"] is False
    assert last["num_turns"] == 2 and last["permission_denials"] == []
    assert last["session_id"] == init["session_id"]
    bodies = stub.message_requests()
    assert len(bodies) == 2
    assert ms.find_prompt(bodies[0]) == "[[scenario:write-file]] write hello.txt"
    assert ms.find_cwd(bodies[0]) == str(repo)
    assert ms.has_tool_result(bodies[1]) and not ms.has_tool_result(bodies[0])
    assert all(b["stream"] is True for b in bodies)
    sessions = {r["headers"].get("X-Claude-Code-Session-Id") for r in stub.requests if r["route"] == "/v1/messages"}
    assert sessions == {init["session_id"]}


@pytest.mark.e2e
def test_real_claude_runs_bash_and_recovers_from_a_529(tmp_path):
    binary = claude_or_skip()
    script = {
        "scenarios": {
            "bash-flaky": [
                {
                    "fail_first": [{"status": 529}],
                    "tool_use": {"name": "Bash", "input": {"command": "echo stub-bash-ok", "description": "echo"}},
                },
                {"text": "bash done"},
            ]
        }
    }
    with ms.MessagesStub(script) as stub:
        _, proc, lines = _run_claude(binary, stub, tmp_path, "[[scenario:bash-flaky]] run echo")
    assert proc.returncode == 0
    assert any(l["type"] == "system" and l.get("subtype") == "api_retry" and l["error_status"] == 529 for l in lines)
    results = [
        b
        for l in lines
        if l["type"] == "user"
        for b in l["message"]["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]
    assert len(results) == 1 and "stub-bash-ok" in json.dumps(results[0]["content"])
    last = lines[-1]
    assert last["type"] == "result" and last["subtype"] == "success" and not last["is_error"]
    assert last["result"] == "bash done"

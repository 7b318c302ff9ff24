"""orchestra.agent.permission_server: the MCP server Claude Code starts to ask a person.

Moved from engine/test_interaction.py, which runs the whole path through the fake claude.
"""

from __future__ import annotations

import json
from typing import Any


def test_permission_server_speaks_the_prompt_tool_contract(orch):
    """Raw JSON-RPC, as the CLI sends it: discover is refused so the CLI falls back to
    initialize; the answer is exactly one text block of JSON and stdout holds only protocol."""
    import subprocess
    import sys

    tid = orch.submit("not running yet")
    lines = [
        {"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {"protocolVersion": "2026-07-28"}},
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "claude-code", "version": "2"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "approve",
                "arguments": {"tool_name": "Bash", "input": {"command": "ls"}, "tool_use_id": "toolu_1"},
            },
        },
    ]
    requests = orch.repo / ".orchestra" / "requests" / tid
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestra.agent.permission_server",
            "--requests",
            str(requests),
            "--task",
            tid,
            "--attempt",
            "1",
            "--timeout",
            "1",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=orch.env,
        text=True,
    )
    replies: dict[int, dict[str, Any]] = {}
    for msg in lines:
        proc.stdin.write(json.dumps(msg) + "\n")
        proc.stdin.flush()
        if "id" in msg:
            reply = json.loads(proc.stdout.readline())  # every stdout line is JSON-RPC
            replies[reply["id"]] = reply
    proc.stdin.close()
    proc.wait(timeout=30)
    assert replies[0]["error"]["code"] == -32601
    assert replies[1]["result"]["protocolVersion"] == "2025-11-25"
    (tool,) = replies[2]["result"]["tools"]
    assert tool["name"] == "approve" and "outputSchema" not in tool
    result = replies[3]["result"]
    assert "structuredContent" not in result and not result.get("isError")
    (block,) = result["content"]
    assert block["type"] == "text"
    answer = json.loads(block["text"])
    assert answer["behavior"] == "deny" and answer["message"].startswith("Nobody answered the request to use Bash")
    assert proc.stdout.read() == ""
    # The question was written where a person's answer is looked for, decided once, by the timeout.
    (request,) = [json.loads(p.read_text()) for p in requests.glob("r*.json") if not p.name.endswith(".answer.json")]
    assert request["tool_name"] == "Bash" and request["input"] == {"command": "ls"}
    decided = json.loads((requests / f"{request['id']}.answer.json").read_text())
    assert decided["state"] == "timed_out"

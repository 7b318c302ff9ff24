"""The permission-prompt MCP server Claude Code starts for each run.

    python -m orchestra.agent.permission_server --requests DIR --task ID --attempt N --timeout SECONDS

Claude Code calls its one tool, `approve`, for each tool use that its mode and rules
leave undecided. The server writes the question into DIR (store.requests) and waits
for a decision file there; whoever runs the agent shows the question to a person and
writes their answer. After `--timeout` seconds the server decides "timed out" itself;
the first decision written wins. It is a child of the agent, not of the scheduler, so
a question outlives a scheduler restart. Its answer must be one text block of JSON
(PROTOCOL.md §6); nothing else may reach stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

from orchestra.agent import permissions
from orchestra.core.task import now, validate_id
from orchestra.store import requests as channel

POLL_SECONDS = 0.2


class Gate:
    """Decides one request at a time for one run; the MCP tool is a thin wrapper."""

    def __init__(self, requests: Path, task_id: str, attempt: int, timeout: float) -> None:
        self.requests = requests
        self.task_id = validate_id(task_id)
        self.attempt = attempt
        self.timeout = timeout
        self.parent = os.getppid()

    def decide(self, tool_name: str, tool_input: dict[str, Any], tool_use_id: str | None) -> dict[str, Any]:
        created = now()
        request: dict[str, Any] = {
            "id": channel.new_request_id(),
            "task_id": self.task_id,
            "attempt": self.attempt,
            "tool_name": tool_name,
            "input": tool_input,
            "tool_use_id": tool_use_id,
            "created_at": created,
            "deadline": round(created + self.timeout, 3),
        }
        for rule in channel.always_rules(self.requests):
            if permissions.rule_matches(rule, tool_name, tool_input):
                # Decided before it is written, so nobody ever sees it waiting.
                channel.answer(self.requests, request["id"], channel.ALLOWED, always=rule, by=channel.BY_RULE)
                channel.write_request(self.requests, request)
                return {"behavior": "allow", "updatedInput": tool_input}
        stored = channel.write_request(self.requests, request)
        decision = self._wait(stored)
        state = decision.get("state")
        if state == channel.ALLOWED:
            return {"behavior": "allow", "updatedInput": tool_input}
        if state == channel.TIMED_OUT:
            return {
                "behavior": "deny",
                "message": (
                    f"Nobody answered the request to use {tool_name} within {_duration(self.timeout)}, so it was "
                    "denied. Carry on without it if you can; otherwise finish and say what you needed."
                ),
            }
        reason = decision.get("message") or "A person denied this tool use."
        return {"behavior": "deny", "message": str(reason)}

    def _wait(self, request: dict[str, Any]) -> dict[str, Any]:
        while True:
            decided = channel.read_answer(self.requests, request["id"])
            if decided is not None:
                return decided
            if time.time() >= float(request["deadline"]):
                return channel.answer(self.requests, request["id"], channel.TIMED_OUT, by="timeout")[0]
            if os.getppid() != self.parent:
                # The agent is gone: nobody would read the answer.
                channel.answer(self.requests, request["id"], channel.ABANDONED, by="agent gone")
                os._exit(0)
            time.sleep(POLL_SECONDS)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def build_server(gate: Gate) -> MCPServer:
    server = MCPServer("orchestra-permissions", log_level="WARNING")

    # Claude Code rejects structured output from a permission-prompt tool (PROTOCOL.md §6).
    @server.tool(name="approve", description="Ask orchestra whether a tool use may run.", structured_output=False)
    def approve(tool_name: str, input: dict[str, Any], tool_use_id: str | None = None) -> str:
        try:
            decision = gate.decide(tool_name, input if isinstance(input, dict) else {}, tool_use_id)
        except Exception as exc:  # the agent must get a readable answer, never a hang
            print(f"orchestra permission server: {exc}", file=sys.stderr, flush=True)
            decision = {"behavior": "deny", "message": f"orchestra could not ask for permission: {exc}"}
        return json.dumps(decision)

    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestra.agent.permission_server")
    parser.add_argument("--requests", required=True, type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--attempt", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    gate = Gate(args.requests, args.task, args.attempt, args.timeout)
    build_server(gate).run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The permission-prompt MCP server Claude Code starts for each task run.

    python -m orchestra.permission_server --repo ROOT --task ID

Claude Code calls its one tool, `approve`, for each tool use that its mode and
rules leave undecided. The server records the request under `.orchestra/requests/`,
puts the task in `awaiting_input`, and waits until `orchestra respond` answers or
`permission_timeout` passes. It is a child of the agent, not of the scheduler, so a
question outlives a scheduler restart. Its answer must be one text block of JSON
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

POLL_SECONDS = 0.2


class Gate:
    """Decides one request at a time for one task; the MCP tool is a thin wrapper."""

    def __init__(self, root: Path, task_id: str) -> None:
        from orchestra.config import load_config
        from orchestra.paths import Paths
        from orchestra.store import Store
        from orchestra.task import validate_id

        self.paths = Paths(root=root)
        self.task_id = validate_id(task_id)
        self.config = load_config(self.paths.config)
        self.store = Store(self.paths)
        self.parent = os.getppid()

    def decide(self, tool_name: str, tool_input: dict[str, Any], tool_use_id: str | None) -> dict[str, Any]:
        from orchestra import approvals, notify, permissions

        task = self.store.load(self.task_id)
        for rule in task.extra.get("always_allow") or []:
            if permissions.rule_matches(rule, tool_name, tool_input):
                self.store.append_event(task.id, "input_auto_allowed", tool=tool_name, rule=rule)
                return {"behavior": "allow", "updatedInput": tool_input}
        timeout = float(self.config.permission_timeout)
        request = approvals.open_request(self.store, task.id, tool_name, tool_input, tool_use_id, timeout)
        if request is None:
            return {"behavior": "deny", "message": f"Task {task.id} is not running; the tool use was not run."}
        notify.fire(self.paths, self.config, "needs_input", self.store.load(task.id), request=request, store=self.store)
        settled = self._wait(request)
        state = settled.get("state")
        if state == approvals.ALLOWED:
            return {"behavior": "allow", "updatedInput": tool_input}
        if state == approvals.TIMED_OUT:
            return {
                "behavior": "deny",
                "message": (
                    f"Nobody answered the request to use {tool_name} within {_duration(timeout)}, so it was "
                    "denied. Carry on without it if you can; otherwise finish and say what you needed."
                ),
            }
        reason = settled.get("message") or "A person denied this tool use."
        return {"behavior": "deny", "message": str(reason)}

    def _wait(self, request: dict[str, Any]) -> dict[str, Any]:
        from orchestra import approvals

        while True:
            current = approvals.read(self.paths, self.task_id, request["id"]) or request
            if current.get("state") != approvals.PENDING:
                return approvals.close(self.store, self.task_id, request["id"])
            if time.time() >= float(request["deadline"]):
                return approvals.close(self.store, self.task_id, request["id"], timed_out=True)
            if os.getppid() != self.parent:
                # The agent is gone: nobody would read the answer.
                approvals.abandon(self.store, self.task_id, request["id"])
                os._exit(0)
            time.sleep(POLL_SECONDS)


def _duration(seconds: float) -> str:
    from orchestra.views import duration

    return duration(seconds)


def build_server(gate: Gate) -> Any:
    from mcp.server.mcpserver import MCPServer

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
    parser = argparse.ArgumentParser(prog="orchestra.permission_server")
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--task", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    gate = Gate(args.repo, args.task)
    build_server(gate).run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())

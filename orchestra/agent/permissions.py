"""Permission policy: what an agent may do unasked, what is refused, what asks a person.

Rules travel to Claude Code through `--settings` JSON, never `--allowedTools`, which
splits multi-word rules at spaces (PROTOCOL.md §5). Whatever the rules leave open is
decided by orchestra's permission-prompt MCP server (PROTOCOL.md §6), which Claude
Code starts itself, so a pending question lives as long as the agent, not as long as
the scheduler.

Config (`.orchestra/config.toml`):

    permission_mode = "role"          # or a mode for every role, e.g. "bypassPermissions"
    [permissions]                     # rules added to every role
    allow = ["Bash(make check:*)"]
    ask = ["Bash(git commit:*)"]
    [permissions.implementer]         # one role: allow/deny/ask, mode, prompts
    ask = ["Bash"]
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestra.agent import sandbox
from orchestra.core import tomlfile
from orchestra.core.config import Config
from orchestra.core.errors import ConfigError, InvalidInput, OrchestraError
from orchestra.core.roles import SANDBOX_ONLY_ALLOW, Role
from orchestra.core.values import PERMISSION_MODES

SERVER_NAME = "orchestra_perm"
TOOL_NAME = "approve"
PROMPT_TOOL = f"mcp__{SERVER_NAME}__{TOOL_NAME}"
# Modes in which Claude Code never calls a permission-prompt tool (PROTOCOL.md §6).
_NEVER_ASKS = ("bypassPermissions", "dontAsk")
_RULE_KEYS = ("allow", "deny", "ask")
_ROLE_KEYS = (*_RULE_KEYS, "mode", "prompts")
_RULE = re.compile(r"^([A-Za-z0-9_\-]+)(?:\((.*)\))?$", re.S)


@dataclass(frozen=True)
class Policy:
    mode: str
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    ask: tuple[str, ...]
    prompts: bool  # whether what needs approval asks a person (else Claude Code refuses it)
    sandboxed: bool = True  # Bash runs in Claude Code's sandbox (the `sandbox` setting)

    @property
    def uses_prompt_tool(self) -> bool:
        return self.prompts and self.mode not in _NEVER_ASKS


def load_table(config: Config) -> dict[str, Any]:
    """The `[permissions]` table of config.toml, checked; empty when there is none."""
    path = config.source
    if path is None:
        return {}
    data = tomlfile.read(Path(path))
    table = data.get("permissions", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'permissions' must be a table")
    for key, value in table.items():
        if isinstance(value, dict):
            _check_section(path, f"permissions.{key}", value, _ROLE_KEYS)
        elif key in _RULE_KEYS:
            _check_rules(path, f"permissions.{key}", value)
        else:
            raise ConfigError(
                f"{path}: unknown key permissions.{key} (use allow, deny, ask, or a [permissions.<role>] table)"
            )
    return table


def _check_section(path: object, where: str, section: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key, value in section.items():
        if key not in keys:
            raise ConfigError(f"{path}: unknown key {where}.{key} (known: {', '.join(keys)})")
        if key in _RULE_KEYS:
            _check_rules(path, f"{where}.{key}", value)
        elif key == "mode" and value not in PERMISSION_MODES:
            raise ConfigError(f"{path}: {where}.mode must be one of {', '.join(PERMISSION_MODES)}")
        elif key == "prompts" and not isinstance(value, bool):
            raise ConfigError(f"{path}: {where}.prompts must be true or false")


def _check_rules(path: object, where: str, value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and _RULE.match(v.strip()) for v in value):
        raise ConfigError(f'{path}: {where} must be a list of rules like "Bash(git status:*)" or "Write"')


def policy_for(
    role: Role, config: Config, table: dict[str, Any] | None = None, *, sandboxed: bool | None = None
) -> Policy:
    """The role's own rules, plus the repository's, plus the role's section of the config.

    Unsandboxed, the role's own rules lose what only the sandbox makes safe (roles.SANDBOX_ONLY_ALLOW);
    rules the config adds are the user's on purpose and stay. The `.git` deny rules are always added.
    """
    table = load_table(config) if table is None else table
    if sandboxed is None:
        sandboxed = config.sandbox == sandbox.REQUIRED
    own = table.get(role.name)
    section: dict[str, Any] = own if isinstance(own, dict) else {}
    mode = role.permission_mode
    if config.permission_mode != "role":
        mode = config.permission_mode
    mode = section.get("mode", mode)

    def rules(key: str) -> tuple[str, ...]:
        own = [r.strip() for r in getattr(role, key, [])]
        if key == "allow" and not sandboxed:
            own = [r for r in own if r not in SANDBOX_ONLY_ALLOW]
        if key == "deny" and role.produces != "verdict":
            own += sandbox.PROTECTED_DENY
        merged = [*own, *table.get(key, []), *section.get(key, [])]
        return tuple(dict.fromkeys(r.strip() for r in merged))

    return Policy(
        mode=mode,
        allow=rules("allow"),
        deny=rules("deny"),
        ask=rules("ask"),
        prompts=bool(section.get("prompts", config.permission_prompts)),
        sandboxed=sandboxed,
    )


def apply(role: Role, policy: Policy) -> Role:
    """The role as Claude Code should see it: the policy's mode and rules."""
    return dataclasses.replace(
        role, permission_mode=policy.mode, allow=list(policy.allow), deny=list(policy.deny), ask=list(policy.ask)
    )


def agent_env(policy: Policy, env: dict[str, str]) -> None:
    """Make Claude Code connect the permission server before the first tool use.

    Recent CLIs connect MCP servers in the background in `-p` mode; a tool use that
    comes first finds no permission tool and fails.
    """
    if policy.uses_prompt_tool:
        env.setdefault("MCP_CONNECTION_NONBLOCKING", "false")


def check_environment(policy: Policy, env: dict[str, str]) -> None:
    """Refuse a run Claude Code would refuse, with the fix in the message."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if (
        policy.mode == "bypassPermissions"
        and root
        and env.get("IS_SANDBOX", "").strip().lower() in ("", "0", "false", "no", "off")
    ):
        raise OrchestraError(
            "bypassPermissions as root needs IS_SANDBOX=1 in orchestra's environment (Claude Code refuses it otherwise)"
        )


def prompt_tool_args(requests: Path, task_id: str, attempt: int, wait_seconds: float) -> list[str]:
    """The flags that make Claude Code start orchestra's permission server for this run.

    The server writes its questions into `requests` (a directory the agent cannot write)
    and reads the answers there; whoever runs the agent relays them to a person.

    `timeout` raises Claude Code's per-call and idle limits for this server above the
    longest a question may wait (CLI 2.1.331 gives stdio tools 30 minutes of silence).
    """
    package_parent = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    server = {
        "type": "stdio",
        "command": sys.executable,
        "args": [
            "-m",
            "orchestra.agent.permission_server",
            "--requests",
            str(requests),
            "--task",
            task_id,
            "--attempt",
            str(attempt),
            "--timeout",
            f"{wait_seconds:g}",
        ],
        "env": {"PYTHONPATH": pythonpath},
        "timeout": int((wait_seconds + 300) * 1000),
    }
    config = {"mcpServers": {SERVER_NAME: server}}
    return ["--mcp-config", json.dumps(config), "--permission-prompt-tool", PROMPT_TOOL]


# -- rules the permission server consults ----------------------------------------


def always_rule(tool_name: str, tool_input: dict[str, Any]) -> str:
    """The rule `respond --always` adds: this exact command for Bash, the whole tool otherwise.

    A command that a rule would read as a pattern (`echo ok:*`, `*`) is refused: the agent chose
    it, and the rule would then allow commands the person never saw."""
    command = tool_input.get("command")
    if tool_name == "Bash" and isinstance(command, str):
        exact = command.strip()
        if not exact or exact == "*" or exact.endswith(":*"):
            raise InvalidInput(
                f"cannot allow {exact!r} always: as a rule it would allow other commands too; "
                "allow it once, without --always"
            )
        return f"Bash({command})"
    return tool_name


def rule_matches(rule: str, tool_name: str, tool_input: dict[str, Any]) -> bool:
    m = _RULE.match(rule.strip())
    if not m or m.group(1) != tool_name:
        return False
    pattern = m.group(2)
    if pattern is None or pattern in ("", "*"):
        return True
    if tool_name == "Bash":
        command = str(tool_input.get("command", "")).strip()
        if pattern.endswith(":*"):
            prefix = pattern[:-2]
            parts = [p.strip() for p in re.split(r"&&|\|\||;|\||\n", command) if p.strip()]
            return bool(parts) and all(p == prefix or p.startswith(prefix + " ") for p in parts)
        return command == pattern.strip()
    path = tool_input.get("file_path") or tool_input.get("path") or tool_input.get("notebook_path")
    return isinstance(path, str) and fnmatch.fnmatchcase(path, pattern)

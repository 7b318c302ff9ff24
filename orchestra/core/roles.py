"""Roles: what kind of agent a task gets, as data.

A role's limits are enforced through Claude Code's own flags (`--tools`,
`--permission-mode`, `--settings` rules), not by asking the model nicely: a
reviewer is given no tool that can write.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestra.core import tomlfile
from orchestra.core.errors import ConfigError, InvalidInput
from orchestra.core.task import AGENTLESS_PRODUCTS, Task
from orchestra.core.values import PERMISSION_MODES, did_you_mean, parse_duration, parse_usd
from orchestra.core.values import resources as v_resources

_COMMON = """You are one agent in a team coordinated by orchestra. You work alone in your own git
checkout (a repository of its own), on a branch that belongs to this task; that branch is what you
hand on. Stay on it: do not switch branches, push, rewrite history or touch anything outside your
checkout: you can write only there (and in your temp directory). Commit your work with clear messages
as you reach sensible points; anything you leave uncommitted is committed for you when you stop.
Nobody will answer questions while you work: make reasonable decisions, note assumptions in your
final message, and end with a short summary of what you did and what is left."""

_COMMON_READ_ONLY = """You are one agent in a team coordinated by orchestra. You review work in a checkout of the
branch under review, and you hand on a verdict, not code. Nobody will answer questions while you work:
read what you need, decide, and say what you assumed."""

_READ_ONLY_TOOLS = ["Read", "Grep", "Glob"]
READ_ONLY_TOOLS: tuple[str, ...] = tuple(_READ_ONLY_TOOLS)

# What a verdict role must hand back, passed to `claude --json-schema`: the verdict is data.
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["approve", "request_changes"]},
        "comments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "file": {"type": "string"},
                    "line": {"type": "integer"},
                    "comment": {"type": "string"},
                },
                "required": ["comment"],
            },
        },
        "summary": {"type": "string"},
    },
    "required": ["verdict", "comments", "summary"],
}

_GIT_SAFE_ALLOW = [
    "Bash(git status:*)",
    "Bash(git diff:*)",
    "Bash(git log:*)",
    "Bash(git show:*)",
    "Bash(git add:*)",
    "Bash(git commit:*)",
    "Bash(git mv:*)",
    "Bash(git rm:*)",
    "Bash(ls:*)",
    "Bash(pytest:*)",
    "Bash(python -m pytest:*)",
    "Bash(npm test:*)",
    "Bash(make test:*)",
    "Bash(cargo test:*)",
    "Bash(go test:*)",
]
# Commands that run project code (a conftest.py, a Makefile the agent wrote) or can write any file
# (`git log --output=<path>`): allowed unasked only when the agent runs in Claude Code's sandbox,
# which confines them to the task's own directory. Without it, they ask a person (docs/security.md).
SANDBOX_ONLY_ALLOW: frozenset[str] = frozenset(
    {
        "Bash(git diff:*)",
        "Bash(git log:*)",
        "Bash(git show:*)",
        "Bash(pytest:*)",
        "Bash(python -m pytest:*)",
        "Bash(npm test:*)",
        "Bash(make test:*)",
        "Bash(cargo test:*)",
        "Bash(go test:*)",
    }
)
_GIT_DENY = [
    "Bash(git push:*)",
    "Bash(git reset --hard:*)",
    "Bash(git clean:*)",
    "Bash(git checkout:*)",
    "Bash(git switch:*)",
    "Bash(git worktree:*)",
    "Bash(git branch -D:*)",
    "Bash(git rebase:*)",
]


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    system_prompt: str
    tools: list[str] | None = None  # a whitelist for --tools; None keeps Claude Code's default set
    permission_mode: str = "acceptEdits"
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    ask: list[str] = field(default_factory=list)  # rules that always ask a person (permission-prompt tool)
    timeout: float | None = None
    max_turns: int | None = None
    produces: str = "branch"  # "branch" (commits) or "verdict" (structured output)
    budget_usd: float | None = None  # default --max-budget-usd for tasks of this role
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources (executor = ray)
    source: str = "built-in"

    def settings(self) -> dict[str, Any] | None:
        if not self.allow and not self.deny and not self.ask:
            return None
        perms = {"allow": list(self.allow), "deny": list(self.deny)}
        if self.ask:
            perms["ask"] = list(self.ask)
        return {"permissions": perms}

    @property
    def agentless(self) -> bool:
        return self.produces in AGENTLESS_PRODUCTS

    def full_system_prompt(self) -> str:
        if self.produces == "verdict":
            return f"{_COMMON_READ_ONLY}\n\nYour role: {self.name}.\n{self.system_prompt.strip()}\n\n{_VERDICT_INSTRUCTIONS}"
        return f"{_COMMON}\n\nYour role: {self.name}.\n{self.system_prompt.strip()}"

    def review_pass(self) -> Role:
        """This role as a read-only reviewer: no tool that writes, a verdict as output."""
        if self.produces == "verdict":
            return self
        return replace(
            self,
            tools=list(_READ_ONLY_TOOLS),
            permission_mode="default",
            allow=[],
            deny=[],
            produces="verdict",
            system_prompt=self.system_prompt.strip()
            + "\n\nThis is a review pass: you can only read. Judge the change from your role's point of view.",
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["agent"] = not self.agentless
        return data


_VERDICT_INSTRUCTIONS = """You cannot change files or run commands: you can only read (Read, Grep, Glob).
Return your verdict through the StructuredOutput tool: "approve" when the change is correct and
complete, otherwise "request_changes"; every comment names the file (and line when you can) and says
what to change; the summary is two or three sentences."""


BUILTIN_ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role(
            "architect",
            "Designs the change: reads the code, writes design notes for the implementer.",
            """Study the request and the code it touches. Write a short design note in
docs/design/<topic>.md: the problem, the chosen approach and why, the files and functions to change,
edge cases, and how to test it. Do not implement the change. Commit the note.""",
            allow=_GIT_SAFE_ALLOW,
            deny=_GIT_DENY,
            timeout=1800,
            max_turns=60,
        ),
        Role(
            "implementer",
            "Writes the code for a change, with tests where the project has them.",
            """Implement the request completely: production code, and tests next to the existing
ones when the project has a test suite. Follow the project's conventions. Run the relevant tests and
make them pass before you finish. Keep the change focused on the request.""",
            allow=_GIT_SAFE_ALLOW,
            deny=_GIT_DENY,
            max_turns=200,
        ),
        Role(
            "tester",
            "Writes and runs tests for a change; reports what fails.",
            """Write tests that pin down the behaviour the request describes, including edge cases and
failure paths, in the project's existing test framework. Run them. Do not change production code to
make a test pass; if the code is wrong, leave the failing test committed and say exactly what fails.""",
            allow=_GIT_SAFE_ALLOW,
            deny=_GIT_DENY,
            max_turns=150,
        ),
        Role(
            "reviewer",
            "Reads a change and returns a verdict with comments; cannot modify anything.",
            """Review the change for correctness, security, tests and clarity. You can only read.
Give concrete comments with file and line, and a verdict: approve, or request changes.""",
            tools=_READ_ONLY_TOOLS,
            permission_mode="default",
            timeout=1200,
            max_turns=60,
            produces="verdict",
        ),
        Role(
            "devops",
            "Build, CI, packaging and deployment configuration.",
            """Work on build scripts, CI configuration, packaging and tooling. Keep changes
reproducible and documented; verify commands actually run.""",
            allow=_GIT_SAFE_ALLOW,
            deny=_GIT_DENY,
            max_turns=150,
        ),
        Role(
            "documenter",
            "Writes and updates documentation to match the code.",
            """Update README, man pages, docstrings and changelogs so they match the code as it is.
Check every command and example you document against the code.""",
            allow=_GIT_SAFE_ALLOW,
            deny=_GIT_DENY,
            max_turns=100,
        ),
        Role(
            "generalist",
            "Any task that fits no other role.",
            """Do what the request asks, carefully and completely.""",
            allow=_GIT_SAFE_ALLOW,
            deny=_GIT_DENY,
            max_turns=200,
        ),
    )
}


# Steps orchestra does itself, without an agent; the scheduler runs them in-process.
AGENTLESS_ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role(
            "merge",
            "No agent: merges a branch into its target after a pre-check and the gate command.",
            "",
            tools=[],
            permission_mode="default",
            produces="merge",
        ),
        Role(
            "report",
            "No agent: consolidates the verdicts of review passes into one report.",
            "",
            tools=[],
            permission_mode="default",
            produces="report",
        ),
    )
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_FIELDS = {
    "name",
    "description",
    "system_prompt",
    "tools",
    "permission_mode",
    "allow",
    "deny",
    "timeout",
    "max_turns",
    "produces",
    "extends",
    "budget_usd",
    "resources",
}


def load_roles(state: Path | None = None) -> dict[str, Role]:
    """Built-in roles, then `[roles.<name>]` tables of config.toml, then `.orchestra/roles/<name>.toml`.

    A later definition of a known name overrides only the fields it sets; a new
    name needs a description and a system prompt (or `extends` another role).
    """
    roles = dict(BUILTIN_ROLES)
    roles.update(AGENTLESS_ROLES)
    if state is None:
        return roles
    for where, name, table in _user_role_tables(state):
        roles[name] = _role_from_table(where, name, table, roles)
    return roles


def agent_roles(roles: dict[str, Role]) -> list[str]:
    return sorted(n for n, r in roles.items() if not r.agentless)


def get_role(name: str, roles: dict[str, Role] | None = None) -> Role:
    """A role a task can be submitted with: agentless steps are not among them."""
    roles = roles if roles is not None else load_roles()
    role = roles.get(name)
    if role is None or role.agentless:
        hint = " (it is a step orchestra runs itself, without an agent)" if role else ""
        suggestion = "" if role else did_you_mean(name, agent_roles(roles))
        raise InvalidInput(f"unknown role {name!r}{hint}{suggestion}; known roles: {', '.join(agent_roles(roles))}")
    return role


def role_for_task(state: Path, task: Task) -> Role:
    """The role a task's agent runs with: a review pass gets the read-only form of its role."""
    role = get_role(task.role, load_roles(state))
    return role.review_pass() if task.review or (task.produces == "verdict" and role.produces != "verdict") else role


def verdict_problem(output: object) -> str | None:
    """Why a structured output is not a usable verdict, or None when it is one."""
    if output is None:
        return "the run returned no structured output"
    if not isinstance(output, dict):
        return "the structured output is not an object"
    if output.get("verdict") not in ("approve", "request_changes"):
        return f"verdict {output.get('verdict')!r} is neither 'approve' nor 'request_changes'"
    if not isinstance(output.get("comments", []), list):
        return "comments is not a list"
    return None


def _user_role_tables(state: Path) -> list[tuple[str, str, dict[str, Any]]]:
    tables: list[tuple[str, str, dict[str, Any]]] = []
    config = state / "config.toml"
    if config.is_file():
        data = _read_toml(config)
        section = data.get("roles", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{config}: [roles] must be a table of role tables")
        for name, table in section.items():
            where = f"{config} [roles.{name}]"
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: expected a table")
            tables.append((where, name, table))
    role_dir = state / "roles"
    if role_dir.is_dir():
        for path in sorted(role_dir.glob("*.toml")):
            data = _read_toml(path)
            name = path.stem
            if "name" in data and data["name"] != name:
                raise ConfigError(f"{path}: field 'name': {data['name']!r} does not match the file name {name!r}")
            tables.append((str(path), name, data))
    return tables


def _read_toml(path: Path) -> dict[str, Any]:
    return tomlfile.read(path)


def _role_from_table(where: str, name: str, table: dict[str, Any], known: dict[str, Role]) -> Role:
    def bad(field_name: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: field {field_name!r}: {why}")

    if not _NAME_RE.match(name):
        raise ConfigError(f"{where}: invalid role name {name!r}: lowercase letters, digits, '-' and '_'")
    if name in AGENTLESS_ROLES:
        raise ConfigError(f"{where}: {name!r} is a built-in step without an agent and cannot be redefined")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise bad(unknown[0], f"unknown field; known fields: {', '.join(sorted(_FIELDS - {'name'}))}")
    parent_name = table.get("extends", name if name in known else None)
    if "extends" in table and (
        not isinstance(parent_name, str) or parent_name not in known or known[parent_name].agentless
    ):
        raise bad("extends", f"unknown role {parent_name!r}")
    parent = known.get(parent_name) if parent_name else None
    if parent is None:
        for required in ("description", "system_prompt"):
            if required not in table:
                raise bad(required, "missing (a new role needs a description and a system_prompt, or 'extends')")
    values: dict[str, Any] = asdict(parent) if parent else {}
    values["name"] = name
    for key in ("description", "system_prompt"):
        if key in table:
            if not isinstance(table[key], str) or not table[key].strip():
                raise bad(key, "expected a non-empty string")
            values[key] = table[key]
    for key in ("tools", "allow", "deny"):
        if key in table:
            value = table[key]
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise bad(key, "expected a list of strings")
            values[key] = list(value)
    if "permission_mode" in table:
        if table["permission_mode"] not in PERMISSION_MODES:
            raise bad("permission_mode", f"{table['permission_mode']!r} is not one of {', '.join(PERMISSION_MODES)}")
        values["permission_mode"] = table["permission_mode"]
    if "timeout" in table:
        try:
            values["timeout"] = parse_duration(table["timeout"], "timeout")
        except InvalidInput as exc:
            raise bad("timeout", str(exc)) from None
    if "budget_usd" in table:
        try:
            values["budget_usd"] = parse_usd(table["budget_usd"], "budget_usd")
        except InvalidInput as exc:
            raise bad("budget_usd", str(exc)) from None
    if "resources" in table:
        try:
            values["resources"] = v_resources(table["resources"], "resources")
        except InvalidInput as exc:
            raise bad("resources", str(exc)) from None
    if "max_turns" in table:
        turns = table["max_turns"]
        if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
            raise bad("max_turns", "expected a whole number of at least 1")
        values["max_turns"] = turns
    if "produces" in table:
        if table["produces"] not in ("branch", "verdict"):
            raise bad("produces", "expected 'branch' or 'verdict'")
        values["produces"] = table["produces"]
    values.setdefault("produces", "branch")
    if values["produces"] == "verdict":
        tools = values.get("tools")
        if tools is None:
            values["tools"] = list(_READ_ONLY_TOOLS)
        elif not set(tools) <= set(READ_ONLY_TOOLS):
            extra = sorted(set(tools) - set(READ_ONLY_TOOLS))
            raise bad(
                "tools",
                f"a role that produces a verdict may only read ({', '.join(_READ_ONLY_TOOLS)}); not {', '.join(extra)}",
            )
    if parent_name != name:
        source = where
    elif name in BUILTIN_ROLES:
        source = f"{where} (overrides built-in)"
    else:
        source = f"{where} (overrides {parent.source if parent else '?'})"
    values["source"] = source
    return Role(**{k: v for k, v in values.items() if k in _ROLE_FIELDS})


_ROLE_FIELDS = {f for f in Role.__dataclass_fields__}

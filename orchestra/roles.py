"""Roles: what kind of agent a task gets, as data.

A role's limits are enforced through Claude Code's own flags (`--tools`,
`--permission-mode`, `--settings` rules), not by asking the model nicely: a
reviewer is given no tool that can write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestra.errors import InvalidInput

PERMISSION_MODES = ("default", "acceptEdits", "bypassPermissions", "dontAsk", "plan")

_COMMON = """You are one agent in a team coordinated by orchestra. You work alone in your own git
worktree, on a branch that belongs to this task; that branch is what you hand on. Stay on it: do not
switch branches, push, rewrite history or touch other worktrees. Commit your work with clear messages
as you reach sensible points; anything you leave uncommitted is committed for you when you stop.
Nobody will answer questions while you work: make reasonable decisions, note assumptions in your
final message, and end with a short summary of what you did and what is left."""

_READ_ONLY_TOOLS = ["Read", "Grep", "Glob"]

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
    source: str = "built-in"

    def settings(self) -> dict[str, Any] | None:
        if not self.allow and not self.deny and not self.ask:
            return None
        perms = {"allow": list(self.allow), "deny": list(self.deny)}
        if self.ask:
            perms["ask"] = list(self.ask)
        return {"permissions": perms}

    def full_system_prompt(self) -> str:
        return f"{_COMMON}\n\nYour role: {self.name}.\n{self.system_prompt.strip()}"


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


def load_roles() -> dict[str, Role]:
    return dict(BUILTIN_ROLES)


def get_role(name: str, roles: dict[str, Role] | None = None) -> Role:
    roles = roles if roles is not None else load_roles()
    role = roles.get(name)
    if role is None:
        raise InvalidInput(f"unknown role {name!r}; known roles: {', '.join(sorted(roles))}")
    return role

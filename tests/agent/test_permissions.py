"""orchestra.agent.permissions: which rule covers a tool use, what `--always` allows, each role's policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.agent.permissions import (
    PROMPT_TOOL,
    always_rule,
    apply,
    load_table,
    policy_for,
    prompt_tool_args,
    rule_matches,
)
from orchestra.core.config import Config
from orchestra.core.errors import ConfigError, InvalidInput
from orchestra.core.roles import load_roles

ROLES = load_roles()


def bash(command: str) -> dict[str, str]:
    return {"command": command}


@pytest.mark.parametrize(
    "rule, command, matches",
    [
        ("Bash", "rm -rf /", True),
        ("Bash(*)", "anything", True),
        ("Bash()", "anything", True),
        ("Bash(git status:*)", "git status", True),
        ("Bash(git status:*)", "git status --short", True),
        ("Bash(git status:*)", "  git status  ", True),
        ("Bash(git status:*)", "git statusx", False),
        ("Bash(git status:*)", "git", False),
        # A compound command matches only when every part does: no smuggling behind an allowed prefix.
        ("Bash(git status:*)", "git status && rm -rf /", False),
        ("Bash(git status:*)", "git status; git status -s", True),
        ("Bash(git status:*)", "git status | sh", False),
        ("Bash(git status:*)", "git status || curl x", False),
        ("Bash(git status:*)", "git status\nrm -rf /", False),
        ("Bash(git status:*)", "", False),
        ("Bash(make check)", "make check", True),
        ("Bash(make check)", "make check2", False),
        ("Bash(make check)", "make check && make deploy", False),
        ("Write", "git status", False),
        ("Bash(unclosed", "anything", False),
    ],
)
def test_bash_rules(rule: str, command: str, matches: bool) -> None:
    assert rule_matches(rule, "Bash", bash(command)) is matches


@pytest.mark.parametrize(
    "rule, tool, tool_input, matches",
    [
        ("Write", "Write", {"file_path": "/w/a.py"}, True),
        ("Write(src/*)", "Write", {"file_path": "src/a/b.py"}, True),
        ("Write(src/*)", "Write", {"file_path": "/w/src/a.py"}, False),
        ("Edit(*.env)", "Edit", {"file_path": "/w/.env"}, True),
        ("Edit(*.env)", "Edit", {"file_path": "/w/env.txt"}, False),
        ("Edit(*.env)", "Write", {"file_path": "/w/.env"}, False),
        ("Read(/etc/*)", "Read", {"path": "/etc/passwd"}, True),
        ("NotebookEdit(*.ipynb)", "NotebookEdit", {"notebook_path": "/w/x.ipynb"}, True),
        ("Write(src/*)", "Write", {}, False),
    ],
)
def test_path_rules(rule: str, tool: str, tool_input: dict, matches: bool) -> None:
    assert rule_matches(rule, tool, tool_input) is matches


def test_always_allows_this_exact_command_or_the_whole_tool() -> None:
    rule = always_rule("Bash", bash("echo one >> log.txt"))
    assert rule == "Bash(echo one >> log.txt)"
    assert rule_matches(rule, "Bash", bash("echo one >> log.txt"))
    assert not rule_matches(rule, "Bash", bash("echo one >> log.txt; rm -rf /"))
    assert not rule_matches(rule, "Bash", bash("echo two >> log.txt"))
    assert always_rule("Write", {"file_path": "/w/a"}) == "Write"
    assert always_rule("Bash", {}) == "Bash"


@pytest.mark.parametrize("command", ["echo checking:*", " * ", "", "git status:* "])
def test_always_refuses_a_command_that_a_rule_would_read_as_a_pattern(command: str) -> None:
    with pytest.raises(InvalidInput, match="without --always"):
        always_rule("Bash", bash(command))


def test_a_role_keeps_its_own_mode_and_rules_by_default() -> None:
    policy = policy_for(ROLES["implementer"], Config(), {})
    assert policy.mode == "acceptEdits"
    assert "Bash(git push:*)" in policy.deny and "Bash(git status:*)" in policy.allow
    assert policy.ask == () and policy.prompts and policy.uses_prompt_tool
    reviewer = policy_for(ROLES["reviewer"], Config(), {})
    assert reviewer.mode == "default" and reviewer.allow == () and reviewer.deny == ()


def test_repository_and_role_sections_add_rules_and_override_mode_and_prompts() -> None:
    table = {
        "allow": ["Bash(make check:*)", "Bash(git status:*)"],
        "deny": ["Bash(curl:*)"],
        "implementer": {"ask": ["Bash"], "mode": "default", "prompts": False},
        "tester": {"allow": ["Bash(tox:*)"]},
    }
    impl = policy_for(ROLES["implementer"], Config(), table)
    assert impl.mode == "default" and impl.ask == ("Bash",)
    assert impl.allow.count("Bash(git status:*)") == 1  # the role's and the repository's rule once
    assert "Bash(make check:*)" in impl.allow and "Bash(curl:*)" in impl.deny and "Bash(git push:*)" in impl.deny
    assert not impl.prompts and not impl.uses_prompt_tool
    tester = policy_for(ROLES["tester"], Config(), table)
    assert "Bash(tox:*)" in tester.allow and "Bash(make check:*)" in tester.allow and tester.ask == ()
    assert "Bash(tox:*)" not in impl.allow


def test_a_repository_wide_mode_applies_unless_the_role_section_says_otherwise() -> None:
    config = Config(values={"permission_mode": "bypassPermissions"})
    everyone = policy_for(ROLES["tester"], config, {})
    assert everyone.mode == "bypassPermissions" and not everyone.uses_prompt_tool  # bypass never asks
    own = policy_for(ROLES["tester"], config, {"tester": {"mode": "acceptEdits"}})
    assert own.mode == "acceptEdits" and own.uses_prompt_tool
    assert not policy_for(ROLES["tester"], Config(values={"permission_prompts": False}), {}).uses_prompt_tool


def test_the_policy_reaches_claude_code_as_settings() -> None:
    policy = policy_for(ROLES["implementer"], Config(), {"implementer": {"ask": ["Bash(rm:*)"], "mode": "plan"}})
    role = apply(ROLES["implementer"], policy)
    assert role.permission_mode == "plan"
    settings = role.settings()
    assert settings is not None and settings["permissions"]["ask"] == ["Bash(rm:*)"]
    assert settings["permissions"]["deny"] == list(policy.deny)


def test_the_prompt_tool_arguments_start_orchestras_permission_server(tmp_path: Path) -> None:
    import json

    args = prompt_tool_args(tmp_path / "requests", "abc123", 2, 90)
    assert args[2:] == ["--permission-prompt-tool", PROMPT_TOOL]
    server = json.loads(args[args.index("--mcp-config") + 1])["mcpServers"]["orchestra_perm"]
    assert server["args"] == [
        "-m",
        "orchestra.agent.permission_server",
        "--requests",
        str(tmp_path / "requests"),
        "--task",
        "abc123",
        "--attempt",
        "2",
        "--timeout",
        "90",
    ]
    assert server["timeout"] > 90_000  # Claude Code must not give up before the question times out


def config_file(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return Config(source=path)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[permissions]\ncolour = "blue"\n', "unknown key permissions.colour"),
        ('[permissions]\nallow = "Bash"\n', 'permissions.allow must be a list of rules like "Bash(git status:*)"'),
        ('[permissions]\nallow = ["Bash(("]\n', "permissions.allow must be a list of rules"),
        ('[permissions.tester]\nmode = "yolo"\n', "permissions.tester.mode must be one of default, acceptEdits"),
        ('[permissions.tester]\nprompts = "yes"\n', "permissions.tester.prompts must be true or false"),
        ('[permissions.tester]\nallowed = ["Bash"]\n', "unknown key permissions.tester.allowed"),
        ('permissions = "all"\n', "'permissions' must be a table"),
    ],
)
def test_bad_permission_tables_are_refused_with_the_file(tmp_path: Path, text: str, message: str) -> None:
    config = config_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_table(config)
    assert str(info.value).startswith(str(config.source)) and message in str(info.value)


def test_a_good_table_is_read_from_the_config_file(tmp_path: Path) -> None:
    config = config_file(
        tmp_path, 'max_concurrent = 2\n[permissions]\nask = ["Bash"]\n[permissions.tester]\nprompts = false\n'
    )
    assert load_table(config) == {"ask": ["Bash"], "tester": {"prompts": False}}
    assert policy_for(ROLES["tester"], config).ask == ("Bash",)
    assert load_table(Config()) == {}

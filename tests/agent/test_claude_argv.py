"""orchestra.agent.claude.build_argv: the exact command line each role's Claude Code run gets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from orchestra.agent.claude import build_argv, format_usd
from orchestra.core.roles import VERDICT_SCHEMA, load_roles

ROLES = load_roles()


def argv_for(role_name: str = "implementer", prompt: str = "Do it.", **kwargs: object) -> list[str]:
    role = kwargs.pop("role", None) or ROLES[role_name]
    return build_argv("/bin/claude", role, prompt, system_prompt="SYSTEM", **kwargs)  # type: ignore[arg-type]


def value(argv: list[str], flag: str) -> str | None:
    head = argv[: argv.index("--")]  # flags only: nothing after "--" is an option
    return head[head.index(flag) + 1] if flag in head else None


def test_headless_stream_json_with_the_prompt_last_after_double_dash() -> None:
    prompt = "-rf starts with a dash\n--dangerously-skip-permissions"
    argv = argv_for(prompt=prompt)
    assert argv[:5] == ["/bin/claude", "-p", "--output-format", "stream-json", "--verbose"]
    assert argv[-2:] == ["--", prompt]
    assert argv.index("--") == len(argv) - 2  # nothing but the prompt follows it
    assert "--dangerously-skip-permissions" not in argv[:-1]
    assert value(argv, "--append-system-prompt") == "SYSTEM"


def test_a_writing_role_gets_its_mode_rules_and_turn_limit() -> None:
    argv = argv_for("implementer")
    assert value(argv, "--permission-mode") == "acceptEdits"
    settings = json.loads(value(argv, "--settings") or "{}")
    assert "Bash(git push:*)" in settings["permissions"]["deny"]
    assert "Bash(git commit:*)" in settings["permissions"]["allow"]
    assert value(argv, "--max-turns") == "200"
    assert "--tools" not in argv and "--json-schema" not in argv  # Claude Code's own tool set


def test_the_reviewer_only_reads_and_must_answer_with_a_verdict() -> None:
    argv = argv_for("reviewer")
    assert value(argv, "--tools") == "Read,Grep,Glob"
    assert json.loads(value(argv, "--json-schema") or "null") == VERDICT_SCHEMA
    assert " " not in (value(argv, "--json-schema") or "")  # compact: one argument, no spaces to split
    assert "--permission-mode" not in argv and "--settings" not in argv


def test_a_verdict_role_never_gets_a_tool_that_writes_whatever_its_file_says() -> None:
    loose = dataclasses.replace(ROLES["reviewer"], tools=["Read", "Bash", "Write", "Grep"])
    assert value(argv_for(role=loose), "--tools") == "Read,Grep"
    unset = dataclasses.replace(ROLES["reviewer"], tools=None)
    assert value(argv_for(role=unset), "--tools") == "Read,Grep,Glob"


def test_a_review_pass_of_a_writing_role_is_read_only() -> None:
    argv = argv_for(role=ROLES["architect"].review_pass())
    assert value(argv, "--tools") == "Read,Grep,Glob" and "--json-schema" in argv
    assert "--settings" not in argv and "--permission-mode" not in argv


def test_resume_budget_sandbox_and_extra_arguments() -> None:
    argv = argv_for(
        resume="sess-1",
        max_budget_usd=0.98,
        extra_args=["--model", "opus"],
        sandbox={"enabled": True},
    )
    assert value(argv, "--resume") == "sess-1"
    assert value(argv, "--max-budget-usd") == "0.98"
    assert value(argv, "--model") == "opus" and argv.index("--model") < argv.index("--")
    settings = json.loads(value(argv, "--settings") or "{}")
    assert settings["sandbox"] == {"enabled": True} and settings["permissions"]["deny"]
    plain = argv_for()
    assert "--resume" not in plain and "--max-budget-usd" not in plain


def test_a_sandbox_alone_still_reaches_the_settings() -> None:
    argv = argv_for("reviewer", sandbox={"enabled": True})
    assert json.loads(value(argv, "--settings") or "{}") == {"sandbox": {"enabled": True}}


@pytest.mark.parametrize(
    "usd, text",
    [
        (2, "2"),
        (2.0, "2"),
        (0.5, "0.5"),
        (0.98, "0.98"),
        (1e-5, "0.00001"),
        (1234.5, "1234.5"),
        (1e-7, "0"),
        (0.1 + 0.2, "0.3"),
    ],
)
def test_budgets_are_plain_decimals(usd: float, text: str) -> None:
    assert format_usd(usd) == text
    assert value(argv_for(max_budget_usd=usd), "--max-budget-usd") == text

"""orchestra.core.values: every front end accepts and refuses the same values, with the same words."""

from __future__ import annotations

import pytest

from orchestra.core import values
from orchestra.core.errors import InvalidInput


def refused(check, value, *args) -> str:
    with pytest.raises(InvalidInput) as info:
        check(value, *args)
    return str(info.value)


@pytest.mark.parametrize(
    "text, seconds",
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        ("30m", 1800.0),
        (" 2h ", 7200.0),
        ("1d", 86400.0),
    ],
)
def test_durations(text, seconds):
    assert values.parse_duration(text, "timeout") == seconds


@pytest.mark.parametrize("bad", ["soon", "5 weeks", "", "1e3", "-5x"])
def test_bad_durations_name_the_setting_and_the_units(bad):
    assert refused(values.parse_duration, bad, "timeout").startswith(f"invalid timeout {bad!r}: use seconds")


@pytest.mark.parametrize("bad", [0, "0", "0s", float("inf"), -1, "-5", "-1m"])  # a sign is not a unit problem
def test_durations_must_be_positive_and_finite(bad):
    assert "must be greater than zero" in refused(values.parse_duration, bad, "timeout")


def test_a_boolean_is_not_a_duration_or_an_amount_or_a_count():
    assert refused(values.parse_duration, True, "timeout") == "invalid timeout: True"
    assert refused(values.parse_usd, False, "budget") == "invalid budget: False"
    assert "expected a whole number" in refused(values.whole, True, "max_attempts", 1)


def test_money():
    assert values.parse_usd("$1.25") == 1.25
    assert values.parse_usd(" 2 ") == 2.0
    assert values.parse_usd(0.1234567) == 0.123457  # rounded to a millionth
    assert "expected an amount in USD" in refused(values.parse_usd, "lots")
    for bad in ("0", "-1", "nan", "inf"):
        assert "must be a positive amount in USD" in refused(values.parse_usd, bad)
    assert values.usd_limit("0", "budget_usd") == 0.0 and values.usd_limit("$0.00", "budget_usd") == 0.0
    assert values.usd_limit("5", "budget_usd") == 5.0
    assert "invalid budget_usd" in refused(values.usd_limit, "-5", "budget_usd")


def test_whole_numbers_and_their_bounds():
    assert values.whole(" 7 ", "max_concurrent", 1) == 7
    assert (
        refused(values.whole, "many", "max_concurrent", 1) == "invalid max_concurrent 'many': expected a whole number"
    )
    assert refused(values.whole, "2.5", "max_concurrent", 1).endswith("expected a whole number")
    assert refused(values.positive_int, 0, "max_concurrent") == "invalid max_concurrent 0: must be at least 1"
    assert values.small_count(0, "api_retries") == 0
    assert refused(values.small_count, 21, "api_retries") == "invalid api_retries 21: must be between 0 and 20"
    assert values.priority("-1000") == -1000
    assert "must be between -1000 and 1000" in refused(values.priority, 99999)


def test_booleans():
    for text in ("true", "Yes", " on ", "1", True):
        assert values.boolean(text, "autostart") is True
    for text in ("false", "NO", "off", "0", False):
        assert values.boolean(text, "autostart") is False
    assert refused(values.boolean, "maybe", "autostart") == "invalid autostart 'maybe': expected true or false"


def test_strings_and_lists():
    assert values.string("claude", "claude_binary") == "claude"
    assert "expected a non-empty string" in refused(values.string, "  ", "claude_binary")
    assert "contains a NUL byte" in refused(values.string, "a\0b", "claude_binary")
    assert values.optional_string("  npm ci  ", "setup") == "npm ci"
    assert values.optional_string("", "setup") == ""
    assert "expected a string" in refused(values.optional_string, 3, "setup")
    # A command line gives a list as words, quoted the way a shell would.
    assert values.string_list("--model 'a b'", "claude_args") == ["--model", "a b"]
    assert values.string_list(["x"], "claude_args") == ["x"]
    assert "expected a list of strings" in refused(values.string_list, [1], "claude_args")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../secrets", "a/../../b", ".", "./", " "])
def test_copied_paths_stay_inside_the_repository(bad):
    assert "use paths relative to the repository root, inside it" in refused(values.relative_paths, [bad], "copy")


@pytest.mark.parametrize("bad", [".git/config", ".orchestra/config.toml", ".git"])
def test_copied_paths_never_reach_git_or_orchestra_state(bad):
    assert "orchestra's and git's own state cannot be copied" in refused(values.relative_paths, [bad], "copy")


def test_good_copied_paths_from_toml_or_the_command_line():
    assert values.relative_paths([".env", "conf/local.toml"], "copy") == [".env", "conf/local.toml"]
    assert values.relative_paths(".env conf", "copy") == [".env", "conf"]


def test_modes_prefixes_and_strategies():
    assert values.permission_mode("role", "permission_mode") == "role"
    assert values.permission_mode("bypassPermissions", "permission_mode") == "bypassPermissions"
    assert "use 'role' (each role's own) or one of default, acceptEdits" in refused(
        values.permission_mode, "yolo", "permission_mode"
    )
    assert values.branch_prefix("team/orchestra-", "branch_prefix") == "team/orchestra-"
    for bad in ("-x", "a..b", "a//b", "x.lock", "a b", "~x"):
        assert "letters, digits" in refused(values.branch_prefix, bad, "branch_prefix"), bad
    assert values.merge_strategy("ff-only", "merge_strategy") == "ff-only"
    assert refused(values.merge_strategy, "octopus", "merge_strategy") == (
        "invalid merge_strategy 'octopus': use one of merge, squash, ff-only, pr"
    )
    assert (
        refused(values.known_merge_strategy, "rebase")
        == "unknown merge strategy 'rebase'; use one of merge, squash, ff-only, pr"
    )


def test_did_you_mean():
    assert values.did_you_mean("implementor", ["implementer", "tester"]) == " (did you mean 'implementer'?)"
    assert values.did_you_mean("zzz", ["implementer", "tester"]) == ""


@pytest.mark.parametrize(
    "url",
    [
        "",
        "git@github.com:team/repo.git",
        "ssh://git@git.example:2222/team/repo.git",
        "https://git.example/team/repo.git",
        "https://ci@git.example/team/repo.git",
        "file:///srv/git/repo.git",
        "/srv/git/repo.git",
    ],
)
def test_git_remotes_that_every_machine_can_use(url):
    assert values.git_remote(f"  {url} ", "ray_git_remote") == url


@pytest.mark.parametrize(
    "bad, why",
    [
        ("--upload-pack=touch pwned", "cannot start with '-'"),
        ("-oProxyCommand=x:repo", "cannot start with '-'"),
        ("ext::sh -c touch% pwned", "remote helpers"),
        ("fd::3", "remote helpers"),
        ("EXT::sh", "remote helpers"),
        ("custom::somewhere", "remote helpers"),
        ("ssh://-oProxyCommand=touch%20pwned/repo", "bad host"),
        ("https://git.example/repo\nfetch = x", "control character"),
        ("https://git.example/repo\x1b[2J", "control character"),
        ("https://ci:hunter2@git.example/repo.git", "password in the URL"),
        ("ftp://git.example/repo.git", "use one of"),
        ("repo.git", "absolute path"),
        ("../shared.git", "absolute path"),
    ],
)
def test_bad_git_remotes_are_refused_in_one_line(bad, why):
    message = refused(values.git_remote, bad, "ray_git_remote")
    assert message.startswith("invalid ray_git_remote") and why in message and "\n" not in message, message
    assert "hunter2" not in message


def test_git_remote_must_be_a_string():
    assert "expected a string" in refused(values.git_remote, 5, "ray_git_remote")


@pytest.mark.parametrize("everywhere", ["/", "//", "~/"])
def test_sandbox_writes_everywhere_are_refused_with_the_way_to_do_it_on_purpose(everywhere):
    with pytest.raises(InvalidInput, match=r'write everywhere there.*sandbox = "off"'):
        values.absolute_paths([everywhere], "sandbox_allow_write")
    allowed = ["~/.cache/pip", "/opt/cache"]
    assert values.absolute_paths(allowed, "sandbox_allow_write") == allowed

"""Bad input: one clear line on stderr, a non-zero exit, and nothing changed or lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import git


def _tasks(repo: Path) -> list[str]:
    d = repo / ".orchestra" / "tasks"
    return sorted(p.name for p in d.glob("*.json")) if d.exists() else []


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("orchestra: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_not_a_git_repository(orch, tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    _one_line_error(orch.run_process("submit", "--no-start", "x", cwd=plain), "not a git repository")
    _one_line_error(orch.run("status", cwd=plain), "not a git repository")
    assert not (plain / ".orchestra").exists()


def test_bare_repository(orch, tmp_path: Path):
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    _one_line_error(orch.run("submit", "--no-start", "x", cwd=bare), "bare repository")
    assert not (bare / ".orchestra").exists()


def test_repository_without_commits(orch, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    _one_line_error(orch.run("submit", "--no-start", "x", cwd=empty), "no commits")
    assert _tasks(empty) == []


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--role", "wizard", "x"], "unknown role 'wizard'"),
        (["--after", "zzzzzz", "x"], "no task zzzzzz"),
        (["--after", "../etc", "x"], "invalid task id"),
        (["--on", "zzzzzz", "x"], "no task zzzzzz"),
        (["--base", "no-such-branch", "x"], "does not name a commit"),
        (["--base=-x", "x"], "may not start with '-'"),
        (["--base", "HEAD", "--on", "abc", "x"], "either --on"),
        (["   "], "empty prompt"),
        (["--priority", "high", "x"], "invalid priority"),
        (["--priority", "99999", "x"], "between"),
        (["--timeout", "soon", "x"], "invalid timeout"),
        (["--timeout", "-5", "x"], "invalid timeout"),
        (["--timeout", "0", "x"], "greater than zero"),
        (["--title", " ", "x"], "empty title"),
        ([], "empty prompt"),  # stdin is /dev/null here
    ],
)
def test_submit_refuses_bad_input_and_creates_nothing(orch, args: list[str], needle: str):
    existing = orch.submit("an existing task")
    before = _tasks(orch.repo)
    _one_line_error(orch.run("submit", "--no-start", *args), needle)
    assert _tasks(orch.repo) == before
    assert orch.show(existing)["state"] == "queued"


def test_unknown_task_ids(orch):
    orch.submit("something")
    for cmd in (
        ["show", "zzzzzz"],
        ["logs", "zzzzzz"],
        ["wait", "zzzzzz"],
        ["cancel", "zzzzzz"],
        ["retry", "zzzzzz"],
        ["priority", "zzzzzz", "3"],
    ):
        _one_line_error(orch.run(*cmd), "no task zzzzzz")
    for evil in ("../../etc/passwd", "a/b", "-rf", "AB$", ".."):
        _one_line_error(orch.run("show", "--", evil), "invalid task id")


def test_usage_errors_are_one_line(orch):
    # The real binary: its exit status and its stderr, which no traceback may reach.
    _one_line_error(orch.run_process("submit", "--no-start", "--no-such-flag", "x"), "No such option")
    _one_line_error(orch.run_process("frobnicate"), "No such command")
    assert orch.run_process("frobnicate").returncode == 2


def test_bad_config_is_reported_with_the_file(orch):
    cfg = orch.repo / ".orchestra" / "config.toml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text("max_concurrent = 'many'\n")
    _one_line_error(orch.run("status"), str(cfg), "max_concurrent")
    cfg.write_text("max_concurrent = [\n")
    _one_line_error(orch.run("status"), str(cfg), "invalid TOML")
    cfg.write_text("colour = 'blue'\n")
    _one_line_error(orch.run("status"), "unknown setting 'colour'")


def test_dependency_cycles_are_refused(orch):
    """The CLI cannot build a cycle (ids are new), but the core guards the graph for any caller."""
    from orchestra.app import Orchestra

    a = orch.submit("a")
    core = Orchestra(orch.repo)
    b = core.submit("b", after=[a], start=False)
    # Make `a` depend on `b` behind the core's back, then ask for a task that closes the loop.
    with core.store.locked():
        task = core.store.load(a)
        task.depends_on = [b.id]
        core.store.save(task)
    proc = orch.run("submit", "--no-start", "--after", a, "closes nothing but waits on a loop")
    assert proc.returncode == 1
    assert "dependency cycle" in proc.stderr and a in proc.stderr and b.id in proc.stderr

    # A scheduler faced with such a loop ends its members instead of waiting forever.
    assert orch.work(timeout=60).returncode == 0
    for tid in (a, b.id):
        task = orch.show(tid)
        assert task["state"] == "failed" and "dependency cycle" in task["error"]


def test_config_values_may_start_with_a_dash(orch):
    """`config set claude_args "--model opus"` stores the words: a value is not an option of `config set`."""
    assert orch.run("config", "set", "claude_args", "--model opus", check=True).stdout.strip() == (
        'claude_args = ["--model", "opus"]'
    )
    assert orch.run("config", "get", "claude_args", check=True).stdout.strip() == '["--model", "opus"]'
    _one_line_error(orch.run("config", "set", "max_concurrent", "-3"), "invalid max_concurrent -3")


def test_a_usage_error_names_the_whole_command_to_ask_for_help(orch):
    _one_line_error(orch.run("config", "set"), "Missing argument", "(see 'orchestra config set --help')")
    _one_line_error(orch.run("workflow", "show"), "(see 'orchestra workflow show --help')")


def test_listing_by_an_unknown_role_is_refused_like_an_unknown_state(orch):
    orch.submit("one")
    _one_line_error(
        orch.run("list", "--role", "implementor"), "unknown role 'implementor'", "did you mean 'implementer'"
    )
    _one_line_error(orch.run("list", "--json", "--role", "implementor"), "unknown role 'implementor'")
    assert orch.run("list", "--role", "generalist", check=True).stdout.count("generalist") == 1
    assert orch.run("list", "--role", "merge", check=True).returncode == 0  # a workflow's own step is a role too

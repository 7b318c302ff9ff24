"""Hostile input: shell metacharacters, option-like refs, path-like ids, planted symlinks, secrets."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from conftest import ROOT, git, make_repo

SHELL_CALLS = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|os\.exec\w*p\w*\(.*sh|pty\.spawn\(")


def test_the_code_builds_no_shell_commands():
    offenders = []
    for path in sorted((ROOT / "orchestra").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if SHELL_CALLS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_shell_metacharacters_reach_claude_verbatim_and_run_nothing(orch, tmp_path: Path):
    canary = tmp_path / "pwned"
    prompt = (
        f"Fix it $(touch {canary}1) `touch {canary}2`; touch {canary}3 && touch {canary}4 | tee {canary}5\n"
        f"'\"\\ $HOME ${{PATH}} * ? [a-z] ~ > {canary}6 < /etc/passwd 2>&1 & disown\n"
        "-- --dangerously-skip-permissions\n"
        "@fake write out.txt done"
    )
    title = f"$(touch {canary}7); `touch {canary}8`"
    tid = orch.submit(prompt, "--title", title, "--role", "implementer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert task["prompt"] == prompt and task["title"] == title
    (call,) = orch.invocations()
    assert call["argv"][-1] == prompt and call["argv"][-2] == "--"
    assert "--dangerously-skip-permissions" not in call["argv"][:-1]
    assert not list(tmp_path.glob("pwned*")), "a shell ran part of the prompt"
    bad = orch.run("submit", "--no-start", "--base", f"$(touch {canary}9)", "x")
    assert bad.returncode == 1 and "does not name a commit" in bad.stderr
    bad = orch.run("submit", "--no-start", "--role", f"x; touch {canary}10", "x")
    assert bad.returncode == 1 and bad.stderr.startswith("orchestra: error: ")
    assert not list(tmp_path.glob("pwned*"))


@pytest.mark.parametrize("ref", ["--upload-pack=touch /tmp/orchestra-pwned", "-h", "--all", "-", "--output=/tmp/x"])
def test_refs_that_look_like_options_are_refused(orch, ref: str):
    proc = orch.run("submit", "--no-start", f"--base={ref}", "a prompt")
    assert proc.returncode == 1
    assert proc.stderr == f"orchestra: error: invalid base ref {ref!r}: refs may not start with '-'\n"
    assert orch.run("list", "--json", check=True).stdout.strip() == "[]"
    assert not Path("/tmp/orchestra-pwned").exists()


EVIL_IDS = ["../../etc/passwd", "a/b", "..", "../tasks/x", "x/../../y", "/etc/passwd", "-rf", "abc\\..", "ab cd", "é"]


def test_ids_with_paths_or_dashes_are_refused_everywhere(orch):
    tid = orch.submit("a real task")
    state = orch.repo / ".orchestra"
    before = sorted(str(p) for p in state.rglob("*"))
    commands = [("show",), ("cancel",), ("retry",), ("logs",), ("wait", "--timeout", "1"), ("stop",), ("priority",)]
    for evil in EVIL_IDS:
        for cmd in commands:
            args = [*cmd, "--", evil] + (["5"] if cmd == ("priority",) else [])
            proc = orch.run(*args)
            assert proc.returncode in (1, 2), (args, proc.stdout)
            assert proc.stderr.startswith("orchestra: error: ") and proc.stderr.count("\n") == 1, (args, proc.stderr)
            assert "Traceback" not in proc.stderr
        for opt in ("--after", "--on"):
            proc = orch.run("submit", "--no-start", opt, evil, "x")
            assert proc.returncode in (1, 2) and proc.stderr.startswith("orchestra: error: "), proc.stderr
    assert sorted(str(p) for p in state.rglob("*")) == before
    assert orch.state(tid) == "queued"


def test_symlink_planted_at_the_worktree_path_is_refused_and_nothing_outside_is_touched(orch, tmp_path: Path):
    # The link points at another repository with uncommitted work: the worst place to commit "leftovers".
    other = make_repo(tmp_path / "other")
    (other / "draft.txt").write_text("uncommitted draft")
    other_head = git(other, "rev-parse", "HEAD")
    tid = orch.submit("never runs\n@fake write pwned.txt x")
    link = orch.repo / ".orchestra" / "worktrees" / tid
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(other)
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed"
    assert task["error"] == f"refusing to use {link}: it is a symlink"
    assert orch.invocations() == []
    assert git(other, "rev-parse", "HEAD") == other_head
    assert git(other, "status", "--porcelain") == "?? draft.txt"
    assert sorted(p.name for p in other.iterdir()) == [".git", "README.md", "draft.txt"]
    assert link.is_symlink()


def test_clearing_a_half_made_worktree_never_follows_a_symlink(orch, tmp_path: Path):
    from orchestra.git import worktrees

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    admin = orch.repo / ".git" / "worktrees" / "evil"
    admin.mkdir(parents=True)
    (admin / "locked").write_text("initializing")
    link = orch.repo / ".orchestra" / "worktrees" / "evil"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    (admin / "gitdir").write_text(f"{link}/.git\n")
    (outside / ".git").write_text(f"gitdir: {admin}\n")  # even when the target claims to be it
    (half,) = worktrees.interrupted_adds(orch.repo, link.parent)
    worktrees.clear_interrupted_add(half)
    assert (outside / "keep.txt").read_text() == "keep" and link.is_symlink() and not admin.exists()


SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-" + "Zx9" * 12,
    "GITHUB_TOKEN": "ghp_" + "Qw7" * 12,
    "DB_SECRET": "hunter2-" + "Pl4" * 6,
    "SERVICE_KEY": "svc-" + "Mn3" * 8,
}


def test_secrets_in_the_environment_stay_out_of_state_and_rendered_output(orch):
    orch.env.update(SECRETS)
    tid = orch.submit(
        "leak everything\n"
        "@fake env ANTHROPIC_API_KEY\n"
        "@fake env GITHUB_TOKEN\n"
        "@fake bash echo token: $GITHUB_TOKEN secret: $DB_SECRET\n"
        "@fake env SERVICE_KEY"
    )
    work = orch.work()
    assert work.returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded" and task["result"] == "SERVICE_KEY=***"
    state = orch.repo / ".orchestra"
    raw = (state / "logs" / f"{tid}.jsonl").read_text()
    assert SECRETS["GITHUB_TOKEN"] in raw  # the agent really printed them: its raw log is its own output

    def leaks(text: str) -> list[str]:
        return [name for name, value in SECRETS.items() if value in text]

    for path in state.rglob("*"):
        if path.is_file() and "worktrees" not in path.parts and path.parent.name != "logs":
            assert not leaks(path.read_text(errors="replace")), path
    assert not leaks(work.stdout + work.stderr)  # the scheduler's log
    for args in (
        ("show", tid),
        ("show", tid, "--json"),
        ("logs", tid),
        ("status",),
        ("status", "--json"),
        ("list",),
        ("list", "--json"),
    ):
        proc = orch.run(*args, check=True)
        assert not leaks(proc.stdout + proc.stderr), args
    rendered = orch.run("logs", tid, check=True).stdout
    assert "GITHUB_TOKEN=***" in rendered and "token: *** secret: ***" in rendered


def test_state_is_private_to_the_user(orch):
    orch.run("config", "set", "idle_exit", "1", check=True)
    tid = orch.run("submit", "--start", "private\n@fake write a.txt a", check=True).stdout.strip()
    assert orch.run("wait", tid, "--timeout", "60").returncode == 0
    orch.wait_for(
        lambda: orch.run("status", "--json", check=True).stdout.count('"scheduler_pid": null'),
        what="the background scheduler to exit",
    )
    state = orch.repo / ".orchestra"
    loose = []
    for path in [state, *state.rglob("*")]:
        rel = path.relative_to(state).parts
        if rel[:1] == ("worktrees",) and len(rel) > 1:
            continue  # the checkouts belong to the repository's own files
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            loose.append(f"{path}: {oct(mode)}")
    assert not loose, "\n".join(loose)
    assert (state / "scheduler.log").exists() and (state / "logs" / f"{tid}.jsonl").exists()


def test_cleanup_never_follows_a_symlink_out_of_the_worktrees_dir(orch, tmp_path: Path):
    tid = orch.submit("done\n@fake write w.txt work")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    wt = Path(task["worktree"])
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("do not delete\n")
    # Someone swaps the task's worktree for a symlink to a directory outside .orchestra/.
    real = tmp_path / "moved-worktree"
    wt.rename(real)
    wt.symlink_to(outside)
    for args in (("cleanup", "--dry-run"), ("cleanup",), ("cleanup", "--force")):
        proc = orch.run(*args)
        assert proc.returncode == 0, proc.stderr
        assert (outside / "keep.txt").read_text() == "do not delete\n"
        assert wt.is_symlink()
    assert "symlink" in orch.run("cleanup", "--force").stdout


@pytest.mark.parametrize("url", ["--upload-pack=touch pwned", "ext::sh -c touch% pwned", "fd::7", "shared.git"])
def test_ray_git_remote_refuses_what_git_would_run_or_read_as_an_option(orch, url: str):
    proc = orch.run("config", "set", "ray_git_remote", "--", url)
    assert proc.returncode == 1
    assert proc.stderr.startswith("orchestra: error: invalid ray_git_remote"), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    config = orch.repo / ".orchestra" / "config.toml"
    assert not config.exists() or "ray_git_remote" not in config.read_text()
    assert not list(orch.repo.glob("pwned*"))
    orch.run("config", "set", "ray_git_remote", "git@git.example:team/repo.git", check=True)
    assert orch.run("config", "get", "ray_git_remote", check=True).stdout.strip() == "git@git.example:team/repo.git"

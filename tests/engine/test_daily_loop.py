"""The small things of the daily loop: commit messages, short paths, failures kept in sight,
manual merges apart, a warning about work the agent will not see, "did you mean", doctor's
check that claude runs. Real repositories, the real scheduler and the fake claude.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from conftest import git


def test_autocommit_uses_the_task_title(orch):
    task_id = orch.submit("Add the greeting module\n@fake write greet.py print('hi')")  # written, not committed
    assert orch.work().returncode == 0
    branch = orch.show(task_id)["branch"]
    subject, body = git(orch.repo, "log", "-1", "--format=%s%x00%b", branch).split("\0")
    assert subject == "Add the greeting module"
    assert f"Orchestra-Task: {task_id}" in body and "uncommitted" in body


def test_logs_and_status_show_paths_relative_to_the_worktree(orch):
    task_id = orch.submit("Write it\n@fake write src/deep/module.py x = 1\n@fake text done")
    assert orch.work().returncode == 0
    out = orch.run("logs", task_id, check=True).stdout
    assert "Write src/deep/module.py" in out
    assert ".orchestra/worktrees" not in out and str(orch.repo) not in out.split("cwd", 1)[-1].split("\n", 1)[1]


def test_status_recent_keeps_failures_in_sight(orch):
    failed = orch.submit("This one fails\n@fake max-turns")
    assert orch.work().returncode == 0
    for n in range(6):  # six successes end after it: more than RECENT's five
        orch.submit(f"success {n}")
    assert orch.work().returncode == 0
    recent = orch.run("status", check=True).stdout.split("RECENT", 1)[1]
    assert failed in recent and "failed" in recent
    assert recent.count("succeeded") == 5
    data = json.loads(orch.run("status", "--json", check=True).stdout)
    assert [r["id"] for r in data["recent"] if r["state"] == "failed"] == [failed]


def test_manual_merge_attempts_are_counted_and_listed_apart(orch):
    task_id = orch.submit("Change the readme\n@fake write README.md changed\n@fake commit Change readme")
    assert orch.work().returncode == 0
    (orch.repo / "README.md").write_text("a person's edit\n")  # the checked-out target is dirty: merges fail
    for _ in range(3):
        assert orch.run("merge", task_id).returncode == 1
    status = orch.run("status", check=True).stdout
    assert "tasks      succeeded 1" in status  # the three attempts are not tasks
    assert "merges     3 by hand: failed 3" in status
    assert "failed" not in status.split("RECENT", 1)[1]
    data = json.loads(orch.run("status", "--json", check=True).stdout)
    assert data["counts"]["failed"] == 0 and data["manual_merges"] == {"failed": 3}
    listing = orch.run("list", check=True).stdout
    assert (
        len(listing.splitlines()) == 3 and "(3 manual merge attempt(s) not listed: orchestra list --merges)" in listing
    )
    merges = orch.run("list", "--merges", check=True).stdout.splitlines()
    assert len(merges) == 4 and all("merge" in line for line in merges[1:])


def test_submit_warns_about_uncommitted_changes_the_agent_will_not_see(orch):
    clean = orch.run("submit", "--no-start", "nothing pending", check=True)
    assert clean.stderr == ""
    (orch.repo / "README.md").write_text("edited, not committed\n")
    (orch.repo / "notes.txt").write_text("new, untracked\n")
    proc = orch.run("submit", "--no-start", "use my edit", check=True)
    assert proc.stdout.strip() and len(proc.stderr.strip().splitlines()) == 1
    assert "warning: uncommitted changes in the main worktree will not be in the agent's checkout" in proc.stderr
    assert "README.md" in proc.stderr and "notes.txt" in proc.stderr
    # Starting from another ref, or from another task's branch, the main worktree does not matter.
    assert orch.run("submit", "--no-start", "--on", clean.stdout.strip(), "x", check=True).stderr == ""
    # Files the `copy` setting brings along are seen.
    orch.run("config", "set", "copy", "notes.txt", check=True)
    git(orch.repo, "checkout", "README.md")
    assert orch.run("submit", "--no-start", "again", check=True).stderr == ""


def test_did_you_mean_for_roles_and_settings(orch):
    proc = orch.run("submit", "--no-start", "--role", "implementor", "x")
    assert proc.returncode == 1 and "did you mean 'implementer'" in proc.stderr and "Traceback" not in proc.stderr
    proc = orch.run("config", "set", "max_concurent", "3")
    assert proc.returncode == 1 and "did you mean 'max_concurrent'" in proc.stderr
    proc = orch.run("roles", "show", "reviwer")
    assert proc.returncode == 1 and "did you mean 'reviewer'" in proc.stderr


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_doctor_checks_that_claude_runs(orch, tmp_path: Path):
    report = json.loads(orch.run("doctor", "--json", check=True).stdout)
    assert report["ok"] and report["claude_version"]  # the fake claude answers --version
    broken = _script(tmp_path / "broken-claude", "#!/bin/sh\necho 'node: bad option' >&2\nexit 9\n")
    proc = orch.run_process("doctor", env={**orch.env, "ORCHESTRA_CLAUDE": str(broken)})
    assert proc.returncode == 1
    assert "problem  claude_does_not_run" in proc.stdout
    assert f"{broken} --version exited 9: node: bad option" in proc.stdout
    assert "fix or unset ORCHESTRA_CLAUDE (it overrides claude_binary)" in proc.stdout  # not advice with no effect
    missing = orch.run_process("doctor", env={**orch.env, "ORCHESTRA_CLAUDE": "no-such-claude-here"})
    assert missing.returncode == 1 and "'no-such-claude-here' is not on PATH" in missing.stdout
    assert missing.stdout.count("install Claude Code") == 1, missing.stdout  # the advice once, not twice

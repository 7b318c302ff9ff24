"""Stepping into a task: `orchestra path`, `open` and `attach`, with stand-ins for the editor and claude.

The stand-ins are small scripts that record their argv and working directory and change a
file, so the tests see what a person would: where the program ran, what it was given,
and what ended up on the task's branch. `attach` against the real Claude Code CLI is in
tests/e2e/test_tmux.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from conftest import git


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _finished(orch, prompt: str = "work\n@fake write a.txt one\n@fake commit Add a") -> dict:
    tid = orch.submit(prompt)
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task
    return task


def test_path_prints_the_worktree_and_refuses_bad_ids(orch):
    task = _finished(orch)
    out = orch.run("path", task["id"], check=True)
    assert out.stdout == f"{task['worktree']}\n" and Path(out.stdout.strip()).is_dir()
    for bad in ("../etc", "NOPE!", "zzzzzz"):
        proc = orch.run("path", bad)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.startswith("orchestra: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    queued = orch.submit("later")
    proc = orch.run("path", queued)
    assert proc.returncode == 1 and "has not started yet" in proc.stderr


def test_open_runs_the_editor_in_the_worktree_with_an_argv(orch, tmp_path: Path):
    task = _finished(orch)
    record = tmp_path / "editor.log"
    editor = _script(tmp_path / "my editor", f'printf "%s|" "$PWD" "$@" > "{record}"\nexit 7\n')
    orch.env["VISUAL"] = f"'{editor}' --wait"
    orch.env.pop("EDITOR", None)
    proc = orch.run("open", task["id"])
    assert proc.returncode == 7  # the editor's own status
    assert record.read_text() == f"{task['worktree']}|--wait|.|"
    # No editor at all: the shell, started in the worktree.
    del orch.env["VISUAL"]
    orch.env["SHELL"] = str(_script(tmp_path / "sh", f'pwd > "{record}"\n'))
    assert orch.run("open", task["id"]).returncode == 0
    assert record.read_text().strip() == task["worktree"]
    orch.env["SHELL"] = str(tmp_path / "missing-shell")
    proc = orch.run("open", task["id"])
    assert (
        proc.returncode == 1 and proc.stderr == f"orchestra: error: {tmp_path / 'missing-shell'}: command not found\n"
    )


def test_attach_resumes_the_session_then_commits_and_notes_it(orch, tmp_path: Path):
    task = _finished(orch)
    record = tmp_path / "claude.log"
    stand_in = _script(
        tmp_path / "claude",
        f'printf "%s|" "$PWD" "$@" > "{record}"\necho "by hand" > manual.txt\n',
    )
    orch.env["ORCHESTRA_CLAUDE"] = str(stand_in)
    proc = orch.run("attach", task["id"], check=True)
    cwd, *argv, _ = record.read_text().split("|")
    assert cwd == task["worktree"] and argv[:4] == ["--resume", task["session_id"], "--setting-sources", "user"]
    # The person's session keeps the agent's box: settings planted in the checkout are not loaded, and
    # its commands run in the sandbox.
    assert argv[4] == "--settings" and len(argv) == 6
    box = json.loads(argv[5])["sandbox"]
    assert box["enabled"] is True and box["failIfUnavailable"] is True and box["allowUnsandboxedCommands"] is False
    head = git(orch.repo, "rev-parse", task["branch"])
    assert proc.stdout == f"{task['id']}: committed your changes as {head[:10]} on {task['branch']}\n"
    assert git(orch.repo, "show", f"{task['branch']}:manual.txt") == "by hand"
    subject = git(orch.repo, "log", "-1", "--format=%s", task["branch"])
    assert subject == task["title"]  # what the person left, committed under the task's title
    body = git(orch.repo, "log", "-1", "--format=%b", task["branch"])
    assert "orchestra attach" in body and f"Orchestra-Task: {task['id']}" in body
    after = orch.show(task["id"])
    assert after["state"] == "succeeded"
    [session] = after["manual_sessions"]
    assert session["commit"] == head and session["session_id"] == task["session_id"]
    assert session["exit_code"] == 0 and session["stopped_agent"] is False
    assert f"s, committed {head[:10]}" in orch.run("show", task["id"], check=True).stdout
    events = [json.loads(line)["event"] for line in (orch.repo / ".orchestra/events" / f"{task['id']}.jsonl").open()]
    assert events[-1] == "manual_session"
    # Nothing changed the second time: nothing committed, still noted.
    proc = orch.run("attach", task["id"], check=True)
    assert proc.stdout == f"{task['id']}: nothing changed on {task['branch']}\n"
    assert len(orch.show(task["id"])["manual_sessions"]) == 2


def test_attach_exits_with_claudes_failure_after_committing_what_changed(orch, tmp_path: Path):
    task = _finished(orch)
    orch.env["ORCHESTRA_CLAUDE"] = str(
        _script(tmp_path / "claude", 'echo "by hand" > manual.txt\necho "session broke" >&2\nexit 3\n')
    )
    proc = orch.run("attach", task["id"])
    assert proc.returncode == 3, proc
    assert proc.stderr.endswith(f"{task['id']}: claude exited with status 3\n"), proc.stderr
    head = git(orch.repo, "rev-parse", task["branch"])
    assert proc.stdout == f"{task['id']}: committed your changes as {head[:10]} on {task['branch']}\n"
    assert git(orch.repo, "show", f"{task['branch']}:manual.txt") == "by hand"
    assert orch.show(task["id"])["manual_sessions"][0]["exit_code"] == 3


def test_attach_refuses_a_running_task_unless_told_to_stop_it(orch, tmp_path: Path):
    tid = orch.submit("slow\n@fake write started.txt yes\n@fake sleep 60")
    orch.start_worker()
    orch.wait_for(lambda: (orch.repo / ".orchestra/worktrees" / tid / "started.txt").exists(), what="a running agent")
    proc = orch.run("attach", tid)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"orchestra: error: task {tid} is running; 'orchestra attach {tid} --stop' stops its agent first "
        "(work is kept)\n"
    )
    stand_in = _script(tmp_path / "claude", 'echo "$@" > attached.txt\n')
    orch.env["ORCHESTRA_CLAUDE"] = str(stand_in)
    proc = orch.run("attach", tid, "--stop", check=True)
    assert proc.stderr.startswith(f"{tid}: stopped its agent (work kept)\n")
    task = orch.show(tid)
    assert task["state"] == "cancelled" and task["manual_sessions"][0]["stopped_agent"] is True
    attached = git(orch.repo, "show", f"{task['branch']}:attached.txt")
    assert attached.startswith(f"--resume {task['session_id']} --setting-sources user --settings ")
    assert git(orch.repo, "show", f"{task['branch']}:started.txt") == "yes"


def test_attach_refuses_tasks_without_a_session(orch):
    queued = orch.submit("later")
    proc = orch.run("attach", queued)
    assert proc.returncode == 1 and "is queued: it has no session to attach to yet" in proc.stderr
    proc = orch.run("attach", "not/an/id")
    assert proc.returncode == 1 and proc.stderr.startswith("orchestra: error: invalid task id")

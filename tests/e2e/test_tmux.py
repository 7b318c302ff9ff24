"""End to end in a real terminal: tmux drives `orchestra tui` and `orchestra attach` with the REAL Claude Code CLI.

The CLI talks to the local Messages-API stub (fixtures/messages_stub.py), as in
test_e2e_real_claude.py. tmux gives each command a real 80×24 terminal: `send-keys`
types, `capture-pane` reads the screen a person would see. Each test runs its own
tmux server (`-L`), killed at the end. Skipped when tmux is not installed (CI
installs it, see .ci/run) or when the real CLI is not available.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from real_claude import claude_or_skip, messages_stub

ROOT = Path(__file__).resolve().parents[2]


ms = messages_stub()


@pytest.fixture(scope="module")
def claude_bin() -> str:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    return claude_or_skip()


class Terminal:
    """One tmux server with one 80×24 window running one command; what a person sees and types."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"orchestra-test-{uuid.uuid4().hex[:10]}"
        self.tmp_path = tmp_path

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True, timeout=30
        ).stdout

    def start(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        """Run `argv` in the window; when it ends, the window says `EXIT=<status>` and stays."""
        script = self.tmp_path / f"{self.socket}.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.isidentifier())
        script.write_text(
            f"{exports}cd {shlex.quote(str(cwd))}\n{shlex.join(argv)}\necho EXIT=$?\nsleep 600\n", encoding="utf-8"
        )
        self.tmux("-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "sh", str(script))

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    yield term
    term.close()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _make_repo(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    home = tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "e2e@example.com")
    _git(repo, "config", "user.name", "e2e")
    (repo / "README.md").write_text("# e2e repo\n")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "initial commit")
    return repo, home


def _orchestra(env: dict[str, str], repo: Path, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(f"--- orchestra {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _show(env: dict[str, str], repo: Path, task_id: str) -> dict:
    return json.loads(_orchestra(env, repo, "show", task_id, "--json"))


def _env(base_url: str, home: Path, claude_bin: str) -> dict[str, str]:
    env = ms.claude_env(base_url, home, ORCHESTRA_CLAUDE=claude_bin)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env["TERM"] = "xterm-256color"
    return env


@pytest.mark.e2e
def test_tui_in_a_terminal_allows_a_waiting_bash_call_with_a(tmp_path, claude_bin, terminal):
    marker = uuid.uuid4().hex[:8]
    command = f"printf 'approved {marker}' > bash-effect.txt"
    repo, home = _make_repo(tmp_path)
    (repo / ".orchestra").mkdir()
    (repo / ".orchestra" / "config.toml").write_text('[permissions.implementer]\nask = ["Bash"]\n')
    stub = ms.MessagesStub({"vars": {"command": command}})
    env = _env(stub.start(), home, claude_bin)
    worker = None
    try:
        task_id = _orchestra(
            env, repo, "submit", "--role", "implementer", "--no-start", "[[scenario:bash]] Run the command."
        ).strip()
        worker = subprocess.Popen(
            [sys.executable, "-m", "orchestra", "worker"],
            cwd=repo,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        terminal.start([sys.executable, "-m", "orchestra", "tui"], cwd=repo, env=env)
        screen = terminal.wait_for(lambda s: f"{task_id}  WAITING" in s, "the task to wait for a person", 120)
        print("--- the screen while the agent waits:\n" + screen)
        assert "1 waiting for you" in screen and f"{task_id} asks: Bash: {command}" in screen
        assert not (repo / ".orchestra" / "worktrees" / task_id / "bash-effect.txt").exists()
        terminal.keys("a")
        screen = terminal.wait_for(lambda s: f"{task_id}  succeeded" in s, "the task to succeed", 120)
        print("--- the screen after a:\n" + screen)
        assert f"{task_id} allowed" in screen and "0 waiting for you" in screen
        terminal.keys("q")
        screen = terminal.wait_for(lambda s: "EXIT=0" in s, "orchestra tui to quit")
        assert "WAITING" not in screen and "succeeded" not in screen  # the screen it drew is gone
    finally:
        if worker is not None:
            if worker.poll() is None:
                os.killpg(worker.pid, 15)
            print("--- worker output:\n" + (worker.communicate(timeout=30)[0] or ""))
        stub.stop()
    task = _show(env, repo, task_id)
    assert task["state"] == "succeeded" and task["permission_denials"] in ([], None)
    assert _git(repo, "show", f"{task['branch']}:bash-effect.txt") == f"approved {marker}"


def _trust(home: Path, folder: Path) -> None:
    """What a person clicks through once on a new machine: onboarding, the API key, trusting the folder."""
    path = home / ".claude.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["hasCompletedOnboarding"] = True
    data["customApiKeyResponses"] = {"approved": ["sk-test-dummy"[-20:]], "rejected": []}
    data.setdefault("projects", {})[str(folder)] = {"hasTrustDialogAccepted": True}
    path.write_text(json.dumps(data))


@pytest.mark.e2e
def test_attach_resumes_the_real_session_and_commits_what_changed(tmp_path, claude_bin, terminal):
    script = {
        "scenarios": {
            "attach": [
                {"text": "Ready when you are."},
                {
                    "text": "Writing it.",
                    "tool_use": {
                        "name": "Write",
                        "input": {"file_path": "{{cwd}}/manual.txt", "content": "typed by a person\n"},
                    },
                },
                {"text": "Wrote manual.txt."},
            ]
        }
    }
    repo, home = _make_repo(tmp_path)
    stub = ms.MessagesStub(script)
    env = _env(stub.start(), home, claude_bin)
    try:
        task_id = _orchestra(
            env, repo, "submit", "--role", "implementer", "--no-start", "[[scenario:attach]] Get ready."
        ).strip()
        _orchestra(env, repo, "worker", "--until-idle", timeout=180)
        task = _show(env, repo, task_id)
        assert task["state"] == "succeeded" and task["session_id"], task
        head_before = _git(repo, "rev-parse", task["branch"])
        _trust(home, Path(task["worktree"]))

        terminal.start([sys.executable, "-m", "orchestra", "attach", task_id], cwd=repo, env=env)
        screen = terminal.wait_for(lambda s: "Ready when you are." in s and "❯" in s, "the resumed session", 90)
        print("--- the resumed session:\n" + screen)
        time.sleep(1)  # the prompt takes keys once it has drawn
        terminal.keys("please write manual.txt")
        terminal.keys("Enter")
        screen = terminal.wait_for(lambda s: "Wrote manual.txt." in s, "the model's answer", 90)
        terminal.keys("/exit")
        time.sleep(0.5)
        terminal.keys("Enter")
        screen = terminal.wait_for(lambda s: "EXIT=0" in s, "attach to end", 60)
        print("--- after leaving the session:\n" + screen)
        assert f"{task_id}: committed your changes as " in screen
    finally:
        stub.stop()
    after = _show(env, repo, task_id)
    assert _git(repo, "show", f"{after['branch']}:manual.txt") == "typed by a person"
    assert _git(repo, "rev-parse", f"{after['branch']}~1") == head_before
    [session] = after["manual_sessions"]
    assert session["session_id"] == task["session_id"] and session["exit_code"] == 0
    assert session["commit"] == _git(repo, "rev-parse", after["branch"])
    # The stub saw the same session continue, with the person's line.
    sessions = {r["headers"].get("X-Claude-Code-Session-Id") for r in stub.requests if r["route"] == "/v1/messages"}
    assert task["session_id"] in sessions
    assert any("please write manual.txt" in t for body in stub.message_requests() for t in ms.user_texts(body))


def test_o_opens_the_editor_in_the_tasks_worktree_and_comes_back(orch, terminal):
    """`o` leaves the screen for $EDITOR in the selected task's checkout, and the screen comes back after it.

    A real terminal is needed (the headless test driver cannot suspend); the agent is the fake claude."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    tid = orch.submit("write it\n@fake write w.txt w\n@fake commit add w")
    orch.run("worker", "--until-idle", check=True)
    where = orch.run("path", tid, check=True).stdout.strip()
    seen = terminal.tmp_path / "editor-saw.txt"
    editor = terminal.tmp_path / "editor"
    editor.write_text(f'#!/bin/sh\nprintf "%s|%s" "$(pwd)" "$*" > {shlex.quote(str(seen))}\n')
    editor.chmod(0o755)
    env = dict(orch.env, EDITOR=f"{editor} --wait", TERM="xterm-256color")
    env.pop("VISUAL", None)
    terminal.start([sys.executable, "-m", "orchestra", "tui"], cwd=orch.repo, env=env)
    terminal.wait_for(lambda s: f"{tid}  succeeded" in s, "the task on the screen")
    terminal.keys("o")
    screen = terminal.wait_for(lambda s: f"back from {tid}'s worktree" in s, "the screen to come back")
    assert f"{tid}  succeeded" in screen
    assert seen.read_text() == f"{os.path.realpath(where)}|--wait ."
    terminal.keys("q")
    terminal.wait_for(lambda s: "EXIT=0" in s, "orchestra tui to quit")

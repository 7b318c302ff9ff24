"""Shared fixtures: real temporary git repositories and orchestra run as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_CLAUDE = ROOT / "fixtures" / "fake_claude"
TRANSCRIPTS = ROOT / "fixtures" / "transcripts"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    (path / "README.md").write_text("# demo\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial commit")
    return path


@dataclass
class Orch:
    """Runs `python -m orchestra` in a repository with the fake claude, as a user would."""

    repo: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120, cwd: Path | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestra", *args],
            cwd=cwd or self.repo,
            env=self.env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"orchestra {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def submit(self, prompt: str, *args: str) -> str:
        proc = self.run("submit", "--no-start", *args, prompt, check=True)
        return proc.stdout.strip()

    def show(self, task_id: str) -> dict[str, Any]:
        return json.loads(self.run("show", task_id, "--json", check=True).stdout)

    def work(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("worker", "--until-idle", *args, timeout=timeout)

    def start_worker(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestra", "worker", *args],
            cwd=self.repo,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def wait_for(self, predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def state(self, task_id: str) -> str:
        return self.show(task_id)["state"]

    def close(self) -> None:
        """Kill what the test started: its workers and any agent still running in the repo."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _kill_leftover_agents(self.repo)

    def invocations(self) -> list[dict[str, Any]]:
        path = Path(self.env["FAKE_CLAUDE_LOG"])
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def orch(repo: Path, tmp_path: Path) -> Any:
    o = make_orch(repo, tmp_path)
    yield o
    o.close()


def make_orch(repo: Path, tmp_path: Path) -> Orch:
    """An Orch for `repo` whose fake claude keeps its logs and state under `tmp_path`."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("ORCHESTRA_", "FAKE_CLAUDE_")):
            del env[key]
    env.update(
        {
            "HOME": str(home),
            "ORCHESTRA_CLAUDE": str(FAKE_CLAUDE),
            "FAKE_CLAUDE_LOG": str(tmp_path / "fake-invocations.jsonl"),
            "FAKE_CLAUDE_STATE": str(tmp_path / "fake-state"),
            "PYTHONPATH": str(ROOT),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
    )
    return Orch(repo=repo, env=env)


def _kill_leftover_agents(repo: Path) -> None:
    """Agents outlive schedulers by design; tests must not leave them behind."""
    marker = f"ORCHESTRA_REPO={repo}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if marker in env:
            try:
                os.killpg(int(name), signal.SIGKILL)
            except OSError:
                try:
                    os.kill(int(name), signal.SIGKILL)
                except OSError:
                    pass


def plant_half_made_worktree(repo: Path, name: str, wt: Path) -> Path:
    """What a `git worktree add` killed while writing its metadata leaves: locked, empty commondir."""
    admin = repo / ".git" / "worktrees" / name
    admin.mkdir(parents=True)
    (admin / "locked").write_text("initializing")
    (admin / "gitdir").write_text(f"{wt}/.git\n")
    (admin / "commondir").write_text("")
    wt.mkdir(parents=True)
    (wt / ".git").write_text(f"gitdir: {admin}\n")
    return admin

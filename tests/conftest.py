"""Shared fixtures: real temporary git repositories, and orchestra run as a user runs it.

`Orch.run` calls the CLI's entry point (`orchestra.ui.cli.main`) in this process, with
this Orch's environment, working directory and an empty stdin, and returns what a
`subprocess.run` of `python -m orchestra` would: exit status, stdout and stderr. That
is the same code a real process runs, without paying a Python start per command.
`Orch.run_process` runs the real `python -m orchestra`; tests whose subject is a
process use it (or `start_worker`): crash points that SIGKILL the process, signals,
the exit status and stderr of the real binary, `serve`. ORCHESTRA_TESTS_SUBPROCESS=1
makes `run` use a real process too, to check that both ways agree.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_CLAUDE = ROOT / "fixtures" / "fake_claude"
TRANSCRIPTS = ROOT / "fixtures" / "transcripts"
ALWAYS_SUBPROCESS = os.environ.get("ORCHESTRA_TESTS_SUBPROCESS", "") not in ("", "0")
# Only a process can be killed at a crash point or serve MCP on its stdio.
_PROCESS_ONLY_ENV = "ORCHESTRA_TEST_CRASH_AT"
_PROCESS_ONLY_COMMANDS = frozenset({"serve"})


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (the default, see pyproject.toml): two workers per core, at most eight.

    Most tests wait on git, agents and timers rather than compute, so one worker per
    core leaves the cores idle half the time.
    """
    return min(2 * (os.cpu_count() or 1), 8)


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own, which marks the grouped tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first: the Ray cluster's group, then the other slow tests, then the rest.

    With xdist the wall time is that of the busiest worker, and the cluster group runs on
    one worker for minutes: started last, everyone else would wait for it. That group must
    stay on one worker (one cluster), so a pytest that spreads it is refused: pytest-xdist
    marks a grouped test by appending `@group` to its node id, which pytest 9.2 ignores.
    """
    if getattr(config.option, "loadgroup", False):
        for item in items:
            if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
                raise pytest.UsageError(
                    "pytest-xdist cannot group tests with this pytest (see the pin in pyproject.toml)"
                )

    def weight(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        if group is not None and group.args and group.args[0] == "ray-cluster":
            return 0
        return 1 if item.get_closest_marker("slow") is not None else 2

    items.sort(key=weight)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


_repo_template: Path | None = None


def _init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    (path / "README.md").write_text("# demo\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial commit")
    return path


def make_repo(path: Path) -> Path:
    """A repository with one commit (README.md) on `main`: a copy of one made once per test process."""
    if _repo_template is None:
        return _init_repo(path)
    shutil.copytree(_repo_template, path, symlinks=True, dirs_exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def _make_repo_template(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Five git commands once per test process instead of once per repository."""
    global _repo_template
    _repo_template = _init_repo(tmp_path_factory.mktemp("repo-template") / "repo")
    yield
    _repo_template = None


@pytest.fixture(scope="session", autouse=True)
def _python3_without_a_shim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`python3` on PATH is this interpreter itself, for everything the tests start.

    fixtures/fake_claude runs through `#!/usr/bin/env python3`; where that finds a
    version manager's shim (pyenv's is a bash script that runs `pyenv exec`), every
    agent run costs 0.2 s more wall time and three times the CPU. Hundreds of agent
    runs make that a minute of the suite.
    """
    bin_dir = tmp_path_factory.mktemp("python3-bin")
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{saved}"
    yield
    os.environ["PATH"] = saved


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # what the interpreter does with sys.exit("text")
    return 1


def _join_new_threads(before: set[threading.Thread], timeout: float = 10) -> None:
    """A command is over when the threads it started are: none may run on into the next test."""
    deadline = time.monotonic() + timeout
    for thread in set(threading.enumerate()) - before:
        thread.join(max(deadline - time.monotonic(), 0))
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    if left:
        raise AssertionError(f"threads still running after the command returned: {', '.join(left)}")


def run_in_process(
    args: tuple[str, ...], *, env: dict[str, str], cwd: Path, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`orchestra ARGS` through the entry point of the CLI, as a process would run it.

    What a process would keep to itself is set up and put back afterwards: the
    environment, the working directory, stdin/stdout/stderr (click's CliRunner
    isolation), the signal handlers and the secret redactor. An exception that escapes
    the entry point becomes what the interpreter would make of it: a traceback on
    stderr and exit status 1.
    """
    from click.testing import CliRunner

    from orchestra.core import redact
    from orchestra.ui.cli import main

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_redactor = redact.current()
    saved_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    threads_before = set(threading.enumerate())
    code = 0
    os.environ.clear()
    os.environ.update(env)
    try:
        os.chdir(cwd)
        with CliRunner().isolation(input=input) as (out, err, _both):
            try:
                main(list(args))
            except SystemExit as exc:
                code = _exit_status(exc.code)
            except Exception:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            _join_new_threads(threads_before)  # a scheduler's runners, say: they log to this stderr
            stdout = out.getvalue().decode("utf-8", "replace")
            stderr = err.getvalue().decode("utf-8", "replace")
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        redact.install(saved_redactor)
        for sig, handler in saved_handlers.items():
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
    return subprocess.CompletedProcess(["orchestra", *args], code, stdout, stderr)


@dataclass
class Orch:
    """Runs orchestra in a repository with the fake claude, as a user would."""

    repo: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120, cwd: Path | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`orchestra ARGS`, in this process (see the module docstring); `timeout` binds only a real process."""
        if ALWAYS_SUBPROCESS:
            return self.run_process(*args, input=input, timeout=timeout, cwd=cwd, check=check)
        if _PROCESS_ONLY_ENV in self.env or (args and args[0] in _PROCESS_ONLY_COMMANDS):
            raise AssertionError(f"orchestra {' '.join(args)} must run as a process: use Orch.run_process")
        proc = run_in_process(args, env=self.env, cwd=cwd or self.repo, input=input)
        return self._checked(proc, args, check)

    def run_process(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`python -m orchestra ARGS` as a real process (stdin /dev/null unless `input` is given)."""
        proc = subprocess.run(
            [sys.executable, "-m", "orchestra", *args],
            cwd=cwd or self.repo,
            env=self.env if env is None else env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return self._checked(proc, args, check)

    @staticmethod
    def _checked(
        proc: subprocess.CompletedProcess[str], args: tuple[str, ...], check: bool
    ) -> subprocess.CompletedProcess[str]:
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

    def crash_at(
        self, point: str, *args: str, input: str | None = None, why: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`orchestra ARGS` as a real process, killed by itself at crash point `point` (SIGKILL);
        the test fails when the command never got there."""
        proc = subprocess.run(
            [sys.executable, "-m", "orchestra", *args],
            cwd=self.repo,
            env=dict(self.env, ORCHESTRA_TEST_CRASH_AT=point),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == -signal.SIGKILL, (
            f"{why}orchestra {' '.join(args)} never reached {point}: {proc.stdout}\n{proc.stderr}"
        )
        return proc

    def start_worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestra", "worker", *args],
            cwd=self.repo,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """`python -m orchestra ARGS` started in its own session, not awaited (stdout and stderr piped).

        SIGINT is as a shell leaves it for the programs it starts: a test run in the
        background inherits it ignored, and no Ctrl-C (`os.killpg(proc.pid, SIGINT)`) would reach it.
        """
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestra", *args],
            cwd=self.repo,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        _kill_leftover_agents(self.repo)
        _kill_background_scheduler(self.repo)

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


def _kill_background_scheduler(repo: Path) -> None:
    """A scheduler that submit, retry or the screen started idles for idle_exit (5 min) after its test."""
    from orchestra.store.paths import Paths
    from orchestra.store.scheduler import scheduler_pid

    try:
        pid = scheduler_pid(Paths(repo))
    except Exception:  # a test that broke its repository's state on purpose
        return
    # Never this process: a test's in-process scheduler (a thread) that still holds the claim names it,
    # and when pytest leads its process group (run from a shell without xdist) killpg ended the run.
    if pid and pid > 0 and pid != os.getpid():
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


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


def processes_running(argv: list[str]) -> list[int]:
    """Pids whose command line is exactly `argv` (a gate may run in a sandbox's own pid namespace)."""
    want = "\0".join(argv) + "\0"
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().decode(errors="replace") == want:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


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

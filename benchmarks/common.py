"""Shared pieces of the benchmarks: temp repositories, running orchestra, reporting.

Every benchmark runs orchestra the way a user does (a fresh `python -m orchestra`
process per command, the worktree's package first on PYTHONPATH) in a throw-away
repository, and reports a figure next to its target. Missing a target is printed
as MISSED and is not an error; a benchmark whose work went wrong raises BenchError.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FAKE_CLAUDE = ROOT / "fixtures" / "fake_claude"
INSTANT_CLAUDE = ROOT / "benchmarks" / "instant_claude"
PYTHON = sys.executable

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class BenchError(Exception):
    """The benchmark's own work failed (not a missed target)."""


@dataclass
class Result:
    name: str
    figure: str  # the headline, e.g. "1.08x"
    value: float | None = None
    target: float | None = None  # an upper bound; None when there is no target
    unit: str = ""
    details: list[str] = field(default_factory=list)
    judged: bool = True  # False for --check-only runs, where sizes are too small to judge

    @property
    def verdict(self) -> str:
        if self.target is None or self.value is None:
            return "-"
        if not self.judged:
            return "not judged (check only)"
        return "met" if self.value <= self.target else "MISSED"

    def target_text(self) -> str:
        return "-" if self.target is None else f"<= {self.target:g}{self.unit}"

    def print(self) -> None:
        print(f"== {self.name}: {self.figure}  (target {self.target_text()}: {self.verdict})")
        for line in self.details:
            print(f"   {line}")
        sys.stdout.flush()


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes, for a fast look.")
    parser.add_argument(
        "--check-only", action="store_true", help="Tiny sizes: prove the benchmark works; targets are not judged."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the temp directory (its path is printed).")
    return parser


def pick(args: argparse.Namespace, full: Any, quick: Any, check: Any) -> Any:
    """The size for this run unless the user gave one."""
    if args.check_only:
        return check
    return quick if args.quick else full


@contextmanager
def workdir(keep: bool = False, prefix: str = "orchestra-bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        kill_agents(path)
        if keep:
            print(f"   (kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: int = 20) -> Path:
    """A small repository with a few files and one commit, identity configured."""
    path.mkdir(parents=True)
    run_git(path, "init", "-q", "-b", "main")
    run_git(path, "config", "user.email", "bench@example.com")
    run_git(path, "config", "user.name", "Bench")
    (path / "README.md").write_text("# bench\n")
    src = path / "src"
    src.mkdir()
    for i in range(files):
        (src / f"mod{i}.py").write_text(f"def f{i}():\n    return {i}\n" * 20)
    run_git(path, "add", "-A")
    run_git(path, "commit", "-q", "-m", "initial commit")
    return path


_PYCACHE: Path | None = None


def pycache() -> Path:
    """A bytecode cache for this benchmark run, warmed once.

    A pip-installed orchestra has .pyc files; a source checkout run with
    PYTHONDONTWRITEBYTECODE=1 (as this machine's environment sets) recompiles every
    module on every command, which would add tens of ms to each whole-process time.
    """
    global _PYCACHE
    if _PYCACHE is None:
        _PYCACHE = Path(tempfile.mkdtemp(prefix="orchestra-bench-pycache-"))
        atexit.register(shutil.rmtree, _PYCACHE, True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"PYTHONPYCACHEPREFIX": str(_PYCACHE), "PYTHONPATH": str(ROOT)})
        modules = "orchestra.ui.main, orchestra.app, orchestra.engine.scheduler, orchestra.ui.views, orchestra.agent.transcript"
        subprocess.run([PYTHON, "-c", f"import {modules}, filelock, json, uuid"], env=env, check=True)
    return _PYCACHE


def bench_env(tmp: Path, claude: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORCHESTRA_", "FAKE_CLAUDE_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        {
            "PYTHONPYCACHEPREFIX": str(pycache()),
            "HOME": str(home),
            "ORCHESTRA_CLAUDE": str(claude),
            "FAKE_CLAUDE_STATE": str(tmp / "fake-state"),
            "PYTHONPATH": str(ROOT),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
    )
    return env


FINAL_STATES_MIX = ["succeeded"] * 17 + ["failed", "cancelled", "timed_out"]


def finished_task_file(paths: Any, task_id: str, i: int, base: str, created: float, **extra: Any) -> None:
    """Task number `i` as months of use leave it (ended, with spend and a result), written directly.

    One shape for every benchmark that grows a history, so their figures describe the same tasks.
    """
    from orchestra.core.task import State, Task
    from orchestra.store.files import write_atomic

    state = State(FINAL_STATES_MIX[i % len(FINAL_STATES_MIX)])
    title = f"Task {i}: implement part {i} of the feature"
    task = Task(
        id=task_id,
        prompt=f"{title}\n\nDetails of what to do for part {i}, as a person would write them. " * 3,
        role=("implementer", "tester", "reviewer", "generalist")[i % 4],
        title=title,
        priority=i % 5,
        base_sha=base,
        branch=f"orchestra/{task_id}-task-{i}",
        worktree=str(paths.worktree(task_id)),
        state=state,
        attempts=1,
        session_id=str(uuid.UUID(int=i + 1)),
        created_at=created,
        updated_at=created + 300,
        started_at=created + 5,
        finished_at=created + 300,
        exit_code=0 if state == State.SUCCEEDED else 1,
        error=None if state == State.SUCCEEDED else f"{state} for a reason",
        cost_usd=round(0.05 + (i % 17) * 0.013, 6),
        num_turns=3 + i % 11,
        result=f"Implemented part {i}; tests pass. " * 4,
        **extra,
    )
    data = json.dumps(task.to_dict(), indent=1, sort_keys=True).encode("utf-8")
    write_atomic(paths.task_file(task_id), data, durable=False)


def orchestra_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "orchestra", *args]


def orchestra(repo: Path, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        orchestra_argv(*args),
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise BenchError(f"orchestra {' '.join(args[:2])} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def submit(repo: Path, env: dict[str, str], prompt: str, *args: str) -> str:
    return orchestra(repo, env, "submit", "--no-start", *args, prompt).stdout.strip()


def status_counts(repo: Path, env: dict[str, str]) -> dict[str, int]:
    return json.loads(orchestra(repo, env, "status", "--json").stdout)["counts"]


def expect_all_succeeded(repo: Path, env: dict[str, str], n: int) -> None:
    counts = status_counts(repo, env)
    if counts.get("succeeded") != n or sum(counts.values()) != n:
        raise BenchError(f"expected {n} succeeded tasks, got {counts}")


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's waited-for children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(argv: Sequence[str], **kwargs: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    proc = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    return time.perf_counter() - t0, proc


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def agent_pids(under: Path, live_only: bool = False) -> list[int]:
    """Agents orchestra started for a repository under `under` (by their ORCHESTRA_REPO marker)."""
    prefix = f"ORCHESTRA_REPO={under}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            if live_only:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        continue
        except (OSError, IndexError):
            continue
        if any(e.startswith(prefix) for e in env):
            pids.append(int(name))
    return pids


def kill_agents(tmp: Path) -> None:
    """Agents outlive schedulers by design; a benchmark must not leave any behind."""
    for pid in agent_pids(tmp):
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
                break
            except OSError:
                continue


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """End a process this benchmark started (and its session), politely first."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait()


def run_main(run: Any, parser: argparse.ArgumentParser) -> None:
    """Entry point of a standalone benchmark script."""
    args = parser.parse_args()
    try:
        results = run(args)
    except BenchError as exc:
        print(f"benchmark error: {exc}", file=sys.stderr)
        sys.exit(1)
    for result in results:
        result.print()
    sys.exit(0)

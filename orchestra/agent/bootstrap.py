"""Making a fresh task worktree usable: untracked files copied in, a setup command run.

A worktree holds only what git tracks, so `.env` files, local config and similar
are missing. `copy` brings named ones over from the main worktree, refusing
anything that leads outside the repository (paths with `..`, symlinks pointing
out); `setup` is the user's own command, run with task data in the environment
only. Copied paths are remembered so orchestra's closing commit leaves them out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from orchestra.agent import processes, sandbox
from orchestra.core.config import Config
from orchestra.core.errors import OrchestraError
from orchestra.core.task import Task
from orchestra.git import workspace

OUTPUT_LIMIT = 2000


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def copy_files(root: Path, worktree: Path, entries: list[str]) -> list[str]:
    """Copy the listed untracked files or directories; returns the paths copied."""
    real_root = root.resolve()
    real_wt = worktree.resolve()
    copied: list[str] = []
    for rel in entries:
        source = root / rel
        if not os.path.lexists(source):
            continue
        real_source = source.resolve()
        if not _inside(real_source, real_root) or _inside(real_source, real_root / ".orchestra"):
            raise OrchestraError(f"copy: {rel} leads outside the repository; refusing to copy it")
        target = worktree / rel
        if not _inside(target.parent.resolve(), real_wt):
            raise OrchestraError(f"copy: {rel} would land outside the task worktree")
        if os.path.lexists(target):
            continue  # tracked on the branch, or already copied: the branch's version wins
        if real_source.is_dir():
            _check_tree(real_source, real_root, rel)
            shutil.copytree(real_source, target, symlinks=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(real_source, target)
        copied.append(rel)
    return copied


def _check_tree(directory: Path, root: Path, rel: str) -> None:
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink() and not _inside(path.resolve(), root):
                raise OrchestraError(f"copy: {rel} holds a symlink leading outside the repository ({name})")


def run_setup(config: Config, task: Task, root: Path, worktree: Path) -> None:
    """Run `setup` in the worktree; its failure fails the task with the command's output."""
    env = dict(os.environ)
    env.update(
        {
            "ORCHESTRA_TASK_ID": task.id,
            "ORCHESTRA_TASK_ROLE": task.role,
            "ORCHESTRA_TASK_BRANCH": task.branch,
            "ORCHESTRA_WORKTREE": str(worktree),
            "ORCHESTRA_MAIN_WORKTREE": str(root),
        }
    )
    # ORCHESTRA_REPO plus ORCHESTRA_TASK_ID is how a restarted scheduler recognises an agent.
    env.pop("ORCHESTRA_REPO", None)
    argv = ["sh", "-c", config.setup]
    tmp = Path(tempfile.mkdtemp(prefix="orchestra-setup-"))
    try:
        if config.sandbox == sandbox.REQUIRED:
            # The checkout may hold an agent's branch (a tester's): its package scripts run confined.
            env["TMPDIR"] = str(tmp)
            argv = sandbox.confine(
                argv, worktree, tmp, list(config.sandbox_allow_write), network=bool(config.sandbox_allow_domains)
            )
        code, out = processes.run_captured(argv, worktree, env, float(config.setup_timeout))
    except OSError as exc:
        raise OrchestraError(f"setup command could not start: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if code == 0:
        return
    out = out.strip()
    if len(out) > OUTPUT_LIMIT:
        out = "…" + out[-OUTPUT_LIMIT:]
    how = f"timed out after {config.setup_timeout:.0f}s" if code is None else f"exited with code {code}"
    raise OrchestraError(f"setup command {how}" + (f": {out}" if out else ""))


def prepare(config: Config, task: Task, root: Path, worktree: Path) -> list[str]:
    """Copy, then set up; returns the paths copied in or made by setup (a venv, a build), never committed."""
    copied = copy_files(root, worktree, list(config.copy)) if config.copy else []
    if config.setup:
        copied += setup_in(config, task, root, worktree)
    return copied


def setup_in(config: Config, task: Task, root: Path, worktree: Path) -> list[str]:
    """Run setup; returns the new untracked paths it made, which are the environment, not the agent's work."""
    before = set(workspace.untracked(worktree))
    run_setup(config, task, root, worktree)
    return [p for p in workspace.untracked(worktree) if p not in before]

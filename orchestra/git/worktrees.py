"""Task checkouts: making, finding, committing in and removing them.

A branch is a task's output and outlives its checkout; a checkout is only a place
to work, made again from the branch when it is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from orchestra.core.errors import GitError
from orchestra.core.task import slugify
from orchestra.git.repo import git_common_dir
from orchestra.git.runner import git


def branch_name(prefix: str, task_id: str, title: str) -> str:
    return f"{prefix}{task_id}-{slugify(title, 40)}"


def ensure_worktree(repo: Path, path: Path, branch: str, base_sha: str) -> None:
    """Give the task a checkout of its branch, creating the branch from `base_sha` if new."""
    if path.is_symlink():
        raise GitError(f"refusing to use {path}: it is a symlink")
    with WORKTREE_ADMIN_LOCK:
        _ensure_worktree(repo, path, branch, base_sha)


# Two `git worktree add`s at once race: one can read the other's still empty `commondir`
# and die ("failed to read .../commondir"), and a prune beside an add can remove the new
# metadata. The scheduler is the one process that adds worktrees; its threads take turns.
WORKTREE_ADMIN_LOCK = threading.RLock()


def _ensure_worktree(repo: Path, path: Path, branch: str, base_sha: str) -> None:
    for half in interrupted_adds(repo, path.parent, name=path.name):
        if os.path.realpath(half.path) == os.path.realpath(path):
            # Killed before its checkout finished, the worktree would look like every file was
            # deleted, and committing leftovers would record that. No agent ran in it yet.
            clear_interrupted_add(half)
    if (path / ".git").exists():
        proc = git(path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        if proc.stdout.strip() == branch:
            return
        raise GitError(f"worktree {path} is not on branch {branch}")
    if path.exists() and any(path.iterdir()):
        raise GitError(f"{path} exists and is not a worktree of this repository; move it away")
    args = ["worktree", "add", "--quiet", "-b", branch, str(path), base_sha]
    proc = git(repo, *args, check=False)
    if proc.returncode != 0 and f"a branch named '{branch}' already exists" in proc.stderr:
        # A retried or resumed task: its branch exists and keeps its commits. Trying
        # the new-branch form first spares every new task a separate `show-ref`.
        args = ["worktree", "add", "--quiet", str(path), branch]
        proc = git(repo, *args, check=False)
    if proc.returncode != 0 and ("already registered" in proc.stderr or "already checked out" in proc.stderr):
        # A worktree directory deleted by hand stays registered until pruned. Pruning is
        # done only here: run beside another `worktree add` it can remove that one's metadata.
        git(repo, "worktree", "prune")
        proc = git(repo, *args, check=False)
    if proc.returncode != 0:
        raise GitError(f"git worktree add failed: {proc.stderr.strip() or proc.stdout.strip()}")


@dataclass(frozen=True)
class HalfMadeWorktree:
    """A `git worktree add` that died half way (git leaves it locked "initializing")."""

    admin: Path  # <git common dir>/worktrees/<name>
    path: Path  # the checkout it was making


def interrupted_adds(repo: Path, under: Path, name: str | None = None) -> list[HalfMadeWorktree]:
    """Half-made worktrees inside `under`, found on disk because git itself may fail to read them.

    Killed while writing its metadata, `git worktree add` can leave an empty `commondir`
    that makes every later `git worktree add`, `list` and `branch` die, and `prune`
    skips it because it is locked. Only call this when no add into `under` is under way.
    """
    base = git_common_dir(repo) / "worktrees"
    try:
        # git names the metadata after the checkout's directory (plus a number on a clash).
        candidates = [p for p in base.iterdir() if name is None or p.name == name or p.name.startswith(name)]
        admins = sorted(p for p in candidates if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    found = []
    for admin in admins:
        try:
            if (admin / "locked").read_text().strip() != "initializing":
                continue
        except OSError:
            continue
        try:
            path = Path((admin / "gitdir").read_text().strip()).parent
        except OSError:
            path = under / admin.name  # git names the admin directory after the checkout
        if os.path.realpath(path.parent) == os.path.realpath(under):
            found.append(HalfMadeWorktree(admin=admin, path=path))
    return found


def clear_interrupted_add(half: HalfMadeWorktree) -> None:
    """Remove a half-made worktree and its metadata; no agent ever ran in it.

    The checkout is removed only when it is a real directory whose `.git` names this
    metadata (or that is empty): a symlink or someone else's files are left alone.
    """
    path = half.path
    if path.is_dir() and not path.is_symlink():
        try:
            entries = os.listdir(path)
            ours = not entries or _gitfile_target(path / ".git") == os.path.realpath(half.admin)
        except OSError:
            ours = False
        if ours:
            shutil.rmtree(path)
    shutil.rmtree(half.admin)


def _gitfile_target(gitfile: Path) -> str | None:
    try:
        if gitfile.is_symlink() or not gitfile.is_file():
            return None
        text = gitfile.read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    return os.path.realpath(text.removeprefix("gitdir:").strip())


def commit_leftovers(
    path: Path, message: str, identity: dict[str, str], exclude: list[str] | None = None
) -> str | None:
    """Commit whatever the agent left uncommitted; returns the new commit or None.

    `exclude` names paths orchestra copied in (e.g. `.env`): they never reach the branch.
    """
    if path.is_symlink() or not (path / ".git").exists():
        return None
    git(path, "add", "--all", "--", ".", *(f":(exclude,literal){p}" for p in exclude or []))
    proc = git(
        path, "-c", "core.abbrev=40", "commit", "--no-verify", "--no-status", "-m", message, check=False, env=identity
    )
    if proc.returncode != 0:
        if git(path, "diff", "--cached", "--quiet", check=False).returncode == 0:
            return None  # nothing to commit
        raise GitError(f"could not commit the agent's changes in {path}: {proc.stderr.strip() or proc.stdout.strip()}")
    # "[branch <sha>] message" names the commit; asking git again would cost a process per task.
    m = _COMMIT_LINE.match(proc.stdout)
    return m.group(1) if m else git(path, "rev-parse", "HEAD").stdout.strip()


_COMMIT_LINE = re.compile(r"^\[.*? (?:\(root-commit\) )?([0-9a-f]{40})\]")


def list_worktrees(repo: Path) -> dict[Path, str | None]:
    """Every registered worktree and the branch checked out there (None when detached): one parser."""
    out: dict[Path, str | None] = {}
    path: Path | None = None
    for line in git(repo, "worktree", "list", "--porcelain", check=False).stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
            out[path] = None
        elif line.startswith("branch ") and path is not None:
            out[path] = line[len("branch ") :].removeprefix("refs/heads/")
    return out


def checked_out_in(repo: Path, branch: str) -> Path | None:
    for path, b in list_worktrees(repo).items():
        if b == branch:
            return path
    return None


def uncommitted(path: Path, untracked: bool = False) -> list[str]:
    args = ["status", "--porcelain", f"--untracked-files={'all' if untracked else 'no'}"]
    return [line[3:] for line in git(path, *args).stdout.splitlines() if line.strip()]


def remove(repo: Path, path: Path, force: bool = False) -> tuple[bool, str]:
    proc = git(repo, "worktree", "remove", *(["--force"] if force else []), str(path), check=False)
    return proc.returncode == 0, proc.stderr.strip()


def prune(repo: Path) -> None:
    git(repo, "worktree", "prune", check=False)


def add_detached(repo: Path, path: Path, sha: str) -> None:
    with WORKTREE_ADMIN_LOCK:
        git(repo, "worktree", "add", "--quiet", "--detach", str(path), sha)

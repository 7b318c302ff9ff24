"""Finding the repository orchestra works on, and the identity its own commits use."""

from __future__ import annotations

import os
from pathlib import Path

from orchestra.core.errors import NotARepository
from orchestra.git.runner import git


def find_root(start: Path | None = None) -> Path:
    """The main worktree of the repository containing `start` (task worktrees lead there too)."""
    start = Path(start or os.getcwd())
    if not start.is_dir():
        raise NotARepository(f"not a directory: {start}")
    proc = git(start, "rev-parse", "--path-format=absolute", "--git-common-dir", "--is-bare-repository", check=False)
    if proc.returncode != 0:
        raise NotARepository(f"not a git repository: {start}")
    lines = proc.stdout.splitlines()
    common = Path(lines[0])
    if lines[1].strip() == "true":
        raise NotARepository(f"{common} is a bare repository; orchestra needs a working tree")
    if common.name == ".git":
        root = common.parent
    else:
        proc = git(start, "worktree", "list", "--porcelain")
        first = proc.stdout.splitlines()[:3]
        if any(line == "bare" for line in first) or not first:
            raise NotARepository(f"{common} is a bare repository; orchestra needs a working tree")
        root = Path(first[0].removeprefix("worktree "))
    return _outside_task_checkouts(root)


def worktree_of(start: Path, root: Path) -> Path:
    """The working tree a command was started in: `root`, or a linked worktree of it (never a task's checkout).

    A task submitted from a linked worktree starts from that worktree's HEAD and goes back to its branch."""
    proc = git(start, "rev-parse", "--path-format=absolute", "--show-toplevel", check=False)
    top = proc.stdout.strip()
    if proc.returncode != 0 or not top:
        return root
    here = _outside_task_checkouts(Path(top))
    return root if here == root or here.resolve() == root.resolve() else here


def _outside_task_checkouts(root: Path) -> Path:
    """A task's own repository lives in `<main>/.orchestra/worktrees/<id>`: its state is the main one's."""
    parts = root.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == ".orchestra" and i + 1 < len(parts) and parts[i + 1] in ("worktrees", "merges"):
            return Path(*parts[:i])
    return root


def git_common_dir(repo: Path) -> Path:
    dot_git = repo / ".git"
    if dot_git.is_dir():
        return dot_git
    return Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip())


_FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "orchestra",
    "GIT_AUTHOR_EMAIL": "orchestra@localhost",
    "GIT_COMMITTER_NAME": "orchestra",
    "GIT_COMMITTER_EMAIL": "orchestra@localhost",
}


def commit_identity_env(repo: Path) -> dict[str, str]:
    """The user's own git identity when they have one; a neutral one only when git has none."""
    if git(repo, "config", "user.email", check=False).stdout.strip() or os.environ.get("GIT_AUTHOR_EMAIL"):
        return {}
    return dict(_FALLBACK_IDENTITY)

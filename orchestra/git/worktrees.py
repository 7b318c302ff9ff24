"""Task checkouts: making, finding, committing in and removing them.

A branch is a task's output and outlives its checkout; a checkout is only a place
to work, made again from the branch when it is missing. Each task's checkout is a
repository of its own (git.workspace), whose work reaches the main repository only
through `collect`. The linked-worktree functions below serve the merge step's
temporary checkouts, and checkouts made by older versions of orchestra.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from orchestra.core.errors import GitError
from orchestra.core.task import slugify
from orchestra.git import refs, workspace
from orchestra.git.repo import git_common_dir
from orchestra.git.runner import git
from orchestra.git.workspace import UNKNOWN, Homecoming


def branch_name(prefix: str, task_id: str, title: str) -> str:
    return f"{prefix}{task_id}-{slugify(title, 40)}"


def ensure_worktree(
    repo: Path, path: Path, branch: str, base_sha: str, *, copied: list[str] | tuple[str, ...] = ()
) -> str:
    """Give the task its own repository on its branch; returns where the main repository's branch is.

    A new branch starts at `base_sha` in the main repository. An existing checkout is made
    safe again and takes in commits the branch gained at home meanwhile.
    """
    if path.is_symlink():
        raise GitError(f"refusing to use {path}: it is a symlink")
    with WORKTREE_ADMIN_LOCK:
        for half in interrupted_adds(repo, path.parent, name=path.name):
            if half.admin is not None and os.path.realpath(half.path) == os.path.realpath(path):
                # Killed before its checkout finished, the worktree would look like every file was
                # deleted, and committing leftovers would record that. No agent ran in it yet.
                clear_interrupted_add(half)
        if os.path.lexists(path / ".git") and not workspace.is_task_repo(path):
            _retire_linked_worktree(repo, path, branch)
    if workspace.is_task_repo(path) or not refs.update_task_branch(
        repo, branch, base_sha, workspace.ZERO, "orchestra: new task branch"
    ):
        tip = refs.branch_head(repo, branch)  # an existing branch: a retried, resumed or revised task
        if tip is None and refs.update_task_branch(
            repo, branch, base_sha, workspace.ZERO, "orchestra: new task branch"
        ):
            tip = base_sha
        if tip is None:
            raise GitError(f"could not create branch {branch} at {base_sha[:12]}")
    else:
        tip = base_sha  # a new branch, at the task's base
    if workspace.is_task_repo(path):
        workspace.make_safe(path, repo, copied)
        workspace.catch_up(path, branch, tip)
        return tip
    if os.path.lexists(path):
        if not path.is_dir() or any(path.iterdir()):
            raise GitError(f"{path} exists and is not a checkout of this repository; move it away")
        path.rmdir()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    workspace.create(repo, path, branch, tip, copied)
    return tip


def _retire_linked_worktree(repo: Path, path: Path, branch: str) -> None:
    """A linked worktree from an older orchestra: removed when clean, to be made again as a repository."""
    if _gitfile_target(path / ".git") is None:
        raise GitError(f"{path} exists and is not a checkout of this repository; move it away")
    dirty = uncommitted(path, untracked=True)
    if dirty:
        raise GitError(
            f"{path} is a linked worktree made by an older orchestra, with uncommitted changes "
            f"({', '.join(dirty[:5])}); commit them on {branch} or remove the worktree, then retry"
        )
    proc = git(repo, "worktree", "remove", str(path), check=False)
    if proc.returncode != 0:
        raise GitError(f"could not remove the old worktree {path}: {proc.stderr.strip() or proc.stdout.strip()}")


# Two `git worktree add`s at once race: one can read the other's still empty `commondir`
# and die ("failed to read .../commondir"), and a prune beside an add can remove the new
# metadata. The scheduler is the one process that adds worktrees; its threads take turns.
WORKTREE_ADMIN_LOCK = threading.RLock()


@dataclass(frozen=True)
class HalfMadeWorktree:
    """A checkout whose making died half way: a task repository never renamed into place, or
    (older orchestra) a `git worktree add` git left locked "initializing"."""

    admin: Path | None  # <git common dir>/worktrees/<name> of a linked worktree; None for a repository
    path: Path  # the checkout it was making


def interrupted_adds(repo: Path, under: Path, name: str | None = None) -> list[HalfMadeWorktree]:
    """Half-made checkouts inside `under`, found on disk because git itself may fail to read them.

    Killed while writing its metadata, `git worktree add` can leave an empty `commondir`
    that makes every later `git worktree add`, `list` and `branch` die, and `prune`
    skips it because it is locked. A task repository is made in `.<id>.partial-<pid>` and
    counts as half-made once that process is gone. Only call this when no add into `under`
    is under way in this process.
    """
    found = _partial_repositories(under, name)
    base = git_common_dir(repo) / "worktrees"
    try:
        # git names the metadata after the checkout's directory (plus a number on a clash).
        candidates = [p for p in base.iterdir() if name is None or p.name == name or p.name.startswith(name)]
        admins = sorted(p for p in candidates if p.is_dir() and not p.is_symlink())
    except OSError:
        return found
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


def _partial_repositories(under: Path, name: str | None) -> list[HalfMadeWorktree]:
    try:
        entries = sorted(os.scandir(under), key=lambda e: e.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        owner = workspace.partial_owner(entry.name)
        if owner is None or owner == os.getpid() or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        if name is not None and not entry.name.startswith(f".{name}{workspace.PARTIAL}"):
            continue
        if os.path.exists(f"/proc/{owner}"):
            continue  # still being made
        found.append(HalfMadeWorktree(admin=None, path=Path(entry.path)))
    return found


def clear_interrupted_add(half: HalfMadeWorktree) -> None:
    """Remove a half-made checkout and its metadata; no agent ever ran in it.

    The checkout is removed only when it is a real directory whose `.git` names this
    metadata (or that is empty): a symlink or someone else's files are left alone.
    """
    path = half.path
    if half.admin is None:
        if path.is_dir() and not path.is_symlink() and workspace.partial_owner(path.name) is not None:
            shutil.rmtree(path)
        return
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


@dataclass
class Collection:
    """What ending a run left: orchestra's commit of the leftovers, and where the branch is at home."""

    commit: str | None = None
    tip: str | None = None  # the main repository's branch after bringing the work home
    gitlinks: list[str] | None = None  # nested repositories left out of orchestra's commit
    error: str | None = None


def collect(
    repo: Path,
    path: Path,
    branch: str,
    expected: str | None,
    message: str,
    identity: dict[str, str],
    copied: list[str] | tuple[str, ...] = (),
    label: str = "task",
) -> Collection:
    """After a run: commit what the agent left, then bring the branch home to the main repository.

    `expected` is where orchestra left the main repository's branch (workspace.UNKNOWN when it
    never recorded it). The checkout's own git metadata is replaced by orchestra's first.
    """
    if path.is_symlink() or not path.is_dir():
        return Collection()
    if not workspace.is_task_repo(path):
        if os.path.lexists(path / ".git"):  # a linked worktree of an older orchestra: the branch is already home
            return Collection(commit=commit_leftovers(path, message, identity, list(copied)))
        return Collection()
    workspace.make_safe(path, repo, copied)
    if workspace.head_branch(path) != branch:
        return Collection(error=f"the checkout {path} is no longer on branch {branch}; its work was not brought home")
    sha, links = workspace.commit_leftovers(path, message, identity, copied)
    home: Homecoming = workspace.bring_home(repo, path, branch, expected, label)
    return Collection(commit=sha, tip=home.tip, gitlinks=links or None, error=home.error)


def commit_leftovers(
    path: Path, message: str, identity: dict[str, str], exclude: list[str] | None = None
) -> str | None:
    """Commit whatever the agent left uncommitted; returns the new commit or None.

    `exclude` names paths orchestra copied in (e.g. `.env`): they never reach the branch.
    In a task repository, nested repositories are left out too (see workspace.commit_leftovers);
    call `collect` there, which first puts orchestra's own git metadata back.
    """
    if path.is_symlink() or not (path / ".git").exists():
        return None
    linked = not workspace.is_task_repo(path)
    return workspace.commit_leftovers(path, message, identity, exclude or [], exclude_by_pathspec=linked)[0]


def list_worktrees(repo: Path) -> dict[Path, str | None]:
    """Every registered (linked) worktree and the branch checked out there (None when detached): one parser.

    Task repositories are not among them: see task_checkouts.
    """
    out: dict[Path, str | None] = {}
    path: Path | None = None
    for line in git(repo, "worktree", "list", "--porcelain", check=False).stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
            out[path] = None
        elif line.startswith("branch ") and path is not None:
            out[path] = line[len("branch ") :].removeprefix("refs/heads/")
    return out


def task_checkouts(repo: Path) -> dict[Path, str | None]:
    """Every task checkout under `.orchestra/worktrees` and its branch: task repositories, read
    without running git in them, plus linked worktrees an older orchestra made there."""
    under = repo / ".orchestra" / "worktrees"
    out: dict[Path, str | None] = {}
    try:
        entries = sorted(os.scandir(under), key=lambda e: e.name)
    except OSError:
        entries = []
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            out[path] = None  # listed so that whoever removes checkouts sees it, and leaves it alone
        elif entry.is_dir(follow_symlinks=False) and workspace.is_task_repo(path):
            out[path] = workspace.head_branch(path)
    real_under = os.path.realpath(under)
    for path, branch in list_worktrees(repo).items():
        if os.path.realpath(path.parent) == real_under:
            out.setdefault(path, branch)
    return out


def all_checkouts(repo: Path) -> dict[Path, str | None]:
    """The main repository's worktrees and every task checkout, each with its branch."""
    out = list_worktrees(repo)
    for path, branch in task_checkouts(repo).items():
        out.setdefault(path, branch)
    return out


def checked_out_in(repo: Path, branch: str) -> Path | None:
    """The worktree of the main repository where `branch` is checked out (task repositories aside)."""
    for path, b in list_worktrees(repo).items():
        if b == branch:
            return path
    return None


def uncommitted(path: Path, untracked: bool = False) -> list[str]:
    """Changed (and, with `untracked`, new) paths in a checkout.

    In a task repository orchestra's git metadata is put back first, and nested
    repositories are not looked into: they are the agent's, with config orchestra cannot vet.
    """
    args = ["status", "--porcelain", f"--untracked-files={'all' if untracked else 'no'}"]
    if workspace.is_task_repo(path) and _task_root(path) is not None:
        workspace.make_safe(path, _task_root(path))  # type: ignore[arg-type]
        args.append("--ignore-submodules=all")
    return [line[3:] for line in git(path, *args).stdout.splitlines() if line.strip()]


def _task_root(path: Path) -> Path | None:
    """The main worktree a task checkout `<main>/.orchestra/worktrees/<id>` belongs to."""
    if path.parent.name == "worktrees" and path.parent.parent.name == ".orchestra":
        return path.parent.parent.parent
    return None


def remove(repo: Path, path: Path, force: bool = False) -> tuple[bool, str]:
    """Remove a task checkout; uncommitted changes go only with `force`, unsaved commits never."""
    if workspace.is_task_repo(path):
        if path.is_symlink():
            return False, f"{path} is a symlink"
        unsaved = workspace.unsaved_commits(repo, path)
        if unsaved:
            return False, (
                f"{path} has commits the main repository does not have (on {', '.join(unsaved[:3])}); "
                "run the task again to bring them home, or fetch them by hand"
            )
        if not force and uncommitted(path, untracked=True):
            return False, f"{path} has uncommitted changes"
        shutil.rmtree(path)
        return True, ""
    proc = git(repo, "worktree", "remove", *(["--force"] if force else []), str(path), check=False)
    return proc.returncode == 0, proc.stderr.strip()


def prune(repo: Path) -> None:
    git(repo, "worktree", "prune", check=False)


def add_detached(repo: Path, path: Path, sha: str) -> None:
    with WORKTREE_ADMIN_LOCK:
        git(repo, "worktree", "add", "--quiet", "--detach", str(path), sha)


__all__ = [
    "UNKNOWN",
    "WORKTREE_ADMIN_LOCK",
    "Collection",
    "HalfMadeWorktree",
    "add_detached",
    "all_checkouts",
    "branch_name",
    "checked_out_in",
    "clear_interrupted_add",
    "collect",
    "commit_leftovers",
    "ensure_worktree",
    "interrupted_adds",
    "list_worktrees",
    "prune",
    "remove",
    "task_checkouts",
    "uncommitted",
]

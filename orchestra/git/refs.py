"""Commits and branches: resolving, checking and comparing refs, with names that could be misread refused."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from orchestra.core.errors import InvalidInput
from orchestra.git.repo import git_common_dir
from orchestra.git.runner import git


def resolve_commit(repo: Path, ref: str, what: str = "base ref") -> str:
    """The commit a ref names; refs that look like options are refused before git sees them."""
    ref = (ref or "").strip()
    if not ref:
        raise InvalidInput(f"empty {what}")
    if ref.startswith("-"):
        raise InvalidInput(f"invalid {what} {ref!r}: refs may not start with '-'")
    if any(c in ref for c in "\0\n\r"):
        raise InvalidInput(f"invalid {what} {ref!r}")
    proc = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise InvalidInput(f"{what} {ref!r} does not name a commit in this repository")
    return proc.stdout.strip()


def head_commit(repo: Path) -> str | None:
    """The commit HEAD is at; None in a repository with no commits yet."""
    proc = git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def has_commits(repo: Path) -> bool:
    return head_commit(repo) is not None


def branch_exists(repo: Path, branch: str) -> bool:
    return git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False).returncode == 0


def branch_head(repo: Path, branch: str) -> str | None:
    proc = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return git(repo, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0


def current_branch(repo: Path) -> str | None:
    proc = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def check_branch_name(repo: Path, branch: str) -> str:
    """A branch name git accepts, that no tool could take for an option."""
    branch = (branch or "").strip()
    if not branch or branch.startswith("-") or any(c in branch for c in "\0\n\r"):
        raise InvalidInput(f"invalid branch name {branch!r}")
    branch = branch.removeprefix("refs/heads/")
    if git(repo, "check-ref-format", "--branch", branch, check=False).returncode != 0:
        raise InvalidInput(f"invalid branch name {branch!r}")
    return branch


def check_target(repo: Path, branch: str) -> str:
    """A local branch to merge into."""
    branch = check_branch_name(repo, branch)
    if not branch_exists(repo, branch):
        raise InvalidInput(f"no local branch {branch!r} to merge into")
    return branch


def update_ref(repo: Path, branch: str, new: str, old: str | None, message: str) -> bool:
    """Move a branch only if it is where we think it is (a compare-and-swap); False when it moved."""
    args = ["update-ref", "-m", message, f"refs/heads/{branch}", new]
    if old is not None:
        args.append(old)
    return git(repo, *args, check=False).returncode == 0


def update_task_branch(repo: Path, branch: str, new: str, old: str | None, message: str) -> bool:
    """update_ref for orchestra's own task branches, past a lock a git killed in a crash left on one.

    Git never removes such a lock, so every later write of the branch would fail ("File exists").
    Only task branches: a lock on a person's branch is left to the person, as git asks."""
    if update_ref(repo, branch, new, old, message):
        return True
    lock = branch_lock(git_common_dir(repo), branch)
    return lock is not None and remove_stale_lock(lock) and update_ref(repo, branch, new, old, message)


def branch_lock(git_dir: Path, branch: str) -> Path | None:
    """Where git locks `branch` while it writes it, inside `git_dir` (None for a name that is no branch's)."""
    parts = branch.split("/")
    if not branch or any(part in ("", ".", "..") or part.endswith(".lock") for part in parts):
        return None
    lock = git_dir.joinpath("refs", "heads", *parts[:-1], parts[-1] + ".lock")
    if os.path.realpath(lock.parent) != os.path.join(os.path.realpath(git_dir), "refs", "heads", *parts[:-1]):
        return None  # a link on the way: not git's own lock
    return lock


def remove_stale_lock(lock: Path, settle: float = 0.2, wait: float = 30.0) -> bool:
    """Remove a git lock file (a ref's, an index's) that nobody holds; True when it is gone.

    Git holds such a lock only while it writes, and never cleans up after a process that died
    holding it: every later write then fails ("File exists"). A git still at work on it (one a
    killed scheduler left running: `add -A` of a large tree holds the index's for seconds) has it
    open, and is waited for, up to `wait` seconds: removing its lock would let it rename its own
    half of the index over ours. A lock nobody has open, the same file `settle` seconds later,
    is nobody's."""

    def mark() -> tuple[int, int] | None:
        st = os.lstat(lock)
        return (st.st_ino, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None

    if not os.path.lexists(lock):
        return False
    deadline = time.monotonic() + wait
    try:
        while _held_open(lock):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        first = mark()
        if first is None:
            return False
        time.sleep(settle)
        if mark() != first or _held_open(lock):
            return False
        os.unlink(lock)
    except FileNotFoundError:
        return True  # let go by whoever held it
    return True


def _held_open(path: Path) -> bool:
    """Whether a live process of ours has `path` open (Linux /proc; False where it cannot be told)."""
    target = os.path.realpath(path)
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return True
            except OSError:
                continue
    return False


def delete_branch(repo: Path, branch: str, expected: str) -> tuple[bool, str]:
    proc = git(repo, "update-ref", "-d", f"refs/heads/{branch}", expected, check=False)
    return proc.returncode == 0, proc.stderr.strip()


def heads(repo: Path) -> dict[str, str]:
    """Every local branch and the commit it points at."""
    out = git(repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", check=False).stdout
    pairs = (line.split(" ", 1) for line in out.splitlines() if " " in line)
    return {name.removeprefix("refs/heads/"): sha for sha, name in pairs}


def branches(repo: Path) -> set[str]:
    out = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/", check=False).stdout
    return set(out.split())


def containing(repo: Path, sha: str) -> list[str]:
    return git(repo, "for-each-ref", "--contains", sha, "--format=%(refname)", check=False).stdout.split()


def log_lines(repo: Path, rev_range: str, fmt: str = "%h %s", reverse: bool = False) -> list[str]:
    args = ["log", f"--format={fmt}"] + (["--reverse"] if reverse else []) + [rev_range, "--"]
    return git(repo, *args, check=False).stdout.splitlines()


def branch_heads(repo: Path) -> dict[str, str]:
    """Every local branch and the commit it points at, in one git process."""
    out = git(repo, "for-each-ref", "--format=%(objectname) %(refname:short)", "refs/heads/", check=False).stdout
    heads = {}
    for line in out.splitlines():
        sha, _, name = line.partition(" ")
        if name:
            heads[name] = sha
    return heads


def merged_branches(repo: Path, commit: str) -> set[str]:
    """The local branches whose heads `commit` contains (merged into it), in one git process."""
    proc = git(repo, "for-each-ref", f"--merged={commit}", "--format=%(refname:short)", "refs/heads/", check=False)
    return set(proc.stdout.split()) if proc.returncode == 0 else set()

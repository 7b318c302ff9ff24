"""Merging a branch into a target: pre-checked, built in a temporary checkout, then a guarded move.

A merge is tried in a temporary worktree, checked by a gate there, and only then
moves the target, by a compare-and-swap of the ref or, when the target is checked
out, by a fast-forward of that worktree when it is clean. The user's checkout is
never left conflicted or half-merged.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import GitError, OrchestraError
from orchestra.core.values import known_merge_strategy
from orchestra.git import refs, worktrees
from orchestra.git.repo import commit_identity_env
from orchestra.git.runner import git
from orchestra.store.paths import STATE_DIR_NAME

# A line git writes to open a conflict (`<<<<<<< ours`); a branch that adds one carries an unresolved merge.
MARKER_RE = r"^<<<<<<<( |$)"
MARKER_LINE = re.compile(rb"^(<<<<<<<|>>>>>>>)( |\r?$)")
# The record a squash commit carries of what it squashed, found again on the target's first-parent history.
SQUASH_TRAILER = "Orchestra-Squash-Of"


@dataclass
class MergeResult:
    # merged, up_to_date, pull_request, conflict, gate_failed, target_dirty, not_fast_forward, target_moved,
    # refused, error
    status: str
    message: str
    source_branch: str = ""
    source_sha: str | None = None
    into: str = ""
    strategy: str = "merge"
    old_sha: str | None = None
    new_sha: str | None = None
    files: list[str] = field(default_factory=list)
    gate: dict[str, Any] | None = None
    task: str | None = None  # the merge task
    source_task: str | None = None
    workflow: str | None = None
    resolve_task: str | None = None
    landed_in: str | None = None  # up_to_date: the target's commit that already holds the source (a squash)
    retry_task: str | None = None
    pr_url: str | None = None  # merge_strategy "pr": the pull request opened instead

    @property
    def ok(self) -> bool:
        return self.status in ("merged", "up_to_date", "approved", "pull_request")

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["ok"] = self.ok
        return data


Gate = Callable[[Path], "dict[str, Any] | None"]


def merge_branch(
    root: Path,
    scratch: Path,
    source_branch: str,
    into: str,
    strategy: str,
    message: str,
    *,
    label: str,
    gate: Gate | None = None,
    require_resolved: list[str] | None = None,
) -> MergeResult:
    """Merge `source_branch` into `into`; the caller holds the repository's merge lock.

    Idempotent: a source the target already holds (as an ancestor, or as a squash commit
    on its first-parent history carrying SQUASH_TRAILER) is `up_to_date`, so a merge
    re-run after a crash, or run twice at once, lands once.
    """
    if known_merge_strategy(strategy) == "pr":
        raise OrchestraError("a pull request is not a local merge: the engine pushes it instead")
    into = refs.check_target(root, into)
    source_sha = refs.branch_head(root, source_branch)
    if source_sha is None:
        raise OrchestraError(f"branch {source_branch} no longer exists")
    res = MergeResult("error", "", source_branch=source_branch, source_sha=source_sha, into=into, strategy=strategy)
    target_sha = refs.branch_head(root, into)
    assert target_sha is not None
    res.old_sha = target_sha
    if require_resolved:
        marked = conflict_markers(root, source_sha, require_resolved)
        if marked:
            res.files = marked
            res.message = f"conflict markers are still in {', '.join(marked)} on {source_branch}; nothing was merged"
            return res
    if refs.is_ancestor(root, source_sha, target_sha):
        res.status, res.new_sha = "up_to_date", target_sha
        res.message = f"{into} already contains {source_branch}; nothing to merge"
        return res
    squashed = squash_of(root, target_sha, source_sha)
    if squashed:
        res.status, res.new_sha, res.landed_in = "up_to_date", target_sha, squashed
        res.message = f"{into} already holds {source_branch} squashed ({squashed[:12]}); nothing to merge"
        return res
    if strategy == "ff-only" and not refs.is_ancestor(root, target_sha, source_sha):
        res.status = "not_fast_forward"
        res.message = (
            f"{into} has commits that {source_branch} lacks, so it cannot be fast-forwarded; "
            "use --strategy merge or squash"
        )
        return res
    marked = introduced_markers(root, target_sha, source_sha)
    if marked:
        res.status, res.files = "conflict", marked
        res.message = (
            f"{source_branch} adds conflict markers to {len(marked)} file(s): {', '.join(marked)}; "
            f"nothing was merged into {into}. Resolve them on the branch (or with --resolve) first"
        )
        return res
    files = precheck(root, target_sha, source_sha)
    if files:
        res.status, res.files = "conflict", files
        res.message = (
            f"merging {source_branch} into {into} conflicts in {len(files)} file(s): "
            f"{', '.join(files)}; nothing was changed"
        )
        return res
    tmp = scratch / f"{label}-{secrets.token_hex(3)}"
    tmp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    worktrees.add_detached(root, tmp, target_sha)
    try:
        new_sha = merge_in(tmp, root, strategy, source_sha, message)
        if new_sha is None:
            res.status, res.new_sha = "up_to_date", target_sha
            res.message = f"{into} already has every change of {source_branch}; nothing to merge"
            return res
        res.new_sha = new_sha
        touched = protected_changes(root, target_sha, new_sha)
        if touched:
            shown = ", ".join(touched[:5]) + (f" and {len(touched) - 5} more" if len(touched) > 5 else "")
            res.status, res.files = "refused", touched
            res.message = (
                f"{source_branch} changes {STATE_DIR_NAME}/ ({shown}), where orchestra keeps its state and "
                f"settings; a merge never touches it, so nothing was merged into {into}. "
                "Remove those paths from the branch first"
            )
            return res
        if gate is not None:
            res.gate = gate(tmp)
            if res.gate and res.gate["exit_code"] != 0:
                res.status = "gate_failed"
                res.message = (
                    f"the gate command failed (exit {res.gate['exit_code']}) on the merge of "
                    f"{source_branch} into {into}; {into} was not moved. Output: {res.gate['log']}"
                )
                return res
        crash_point("merge_before_move")
        move_target(root, into, target_sha, new_sha, res)
        crash_point("merge_after_move")
        return res
    finally:
        git(root, "worktree", "remove", "--force", str(tmp), check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def remove_scratch(root: Path, scratch: Path) -> list[Path]:
    """Temporary merge checkouts left by a process killed mid-merge; call only under the merge lock."""
    if not scratch.is_dir():
        return []
    removed = []
    for path in sorted(scratch.iterdir()):
        if path.is_symlink():
            continue
        git(root, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    worktrees.prune(root)
    return removed


def precheck(root: Path, target_sha: str, source_sha: str) -> list[str]:
    """The files a merge would conflict in (none: it merges cleanly), without touching any checkout."""
    proc = git(root, "merge-tree", "--write-tree", "--name-only", "--no-messages", target_sha, source_sha, check=False)
    if proc.returncode == 0:
        return []
    if proc.returncode != 1:
        raise GitError(f"git merge-tree failed: {proc.stderr.strip() or proc.stdout.strip()}")
    files = []
    for line in proc.stdout.splitlines()[1:]:
        if not line.strip():
            break
        files.append(line)
    return list(dict.fromkeys(files)) or ["(unknown)"]


def merge_in(tmp: Path, root: Path, strategy: str, source_sha: str, message: str) -> str | None:
    """The merged commit, made in the temporary checkout; None when a squash has nothing left to add."""
    identity = commit_identity_env(root)
    if strategy == "ff-only":
        git(tmp, "merge", "--quiet", "--ff-only", source_sha)
    elif strategy == "merge":
        git(tmp, "merge", "--quiet", "--no-ff", "--no-verify", "--no-edit", "-m", message, source_sha, env=identity)
    else:
        git(tmp, "merge", "--quiet", "--squash", source_sha, env=identity)
        if git(tmp, "diff", "--cached", "--quiet", check=False).returncode == 0:
            return None
        git(
            tmp,
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            with_trailer(message, SQUASH_TRAILER, source_sha),
            env=identity,
        )
    return git(tmp, "rev-parse", "HEAD").stdout.strip()


def with_trailer(message: str, key: str, value: str) -> str:
    """The message with `key: value` added to its trailer block (or as a new one)."""
    message = message.rstrip("\n")
    last = message.rsplit("\n\n", 1)[-1]
    is_trailers = "\n\n" in message and all(re.match(r"^[A-Za-z0-9-]+: ", line) for line in last.splitlines())
    return f"{message}{chr(10) if is_trailers else chr(10) * 2}{key}: {value}"


def squash_of(root: Path, target_sha: str, source_sha: str) -> str | None:
    """The squash commit of exactly `source_sha` on the target's first-parent history since they parted."""
    proc = git(
        root,
        "log",
        "--first-parent",
        "--format=%H",
        "--max-count=1",
        "--fixed-strings",
        f"--grep={SQUASH_TRAILER}: {source_sha}",
        target_sha,
        "--not",
        source_sha,
        "--",
        check=False,
    )
    return proc.stdout.strip() or None


def protected_changes(root: Path, old: str, new: str, names: tuple[str, ...] = (STATE_DIR_NAME,)) -> list[str]:
    """Paths under orchestra's own directory that going from `old` to `new` would change."""
    specs = [f":(literal){name}" for name in names]
    proc = git(root, "diff", "--name-only", "-z", "--no-renames", old, new, "--", *specs)
    return [p for p in proc.stdout.split("\0") if p]


def move_target(root: Path, into: str, old: str, new: str, res: MergeResult) -> None:
    holder = worktrees.checked_out_in(root, into)
    if holder is None:
        if not refs.update_ref(root, into, new, old, f"orchestra merge {res.source_branch}"):
            res.status = "target_moved"
            res.message = f"{into} moved while the merge was prepared; nothing was changed. Run the merge again."
            return
    else:
        dirty = worktrees.uncommitted(holder)
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            res.status = "target_dirty"
            res.message = (
                f"{into} is checked out in {holder} with uncommitted changes ({shown}); it was left "
                f"exactly as it was and {into} was not moved. Commit or stash them, then merge again."
            )
            return
        # Never through a file git ignores: the user's ignored files (and orchestra's own state) stay.
        proc = git(holder, "merge", "--quiet", "--ff-only", "--no-overwrite-ignore", new, check=False)
        if proc.returncode != 0:
            blocked = [line.strip() for line in proc.stderr.splitlines() if line.startswith("\t")]
            if blocked:
                shown = ", ".join(blocked[:5]) + (f" and {len(blocked) - 5} more" if len(blocked) > 5 else "")
                res.status = "target_dirty"
                res.message = (
                    f"merging into {into} would overwrite files in {holder} that git does not track ({shown}); "
                    f"it was left exactly as it was and {into} was not moved. Move them away, then merge again."
                )
                return
            res.status = "target_moved"
            res.message = (
                f"could not fast-forward {into} in {holder}: "
                f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['unknown error']}; "
                "it was left as it was"
            )
            return
    res.status = "merged"
    where = f" (and its checkout in {holder})" if holder else ""
    res.message = f"merged {res.source_branch} into {into}{where} with {res.strategy}: {old[:12]} -> {new[:12]}"


def conflict_markers(root: Path, sha: str, files: list[str]) -> list[str]:
    """Which of `files` hold a conflict marker line at commit `sha`."""
    found: list[str] = []
    for i in range(0, len(files), 200):
        specs = [f":(literal){f}" for f in files[i : i + 200]]
        proc = git(root, "grep", "-l", "-I", "-E", "-e", "^(<<<<<<<|>>>>>>>)( |$)", sha, "--", *specs, check=False)
        found += [line.split(":", 1)[-1] for line in proc.stdout.splitlines() if line.strip()]
    return found


def introduced_markers(root: Path, target_sha: str, source_sha: str) -> list[str]:
    """Files where the source, since it left the target, added a conflict marker that is still there."""
    base = git(root, "merge-base", target_sha, source_sha, check=False).stdout.strip()
    if not base:
        base = git(root, "hash-object", "-t", "tree", "--stdin", input="").stdout.strip()  # unrelated: all of it
    proc = git(root, "diff", "--name-only", "-z", "--no-renames", "-G", MARKER_RE, base, source_sha, "--", check=False)
    files = [p for p in proc.stdout.split("\0") if p]
    return conflict_markers(root, source_sha, files) if files else []


def merge_in_progress(checkout: Path) -> bool:
    return git(checkout, "rev-parse", "--quiet", "--verify", "MERGE_HEAD", check=False).returncode == 0


def unresolved_in_checkout(checkout: Path, files: list[str]) -> list[str]:
    """Files of a checkout that still hold conflict markers: the unmerged paths and `files`, as on disk."""
    proc = git(checkout, "diff", "--name-only", "-z", "--diff-filter=U", check=False)
    candidates = list(dict.fromkeys([p for p in proc.stdout.split("\0") if p] + list(files)))
    return [f for f in candidates if _has_marker(checkout, f)]


def _has_marker(checkout: Path, relpath: str, limit: int = 256 * 1024 * 1024) -> bool:
    """A marker line in a regular file of the checkout, read line by line; never through a symlink or a FIFO."""
    path = checkout / relpath
    try:
        if not os.path.realpath(path.parent).startswith(os.path.realpath(checkout)):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        read = 0
        at_line_start = True
        for line in iter(lambda: fh.readline(1024 * 1024), b""):
            if at_line_start and MARKER_LINE.match(line):
                return True
            at_line_start = line.endswith(b"\n")
            read += len(line)
            if read > limit:
                return False
    return False


def squash_body(root: Path, into: str, source_branch: str) -> str:
    target = refs.branch_head(root, into) or into
    head = refs.branch_head(root, source_branch) or source_branch
    return "\n".join(refs.log_lines(root, f"{target}..{head}", "* %s", reverse=True))

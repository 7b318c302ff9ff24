"""Merging a branch into a target: pre-checked, built in a temporary checkout, then a guarded move.

A merge is tried in a temporary worktree, checked by a gate there, and only then
moves the target, by a compare-and-swap of the ref or, when the target is checked
out, by a fast-forward of that worktree when it is clean. The user's checkout is
never left conflicted or half-merged.
"""

from __future__ import annotations

import secrets
import shutil
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


@dataclass
class MergeResult:
    status: str  # merged, up_to_date, pull_request, conflict, gate_failed, target_dirty, not_fast_forward, target_moved, error
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
    """Merge `source_branch` into `into`; the caller holds the repository's merge lock."""
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
    if strategy == "ff-only" and not refs.is_ancestor(root, target_sha, source_sha):
        res.status = "not_fast_forward"
        res.message = (
            f"{into} has commits that {source_branch} lacks, so it cannot be fast-forwarded; "
            "use --strategy merge or squash"
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
        res.new_sha = merge_in(tmp, root, strategy, source_sha, message)
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
        move_target(root, into, target_sha, res.new_sha, res)
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


def merge_in(tmp: Path, root: Path, strategy: str, source_sha: str, message: str) -> str:
    identity = commit_identity_env(root)
    if strategy == "ff-only":
        git(tmp, "merge", "--quiet", "--ff-only", source_sha)
    elif strategy == "merge":
        git(tmp, "merge", "--quiet", "--no-ff", "--no-verify", "--no-edit", "-m", message, source_sha, env=identity)
    else:
        git(tmp, "merge", "--quiet", "--squash", source_sha, env=identity)
        git(tmp, "commit", "--quiet", "--no-verify", "-m", message, env=identity)
    return git(tmp, "rev-parse", "HEAD").stdout.strip()


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
        proc = git(holder, "merge", "--quiet", "--ff-only", new, check=False)
        if proc.returncode != 0:
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
    proc = git(root, "grep", "-l", "-I", "-E", "-e", "^(<<<<<<<|>>>>>>>) ", sha, "--", *files, check=False)
    return [line.split(":", 1)[-1] for line in proc.stdout.splitlines() if line.strip()]


def squash_body(root: Path, into: str, source_branch: str) -> str:
    target = refs.branch_head(root, into) or into
    head = refs.branch_head(root, source_branch) or source_branch
    return "\n".join(refs.log_lines(root, f"{target}..{head}", "* %s", reverse=True))

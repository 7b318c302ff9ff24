"""`orchestra cleanup`: remove what finished tasks leave behind, and nothing anyone could still want.

Worktrees go when clean; branches go once merged into their target. Anything that
would lose work needs --force, and is listed first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import OrchestraError
from orchestra.core.task import Task
from orchestra.engine import tasks as task_cases
from orchestra.engine.changes import default_target
from orchestra.engine.context import Context
from orchestra.git import refs, workspace, worktrees
from orchestra.store import workflows as records
from orchestra.store.locks import exclusive


@dataclass
class CleanupReport:
    dry_run: bool
    force: bool
    removed_worktrees: list[dict[str, Any]] = field(default_factory=list)
    deleted_branches: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)

    @property
    def would_lose(self) -> list[dict[str, Any]]:
        """What a forced cleanup throws away (or, without --force, what it keeps for that reason).

        A forced run loses only what it removed: what it kept anyway (git refused) is not lost.
        """
        items = [i for i in self.removed_worktrees + self.deleted_branches if i.get("lost")]
        return items if self.force else items + [k for k in self.kept if k.get("lost")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "force": self.force,
            "removed_worktrees": self.removed_worktrees,
            "deleted_branches": self.deleted_branches,
            "kept": self.kept,
        }


CLEANUP_LOCK_TIMEOUT = 600.0


def cleanup(ctx: Context, *, dry_run: bool = False, force: bool = False) -> CleanupReport:
    """Remove what finished tasks leave behind; anything unmerged only with force, and say what it was.

    Under the cleanup lock, so that `doctor` never looks at a worktree or branch half removed.
    """
    if dry_run:
        return _cleanup(ctx, dry_run=dry_run, force=force)
    ctx.paths.ensure()
    with exclusive(ctx.paths.cleanup_lock, CLEANUP_LOCK_TIMEOUT, "another cleanup or doctor is still running"):
        return _cleanup(ctx, dry_run=dry_run, force=force)


def _cleanup(ctx: Context, *, dry_run: bool, force: bool) -> CleanupReport:
    root = ctx.root
    report = CleanupReport(dry_run=dry_run, force=force)
    tasks, _ = ctx.store.all_tasks()
    busy: set[str] = set()
    for t in tasks:
        if not t.state.final:
            busy.add(t.id)
            if t.on:
                busy.add(t.on)
    # A stopped workflow's tasks: a person may still retry a step or merge it again, which needs its
    # branches, merged or not.
    live, stopped = records.holding(ctx.store, records.unfinished_ids(ctx.store))
    busy.update(live)
    registered = worktrees.all_checkouts(root)
    squashed = [
        t.merged["source_sha"] for t in tasks if isinstance(t.merged, dict) and t.merged.get("strategy") == "squash"
    ]
    by_branch: dict[str, list[Task]] = {}
    for t in tasks:
        if t.branch and not t.agentless:
            by_branch.setdefault(t.branch, []).append(t)
    for t in sorted(tasks, key=lambda t: t.created_at):
        if not t.state.final or t.agentless:
            continue
        path = ctx.paths.worktree(t.id)
        if path in registered:
            with _as_read(ctx, [t], None, dry_run) as again:
                if again:
                    report.kept.append({"task": t.id, "path": str(path), "what": "worktree", "reason": again})
                else:
                    _cleanup_worktree(root, t, path, report, force, dry_run)
    for branch, owners in sorted(by_branch.items()):
        if any(o.id in busy for o in owners):
            continue
        head = refs.branch_head(root, branch)
        if head is None:
            continue
        held = next((stopped[o.id] for o in owners if o.id in stopped), None)
        if held:
            why = f"its workflow {held.id} is {held.state} and may still be retried or merged"
            why += f" ('orchestra workflow cancel {held.id}' ends it)"
            report.kept.append({"task": owners[-1].id, "branch": branch, "sha": head, "what": "branch", "reason": why})
            continue
        with _as_read(ctx, owners, branch, dry_run) as again:
            if again:
                item = {"task": owners[-1].id, "branch": branch, "sha": head, "what": "branch", "reason": again}
                report.kept.append(item)
            else:
                _cleanup_branch(ctx, branch, head, owners, registered, squashed, report, force, dry_run)
    return report


@contextmanager
def _as_read(ctx: Context, owners: list[Task], branch: str | None, dry_run: bool) -> Iterator[str | None]:
    """Hold the store lock while a worktree or branch of finished tasks is removed, and say why not to when
    what cleanup read of them no longer holds: a reply or a retry queued one of them again meanwhile (its
    run would work in that checkout, on that branch), or a task submitted since needs the branch."""
    if dry_run:
        yield None
        return
    with ctx.store.locked():
        yield _in_use_again(ctx, owners, branch)


def _in_use_again(ctx: Context, owners: list[Task], branch: str | None) -> str | None:
    ids = {o.id for o in owners}
    for o in owners:
        try:
            state = ctx.store.load(o.id).state
        except OrchestraError as exc:
            return f"task {o.id} cannot be read: {exc}"
        if not state.final:
            return f"task {o.id} is {state} again"
    if branch is not None:
        for s in ctx.store.live().values():
            if s.get("branch") == branch or ids & set(s.get("depends_on") or []):
                return f"the unfinished task {s['id']} needs it"
    return None


def _cleanup_worktree(root: Path, t: Task, path: Path, report: CleanupReport, force: bool, dry_run: bool) -> None:
    item: dict[str, Any] = {"task": t.id, "path": str(path)}
    if path.is_symlink():
        # Not ours any more: removing "through" it could delete whatever it points at.
        report.kept.append({**item, "what": "worktree", "reason": "is a symlink; orchestra does not follow it"})
        return
    unsaved = workspace.unsaved_commits(root, path)
    if unsaved:
        # Never removed, not even with --force: the dry run must say so too, and what is at stake.
        reason = (
            f"has commits the main repository does not have (on {', '.join(unsaved[:3])}); "
            f"{task_cases.bring_home_advice(t, path)}"
        )
        report.kept.append(
            {**item, "what": "worktree", "reason": reason, "unsaved": workspace.unsaved_log(root, path, unsaved)}
        )
        return
    dirty = worktrees.uncommitted(path, untracked=True)
    if dirty:
        item["lost"] = [f"uncommitted: {f}" for f in dirty]
        if not force:
            report.kept.append({**item, "what": "worktree", "reason": "uncommitted changes (use --force)"})
            return
    if not dry_run:
        ok, why = worktrees.remove(root, path, force=bool(dirty))
        if not ok:
            report.kept.append({**item, "what": "worktree", "reason": why or "git refused"})
            return
    report.removed_worktrees.append(item)


def _cleanup_branch(
    ctx: Context,
    branch: str,
    head: str,
    owners: list[Task],
    registered: dict[Path, str | None],
    squashed: list[str],
    report: CleanupReport,
    force: bool,
    dry_run: bool,
) -> None:
    root = ctx.root
    owner = owners[-1]
    item: dict[str, Any] = {"task": owner.id, "branch": branch, "sha": head}
    if dry_run:  # nothing was removed: leave out the worktrees the real run would remove
        removed = {Path(w["path"]) for w in report.removed_worktrees}
        holders = [p for p, b in registered.items() if b == branch and p not in removed]
    else:
        holders = [p for p, b in worktrees.all_checkouts(root).items() if b == branch]
    if holders:
        report.kept.append({**item, "what": "branch", "reason": f"checked out in {holders[0]}"})
        return
    try:
        target = default_target(ctx, owner)
        target_head = refs.branch_head(root, target)
    except OrchestraError:
        target, target_head = None, None
    item["into"] = target
    merged = bool(target_head and refs.is_ancestor(root, head, target_head))
    merged = merged or any(refs.is_ancestor(root, head, s) for s in squashed)
    base = owners[0].base_sha
    if not merged and base == head:
        merged = any(r != f"refs/heads/{branch}" for r in refs.containing(root, head))
    if not merged:
        upto = target_head or base
        log = refs.log_lines(root, f"{upto}..{head}") if upto else []
        item["lost"] = log or [f"{head[:12]} (not contained in {target or 'any target'})"]
        if not force:
            reason = f"not merged into {target}" if target else "no target branch to check it against"
            report.kept.append({**item, "what": "branch", "reason": f"{reason} (use --force)"})
            return
    if not dry_run:
        # The record `doctor` reads, written first, so a deleted branch is never reported as lost.
        for o in owners:
            ctx.store.append_event(
                o.id, "branch_deleted", branch=branch, sha=head, into=target, forced=bool(item.get("lost"))
            )
        ok, why = refs.delete_branch(root, branch, head)
        crash_point("cleanup_branch_deleted")
        if not ok:
            for o in owners:
                ctx.store.append_event(o.id, "branch_kept", branch=branch, sha=head, reason=why or "git refused")
            report.kept.append({**item, "what": "branch", "reason": why or "git refused"})
            return
    report.deleted_branches.append(item)

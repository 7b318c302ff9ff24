"""The merge step and cleanup: the only places orchestra moves a branch it did not make.

A merge is tried in a temporary worktree, checked by the gate command there, and
only then moves the target, by a compare-and-swap of the ref or, when the target
is checked out, by a fast-forward of that worktree when it is clean. The user's
checkout is never left conflicted or half-merged.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from orchestra import worktrees
from orchestra.config import MERGE_STRATEGIES
from orchestra.crashpoints import crash_point
from orchestra.errors import GitError, InvalidInput, OrchestraError
from orchestra.gitcmd import git
from orchestra.task import Task

if TYPE_CHECKING:
    from orchestra.service import Orchestra

MERGE_LOCK_TIMEOUT = 3600.0
GATE_TAIL_LINES = 20


@dataclass
class MergeResult:
    status: str  # merged, up_to_date, conflict, gate_failed, target_dirty, not_fast_forward, target_moved, error
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

    @property
    def ok(self) -> bool:
        return self.status in ("merged", "up_to_date")

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["ok"] = self.ok
        return data


# -- git helpers ----------------------------------------------------------------


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return git(repo, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0


def current_branch(repo: Path) -> str | None:
    proc = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def check_target(repo: Path, branch: str) -> str:
    """A local branch to merge into; names that git or a shell could misread are refused."""
    branch = (branch or "").strip()
    if not branch or branch.startswith("-") or any(c in branch for c in "\0\n\r"):
        raise InvalidInput(f"invalid branch name {branch!r}")
    branch = branch.removeprefix("refs/heads/")
    if git(repo, "check-ref-format", "--branch", branch, check=False).returncode != 0:
        raise InvalidInput(f"invalid branch name {branch!r}")
    if not worktrees.branch_exists(repo, branch):
        raise InvalidInput(f"no local branch {branch!r} to merge into")
    return branch


def worktree_branches(repo: Path) -> dict[Path, str | None]:
    """Every registered worktree and the branch checked out there (None when detached)."""
    out: dict[Path, str | None] = {}
    path: Path | None = None
    for line in git(repo, "worktree", "list", "--porcelain").stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree "):])
            out[path] = None
        elif line.startswith("branch ") and path is not None:
            out[path] = line[len("branch "):].removeprefix("refs/heads/")
    return out


def checked_out_in(repo: Path, branch: str) -> Path | None:
    for path, b in worktree_branches(repo).items():
        if b == branch:
            return path
    return None


def uncommitted(path: Path, untracked: bool = False) -> list[str]:
    args = ["status", "--porcelain", f"--untracked-files={'all' if untracked else 'no'}"]
    return [line[3:] for line in git(path, *args).stdout.splitlines() if line.strip()]


@contextmanager
def merge_lock(orch: "Orchestra", timeout: float = MERGE_LOCK_TIMEOUT) -> Iterator[None]:
    """One merge at a time per repository: two merges into one target would race."""
    from filelock import FileLock, Timeout

    orch.paths.ensure()
    lock = FileLock(str(orch.paths.state / "merge.lock"), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise OrchestraError("another merge is still running; try again when it ends") from None
    try:
        yield
    finally:
        lock.release()


# -- the merge ------------------------------------------------------------------


def merge_branch(
    orch: "Orchestra", source_branch: str, into: str, strategy: str, message: str, *,
    label: str, require_resolved: list[str] | None = None,
) -> MergeResult:
    root = orch.paths.root
    if strategy not in MERGE_STRATEGIES:
        raise InvalidInput(f"unknown merge strategy {strategy!r}; use one of {', '.join(MERGE_STRATEGIES)}")
    into = check_target(root, into)
    source_sha = worktrees.branch_head(root, source_branch)
    if source_sha is None:
        raise OrchestraError(f"branch {source_branch} no longer exists")
    res = MergeResult("error", "", source_branch=source_branch, source_sha=source_sha, into=into, strategy=strategy)
    with merge_lock(orch):
        target_sha = worktrees.branch_head(root, into)
        assert target_sha is not None
        res.old_sha = target_sha
        if require_resolved:
            marked = _conflict_markers(root, source_sha, require_resolved)
            if marked:
                res.status = "error"
                res.files = marked
                res.message = f"conflict markers are still in {', '.join(marked)} on {source_branch}; nothing was merged"
                return res
        if is_ancestor(root, source_sha, target_sha):
            res.status, res.new_sha = "up_to_date", target_sha
            res.message = f"{into} already contains {source_branch}; nothing to merge"
            return res
        if strategy == "ff-only" and not is_ancestor(root, target_sha, source_sha):
            res.status = "not_fast_forward"
            res.message = (f"{into} has commits that {source_branch} lacks, so it cannot be fast-forwarded; "
                           "use --strategy merge or squash")
            return res
        files = _precheck(root, target_sha, source_sha)
        if files:
            res.status, res.files = "conflict", files
            res.message = (f"merging {source_branch} into {into} conflicts in {len(files)} file(s): "
                           f"{', '.join(files)}; nothing was changed")
            return res
        tmp = orch.paths.state / "merges" / f"{label}-{secrets.token_hex(3)}"
        tmp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        git(root, "worktree", "add", "--quiet", "--detach", str(tmp), target_sha)
        try:
            new_sha = _merge_in(tmp, root, strategy, source_sha, message)
            res.new_sha = new_sha
            gate = orch.config.gate
            if gate:
                res.gate = _run_gate(orch, gate, tmp, label, source_branch, into)
                if res.gate["exit_code"] != 0:
                    res.status = "gate_failed"
                    res.message = (f"the gate command failed (exit {res.gate['exit_code']}) on the merge of "
                                   f"{source_branch} into {into}; {into} was not moved. Output: {res.gate['log']}")
                    return res
            crash_point("merge_before_move")
            _move_target(root, into, target_sha, new_sha, res)
            crash_point("merge_after_move")
            return res
        finally:
            git(root, "worktree", "remove", "--force", str(tmp), check=False)
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_merge_worktrees(orch: "Orchestra") -> list[Path]:
    """Temporary merge checkouts left by a process killed mid-merge; only when no merge runs."""
    merges = orch.paths.state / "merges"
    if not merges.is_dir():
        return []
    try:
        with merge_lock(orch, timeout=0):
            removed = []
            for path in sorted(merges.iterdir()):
                if path.is_symlink():
                    continue
                git(orch.paths.root, "worktree", "remove", "--force", str(path), check=False)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            git(orch.paths.root, "worktree", "prune", check=False)
            return removed
    except OrchestraError:
        return []  # a merge is running right now: its checkout is not stale


def _precheck(root: Path, target_sha: str, source_sha: str) -> list[str]:
    proc = git(root, "merge-tree", "--write-tree", "--name-only", "--no-messages", target_sha, source_sha,
               check=False)
    if proc.returncode == 0:
        return []
    if proc.returncode != 1:
        raise GitError(f"git merge-tree failed: {proc.stderr.strip() or proc.stdout.strip()}")
    lines = proc.stdout.splitlines()[1:]
    files = []
    for line in lines:
        if not line.strip():
            break
        files.append(line)
    return list(dict.fromkeys(files)) or ["(unknown)"]


def _merge_in(tmp: Path, root: Path, strategy: str, source_sha: str, message: str) -> str:
    identity = worktrees.commit_identity_env(root)
    if strategy == "ff-only":
        git(tmp, "merge", "--quiet", "--ff-only", source_sha)
    elif strategy == "merge":
        git(tmp, "merge", "--quiet", "--no-ff", "--no-verify", "--no-edit", "-m", message, source_sha, env=identity)
    else:
        git(tmp, "merge", "--quiet", "--squash", source_sha, env=identity)
        git(tmp, "commit", "--quiet", "--no-verify", "-m", message, env=identity)
    return git(tmp, "rev-parse", "HEAD").stdout.strip()


def _run_gate(orch: "Orchestra", command: str, cwd: Path, label: str, source: str, into: str) -> dict[str, Any]:
    """The user's own gate string runs through sh; task data reaches it only through the environment."""
    orch.paths.ensure()
    log_path = orch.paths.logs / f"{label}.gate.log"
    env = dict(os.environ)
    env.update({"ORCHESTRA_MERGE_SOURCE": source, "ORCHESTRA_MERGE_TARGET": into,
                "ORCHESTRA_REPO": str(orch.paths.root)})
    timed_out = False
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["sh", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=orch.config.gate_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            code = proc.wait()
    tail = log_path.read_text(errors="replace").splitlines()[-GATE_TAIL_LINES:]
    return {"command": command, "exit_code": -1 if timed_out else code, "timed_out": timed_out,
            "log": str(log_path), "tail": tail}


def _move_target(root: Path, into: str, old: str, new: str, res: MergeResult) -> None:
    holder = checked_out_in(root, into)
    if holder is None:
        proc = git(root, "update-ref", "-m", f"orchestra merge {res.source_branch}", f"refs/heads/{into}", new, old,
                   check=False)
        if proc.returncode != 0:
            res.status = "target_moved"
            res.message = f"{into} moved while the merge was prepared; nothing was changed. Run the merge again."
            return
    else:
        dirty = uncommitted(holder)
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            res.status = "target_dirty"
            res.message = (f"{into} is checked out in {holder} with uncommitted changes ({shown}); it was left "
                           f"exactly as it was and {into} was not moved. Commit or stash them, then merge again.")
            return
        proc = git(holder, "merge", "--quiet", "--ff-only", new, check=False)
        if proc.returncode != 0:
            res.status = "target_moved"
            res.message = (f"could not fast-forward {into} in {holder}: "
                           f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['unknown error']}; "
                           "it was left as it was")
            return
    res.status = "merged"
    where = f" (and its checkout in {holder})" if holder else ""
    res.message = f"merged {res.source_branch} into {into}{where} with {res.strategy}: {old[:12]} -> {new[:12]}"


def _conflict_markers(root: Path, sha: str, files: list[str]) -> list[str]:
    proc = git(root, "grep", "-l", "-I", "-E", "-e", "^(<<<<<<<|>>>>>>>) ", sha, "--", *files, check=False)
    return [line.split(":", 1)[-1] for line in proc.stdout.splitlines() if line.strip()]


# -- merge steps as tasks -----------------------------------------------------------


def merge_message(orch: "Orchestra", source: Task, into: str, strategy: str, workflow_id: str | None) -> str:
    from orchestra.workflows import load_workflow

    if workflow_id:
        wf = load_workflow(orch.paths, workflow_id)
        subject = f"Merge orchestra workflow {wf.id} ({wf.template}): {wf.title}"
        trailer = f"Orchestra-Workflow: {wf.id}\nOrchestra-Task: {source.id}"
    else:
        subject = f"Merge orchestra task {source.id}: {source.title}"
        trailer = f"Orchestra-Task: {source.id}"
    body = f"Branch {source.branch} into {into}."
    if strategy == "squash":
        target = worktrees.branch_head(orch.paths.root, into) or into
        head = worktrees.branch_head(orch.paths.root, source.branch) or source.branch
        commits = git(orch.paths.root, "log", "--reverse", "--format=* %s", f"{target}..{head}").stdout.strip()
        body += f"\n\nSquashed commits:\n{commits}"
    return f"{subject}\n\n{body}\n\n{trailer}"


def run_merge_task(orch: "Orchestra", task: Task) -> MergeResult:
    params = task.extra.get("merge") or {}
    source = orch.store.load(params["source_task"])
    into = params["into"]
    strategy = params.get("strategy") or "merge"
    workflow_id = task.extra.get("workflow")
    result = merge_branch(
        orch, source.branch, into, strategy, merge_message(orch, source, into, strategy, workflow_id),
        label=task.id, require_resolved=source.extra.get("conflict_files"),
    )
    result.task, result.source_task, result.workflow = task.id, source.id, workflow_id
    if result.status == "merged":
        record = {"into": into, "commit": result.new_sha, "source_sha": result.source_sha, "strategy": strategy}
        orch.store.update(source.id, lambda t: t.extra.__setitem__("merged", record), "merged", **record)
    return result


def release_worktree(orch: "Orchestra", task: Task) -> None:
    """Remove a finished task's clean worktree so that another task can check its branch out."""
    path = orch.paths.worktree(task.id)
    if path not in worktree_branches(orch.paths.root):
        return
    dirty = uncommitted(path, untracked=True)
    if dirty:
        raise OrchestraError(f"worktree {path} of task {task.id} has uncommitted changes ({', '.join(dirty[:5])}); "
                             "commit or remove them first")
    git(orch.paths.root, "worktree", "remove", str(path))


def start_resolve(
    orch: "Orchestra", source: Task, into: str, strategy: str, files: list[str], extra: dict[str, Any], *,
    request: str | None = None,
) -> tuple[Task, Task]:
    """An implementer on the conflicting branch, with the merge already begun there, then a merge retry."""
    from orchestra.workflows import new_agentless_task

    root = orch.paths.root
    target_sha = worktrees.branch_head(root, check_target(root, into))
    release_worktree(orch, source)
    holder = checked_out_in(root, source.branch)
    if holder is not None:
        raise OrchestraError(f"branch {source.branch} is checked out in {holder}; cannot resolve there")
    prompt = (
        f"Merging your branch {source.branch} into {into} conflicts in: {', '.join(files)}. Orchestra has begun "
        f"that merge in your worktree (git merge of {into} at {str(target_sha)[:12]}): the files above hold "
        "conflict markers. Resolve each conflict so that both sides' intent is kept, remove every marker, run "
        "the tests, then conclude the merge with git add and git commit.\n\n"
        f"## The original request\n\n{(request or source.prompt).strip()}"
    )
    with orch.store.locked():
        task = orch.submit(prompt, role="implementer", base=source.base_sha or target_sha,
                           title=f"resolve conflicts: {source.title}",
                           extra={**extra, "step": "resolve", "resolves": source.id, "conflict_files": list(files)})
        task.branch = source.branch
        orch.store.save(task, "resolve", branch=source.branch, files=list(files))
        wt = orch.paths.worktree(task.id)
        worktrees.ensure_worktree(root, wt, source.branch, task.base_sha or str(target_sha))
        identity = worktrees.commit_identity_env(root)
        git(wt, "merge", "--no-ff", "--no-commit", "--no-verify", str(target_sha), check=False, env=identity)
        retry = new_agentless_task(
            orch, "merge", f"Merge {source.branch} into {into} after the conflict is resolved.",
            f"merge (retry): {source.title}", [task.id],
            {**extra, "step": "merge", "merge": {"source_task": task.id, "into": into, "strategy": strategy}},
        )
    return task, retry


def default_target(orch: "Orchestra", task: Task) -> str:
    """Where a task's branch goes: its workflow's target, or the branch its chain started from."""
    from orchestra.workflows import load_workflow

    root = orch.paths.root
    merged = task.extra.get("merged")
    if isinstance(merged, dict) and merged.get("into"):
        return str(merged["into"])
    wf_id = task.extra.get("workflow")
    if wf_id:
        wf = load_workflow(orch.paths, wf_id)
        if wf.into:
            return wf.into
    first = task
    seen = {task.id}
    while first.on and first.on not in seen:
        seen.add(first.on)
        first = orch.store.load(first.on)
    if first.base_ref and first.base_ref != "HEAD" and worktrees.branch_exists(root, first.base_ref):
        return first.base_ref
    branch = current_branch(root)
    if branch is None:
        raise InvalidInput("HEAD is detached, so there is no default branch to merge into: pass --into BRANCH")
    return branch


# -- cleanup ------------------------------------------------------------------------


@dataclass
class CleanupReport:
    dry_run: bool
    force: bool
    removed_worktrees: list[dict[str, Any]] = field(default_factory=list)
    deleted_branches: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)

    @property
    def would_lose(self) -> list[dict[str, Any]]:
        """What a forced cleanup throws away (or, without --force, what it keeps for that reason)."""
        items = [i for i in self.removed_worktrees + self.deleted_branches if i.get("lost")]
        return items + [k for k in self.kept if k.get("lost")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "force": self.force,
            "removed_worktrees": self.removed_worktrees,
            "deleted_branches": self.deleted_branches,
            "kept": self.kept,
        }


def cleanup(orch: "Orchestra", *, dry_run: bool = False, force: bool = False) -> CleanupReport:
    """Remove what finished tasks leave behind; anything unmerged only with force, and say what it was."""
    from orchestra.workflows import load_workflow, workflow_ids

    root = orch.paths.root
    report = CleanupReport(dry_run=dry_run, force=force)
    tasks, _ = orch.store.all_tasks()
    busy: set[str] = set()
    for t in tasks:
        if not t.state.final:
            busy.add(t.id)
            if t.on:
                busy.add(t.on)
    for wf_id in workflow_ids(orch.paths):
        try:
            wf = load_workflow(orch.paths, wf_id)
        except OrchestraError:
            continue
        if wf.state == "running":
            busy.update(wf.task_ids())
    registered = worktree_branches(root)
    squashed = [t.extra["merged"]["source_sha"] for t in tasks
                if isinstance(t.extra.get("merged"), dict) and t.extra["merged"].get("strategy") == "squash"]
    by_branch: dict[str, list[Task]] = {}
    for t in tasks:
        if t.branch and t.role not in ("merge", "report"):
            by_branch.setdefault(t.branch, []).append(t)
    for t in sorted(tasks, key=lambda t: t.created_at):
        if not t.state.final or t.role in ("merge", "report"):
            continue
        path = orch.paths.worktree(t.id)
        if path in registered:
            _cleanup_worktree(root, t, path, report, force, dry_run)
    for branch, owners in sorted(by_branch.items()):
        if any(o.id in busy for o in owners):
            continue
        head = worktrees.branch_head(root, branch)
        if head is None:
            continue
        _cleanup_branch(orch, branch, head, owners, registered, squashed, report, force, dry_run)
    return report


def _cleanup_worktree(root: Path, t: Task, path: Path, report: CleanupReport, force: bool, dry_run: bool) -> None:
    item: dict[str, Any] = {"task": t.id, "path": str(path)}
    if path.is_symlink():
        # Not ours any more: removing "through" it could delete whatever it points at.
        report.kept.append({**item, "what": "worktree", "reason": "is a symlink; orchestra does not follow it"})
        return
    dirty = uncommitted(path, untracked=True)
    if dirty:
        item["lost"] = [f"uncommitted: {f}" for f in dirty]
        if not force:
            report.kept.append({**item, "what": "worktree", "reason": "uncommitted changes (use --force)"})
            return
    if not dry_run:
        args = ["worktree", "remove", *(["--force"] if dirty else []), str(path)]
        proc = git(root, *args, check=False)
        if proc.returncode != 0:
            report.kept.append({**item, "what": "worktree", "reason": proc.stderr.strip() or "git refused"})
            return
    report.removed_worktrees.append(item)


def _cleanup_branch(
    orch: "Orchestra", branch: str, head: str, owners: list[Task], registered: dict[Path, str | None],
    squashed: list[str], report: CleanupReport, force: bool, dry_run: bool,
) -> None:
    root = orch.paths.root
    owner = owners[-1]
    item: dict[str, Any] = {"task": owner.id, "branch": branch, "sha": head}
    if dry_run:  # nothing was removed: leave out the worktrees the real run would remove
        removed = {Path(w["path"]) for w in report.removed_worktrees}
        holders = [p for p, b in registered.items() if b == branch and p not in removed]
    else:
        holders = [p for p, b in worktree_branches(root).items() if b == branch]
    if holders:
        report.kept.append({**item, "what": "branch", "reason": f"checked out in {holders[0]}"})
        return
    try:
        target = default_target(orch, owner)
        target_head = worktrees.branch_head(root, target)
    except OrchestraError:
        target, target_head = None, None
    item["into"] = target
    merged = bool(target_head and is_ancestor(root, head, target_head))
    merged = merged or any(is_ancestor(root, head, s) for s in squashed)
    base = owners[0].base_sha
    if not merged and base == head:
        others = git(root, "for-each-ref", "--contains", head, "--format=%(refname)", check=False).stdout.split()
        merged = any(r != f"refs/heads/{branch}" for r in others)
    if not merged:
        upto = target_head or base
        log = git(root, "log", "--format=%h %s", f"{upto}..{head}", check=False).stdout.splitlines() if upto else []
        item["lost"] = log or [f"{head[:12]} (not contained in {target or 'any target'})"]
        if not force:
            reason = f"not merged into {target}" if target else "no target branch to check it against"
            report.kept.append({**item, "what": "branch", "reason": f"{reason} (use --force)"})
            return
    if not dry_run:
        proc = git(root, "update-ref", "-d", f"refs/heads/{branch}", head, check=False)
        if proc.returncode != 0:
            report.kept.append({**item, "what": "branch", "reason": proc.stderr.strip() or "git refused"})
            return
        for o in owners:  # the record `doctor` reads, so a deleted branch is not reported as lost
            orch.store.append_event(o.id, "branch_deleted", branch=branch, sha=head, into=target,
                                    forced=bool(item.get("lost")))
    report.deleted_branches.append(item)


# -- `orchestra merge` ----------------------------------------------------------------


def run_manual_merge(orch: "Orchestra", ref: str, *, into: str | None, strategy: str, resolve: bool) -> MergeResult:
    """Merge a task's branch or a workflow's result now, in this process, recorded as a merge task."""
    from orchestra import workflows
    from orchestra.errors import TaskNotFound
    from orchestra.task import State

    if strategy not in MERGE_STRATEGIES:
        raise InvalidInput(f"unknown merge strategy {strategy!r}; use one of {', '.join(MERGE_STRATEGIES)}")
    wf_id = workflows.resolve_workflow(orch.paths, ref)
    try:
        task_id: str | None = orch.store.resolve(ref)
    except TaskNotFound:
        task_id = None
    if wf_id and task_id:
        raise InvalidInput(f"{ref!r} names both workflow {wf_id} and task {task_id}; type more of the id")
    if not wf_id and not task_id:
        raise TaskNotFound(f"no task or workflow {ref}")
    root = orch.paths.root
    wf = None
    with orch.store.locked():
        if wf_id:
            wf = workflows.refresh(orch, wf_id)
            tpl = wf.template_obj()
            step = tpl.merge_step
            if step is None or step.on is None:
                raise InvalidInput(f"workflow {wf.id} ({wf.template}) has no merge step")
            if wf.state == "running":
                raise InvalidInput(f"workflow {wf.id} is still running; its merge step runs once the review approves")
            if wf.state == "cancelled":
                raise InvalidInput(f"workflow {wf.id} was cancelled")
            inst = wf.latest().get(step.on)
            source = orch.store.load(inst["task"]) if inst else None
            if source is None or source.state != State.SUCCEEDED:
                state = source.state if source else "not started"
                raise InvalidInput(f"workflow {wf.id} has no branch to merge: step {step.on} is {state}")
            target = check_target(root, into) if into else wf.into
            if not target:
                raise InvalidInput(f"workflow {wf.id} has no target branch: pass --into BRANCH")
            extra: dict[str, Any] = {"workflow": wf.id, "step": step.name, "round": wf.round}
        else:
            assert task_id is not None
            source = orch.store.load(task_id)
            if source.role in ("merge", "report") or not source.branch:
                raise InvalidInput(f"task {source.id} is a {source.role} step and has no branch to merge")
            if source.state != State.SUCCEEDED:
                raise InvalidInput(f"task {source.id} is {source.state}; only succeeded tasks are merged")
            target = check_target(root, into) if into else default_target(orch, source)
            extra = {"step": "merge"}
        extra["merge"] = {"source_task": source.id, "into": target, "strategy": strategy}
        task = workflows.new_agentless_task(
            orch, "merge", f"Merge {source.branch} into {target}.", f"merge: {source.title}",
            [source.id], extra, running=True,
        )
        if wf is not None:
            wf.instances.append({"step": extra["step"], "task": task.id, "round": wf.round})
            workflows.save_workflow(orch, wf)
    try:
        result = run_merge_task(orch, task)
    except OrchestraError as exc:
        workflows.finish_agentless(orch, task.id, str(exc), "", {})
        if wf is not None:
            workflows.advance(orch, wf.id)
        raise
    task = workflows.finish_agentless(orch, task.id, None if result.ok else result.message, result.message,
                                      {"merge_result": result.to_dict()})
    if result.status == "conflict" and resolve:
        if wf is not None:
            with orch.store.locked():
                wf = workflows.load_workflow(orch.paths, wf.id)
                resolver, retry = workflows.start_resolve_in_workflow(orch, wf, task)
                workflows.save_workflow(orch, wf)
        else:
            resolver, retry = start_resolve(orch, source, target, strategy, result.files, {})
        result.resolve_task, result.retry_task = resolver.id, retry.id
    if wf is not None:
        workflows.advance(orch, wf.id)
    return result

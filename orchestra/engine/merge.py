"""Merging as a use case: the merge step of a workflow, `orchestra merge`, and resolving conflicts.

git.merging does the git work; this module decides what merges where, runs the
user's gate, records the result on the tasks and the workflow, and starts a
resolver when asked. One merge at a time per repository.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestra.agent import processes, sandbox
from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import OrchestraError
from orchestra.core.redact import mask_secrets
from orchestra.core.task import MergeSpec, Task
from orchestra.engine import agentless, changes, push
from orchestra.engine import tasks as task_cases
from orchestra.engine.context import Context
from orchestra.git import merging, refs, worktrees
from orchestra.git.merging import MergeResult
from orchestra.git.repo import commit_identity_env
from orchestra.git.runner import git
from orchestra.store import workflows as records
from orchestra.store.locks import exclusive

MERGE_LOCK_TIMEOUT = 3600.0
GATE_TAIL_LINES = 20
GATE_TAIL_BYTES = 64 * 1024
GATE_MARKER = "ORCHESTRA_GATE_RUN"


@contextmanager
def merge_lock(ctx: Context, timeout: float = MERGE_LOCK_TIMEOUT) -> Iterator[None]:
    """One merge at a time per repository: two merges into one target would race."""
    ctx.paths.ensure()
    with exclusive(ctx.paths.merge_lock, timeout, "another merge is still running; try again when it ends"):
        yield


def remove_stale_scratch(ctx: Context) -> list[Path]:
    """Temporary merge checkouts left by a process killed mid-merge; only when no merge runs."""
    try:
        with merge_lock(ctx, timeout=0):
            return merging.remove_scratch(ctx.root, ctx.paths.merges)
    except OrchestraError:
        return []  # a merge is running right now: its checkout is not stale


def run_gate(ctx: Context, command: str, cwd: Path, label: str, source: str, into: str) -> dict[str, Any]:
    """The user's own gate string runs through sh; task data reaches it only through the environment."""
    ctx.paths.ensure()
    log_path = ctx.paths.gate_log(label)
    env = dict(os.environ)
    marker = secrets.token_hex(8)
    env.update(
        {
            "ORCHESTRA_MERGE_SOURCE": source,
            "ORCHESTRA_MERGE_TARGET": into,
            "ORCHESTRA_REPO": str(ctx.root),
            GATE_MARKER: marker,
        }
    )
    timed_out = False
    argv = ["sh", "-c", command]
    confined = ctx.config.sandbox == sandbox.REQUIRED
    tmp = Path(tempfile.mkdtemp(prefix="orchestra-gate-"))
    if confined:
        env["TMPDIR"] = str(tmp)
        try:
            argv = sandbox.confine(
                argv,
                cwd,
                tmp,
                list(ctx.config.sandbox_allow_write),
                network=bool(ctx.config.sandbox_allow_domains),
            )
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            return {
                "command": command,
                "exit_code": -1,
                "timed_out": False,
                "log": str(log_path),
                "tail": [f"the gate runs in a sandbox (sandbox = required) and cannot start: {exc}"],
            }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=ctx.config.gate_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _end_gate(proc)
            code = proc.wait()
        except BaseException:  # Ctrl-C: the gate has its own session, so the terminal's signal never reached it
            _end_gate(proc)
            proc.wait()
            raise
        finally:
            # Whatever the gate started and left behind (a setsid daemon) ends with it.
            for pid in processes.with_marker(GATE_MARKER, marker):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            shutil.rmtree(tmp, ignore_errors=True)
    tail = [mask_secrets(line) for line in _tail_lines(log_path, GATE_TAIL_LINES)]
    return {
        "command": command,
        "exit_code": -1 if timed_out else code,
        "timed_out": timed_out,
        "log": str(log_path),
        "tail": tail,
    }


def _end_gate(proc: subprocess.Popen[bytes]) -> None:
    processes.kill_descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


def _tail_lines(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - GATE_TAIL_BYTES))
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


def merge_message(ctx: Context, source: Task, into: str, strategy: str, workflow_id: str | None) -> str:
    if workflow_id:
        wf = records.load(ctx.store, workflow_id)
        subject = f"Merge orchestra workflow {wf.id} ({wf.template}): {wf.title}"
        trailer = f"Orchestra-Workflow: {wf.id}\nOrchestra-Task: {source.id}"
    else:
        subject = f"Merge orchestra task {source.id}: {source.title}"
        trailer = f"Orchestra-Task: {source.id}"
    body = f"Branch {source.branch} into {into}."
    if strategy == "squash":
        body += f"\n\nSquashed commits:\n{merging.squash_body(ctx.root, into, source.branch)}"
    return f"{subject}\n\n{body}\n\n{trailer}"


def run_merge_task(ctx: Context, task: Task) -> MergeResult:
    spec = task.merge
    if spec is None:
        raise OrchestraError(f"task {task.id} has no merge to do")
    source = ctx.store.load(spec.source_task)
    gate_command = ctx.config.gate

    def gate(tmp: Path) -> dict[str, Any] | None:
        if not gate_command:
            return None
        return run_gate(ctx, gate_command, tmp, task.id, source.branch, spec.into)

    if spec.strategy == "pr":
        return _open_pull_request(ctx, task, source, spec.into)
    with merge_lock(ctx):
        result = merging.merge_branch(
            ctx.root,
            ctx.paths.merges,
            source.branch,
            spec.into,
            spec.strategy,
            merge_message(ctx, source, spec.into, spec.strategy, task.workflow),
            label=task.id,
            gate=gate,
            require_resolved=source.conflict_files or None,
        )
    result.task, result.source_task, result.workflow = task.id, source.id, task.workflow
    crash_point("merge_before_record")
    # Up to date by our own earlier merge (re-run after a crash, or a concurrent run): record it all the same.
    if result.status == "merged" or (result.status == "up_to_date" and not _recorded(source, result)):
        record = {
            "into": spec.into,
            "commit": result.landed_in or result.new_sha,
            "source_sha": result.source_sha,
            "strategy": "squash" if result.landed_in else spec.strategy,
        }

        with ctx.store.locked():  # read again: a merge that ran meanwhile may have recorded this one already
            current = ctx.store.load(source.id)
            if not (result.status == "up_to_date" and _recorded(current, result)):
                current.merged = record
                ctx.store.save(current, "merged", **record)
    crash_point("merge_after_record")
    return result


def _recorded(source: Task, result: MergeResult) -> bool:
    m = source.merged
    return isinstance(m, dict) and m.get("into") == result.into and m.get("source_sha") == result.source_sha


def unfinished_resolution(ctx: Context, task: Task) -> str | None:
    """Why a resolver's run must fail before its leftovers are committed: it left its merge half done.

    Committing that (as the end-of-run commit would) concludes the merge with the conflict
    markers in it, so the merge stays uncommitted in the checkout for a person instead.
    """
    try:
        wt = ctx.executor().workspace(task)
        if wt is None or not merging.merge_in_progress(wt):
            return None
        left = merging.unresolved_in_checkout(wt, task.conflict_files)
    except OrchestraError:
        return None
    if not left:
        return None
    return (
        f"the conflict is not resolved: conflict markers are left in {', '.join(left)}; "
        f"the unfinished merge was not committed (it is still in {wt})"
    )


def markers_left(ctx: Context, task: Task) -> str | None:
    """Why a resolver's run fails after all: its branch still has conflict markers in the files it was given."""
    head = refs.branch_head(ctx.root, task.branch) if task.branch else None
    if not head or not task.conflict_files:
        return None
    left = merging.conflict_markers(ctx.root, head, task.conflict_files)
    if not left:
        return None
    return f"the conflict is not resolved: {task.branch} still has conflict markers in {', '.join(left)}"


def _open_pull_request(ctx: Context, task: Task, source: Task, into: str) -> MergeResult:
    """merge_strategy "pr": the branch goes to the remote and a pull request, not into a local branch."""
    wf = records.load(ctx.store, task.workflow) if task.workflow else None
    change = changes.of_task(ctx, source)
    if wf is not None:
        change = changes.of_workflow(ctx, wf)
    result = MergeResult("error", "", source_branch=source.branch, source_sha=change.head, into=into, strategy="pr")
    result.task, result.source_task, result.workflow = task.id, source.id, task.workflow
    try:
        pushed = push.push_change(ctx, change, source, wf, into, remote=None, pr=True)
    except OrchestraError as exc:
        result.message = f"could not open a pull request: {exc}"
        return result
    result.status, result.pr_url = "pull_request", pushed.pr_url
    result.message = pushed.message
    return result


def release_worktree(ctx: Context, task: Task) -> None:
    """Remove a finished task's clean worktree so that another task can check its branch out."""
    path = ctx.paths.worktree(task.id)
    if path not in worktrees.list_worktrees(ctx.root):
        return
    dirty = worktrees.uncommitted(path, untracked=True)
    if dirty:
        raise OrchestraError(
            f"worktree {path} of task {task.id} has uncommitted changes ({', '.join(dirty[:5])}); "
            "commit or remove them first"
        )
    git(ctx.root, "worktree", "remove", str(path))


def start_resolve(
    ctx: Context,
    source: Task,
    into: str,
    strategy: str,
    files: list[str],
    *,
    workflow: str | None = None,
    round: int | None = None,
    request: str | None = None,
) -> tuple[Task, Task]:
    """An implementer on the conflicting branch, with the merge already begun there, then a merge retry."""
    root = ctx.root
    target_sha = refs.branch_head(root, refs.check_target(root, into))
    release_worktree(ctx, source)
    holder = worktrees.checked_out_in(root, source.branch)
    if holder is not None:
        raise OrchestraError(f"branch {source.branch} is checked out in {holder}; cannot resolve there")
    prompt = (
        f"Merging your branch {source.branch} into {into} conflicts in: {', '.join(files)}. Orchestra has begun "
        f"that merge in your worktree (git merge of {into} at {str(target_sha)[:12]}): the files above hold "
        "conflict markers. Resolve each conflict so that both sides' intent is kept, remove every marker, run "
        "the tests, then conclude the merge with git add and git commit.\n\n"
        f"## The original request\n\n{(request or source.prompt).strip()}"
    )
    with ctx.store.locked():
        task = task_cases.submit(
            ctx,
            task_cases.Submission(
                prompt,
                role="implementer",
                base=source.base_sha or target_sha,
                title=f"resolve conflicts: {source.title}",
                workflow=workflow,
                step="resolve",
                round=round,
                branch=source.branch,
                resolves=source.id,
                conflict_files=list(files),
            ),
        )
        ctx.store.append_event(task.id, "resolve", branch=source.branch, files=list(files))
        wt = ctx.paths.worktree(task.id)
        worktrees.ensure_worktree(root, wt, source.branch, task.base_sha or str(target_sha))
        git(
            wt,
            "merge",
            "--no-ff",
            "--no-commit",
            "--no-verify",
            str(target_sha),
            check=False,
            env=commit_identity_env(root),
        )
        retry = agentless.new_agentless_task(
            ctx,
            "merge",
            f"Merge {source.branch} into {into} after the conflict is resolved.",
            f"merge (retry): {source.title}",
            [task.id],
            workflow=workflow,
            step="merge",
            round=round,
            merge=MergeSpec(task.id, into, strategy),
        )
    return task, retry

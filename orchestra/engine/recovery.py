"""After a scheduler died: adopt agents still alive, finish runs that ended unwatched, resume the dead.

Shared by the scheduler's start-up and `doctor --fix`, so both settle a task the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from orchestra.agent import processes
from orchestra.agent.outcome import read_outcome
from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import OrchestraError
from orchestra.core.task import State, Task
from orchestra.engine import agentless, merge, tempfiles, workflows
from orchestra.engine.context import Context
from orchestra.executors.base import Handle
from orchestra.git import worktrees

StartRunner = Callable[..., None]


def recover(ctx: Context, start_runner: StartRunner, bad: set[str]) -> None:
    """Settle every task a dead scheduler left live, then catch the workflows up."""
    for note in ctx.store.verify_live():  # the live index against the live tasks' files: cheap
        ctx.log(f"index corrected: {note}")
    with worktrees.WORKTREE_ADMIN_LOCK:
        for half in worktrees.interrupted_adds(ctx.root, ctx.paths.worktrees):
            # No runner has started yet, so no add of ours is under way: this one was killed.
            ctx.log(f"removing a worktree whose creation was interrupted: {half.path}")
            worktrees.clear_interrupted_add(half)
    for path in merge.remove_stale_scratch(ctx):
        ctx.log(f"removed the checkout of a merge that was interrupted: {path}")
    removed = tempfiles.remove_stale_temp_files(ctx.paths, history=False)  # doctor looks at the rest
    if removed:
        ctx.log(f"removed {len(removed)} temp file(s) of writers that died")
    for s in list(ctx.store.live().values()):
        if s["state"] not in (State.RUNNING, State.AWAITING_INPUT):
            continue
        try:
            task = ctx.store.load(s["id"])
            recover_one(ctx, task, start_runner)
        except OrchestraError as exc:
            bad.add(s["id"])
            ctx.log(f"skipping {s['id']}: {exc}")
    workflows.advance_all(ctx)


def recover_one(ctx: Context, task: Task, start_runner: StartRunner) -> None:
    """Settle one live task whose scheduler died; `task` as read a moment ago (it may have moved on since)."""
    crash_point("recover")
    if not task.live or run_elsewhere(task):
        return  # ended meanwhile, or a person's `orchestra merge` or an earlier scheduler's runner runs it now
    handle: Handle | None = None if task.agentless else ctx.executor().adopt(task)
    if handle is not None:
        if handle.pid != task.pid or handle.node != task.node:

            def found(t: Task) -> None:
                t.record_process(handle.pid, handle.proc_start, node=handle.node, node_id=handle.node_id)
                t.worktree = t.worktree or handle.worktree

            ctx.store.update(task.id, found)
        ctx.store.append_event(task.id, "adopted", pid=handle.pid)
        ctx.log(f"{task.id} adopted (pid {handle.pid})")
        start_runner(task.id, handle)
        return
    outcome = read_outcome(ctx.paths.log_file(task.id), task.log_offset)
    if outcome.has_result or task.cancel_requested:
        ctx.log(f"{task.id} ended while no scheduler watched; finishing it")
        start_runner(task.id, None, finish_only=True)
        return
    if task.attempts >= task.max_attempts:
        start_runner(
            task.id, None, finish_only=True, reason=f"agent died and all {task.max_attempts} attempts are used"
        )
        return
    session = outcome.session_id or task.session_id
    if _requeue_unless_moved_on(ctx, task, session):
        ctx.log(f"{task.id} agent died; " + (f"will resume session {session}" if session else "will run again"))


def _requeue_unless_moved_on(ctx: Context, seen: Task, session: str | None) -> bool:
    """Re-queue the run `seen` describes, unless the task file has moved on from it: ended, queued or
    claimed again, or taken up by a process that runs it. Checked under the lock the re-queue is made in."""
    with ctx.store.locked():
        task = ctx.store.load(seen.id)
        same = task.live and task.attempts == seen.attempts and task.pid == seen.pid
        if not same or run_elsewhere(task):
            ctx.log(
                f"{seen.id} changed while it was being settled (now {task.state}, attempt {task.attempts}); left as is"
            )
            return False
        # A run that never started (its scheduler died between the claim and the agent's start) still owes
        # what it was to say: a person's reply, or the nudge after an API error. Launching clears it.
        task.requeue(session=session, next_prompt=task.next_prompt)
        ctx.store.save(task, "requeued", reason="agent died", resume=session)
    return True


def run_elsewhere(task: Task) -> bool:
    """Whether an agentless task (a merge) is being run by a live process: the one that recorded it, a
    person's `orchestra merge` or a scheduler's runner that outlived its scheduler's claim.

    In this very process, only while one of its threads still runs it: otherwise the run ended here
    without recording its end (a full disk), and is settled like any other.
    """
    if not task.agentless or not task.pid or task.proc_start is None:
        return False
    if task.pid == os.getpid():
        return agentless.is_running_here(task.id)
    return processes.proc_start_time(task.pid) == task.proc_start


def give_back(ctx: Context, task_id: str, why: str) -> None:
    """Put a live task back in the queue (its session resumes) when its end cannot be recorded."""

    def mutate(t: Task) -> None:
        if t.live:
            t.requeue(session=t.session_id)
            t.error = why

    ctx.store.update(task_id, mutate, "requeued", reason=why)

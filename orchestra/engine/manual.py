"""A person steps in: a task's worktree, its diff, and an interactive Claude session on its branch.

`orchestra attach`, `open`, `path` and the interactive screen's `v` and `o` keys all
come here, so every front end refuses the same tasks with the same words. Running the
interactive program itself is the front end's job (it owns the terminal); this module
decides whether a task may be stepped into, gets it ready (a running agent is stopped
first, since two processes must never write one session or one worktree), and
afterwards commits what the person changed on the task's branch and notes the session
in the task's record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestra.agent import claude, sandbox
from orchestra.core.errors import InvalidInput, OrchestraError
from orchestra.core.task import State, Task, now
from orchestra.engine import changes
from orchestra.engine import tasks as task_cases
from orchestra.engine.context import Context
from orchestra.engine.scheduler import start_background
from orchestra.git import refs, repo, workspace, worktrees

STOP_WAIT_SLACK = 20.0  # seconds past kill_grace to wait for a stopped agent's end to be recorded


def worktree(ctx: Context, ref: str) -> Path:
    """The task's checkout on this machine, or a one-line reason why there is none."""
    task = task_cases.get(ctx, ref)
    path = ctx.executor().workspace(task)
    if path is None:
        if task.state == State.QUEUED and not task.attempts:
            raise InvalidInput(f"task {task.id} has not started yet, so it has no worktree")
        if task.node:
            raise InvalidInput(
                f"task {task.id} {_ran(task)} on node {task.node}: its checkout is on that machine, not here"
                + ("" if task.live else f"; its branch {task.branch} is here")
            )
        raise InvalidInput(f"task {task.id} has no worktree any more (removed by cleanup?)")
    return path


def _ran(task: Task) -> str:
    return "runs" if task.live else "ran"


def diff(ctx: Context, ref: str) -> str:
    """What the task's branch (or the workflow's result) changed, as the screen shows it; the reason as the
    text when there is nothing yet.

    The same change, and the same words, as `orchestra diff` (engine.changes)."""
    try:
        change = changes.of_ref(ctx, ref, with_commits=False)
    except InvalidInput as exc:
        return str(exc)
    return changes.screen_text(ctx, change)


# -- attach: an interactive Claude session on the task's branch ---------------------------


@dataclass
class Attach:
    """What the front end runs, where, and what to hand back to `finish_attach` afterwards."""

    task: Task
    argv: list[str]
    cwd: Path
    head_before: str | None
    started_at: float
    stopped: bool  # the agent was stopped to make way for the person


def begin_attach(ctx: Context, ref: str, *, stop: bool = False) -> Attach:
    """Check the task can be stepped into, stop its agent if allowed, and say what to run.

    A running agent is refused unless `stop`; a waiting one is stopped either way (its
    question is the person's to answer now, in the session). Queued tasks have nothing
    to attach to yet.
    """
    task = task_cases.get(ctx, ref)
    if task.agentless:
        raise InvalidInput(f"task {task.id} is a {task.role} step: it has no Claude session")
    if task.state == State.QUEUED:
        raise InvalidInput(f"task {task.id} is queued: it has no session to attach to yet (cancel it first?)")
    if task.node:
        raise InvalidInput(
            f"task {task.id} {_ran(task)} on node {task.node}: its Claude session is on that machine, not here; "
            f"once it has ended, 'orchestra respond {task.id} TEXT' continues it there"
        )
    if task.state == State.RUNNING and not stop:
        raise InvalidInput(
            f"task {task.id} is running; 'orchestra attach {task.id} --stop' stops its agent first (work is kept)"
        )
    if not task.live and not task.session_id:
        raise InvalidInput(
            f"task {task.id} has no Claude session to attach to; 'orchestra open {task.id}' opens its worktree"
        )
    path = worktree(ctx, task.id)
    binary = claude.resolve_binary(ctx.config.claude_binary_resolved)
    stopped = False
    if task.live:  # the session id is recorded when the run's end is
        task = _stop_and_settle(ctx, task)
        stopped = True
        if not task.session_id:
            raise InvalidInput(f"task {task.id}'s agent stopped before Claude Code started a session")
    head = refs.branch_head(ctx.root, task.branch)
    return Attach(task, attach_argv(ctx, binary, str(task.session_id)), path, head, now(), stopped)


def attach_argv(ctx: Context, binary: str, session_id: str) -> list[str]:
    """The interactive session gets the box the agent had: the checkout is the agent's, and a
    `.claude/settings.json` it planted there (hooks) must not run as the person, nor outside the sandbox."""
    argv = [binary, "--resume", session_id, *sandbox.CLI_FLAGS]
    if ctx.config.sandbox == sandbox.REQUIRED:
        box = sandbox.settings(list(ctx.config.sandbox_allow_write), list(ctx.config.sandbox_allow_domains))
        argv += ["--settings", json.dumps({"sandbox": box})]
    return argv


def _stop_and_settle(ctx: Context, task: Task) -> Task:
    """Stop the agent and wait until its end is recorded, so the session file is the person's alone."""
    task_cases.cancel(ctx, task.id)
    if start_background(ctx):  # nobody watched it: a scheduler records the end (and commits its leftovers)
        ctx.log(f"{task.id}: started a scheduler to record the stopped agent's end")
    deadline = time.monotonic() + float(ctx.config.kill_grace) + STOP_WAIT_SLACK
    while time.monotonic() < deadline:
        task = ctx.store.load(task.id)
        if task.state.final:
            return task
        time.sleep(0.2)
    raise OrchestraError(f"task {task.id}'s agent did not stop in time; try again, or 'orchestra doctor'")


def finish_attach(ctx: Context, attach: Attach, exit_code: int | None) -> dict[str, Any]:
    """The person left the session: commit what changed on the branch and note the session in the record."""
    task = attach.task
    path = ctx.executor().workspace(task)
    commit: str | None = None
    tip: str | None = None
    problem: str | None = None
    if path is not None:
        identity = repo.commit_identity_env(ctx.root)
        done = worktrees.collect(
            ctx.root,
            path,
            task.branch,
            task.branch_sha or workspace.UNKNOWN,
            f"{' '.join(task.title.split())[:72] or 'manual session'}\n\n"
            f"What the person left uncommitted when they left 'orchestra attach' (task {task.id}),"
            f" committed by orchestra.\n\nOrchestra-Task: {task.id}",
            identity,
            copied=task.copied,
            label=task.id,
        )
        commit, tip, problem = done.commit, done.tip, done.error
    head_after = refs.branch_head(ctx.root, task.branch)
    commits = 0
    if attach.head_before and head_after and head_after != attach.head_before:
        commits = len(refs.log_lines(ctx.root, f"{attach.head_before}..{head_after}"))
    record = {
        "started_at": attach.started_at,
        "ended_at": now(),
        "session_id": task.session_id,
        "exit_code": exit_code,
        "stopped_agent": attach.stopped,
        "commit": commit,
        "head_before": attach.head_before,
        "head_after": head_after,
        "commits": commits,
    }
    if problem:
        record["error"] = problem  # the work stays in the checkout; doctor reports it (work_not_home)

    def note(t: Task) -> None:
        t.manual_sessions.append(record)
        if tip:
            t.branch_sha = tip

    ctx.store.update(task.id, note, "manual_session", **{k: v for k, v in record.items() if k != "session_id"})
    return record

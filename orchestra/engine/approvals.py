"""Agents asking a person: a task waits while its permission server has an unanswered question.

The questions live in `.orchestra/requests/<task>/` (store.requests). Whoever watches
a run calls `observe` to turn them into the task's state: `awaiting_input` while one is
open, `running` again once none is. `answer` records a person's decision; the first
decision written wins, so an answer that comes after the timeout is refused, not lost.
"""

from __future__ import annotations

from typing import Any

from orchestra.core.errors import InvalidInput
from orchestra.core.task import State, Task, now
from orchestra.engine import notify
from orchestra.engine.context import Context
from orchestra.store import requests as channel


def pending(ctx: Context, task: Task) -> list[dict[str, Any]]:
    """Unanswered requests of the task's current run, oldest first."""
    return channel.pending(ctx.paths.request_dir(task.id), attempt=task.attempts)


def pending_request(ctx: Context, task: Task) -> dict[str, Any] | None:
    """The oldest unanswered request of a waiting task, with a one-line summary."""
    if task.state != State.AWAITING_INPUT:
        return None
    waiting = pending(ctx, task)
    if not waiting:
        return None
    request = dict(waiting[0])
    request["summary"] = channel.describe(request)
    request["waiting"] = len(waiting)
    return request


def observe(ctx: Context, task_id: str, told: set[str]) -> None:
    """Bring the task's state in line with its open questions, and say so once per question.

    `told` holds the request ids this watcher has already reported (the on_event hook
    hears of each new question once; a question a rule allowed is only logged).
    """
    fresh: list[dict[str, Any]] = []
    with ctx.store.locked():
        task = ctx.store.load(task_id)
        if not task.live:
            return
        directory = ctx.paths.request_dir(task.id)
        everything = [r for r in channel.requests(directory) if r.get("attempt") == task.attempts]
        for request in everything:
            if request["id"] in told:
                continue
            answer = request.get("answer") or {}
            if answer.get("by") == channel.BY_RULE:
                told.add(request["id"])
                ctx.store.append_event(
                    task.id,
                    "input_auto_allowed",
                    tool=request.get("tool_name"),
                    rule=answer.get("always"),
                    request=request["id"],
                )
            elif request["state"] == channel.PENDING:
                told.add(request["id"])
                fresh.append(request)
        waiting = [r for r in everything if r["state"] == channel.PENDING]
        if waiting and task.state == State.RUNNING:
            first = waiting[0]
            task.await_input(float(first.get("created_at") or now()))
            ctx.store.save(task, "awaiting_input", request=first["id"], tool=first.get("tool_name"))
        elif not waiting and task.state == State.AWAITING_INPUT:
            task.input_settled()
            ctx.store.save(task, "input_done")
    for request in fresh:
        notify.fire(ctx, "needs_input", ctx.store.load(task_id), request=request)


def answer(ctx: Context, task_id: str, *, allow: bool, message: str | None = None, always: bool = False) -> Task:
    """A person's answer to the oldest pending request; the permission server picks it up."""
    directory = ctx.paths.request_dir(task_id)
    with ctx.store.locked():
        task = ctx.store.load(task_id)
        waiting = pending(ctx, task) if task.state == State.AWAITING_INPUT else []
        if not waiting:
            raise InvalidInput(f"task {task.id} has no pending permission request (it is {task.state})")
        request = waiting[0]
        from orchestra.agent import permissions  # rules, TOML, fnmatch: ~4 ms that status and list skip

        rule = permissions.always_rule(request["tool_name"], request.get("input") or {}) if always else None
        decision, ours = channel.answer(
            directory, request["id"], channel.ALLOWED if allow else channel.DENIED, message=message, always=rule
        )
        if not ours:
            raise InvalidInput(f"task {task.id}'s request was already {decision.get('state')}; nothing was changed")
        if rule and rule not in task.always_allow:
            task.always_allow.append(rule)
            channel.set_always_rules(directory, task.always_allow)
        # Back to running at once when nothing else waits, so `orchestra wait` right after
        # `respond` waits for the end of the task, not for the scheduler's next look.
        if len(waiting) == 1:
            task.input_settled()
        ctx.store.save(task, "input_answered", request=request["id"], decision=decision["state"], always=rule)
        return task


def abandon_all(ctx: Context, task: Task, why: str) -> None:
    """The run is over: questions still open will never be answered."""
    directory = ctx.paths.request_dir(task.id)
    for request in channel.pending(directory):
        channel.answer(directory, request["id"], channel.ABANDONED, message=why, by="orchestra")

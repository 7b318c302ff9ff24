"""Use cases on single tasks: submit, cancel, stop, retry, reply, reprioritise, reassign, wait.

Every rule about a task's input (prompt, role, priority, dependencies, refs) is
checked here, once, so every front end refuses the same things with the same words,
and workflows that submit steps go through the same checks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestra.core.errors import InvalidInput, TaskNotFound
from orchestra.core.graph import find_cycle
from orchestra.core.roles import get_role
from orchestra.core.task import LIVE_STATES, State, Task, make_title, validate_state
from orchestra.core.values import parse_duration, parse_usd, resources
from orchestra.core.values import priority as check_priority
from orchestra.engine.context import Context
from orchestra.git import refs, worktrees
from orchestra.store.scheduler import scheduler_pid

MAX_PROMPT_CHARS = 200_000
MAX_TITLE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")


def check_text(text: object, what: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """Text a person or a model gave: not empty, not too long, and no control characters but tab and newline."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(
            f"empty {what}: say what the agent should do" if what in ("prompt", "reply") else f"empty {what}"
        )
    if len(text) > limit:
        raise InvalidInput(f"{what} too long ({len(text)} characters; the limit is {limit})")
    bad = _CONTROL.search(text)
    if bad:
        raise InvalidInput(f"{what} contains a control character ({bad.group()!r}); remove it")
    return text


@dataclass
class Submission:
    """One task to submit, as the front ends and workflows describe it."""

    prompt: str
    role: str = "generalist"
    priority: object = 0
    after: list[str] = field(default_factory=list)
    on: str | None = None
    base: str | None = None
    title: str | None = None
    timeout: object = None
    budget: object = None
    review: bool = False
    workflow: str | None = None
    step: str | None = None
    round: int | None = None
    revision_of: str | None = None
    continue_session: str | None = None
    branch: str | None = None  # work on this existing branch instead of a new one (revision, resolve)
    resolves: str | None = None
    conflict_files: list[str] = field(default_factory=list)
    resources: object = None  # custom Ray resources, a JSON object (executor = ray)


def submit(ctx: Context, sub: Submission) -> Task:
    return submit_many(ctx, [sub])[0]


def submit_many(ctx: Context, subs: list[Submission]) -> list[Task]:
    """Check every submission, then write them all under one lock; nothing is written if one is bad.

    Later submissions may name earlier ones of the same batch (by their ids) in `after` and `on`.
    """
    roles = ctx.roles()
    checked = [_check(sub, roles) for sub in subs]
    if not refs.has_commits(ctx.root):
        raise InvalidInput("the repository has no commits yet; make a first commit, then submit")
    bases = [None if sub.on else refs.resolve_commit(ctx.root, sub.base or "HEAD") for sub, *_ in checked]
    tasks: list[Task] = []
    with ctx.store.locked():
        summaries = ctx.store.summaries()
        graph = {tid: list(s.get("depends_on") or []) for tid, s in summaries.items()}
        for (sub, role_def, timeout_s, budget_usd, prio), base_sha in zip(checked, bases, strict=True):
            deps = [ctx.store.resolve(d) if d not in {t.id for t in tasks} else d for d in sub.after]
            on_id = None
            if sub.on:
                on_id = sub.on if sub.on in {t.id for t in tasks} else ctx.store.resolve(sub.on)
                if on_id not in deps:
                    deps.append(on_id)
            deps = list(dict.fromkeys(deps))
            on_task = next((t for t in tasks if t.id == on_id), None) or (ctx.store.load(on_id) if on_id else None)
            task_id = ctx.store.unused_id()
            while task_id in {t.id for t in tasks}:
                task_id = ctx.store.unused_id()
            graph[task_id] = deps
            cycle = find_cycle(graph, task_id)
            if cycle:
                raise InvalidInput(f"dependency cycle: {' -> '.join(cycle)}")
            title = (sub.title or make_title(sub.prompt)).strip()
            produces = "verdict" if (sub.review or role_def.produces == "verdict") else role_def.produces
            task = Task(
                id=task_id,
                prompt=sub.prompt,
                role=sub.role,
                title=title,
                produces=produces,
                priority=prio,
                depends_on=deps,
                on=on_id,
                base_ref=on_task.branch if on_task else (sub.base or "HEAD"),
                base_sha=base_sha,
                branch=sub.branch or worktrees.branch_name(ctx.config.branch_prefix, task_id, title),
                worktree=str(ctx.paths.worktree(task_id)),
                max_attempts=ctx.config.max_attempts,
                timeout=timeout_s,
                budget_usd=budget_usd,
                review=sub.review,
                workflow=sub.workflow,
                step=sub.step,
                round=sub.round,
                revision_of=sub.revision_of,
                continue_session=sub.continue_session,
                resolves=sub.resolves,
                conflict_files=list(sub.conflict_files),
                resources=resources(sub.resources, "--resources") if sub.resources is not None else {},
            )
            tasks.append(task)
        for task in tasks:
            ctx.store.save(task, "submitted", role=task.role, priority=task.priority, depends_on=task.depends_on)
    return tasks


def _check(sub: Submission, roles: dict[str, Any]) -> tuple[Submission, Any, float | None, float | None, int]:
    check_text(sub.prompt, "prompt")
    role_def = get_role(sub.role, roles)
    prio = check_priority(sub.priority)
    timeout_s = parse_duration(sub.timeout, "timeout") if sub.timeout is not None else role_def.timeout
    budget_usd = parse_usd(sub.budget) if sub.budget is not None else None
    if sub.on and sub.base:
        raise InvalidInput("use either --on (start from another task's branch) or --base, not both")
    if sub.title is not None:
        check_text(sub.title, "title", MAX_TITLE_CHARS)
    return sub, role_def, timeout_s, budget_usd, prio


# -- reading ------------------------------------------------------------------------


def get(ctx: Context, ref: str) -> Task:
    return ctx.store.load(ctx.store.resolve(ref))


def listing(ctx: Context, states: Iterable[str] = (), roles: Iterable[str] = ()) -> list[Task]:
    wanted_states = {validate_state(s) for s in states}
    wanted_roles = set(roles)
    tasks = []
    for tid, s in ctx.store.summaries().items():
        if wanted_states and s["state"] not in wanted_states:
            continue
        if wanted_roles and s["role"] not in wanted_roles:
            continue
        try:
            tasks.append(ctx.store.load(tid))
        except (TaskNotFound, InvalidInput):
            continue
    tasks.sort(key=lambda t: (t.created_at, t.id))
    return tasks


def summaries(ctx: Context, states: Iterable[str] = ()) -> list[dict[str, Any]]:
    wanted = {validate_state(s) for s in states}
    rows = [s for s in ctx.store.summaries().values() if not wanted or s["state"] in wanted]
    rows.sort(key=lambda s: (s.get("created_at") or 0, s["id"]))
    return rows


def wait(
    ctx: Context, refs_: Iterable[str], timeout: float | None = None, poll: float = 0.2, stop_on_input: bool = True
) -> list[Task]:
    """Block until every task is final, or one waits for a person, or the timeout passes.

    A task awaiting input will not move until someone answers, so waiting on would hang.
    """
    ids = [ctx.store.resolve(r) for r in refs_]
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        tasks = [ctx.store.load(i) for i in ids]
        if all(t.state.final for t in tasks):
            return tasks
        if stop_on_input and any(t.state == State.AWAITING_INPUT for t in tasks):
            return tasks
        if deadline and time.monotonic() >= deadline:
            return tasks
        time.sleep(poll)


# -- acting ---------------------------------------------------------------------------


def cancel(ctx: Context, ref: str) -> Task:
    """Queued tasks end at once; a running agent is asked to stop and whoever watches it ends it."""
    task_id = ctx.store.resolve(ref)
    task = ctx.store.update(task_id, lambda t: t.request_cancel(), "cancel_requested")
    if task.state == State.CANCELLED:
        ctx.store.append_event(task_id, "finished", state="cancelled")
    elif scheduler_pid(ctx.paths) is None:
        # Nobody is watching the agent: stop it here; the next scheduler records the end.
        handle = ctx.executor().adopt(task)
        if handle is not None:
            ctx.executor().stop(handle, ctx.config.kill_grace)
    return task


def stop(ctx: Context, ref: str) -> Task:
    """End a running agent gracefully; its worktree, branch and work stay."""
    task = get(ctx, ref)
    if task.state not in LIVE_STATES:
        hint = "; use 'cancel' or 'queue remove' for queued tasks" if task.state == State.QUEUED else ""
        raise InvalidInput(f"task {task.id} is {task.state}, not running{hint}")
    return cancel(ctx, task.id)


def stop_all(ctx: Context) -> list[Task]:
    stopped = []
    for s in list(ctx.store.summaries().values()):
        if s["state"] in LIVE_STATES:
            try:
                stopped.append(cancel(ctx, s["id"]))
            except InvalidInput:
                continue  # it ended meanwhile
    return stopped


def retry(ctx: Context, ref: str) -> Task:
    task_id = ctx.store.resolve(ref)

    def mutate(task: Task) -> None:
        if task.state == State.SUCCEEDED:
            raise InvalidInput(f"task {task.id} succeeded; submit a new task to do more")
        if not task.state.final:
            raise InvalidInput(f"task {task.id} is {task.state}; only finished tasks can be retried")
        if task.agentless:
            raise InvalidInput(f"task {task.id} is a {task.role} step; run 'orchestra merge' again instead")
        task.reopen(resume=None, next_prompt=None, extra_attempts=ctx.config.max_attempts)
        task.max_attempts = task.attempts + ctx.config.max_attempts

    return ctx.store.update(task_id, mutate, "retried")


def reply(ctx: Context, ref: str, text: str) -> Task:
    """Continue an ended task's Claude session with a person's words, on its branch, as a new attempt."""
    check_text(text, "reply")
    task_id = ctx.store.resolve(ref)

    def mutate(task: Task) -> None:
        if task.state == State.AWAITING_INPUT:
            raise InvalidInput(f"task {task.id} is waiting for a permission answer: use --allow or --deny")
        if not task.state.final:
            raise InvalidInput(f"task {task.id} is {task.state}; a reply continues a task that has ended")
        if not task.session_id:
            raise InvalidInput(f"task {task.id} has no Claude session to continue; use 'orchestra retry'")
        task.reopen(resume=task.session_id, next_prompt=text, extra_attempts=ctx.config.max_attempts)

    return ctx.store.update(task_id, mutate, "replied")


def set_priority(ctx: Context, ref: str, value: object) -> Task:
    number = check_priority(value)
    task_id = ctx.store.resolve(ref)

    def mutate(task: Task) -> None:
        if task.state != State.QUEUED:
            raise InvalidInput(f"task {task.id} is {task.state}; only queued tasks can change priority")
        task.priority = number

    return ctx.store.update(task_id, mutate, "priority", priority=number)


def assign_role(ctx: Context, ref: str, role: str) -> Task:
    """A task that has not started yet gets another role (and that role's product: a reviewer gives a verdict)."""
    role_def = get_role(role, ctx.roles())
    task_id = ctx.store.resolve(ref)

    def mutate(task: Task) -> None:
        if task.state != State.QUEUED or task.attempts:
            raise InvalidInput(f"task {task.id} has already started; its role can no longer change")
        if task.agentless:
            raise InvalidInput(f"task {task.id} is a {task.role} step; its role cannot change")
        task.role = role
        task.produces = "verdict" if (task.review or role_def.produces == "verdict") else role_def.produces
        if task.timeout is None:
            task.timeout = role_def.timeout

    return ctx.store.update(task_id, mutate, "role", role=role)


def remove_from_queue(ctx: Context, ref: str) -> Task:
    task_id = ctx.store.resolve(ref)

    def mutate(task: Task) -> None:
        if task.state != State.QUEUED:
            raise InvalidInput(f"task {task.id} is {task.state}, not queued")
        task.finish(State.CANCELLED, "removed from the queue")

    return ctx.store.update(task_id, mutate, "finished", state="cancelled", error="removed from the queue")


def set_budget(ctx: Context, ref: str, budget: object) -> Task:
    """Change a task's budget (covering all its attempts); it applies from its next run."""
    amount = parse_usd(budget)
    task_id = ctx.store.resolve(ref)

    def mutate(task: Task) -> None:
        task.budget_usd = amount

    return ctx.store.update(task_id, mutate, "budget", budget_usd=amount)

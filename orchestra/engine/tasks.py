"""Use cases on single tasks: submit, cancel, stop, retry, reply, reprioritise, reassign, wait.

Every rule about a task's input (prompt, role, priority, dependencies, refs) is
checked here, once, so every front end refuses the same things with the same words,
and workflows that submit steps go through the same checks.
"""

from __future__ import annotations

import copy
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.core.errors import BadUsage, CorruptTaskFile, InvalidInput, OrchestraError, TaskNotFound
from orchestra.core.graph import find_cycle
from orchestra.core.roles import get_role
from orchestra.core.task import LIVE_STATES, State, Task, make_title, now, validate_state
from orchestra.core.values import did_you_mean, parse_duration, parse_usd, resources
from orchestra.core.values import priority as check_priority
from orchestra.engine.context import Context
from orchestra.git import refs, worktrees
from orchestra.store import workflows as records
from orchestra.store.scheduler import scheduler_pid
from orchestra.store.tasks import UNFINISHED_STATES

MAX_PROMPT_CHARS = 200_000
MAX_TITLE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")
_EMPTY_HINTS = {
    "prompt": "say what the agent should do",
    "reply": "say what the agent should do",
    "request": "say what the team should do",
}


def check_text(text: object, what: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """Text a person or a model gave: not empty, not too long, and no control characters but tab and newline."""
    if not isinstance(text, str) or not text.strip():
        hint = _EMPTY_HINTS.get(what)
        raise BadUsage(f"empty {what}: {hint}" if hint else f"empty {what}")
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
    # Dependencies on earlier members of the same batch, by their position in it.
    after_items: list[int] = field(default_factory=list)
    on_item: int | None = None
    resources: object = None  # custom Ray resources, a JSON object (executor = ray)


def submit(ctx: Context, sub: Submission) -> Task:
    return submit_many(ctx, [sub])[0]


def submit_many(ctx: Context, subs: list[Submission], commits: dict[str, str] | None = None) -> list[Task]:
    """Check every submission, then write them all under one lock; nothing is written if one is bad.

    Later submissions may name earlier ones of the same batch, by their ids in `after` and `on`, or by
    their positions in `after_items` and `on_item`. Each distinct base is resolved once, and the batch
    is one store write: one task file each, one index update.
    """
    roles = ctx.roles()
    checked = [_check(sub, roles) for sub in subs]
    for i, sub in enumerate(subs):
        if any(not 0 <= j < i for j in [*sub.after_items, *([sub.on_item] if sub.on_item is not None else [])]):
            raise InvalidInput("a task of a batch may only depend on tasks before it")
    if not commits and not refs.has_commits(ctx.root):
        raise InvalidInput("the repository has no commits yet; make a first commit, then submit")
    commits = dict(commits or {})  # bases already resolved by the caller
    bases: list[str | None] = []
    names: list[str] = []
    head: tuple[str, str] | None = None  # the submitter's HEAD, read once for the whole batch
    for sub in subs:
        if sub.on or sub.on_item is not None:
            bases.append(None)
            names.append("")
            continue
        base = sub.base or "HEAD"
        if base == "HEAD":  # the submitter's worktree's, never the main one's a caller may have resolved
            head = head or caller_head(ctx)
            base, commits[head[0]] = head
        elif base not in commits:
            commits[base] = refs.resolve_commit(ctx.root, base)
        bases.append(commits[base])
        names.append(base)
    tasks: list[Task] = []
    with ctx.store.locked():
        graph = {tid: list(s.get("depends_on") or []) for tid, s in ctx.store.live().items()}
        for (sub, role_def, timeout_s, budget_usd, prio), base_sha, base_name in zip(
            checked, bases, names, strict=True
        ):
            mine = {t.id: t for t in tasks}
            deps = [d if d in mine else ctx.store.resolve(d) for d in sub.after]
            deps += [tasks[j].id for j in sub.after_items]
            on_id = None
            if sub.on_item is not None:
                on_id = tasks[sub.on_item].id
            elif sub.on:
                on_id = sub.on if sub.on in mine else ctx.store.resolve(sub.on)
            if on_id and on_id not in deps:
                deps.append(on_id)
            deps = list(dict.fromkeys(deps))
            on_task = mine.get(on_id) if on_id else None
            if on_id and on_task is None:
                on_task = ctx.store.load(on_id)
            task_id = ctx.store.unused_id()
            while task_id in mine:
                task_id = ctx.store.unused_id()
            graph[task_id] = deps
            cycle = find_cycle(graph, task_id)
            if cycle:
                raise InvalidInput(f"dependency cycle: {' -> '.join(cycle)}")
            title = (sub.title or make_title(sub.prompt)).strip()
            # The queue breaks priority ties by created_at: a batch's tasks run in their order only if
            # no two share a (millisecond) stamp, and a random id would decide instead.
            created = now()
            if tasks and created <= tasks[-1].created_at:
                created = round(tasks[-1].created_at + 0.001, 3)
            produces = "verdict" if (sub.review or role_def.produces == "verdict") else role_def.produces
            task = Task(
                id=task_id,
                created_at=created,
                prompt=sub.prompt,
                role=sub.role,
                title=title,
                produces=produces,
                priority=prio,
                depends_on=deps,
                on=on_id,
                base_ref=on_task.branch if on_task else base_name,
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
        ctx.store.save_many(
            [(t, "submitted", {"role": t.role, "priority": t.priority, "depends_on": t.depends_on}) for t in tasks]
        )
    return tasks


def _check(sub: Submission, roles: dict[str, Any]) -> tuple[Submission, Any, float | None, float | None, int]:
    check_text(sub.prompt, "prompt")
    role_def = get_role(sub.role, roles)
    prio = check_priority(sub.priority)
    timeout_s = parse_duration(sub.timeout, "timeout") if sub.timeout is not None else role_def.timeout
    budget_usd = parse_usd(sub.budget) if sub.budget is not None else None
    if (sub.on or sub.on_item is not None) and sub.base:
        raise InvalidInput("use either --on (start from another task's branch) or --base, not both")
    if sub.title is not None:
        check_text(sub.title, "title", MAX_TITLE_CHARS)
    return sub, role_def, timeout_s, budget_usd, prio


# -- reading ------------------------------------------------------------------------


def caller_head(ctx: Context) -> tuple[str, str]:
    """Where "HEAD" is for the person submitting: the branch (or commit) of the worktree they are in.

    Named by its branch, so the task goes back there when merged, whatever is checked out by then."""
    here = ctx.here()
    sha = refs.resolve_commit(here, "HEAD")
    branch = refs.current_branch(here)
    if branch:
        return branch, sha
    return ("HEAD" if here == ctx.root else sha), sha


def unseen_changes(ctx: Context, task: Task) -> list[str]:
    """Uncommitted paths of the submitter's worktree that a task starting from its HEAD will not have.

    The agent's checkout is made from a commit, so edits a person has not committed yet
    are missing there; saying so at submit saves a run on stale code. Untracked files
    that the `copy` setting brings along, and orchestra's own state, do not count.
    """
    if task.on or task.agentless or not task.base_sha:
        return []
    try:
        here = ctx.here()
        if refs.resolve_commit(here, "HEAD") != task.base_sha:
            return []
        paths = worktrees.uncommitted(here, untracked=True)
    except OrchestraError:
        return []
    copied = tuple(str(p).rstrip("/") for p in ctx.config.copy)
    return [
        p for p in paths if not p.startswith(".orchestra/") and not any(p == c or p.startswith(c + "/") for c in copied)
    ]


def get(ctx: Context, ref: str) -> Task:
    try:
        return ctx.store.load(ctx.store.resolve(ref))
    except TaskNotFound as exc:
        try:
            wf_id = records.resolve(ctx.store, ref)
        except OrchestraError:
            wf_id = None
        if wf_id is None:
            raise _pruned(ctx, ref, exc) from None
        # `workflow start` prints an id like a task's: say where that one is shown.
        raise TaskNotFound(f"{exc}; {wf_id} is a workflow: see 'orchestra workflow show {wf_id}'") from None


def _pruned(ctx: Context, ref: str, exc: TaskNotFound) -> TaskNotFound:
    """`exc`, saying so when `orchestra prune` archived the task: its record is in the archive, not lost."""
    from orchestra.engine import prune  # gzip and the archive reader: only a missing id pays

    ref = ref.strip().lower()  # as `store.resolve` reads an id
    if not ref or not ref.isalnum():
        return exc
    found = prune.find_archived(ctx, ref)
    if len(found) == 1:
        task_id, name = found[0]
        return TaskNotFound(f"task {task_id} was pruned: its record is in .orchestra/archive/{name} ('zcat' shows it)")
    if found:
        return TaskNotFound(f"{exc}; {len(found)} pruned tasks start with {ref}")
    return exc


def select(
    ctx: Context,
    states: Iterable[str] = (),
    roles: Iterable[str] = (),
    limit: int | None = None,
    *,
    manual: bool | None = None,
) -> Iterator[dict[str, Any]]:
    """Task summaries, newest first: live tasks (newest submitted first), then ended ones (most recently
    ended first), read lazily, so a listing that stops at `limit` never reads the rest of the history.
    Asking only for live states never reads the history at all.
    """
    wanted_states = {validate_state(s) for s in states}
    wanted_roles = _listed_roles(ctx, roles)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInput(f"invalid limit {limit!r}: a whole number (0: no limit)")
    view = ctx.store.checked_view()
    live_only = bool(wanted_states) and wanted_states <= UNFINISHED_STATES
    ended_only = bool(wanted_states) and not wanted_states & UNFINISHED_STATES
    rows = itertools.chain(
        () if ended_only else view.live_newest_first(),
        () if live_only else view.finished(),
    )
    chosen = (
        s
        for s in rows
        if (not wanted_states or s["state"] in wanted_states)
        and (not wanted_roles or s["role"] in wanted_roles)
        and (manual is None or bool(s.get("manual")) == manual)
    )
    return itertools.islice(chosen, limit) if limit else chosen


def listing(
    ctx: Context,
    states: Iterable[str] = (),
    roles: Iterable[str] = (),
    limit: int | None = None,
    corrupt: dict[str, str] | None = None,
    *,
    manual: bool | None = None,
) -> Iterator[Task]:
    """Whole tasks in `select`'s order, each read from its file as it is reached (for streaming).

    Files found unreadable on the way are added to `corrupt` (path -> reason).
    """
    for s in select(ctx, states, roles, limit, manual=manual):
        try:
            yield ctx.store.load(s["id"])
        except CorruptTaskFile as exc:
            if corrupt is not None:
                corrupt[str(exc.path)] = str(exc)
        except (TaskNotFound, InvalidInput):
            continue


def _listed_roles(ctx: Context, roles: Iterable[str]) -> set[str]:
    """Roles to list tasks by: a typo is refused (as an unknown state is), not answered with an empty list."""
    wanted = set(roles)
    if not wanted:
        return wanted
    try:
        known = sorted(ctx.roles())  # the repository's role files, read once
    except OrchestraError:
        return wanted  # a broken role file must not stop a listing; it is reported where roles are used
    unknown = sorted(wanted - set(known))
    if unknown:
        name = unknown[0]
        raise InvalidInput(f"unknown role {name!r}{did_you_mean(name, known)}; roles: {', '.join(known)}")
    return wanted


def summaries(
    ctx: Context,
    states: Iterable[str] = (),
    roles: Iterable[str] = (),
    limit: int | None = None,
    *,
    manual: bool | None = None,
) -> list[dict[str, Any]]:
    return list(select(ctx, states, roles, limit, manual=manual))


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


def checked_refs(ctx: Context, refs: Iterable[str], change: Callable[[Task], object], verb: str) -> list[str]:
    """The ids `refs` name, once each, after trying `change` on a copy of every task.

    A command given many tasks changes all or none, like a batch: when an id is unknown or a
    task refuses the change, InvalidInput names every one that was refused and nothing changed.
    """
    ids: list[str] = []
    problems: list[OrchestraError] = []
    given = list(dict.fromkeys(refs))
    for ref in given:
        try:
            task = get(ctx, ref)
            change(copy.deepcopy(task))
        except (InvalidInput, TaskNotFound, CorruptTaskFile) as exc:
            problems.append(exc)
            continue
        if task.id not in ids:
            ids.append(task.id)
    if len(given) == 1 and problems:
        raise problems[0]
    if problems:
        reasons = " | ".join(map(str, problems))
        raise InvalidInput(f"{len(problems)} of {len(given)} ids refused; nothing was {verb}: {reasons}")
    return ids


def cancel_each(ctx: Context, refs: Iterable[str]) -> list[Task]:
    return [cancel(ctx, task_id) for task_id in checked_refs(ctx, refs, Task.request_cancel, "cancelled")]


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


def _must_be_running(task: Task) -> None:
    if task.state not in LIVE_STATES:
        hint = "; use 'cancel' or 'queue remove' for queued tasks" if task.state == State.QUEUED else ""
        raise InvalidInput(f"task {task.id} is {task.state}, not running{hint}")


def stop(ctx: Context, ref: str) -> Task:
    """End a running agent gracefully; its worktree, branch and work stay."""
    task = get(ctx, ref)
    _must_be_running(task)
    return cancel(ctx, task.id)


def stop_each(ctx: Context, refs: Iterable[str]) -> list[Task]:
    return [stop(ctx, task_id) for task_id in checked_refs(ctx, refs, _must_be_running, "stopped")]


def stop_all(ctx: Context) -> list[Task]:
    stopped = []
    for s in list(ctx.store.live().values()):
        if s["state"] in LIVE_STATES:
            try:
                stopped.append(cancel(ctx, s["id"]))
            except InvalidInput:
                continue  # it ended meanwhile
    return stopped


def bring_home_advice(task: Task, path: Path) -> str:
    """The command that brings a finished task's commits home from its checkout: the end of a run
    does, and a succeeded task is continued with a reply, never retried."""
    if task.state != State.SUCCEEDED:
        return f"'orchestra retry {task.id}' brings them home"
    if task.session_id:
        return f"'orchestra respond {task.id} TEXT' continues its session and brings them home when that run ends"
    return f"'git fetch {path} {task.branch}:{task.branch}' in the main repository brings them home"


def _reopening(ctx: Context) -> Callable[[Task], None]:
    def mutate(task: Task) -> None:
        if task.state == State.SUCCEEDED:
            raise InvalidInput(f"task {task.id} succeeded; submit a new task to do more")
        if not task.state.final:
            raise InvalidInput(f"task {task.id} is {task.state}; only finished tasks can be retried")
        if task.agentless:
            raise InvalidInput(f"task {task.id} is a {task.role} step; run 'orchestra merge' again instead")
        if task.workflow and records.load(ctx.store, task.workflow).state == "cancelled":
            raise InvalidInput(
                f"task {task.id} is a step of workflow {task.workflow}, which was cancelled: its later steps "
                "would never run; start the workflow again, or submit a task --on it"
            )
        task.reopen(resume=None, next_prompt=None, extra_attempts=ctx.config.max_attempts)
        task.max_attempts = task.attempts + ctx.config.max_attempts

    return mutate


def retry(ctx: Context, ref: str) -> Task:
    return ctx.store.update(ctx.store.resolve(ref), _reopening(ctx), "retried")


def retry_each(ctx: Context, refs: Iterable[str], budget: object = None) -> list[Task]:
    """Queue ended tasks again, all or none; `budget` (if given) is each one's new spending limit first."""
    if budget is not None:
        parse_usd(budget)
    ids = checked_refs(ctx, refs, _reopening(ctx), "retried")
    for task_id in ids if budget is not None else ():
        set_budget(ctx, task_id, budget)
    return [retry(ctx, task_id) for task_id in ids]


def reply(ctx: Context, ref: str, text: str) -> Task:
    """Continue an ended task's Claude session with a person's words, on its branch, as a new attempt."""
    check_text(text, "reply")
    task_id = ctx.store.resolve(ref)

    def mutate(task: Task) -> None:
        if task.state == State.AWAITING_INPUT:
            raise InvalidInput(f"task {task.id} waits for an answer to its question: allow or deny it first")
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


def _take_out_of_queue(task: Task) -> None:
    if task.state != State.QUEUED:
        raise InvalidInput(f"task {task.id} is {task.state}, not queued")
    task.finish(State.CANCELLED, "removed from the queue")


def remove_from_queue(ctx: Context, ref: str) -> Task:
    task_id = ctx.store.resolve(ref)
    return ctx.store.update(task_id, _take_out_of_queue, "finished", state="cancelled", error="removed from the queue")


def remove_each_from_queue(ctx: Context, refs: Iterable[str]) -> list[Task]:
    return [remove_from_queue(ctx, i) for i in checked_refs(ctx, refs, _take_out_of_queue, "removed")]


def set_budget(ctx: Context, ref: str, budget: object) -> Task:
    """Change a task's budget (covering all its attempts); it applies from its next run."""
    amount = parse_usd(budget)
    task_id = ctx.store.resolve(ref)

    def mutate(task: Task) -> None:
        task.budget_usd = amount

    return ctx.store.update(task_id, mutate, "budget", budget_usd=amount)

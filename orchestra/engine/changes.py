"""What a task or a workflow changed: its commits, diff stat and diff, against what it started from.

A person reviews before merging, so every front end needs the same answer to "what
did this change?": a task's branch against the commit it started from, a
workflow's result branch against the commit the workflow started from (where its
target stood). Reading only; the stat a run leaves is recorded by the runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from orchestra.core.errors import InvalidInput, OrchestraError, TaskNotFound
from orchestra.core.redact import mask_secrets
from orchestra.core.task import State, Task
from orchestra.core.workflow import Workflow
from orchestra.engine.context import Context
from orchestra.git import refs, review
from orchestra.store import workflows as records

SCREEN_LIMIT = 400_000  # characters of diff a screen shows before naming the files left out


@dataclass
class Change:
    """One branch's change: what `diff`, `show` and a pull request body present."""

    kind: str  # "task" or "workflow"
    id: str
    title: str
    branch: str
    base: str  # the commit the change is measured from
    head: str
    into: str | None = None  # a workflow's target branch
    task: str | None = None  # the task whose branch holds the change
    stat: review.Stat = field(default_factory=review.Stat)
    commits: list[dict[str, str]] = field(default_factory=list)
    more_commits: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "title": self.title,
            "branch": self.branch,
            "base": self.base,
            "head": self.head,
            "into": self.into,
            "task": self.task,
            "summary": self.stat.summary(),
            "stat": self.stat.to_dict(),
            "commits": self.commits,
            "more_commits": self.more_commits,
        }


def branch_stat(ctx: Context, task: Task) -> dict[str, int] | None:
    """The recorded form of a task's change now, or None when it has no branch to measure."""
    span = _task_span(ctx, task)
    if span is None:
        return None
    stat = review.diff_stat(ctx.root, span[0], span[1])
    return {"added": stat.added, "removed": stat.removed, "files": stat.count}


def _task_span(ctx: Context, task: Task) -> tuple[str, str] | None:
    if task.agentless or not task.branch or not task.base_sha:
        return None
    head = refs.branch_head(ctx.root, task.branch)
    return (task.base_sha, head) if head else None


def resolve(ctx: Context, ref: str) -> tuple[Task | None, Workflow | None]:
    """A task or a workflow by (a prefix of) its id; refused when it names both or neither."""
    wf_id, task_id = resolve_ids(ctx, ref)
    if wf_id:
        return None, records.load(ctx.store, wf_id)
    assert task_id is not None
    return ctx.store.load(task_id), None


def resolve_ids(ctx: Context, ref: str) -> tuple[str | None, str | None]:
    """The id of the workflow or of the task (exactly one) that `ref` names; refused when both or neither."""
    ref = (ref or "").strip()
    wf_id = records.resolve(ctx.store, ref)
    try:
        task_id: str | None = ctx.store.resolve(ref)
    except TaskNotFound:
        task_id = None
    if wf_id and task_id:
        raise InvalidInput(f"{ref!r} names both workflow {wf_id} and task {task_id}; type more of the id")
    if not wf_id and not task_id:
        raise TaskNotFound(f"no task or workflow {ref}")
    return wf_id, task_id


def of_task(ctx: Context, task: Task, *, with_commits: bool = True) -> Change:
    if task.agentless:
        raise InvalidInput(f"task {task.id} is a {task.role} step: it has no branch of its own")
    head = refs.branch_head(ctx.root, task.branch) if task.branch else None
    if not task.base_sha or (head is None and task.state == State.QUEUED and not task.attempts):
        raise InvalidInput(f"task {task.id} has not started yet ({task.state}): nothing changed so far")
    if head is None and task.live and task.node:
        raise InvalidInput(f"task {task.id} runs on node {task.node}: its branch comes here when its run ends")
    if head is None:
        raise InvalidInput(f"the branch {task.branch or '(none)'} of task {task.id} no longer exists")
    return _measure(
        ctx, Change("task", task.id, task.title, task.branch, task.base_sha, head, task=task.id), with_commits
    )


def source_task(ctx: Context, wf: Workflow) -> Task | None:
    """The task whose branch holds a workflow's result: what its merge step merges, else its last branch."""
    tpl = wf.template_obj()
    step = tpl.merge_step
    latest = wf.latest()
    if step is not None and step.on and step.on in latest:
        return ctx.store.load(latest[step.on]["task"])
    for inst in reversed(wf.instances):
        try:
            task = ctx.store.load(inst["task"])
        except OrchestraError:
            continue
        if not task.agentless and task.branch and task.produces == "branch" and task.base_sha:
            return task
    return None


def of_workflow(ctx: Context, wf: Workflow, *, with_commits: bool = True) -> Change:
    if wf.subject == "range":
        reviewed = Change("workflow", wf.id, wf.title, wf.base_ref, wf.base_sha, wf.head_sha or "")
        return _measure(ctx, reviewed, with_commits)
    task = source_task(ctx, wf)
    if task is None:
        raise InvalidInput(f"workflow {wf.id} has no branch with work on it yet")
    tip = refs.branch_head(ctx.root, task.branch) if task.branch else None
    if tip is None and not task.attempts:
        raise InvalidInput(f"workflow {wf.id} has no branch with work on it yet")
    if tip is None and task.live and task.node:
        raise InvalidInput(
            f"workflow {wf.id}'s step (task {task.id}) runs on node {task.node}: its branch comes here when it ends"
        )
    if tip is None:
        raise InvalidInput(f"the branch {task.branch or '(none)'} of workflow {wf.id} no longer exists")
    change = Change("workflow", wf.id, wf.title, task.branch, wf.base_sha, tip, into=wf.into, task=task.id)
    return _measure(ctx, change, with_commits)


def of_ref(ctx: Context, ref: str, *, with_commits: bool = True) -> Change:
    task, wf = resolve(ctx, ref)
    if wf is not None:
        return of_workflow(ctx, wf, with_commits=with_commits)
    assert task is not None
    return of_task(ctx, task, with_commits=with_commits)


def _measure(ctx: Context, change: Change, with_commits: bool) -> Change:
    change.stat = review.diff_stat(ctx.root, change.base, change.head)
    if with_commits:
        change.commits, change.more_commits = review.commits(ctx.root, change.base, change.head)
    return change


def diff_lines(ctx: Context, change: Change) -> Iterator[str]:
    """The change's full diff, streamed line by line, secrets masked (an agent may have committed one)."""
    return (mask_secrets(line) for line in review.diff_lines(ctx.root, change.base, change.head))


def stat_text(ctx: Context, change: Change) -> str:
    """git's own `--stat` picture of the change."""
    return review.stat_text(ctx.root, change.base, change.head)


def screen_text(ctx: Context, change: Change, limit: int = SCREEN_LIMIT) -> str:
    """The change for a screen: a summary line, git's stat, then the diff up to `limit` characters,
    naming the files left out (a generated file must not fill the person's terminal)."""
    header = f"{change.branch}: {change.stat.summary()} against {change.base[:10]}"
    if not change.stat.count:
        return header
    shown, left_out, _total = review.bounded_diff(ctx.root, change.base, change.head, limit)
    parts = [header, stat_text(ctx, change), "", *(mask_secrets(line) for line in shown)]
    if left_out:
        parts.append(f"… {len(left_out)} more file(s) too large to show here: {', '.join(left_out)}")
    return "\n".join(p.rstrip("\n") for p in parts)


def default_target(ctx: Context, task: Task) -> str:
    """Where a task's branch goes: its workflow's target, or the branch its chain started from."""
    if isinstance(task.merged, dict) and task.merged.get("into"):
        return str(task.merged["into"])
    if task.workflow:
        wf = records.load(ctx.store, task.workflow)
        if wf.into:
            return wf.into
    first = task
    seen = {task.id}
    while first.on and first.on not in seen:
        seen.add(first.on)
        first = ctx.store.load(first.on)
    if first.base_ref and first.base_ref != "HEAD" and refs.branch_exists(ctx.root, first.base_ref):
        return first.base_ref
    branch = refs.current_branch(ctx.root)
    if branch is None:
        raise InvalidInput("HEAD is detached, so there is no default branch to merge into: pass --into BRANCH")
    return branch

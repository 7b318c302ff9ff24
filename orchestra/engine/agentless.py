"""Steps orchestra runs itself, without an agent: merges and reports, recorded as tasks like any other."""

from __future__ import annotations

import os
from typing import Any

from orchestra.agent import processes
from orchestra.core.redact import mask_data, mask_secrets
from orchestra.core.task import MergeSpec, State, Task
from orchestra.engine.context import Context


def new_agentless_task(
    ctx: Context,
    role: str,
    prompt: str,
    title: str,
    deps: list[str],
    *,
    running: bool = False,
    merge: MergeSpec | None = None,
    workflow: str | None = None,
    step: str | None = None,
    round: int | None = None,
    manual: bool = False,
) -> Task:
    """A task orchestra runs itself: no branch, no worktree, no agent.

    `manual` marks a merge a person asked for, so it is counted apart from the agents' tasks.
    """
    with ctx.store.locked():
        task = Task(
            id=ctx.store.unused_id(),
            prompt=prompt,
            role=role,
            title=title,
            produces=role,
            depends_on=list(deps),
            base_ref="-",
            max_attempts=ctx.config.max_attempts,
            merge=merge,
            workflow=workflow,
            step=step,
            round=round,
            manual=manual,
        )
        if running:
            task.start_agentless(os.getpid(), processes.proc_start_time(os.getpid()))
        ctx.store.save(task, "submitted", role=role, depends_on=task.depends_on)
    return task


def finish_agentless(
    ctx: Context,
    task_id: str,
    error: str | None,
    result: str,
    *,
    merge_result: dict[str, Any] | None = None,
    verdict: str | None = None,
) -> Task:
    def mutate(t: Task) -> None:
        if t.state.final:
            return
        t.finish(State.FAILED if error else State.SUCCEEDED, mask_secrets(error) if error else None)
        t.result = mask_secrets(result)
        if merge_result is not None:
            t.merge_result = mask_data(merge_result)
        if verdict is not None:
            t.verdict = verdict

    task = ctx.store.update(task_id, mutate)
    ctx.store.append_event(task_id, "finished", state=str(task.state), error=task.error)
    return task

"""Steps orchestra runs itself, without an agent: merges and reports, recorded as tasks like any other."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestra.agent import processes
from orchestra.core.redact import mask_data, mask_secrets
from orchestra.core.task import MergeSpec, State, Task
from orchestra.engine.context import Context

_running_here: set[str] = set()
_running_here_lock = threading.Lock()


def this_process() -> tuple[int, int | None]:
    """This process as the runner of a step: its pid and kernel start time (pids are reused)."""
    pid = os.getpid()
    return pid, processes.proc_start_time(pid)


@contextmanager
def running_here(task_id: str) -> Iterator[None]:
    """While a thread of this process runs the step: a scheduler started later in this same process
    must tell it from a run that ended here without its end being recorded."""
    with _running_here_lock:
        _running_here.add(task_id)
    try:
        yield
    finally:
        with _running_here_lock:
            _running_here.discard(task_id)


def is_running_here(task_id: str) -> bool:
    with _running_here_lock:
        return task_id in _running_here


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
            task.start_agentless(*this_process())
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
    attempt: int | None = None,
) -> Task:
    """Record the end of the run `attempt` (None: whichever run is current).

    A run that finds its task queued again or claimed by a later attempt (a scheduler re-queued it
    while this run went on) leaves it to them: its end is logged, not recorded.
    """
    left: str | None = None
    finished = False

    def mutate(t: Task) -> None:
        nonlocal left, finished
        if t.state.final:
            return
        left = t.moved_on(t.attempts if attempt is None else attempt)
        if left:
            return
        t.finish(State.FAILED if error else State.SUCCEEDED, mask_secrets(error) if error else None)
        t.result = mask_secrets(result)
        if merge_result is not None:
            t.merge_result = mask_data(merge_result)
        if verdict is not None:
            t.verdict = verdict
        finished = True

    task = ctx.store.update(task_id, mutate)
    if left:
        ctx.log(f"{task_id}: the end of this run ({error or 'succeeded'}) is not recorded: {left}")
    if finished:
        ctx.store.append_event(task_id, "finished", state=str(task.state), error=task.error)
    return task

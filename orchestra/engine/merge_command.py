"""`orchestra merge REF`: merge a task's branch or a workflow's result now, or approve a waiting merge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestra.core.errors import Interrupted, InvalidInput, OrchestraError
from orchestra.core.task import MergeSpec, State, Task
from orchestra.core.values import known_merge_strategy
from orchestra.core.workflow import Workflow
from orchestra.engine import agentless, workflows
from orchestra.engine.changes import default_target, resolve_ids
from orchestra.engine.context import Context
from orchestra.engine.merge import run_merge_task, start_resolve
from orchestra.git import merging, refs
from orchestra.git.merging import MergeResult
from orchestra.store import workflows as records


def manual(
    ctx: Context, ref: str, *, into: str | None, strategy: str | None, resolve: bool, by_person: bool = True
) -> MergeResult:
    """Merge a task's branch or a workflow's result now, in this process, recorded as a merge task.

    A workflow stopped at `awaiting_merge` (merge_approval) waits for a person: a model's request
    (`by_person=False`) neither approves it nor merges it, or its source task, another way."""
    strategy = known_merge_strategy(strategy or ctx.config.merge_strategy)
    wf_id, task_id = resolve_ids(ctx, ref)
    with ctx.store.locked():
        plan = _plan(ctx, task_id, into, strategy, by_person, workflows.advance(ctx, wf_id) if wf_id else None)
        if plan.approve:
            return _approve(ctx, plan.wf)
        if plan.done is not None:
            return plan.done
        wf, source, target, step_name = plan.wf, plan.source, plan.target, plan.step_name
        assert source is not None
        task = agentless.new_agentless_task(
            ctx,
            "merge",
            f"Merge {source.branch} into {target}.",
            f"merge: {source.title}",
            [source.id],
            running=True,
            merge=MergeSpec(source.id, target, strategy),
            workflow=wf.id if wf else None,
            step=step_name,
            round=wf.round if wf else None,
            manual=True,
        )
        if wf is not None:
            wf.add_instance(step_name, task.id)
            records.save(ctx.store, wf)
    with agentless.running_here(task.id):
        try:
            result = run_merge_task(ctx, task)
        except KeyboardInterrupt:
            raise _interrupted(ctx, task, wf, source, target) from None
        except OrchestraError as exc:
            agentless.finish_agentless(ctx, task.id, str(exc), "", attempt=task.attempts)
            if wf is not None:
                workflows.advance(ctx, wf.id)
            raise
        agentless.finish_agentless(
            ctx,
            task.id,
            None if result.ok else result.message,
            result.message,
            merge_result=result.to_dict(),
            attempt=task.attempts,
        )
    if result.status == "conflict" and resolve:
        if wf is not None:
            with ctx.store.locked():
                wf = records.load(ctx.store, wf.id)
                resolver, retry = workflows.start_resolve_in_workflow(ctx, wf, ctx.store.load(task.id))
                records.save(ctx.store, wf)
        else:
            resolver, retry = start_resolve(ctx, source, target, strategy, result.files)
        result.resolve_task, result.retry_task = resolver.id, retry.id
    if wf is not None:
        workflows.advance(ctx, wf.id)
    return result


def preview(ctx: Context, ref: str) -> str:
    """What `orchestra merge REF` would do now, as a question for a person, or why it would refuse:
    a screen asks only about a merge that can happen. Nothing is merged or approved."""
    strategy = known_merge_strategy(ctx.config.merge_strategy)
    wf_id, task_id = resolve_ids(ctx, ref)
    plan = _plan(ctx, task_id, None, strategy, True, workflows.advance(ctx, wf_id) if wf_id else None)
    if plan.done is not None:
        raise InvalidInput(plan.done.message)
    if plan.wf is not None and plan.approve:
        return f"Approve the merge of workflow {plan.wf.id} into {plan.wf.into or 'its target'}?"
    assert plan.source is not None
    what = f"workflow {plan.wf.id}'s result" if plan.wf is not None else f"task {plan.source.id}"
    return f"Merge {what} ({plan.source.branch}) into {plan.target}?"


@dataclass
class _Plan:
    """A manual merge decided: approve a waiting workflow, nothing to do (`done`), or merge `source`."""

    wf: Workflow | None = None
    source: Task | None = None
    target: str = ""
    step_name: str = "merge"
    approve: bool = False
    done: MergeResult | None = None


def _plan(
    ctx: Context,
    task_id: str | None,
    into: str | None,
    strategy: str,
    by_person: bool,
    wf: Workflow | None,
) -> _Plan:
    if wf is not None:
        tpl = wf.template_obj()
        step = tpl.merge_step
        if step is None or step.on is None:
            raise InvalidInput(f"workflow {wf.id} ({wf.template}) has no merge step")
        if wf.state == "running":
            raise InvalidInput(f"workflow {wf.id} is still running; its merge step runs once the review approves")
        if wf.state == "cancelled":
            raise InvalidInput(f"workflow {wf.id} was cancelled")
        if wf.state == "awaiting_merge" and not by_person:
            raise InvalidInput(_for_a_person(wf.id))
        if wf.state in ("changes_requested", "failed") and not by_person:
            raise InvalidInput(
                f"workflow {wf.id} is {wf.state}: its review did not approve the work, so a person decides "
                f"whether to merge it anyway ('orchestra merge {wf.id}')"
            )
        if wf.state == "awaiting_merge" and not into and strategy == ctx.config.merge_strategy:
            return _Plan(wf=wf, approve=True)
        inst = wf.latest().get(step.on)
        source = ctx.store.load(inst["task"]) if inst else None
        if source is None or source.state != State.SUCCEEDED:
            state = source.state if source else "not started"
            raise InvalidInput(f"workflow {wf.id} has no branch to merge: step {step.on} is {state}")
        target = refs.check_target(ctx.root, into) if into else wf.into
        if not target:
            raise InvalidInput(f"workflow {wf.id} has no target branch: pass --into BRANCH")
        if wf.state == "succeeded" and _landed(ctx, source, target):  # nothing to do: no second merge step
            done = MergeResult(
                "up_to_date",
                f"workflow {wf.id} is already merged into {target}; nothing was changed",
                source_branch=source.branch,
                into=target,
                strategy=strategy,
                source_task=source.id,
                workflow=wf.id,
            )
            return _Plan(wf=wf, source=source, target=target, done=done)
        return _Plan(wf=wf, source=source, target=target, step_name=step.name)
    assert task_id is not None
    source = ctx.store.load(task_id)
    if source.agentless or not source.branch:
        raise InvalidInput(f"task {source.id} is a {source.role} step and has no branch to merge")
    if source.state != State.SUCCEEDED:
        raise InvalidInput(f"task {source.id} is {source.state}; only succeeded tasks are merged")
    if source.workflow and not by_person:  # its workflow's review and approval decide, or a person
        raise InvalidInput(
            f"task {source.id} is a step of workflow {source.workflow}: merge the workflow, whose review "
            f"decides; a person can merge the step itself with 'orchestra merge {source.id}'"
        )
    target = refs.check_target(ctx.root, into) if into else default_target(ctx, source)
    return _Plan(source=source, target=target)


def _for_a_person(wf_id: str) -> str:
    return (
        f"workflow {wf_id} waits for a person to approve its merge (merge_approval); a person approves it "
        f"with 'orchestra merge {wf_id}'"
    )


def _interrupted(ctx: Context, task: Task, wf: Workflow | None, source: Task, target: str) -> Interrupted:
    """Ctrl-C during a person's merge: settle its record now, so that no scheduler finishes it later.

    The gate and the scratch checkout have ended with the interrupted call. Had the target
    already moved, the merge is recorded as done; otherwise its record is cancelled, and a
    workflow's merge step is dropped again, so the workflow is back where it was.
    """
    if _landed(ctx, source, target):
        result = run_merge_task(ctx, task)  # up to date now: records the merge without running the gate
        agentless.finish_agentless(ctx, task.id, None, result.message, merge_result=result.to_dict())
        if wf is not None:
            workflows.advance(ctx, wf.id)
        return Interrupted(f"interrupted, but {source.branch} was already merged into {target} (merge {task.id})")
    why = f"interrupted (Ctrl-C); nothing was merged into {target}"

    def cancelled(t: Task) -> None:
        if not t.state.final:
            t.finish(State.CANCELLED, why)

    ctx.store.update(task.id, cancelled, "cancelled", reason=why)
    if wf is not None:
        with ctx.store.locked():
            current = records.load(ctx.store, wf.id)
            current.instances = [i for i in current.instances if i["task"] != task.id]
            records.save(ctx.store, current)
        workflows.advance(ctx, wf.id)
    return Interrupted(f"{why}; merge {task.id} is cancelled")


def _landed(ctx: Context, source: Task, target: str) -> bool:
    source_sha = refs.branch_head(ctx.root, source.branch) if source.branch else None
    target_sha = refs.branch_head(ctx.root, target)
    if source_sha is None or target_sha is None:
        return False
    return refs.is_ancestor(ctx.root, source_sha, target_sha) or bool(
        merging.squash_of(ctx.root, target_sha, source_sha)
    )


def _approve(ctx: Context, wf: Any) -> MergeResult:
    """`orchestra merge WF` on a workflow waiting for approval: its own merge step runs, in the scheduler."""
    wf = workflows.approve_merge(ctx, wf)
    merge_inst = wf.latest().get(wf.template_obj().merge_step.name) if wf.template_obj().merge_step else None
    res = MergeResult(
        "approved", f"workflow {wf.id}: merge approved; its merge step runs now", workflow=wf.id, into=wf.into or ""
    )
    if merge_inst:
        res.task = merge_inst["task"]
    return res

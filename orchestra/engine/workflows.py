"""Workflows as use cases: start one, move it on when its tasks end, run its agentless steps, end it.

Steps become tasks only when the steps they follow have succeeded: a reviewer's
prompt must carry the diff it reviews, and a merge must wait for the verdicts.
core.workflow decides the next move from the records; this module applies it.
Reading a workflow never writes it.
"""

from __future__ import annotations

import json
from typing import Any

from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import InvalidInput, OrchestraError, TaskNotFound
from orchestra.core.roles import Role
from orchestra.core.task import MergeSpec, Task, make_title, now
from orchestra.core.templates import Step, Template, get_template
from orchestra.core.workflow import (
    Decision,
    Workflow,
    build_report,
    current_task,
    decide,
    format_comments,
)
from orchestra.engine import agentless, merge
from orchestra.engine import tasks as task_cases
from orchestra.engine.context import Context
from orchestra.git import refs, review
from orchestra.git.runner import git
from orchestra.store import workflows as records

MAX_REQUEST_CHARS = 100_000


# -- starting -------------------------------------------------------------------------


def start(
    ctx: Context, template_name: str, request: str, *, base: str | None, into: str | None, approve_merge: bool = False
) -> Workflow:
    roles = ctx.roles()
    tpl = get_template(ctx.paths.state, template_name, roles)
    task_cases.check_text(request, "request", MAX_REQUEST_CHARS)
    if not refs.has_commits(ctx.root):
        raise InvalidInput("the repository has no commits yet; make a first commit, then start a workflow")
    head_sha = None
    target = None
    if tpl.subject == "range":
        if not base:
            raise InvalidInput(f"template {tpl.name} reviews existing work: pass --base BRANCH or FROM..TO")
        base_ref, base_sha, head_sha = _review_range(ctx, base, into)
    else:
        if base in (None, "HEAD"):
            base_ref, base_sha = task_cases.caller_head(ctx)
        else:
            base_ref, base_sha = base, refs.resolve_commit(ctx.root, base)
        if tpl.merge_step is not None:
            if into:
                target = refs.check_target(ctx.root, into)
            elif refs.branch_exists(ctx.root, base_ref):
                target = base_ref
            else:
                target = refs.current_branch(ctx.here())
                if target is None:
                    raise InvalidInput("HEAD is detached, so there is no branch to merge into: pass --into BRANCH")
    with ctx.store.locked():
        wf = Workflow(
            id=records.new_id(ctx.store),
            template=tpl.name,
            request=request,
            title=make_title(request),
            steps=[s.to_dict() for s in tpl.steps],
            subject=tpl.subject,
            base_ref=base_ref,
            base_sha=base_sha,
            into=target,
            head_sha=head_sha,
            max_rounds=1 + ctx.config.revision_rounds,
            approve_merge=approve_merge or bool(ctx.config.merge_approval),
        )
        records.save(ctx.store, wf)
        try:
            _advance(ctx, wf, roles)
        except BaseException:
            if not wf.instances:  # nothing started: leave no trace of the refused workflow
                records.remove(ctx.store, wf.id)
            raise
        records.save(ctx.store, wf)
    return wf


def _review_range(ctx: Context, spec: str, into: str | None) -> tuple[str, str, str]:
    root = ctx.root
    if ".." in spec:
        start_ref, _, end_ref = spec.partition("...") if "..." in spec else spec.partition("..")
        from_sha = refs.resolve_commit(root, start_ref or "HEAD")
        to_sha = refs.resolve_commit(root, end_ref or "HEAD")
        if "..." in spec:
            from_sha = git(root, "merge-base", from_sha, to_sha).stdout.strip()
    else:
        to_sha = refs.resolve_commit(root, spec)
        other = into or "HEAD"
        other_sha = refs.resolve_commit(root, other)
        proc = git(root, "merge-base", other_sha, to_sha, check=False)
        if proc.returncode != 0:
            raise InvalidInput(f"{spec} and {other} share no history; give a range FROM..TO")
        from_sha = proc.stdout.strip()
    if from_sha == to_sha:
        raise InvalidInput(f"nothing to review: {spec} has no commits beyond its base")
    return spec, from_sha, to_sha


# -- reading ----------------------------------------------------------------------------


def resolve(ctx: Context, ref: str) -> str:
    wf_id = records.resolve(ctx.store, ref)
    if wf_id is None:
        raise InvalidInput(f"no workflow {ref}")
    return wf_id


def get(ctx: Context, ref: str) -> Workflow:
    """The workflow record as it is: reading never moves a workflow on."""
    return records.load(ctx.store, resolve(ctx, ref))


def listing(ctx: Context) -> list[Workflow]:
    out = []
    for wf_id in records.ids(ctx.store):
        try:
            out.append(records.load(ctx.store, wf_id))
        except OrchestraError:
            continue
    out.sort(key=lambda w: (w.created_at, w.id))
    return out


def tasks_of(ctx: Context, wf: Workflow) -> dict[str, Task]:
    out = {}
    for tid in wf.task_ids():
        try:
            out[tid] = ctx.store.load(tid)
        except OrchestraError:
            continue
    return out


# -- advancing --------------------------------------------------------------------------


def advance(ctx: Context, wf_id: str, ended: Task | None = None) -> Workflow:
    """Take the workflow's next step(s), if any are due; a no-op when nothing changed.

    `ended`: a task of it that has just ended, which the workflow may not know yet (see `_unrecorded`).
    """
    with ctx.store.locked():
        wf = records.load(ctx.store, wf_id)
        if wf.final:
            return wf
        before = _snapshot(wf)
        try:
            unrecorded = _unrecorded(ctx, wf, ended)
            _advance(ctx, wf, ctx.roles(), unrecorded)
            while unrecorded.adopted_ended and not wf.final:  # a step found already ended: move on from it
                unrecorded.adopted_ended = False
                _advance(ctx, wf, ctx.roles(), unrecorded)
        except OrchestraError as exc:
            wf.stop("failed", str(exc))
        if _snapshot(wf) != before:
            crash_point("workflow_before_save")  # a step's task is written, the record naming it is not
            records.save(ctx.store, wf)
        return wf


class _Unrecorded:
    """The tasks of a workflow's steps that its record does not name, by (step, round)."""

    def __init__(self, tasks: dict[tuple[str, int], Task]) -> None:
        self.tasks = tasks
        self.adopted_ended = False

    def take(self, step: str, round: int) -> Task | None:
        task = self.tasks.pop((step, round), None)
        if task is not None and task.state.final:
            self.adopted_ended = True
        return task


def _unrecorded(ctx: Context, wf: Workflow, ended: Task | None) -> _Unrecorded:
    """Step tasks made for this workflow by a process killed before it saved the workflow's record (a step
    task is one write, the record that names it another). The next advance would make the step again, and
    both would run: it takes these instead. They are live (queued, or run by a scheduler meanwhile), or the
    task whose end calls for this advance."""
    known = set(wf.task_ids())
    ids = [s["id"] for s in ctx.store.live().values() if s.get("workflow") == wf.id and s["id"] not in known]
    found: dict[tuple[str, int], Task] = {}
    candidates = [ctx.store.load(i) for i in ids]
    if ended is not None and ended.workflow == wf.id and ended.id not in known and ended.id not in ids:
        candidates.append(ended)
    for task in sorted(candidates, key=lambda t: t.created_at):
        if task.step and task.round is not None:
            found[(task.step, task.round)] = task
    return _Unrecorded(found)


def _snapshot(wf: Workflow) -> str:
    return json.dumps(wf.to_dict(), sort_keys=True, default=str)


def task_finished(ctx: Context, task: Task) -> None:
    """The hook the scheduler calls when a task ends: move its workflow on."""
    if not task.workflow:
        return
    try:
        wf = advance(ctx, task.workflow, ended=task)
    except OrchestraError as exc:
        ctx.log(f"workflow {task.workflow}: {exc}")
        return
    if wf.state != "running":
        ctx.log(f"workflow {wf.id} {wf.state}" + (f": {wf.error}" if wf.error else ""))


def advance_all(ctx: Context) -> None:
    """After a restart: catch up on workflows whose tasks ended while no hook ran."""
    for wf_id in records.unfinished_ids(ctx.store):
        try:
            wf = records.load(ctx.store, wf_id)
            if not wf.final:
                advance(ctx, wf_id)
        except OrchestraError as exc:
            ctx.log(f"workflow {wf_id}: {exc}")


def cancel(ctx: Context, ref: str) -> Workflow:
    """Cancel every step still queued, running or waiting, and end the workflow; branches stay."""
    wf = get(ctx, ref)
    if wf.final:
        raise InvalidInput(f"workflow {wf.id} has already ended ({wf.state}); there is nothing to cancel")
    for task_id in wf.task_ids():
        try:
            if not ctx.store.load(task_id).state.final:
                task_cases.cancel(ctx, task_id)
        except InvalidInput:
            continue  # it ended meanwhile
    with ctx.store.locked():
        wf = records.load(ctx.store, wf.id)
        if not wf.final:
            wf.stop("cancelled", "cancelled by user")
            records.save(ctx.store, wf)
        return wf


def _advance(ctx: Context, wf: Workflow, roles: dict[str, Role], unrecorded: _Unrecorded | None = None) -> None:
    tasks: dict[str, Task] = {}
    for inst in wf.instances:
        try:
            tasks[inst["task"]] = ctx.store.load(inst["task"])
        except TaskNotFound:
            continue
    decision = decide(wf, tasks, roles, approve_merge=wf.approve_merge and not wf.merge_approved)
    _apply(ctx, wf, decision, tasks, roles, unrecorded or _Unrecorded({}))


def _apply(
    ctx: Context, wf: Workflow, d: Decision, tasks: dict[str, Task], roles: dict[str, Role], unrecorded: _Unrecorded
) -> None:
    if d.kind == "stop":
        assert d.state is not None
        if d.comments:
            wf.comments = d.comments
        wf.stop(d.state, d.error)
    elif d.kind == "conflict":
        assert d.task is not None
        result = d.task.merge_result or {}
        wf.conflict = {
            "files": result.get("files", []),
            "into": result.get("into"),
            "branch": result.get("source_branch"),
            "task": d.task.id,
        }
        wf.stop("conflict", result.get("message") or "merge conflict")
        if ctx.config.merge_resolve:
            start_resolve_in_workflow(ctx, wf, d.task)
    elif d.kind == "merged":
        assert d.task is not None
        wf.merge = d.task.merge_result
        wf.conflict = None
        wf.stop("succeeded", None)
    elif d.kind == "wait":
        if not (wf.state == "awaiting_merge" and wf.approve_merge and not wf.merge_approved):
            wf.resume()
    elif d.kind == "approve":
        wf.await_merge()
    elif d.kind == "revise":
        wf.resume()
        _start_revision(ctx, wf, tasks, d.comments, unrecorded)
    elif d.kind == "create":
        wf.resume()
        tpl = wf.template_obj()
        for step in d.steps:
            _create_step_task(ctx, wf, tpl, step, roles, tasks, unrecorded)
    elif d.kind == "done":
        wf.resume()
        if d.task is not None:
            wf.report = d.task.result
            wf.verdict = d.task.verdict
        wf.stop("succeeded", None)


# -- the tasks of steps ------------------------------------------------------------------


def _create_step_task(
    ctx: Context,
    wf: Workflow,
    tpl: Template,
    step: Step,
    roles: dict[str, Role],
    tasks: dict[str, Task],
    unrecorded: _Unrecorded,
) -> Task:
    def current(name: str) -> Task | None:
        return current_task(wf, tasks, name)

    made = unrecorded.take(step.name, wf.round)
    if made is not None:  # made by an advance that was killed before it could say so
        tasks[made.id] = made
        wf.add_instance(step.name, made.id)
        return made
    deps = [t.id for t in (current(d) for d in step.deps) if t is not None]
    on_task = current(step.on) if step.on else None
    title = f"{step.name}: {wf.title}"
    role = roles[step.role]
    if role.produces == "merge":
        assert on_task is not None and wf.into is not None
        spec = MergeSpec(on_task.id, wf.into, ctx.config.merge_strategy)
        task = agentless.new_agentless_task(
            ctx,
            "merge",
            f"Merge {on_task.branch} into {wf.into}.",
            title,
            deps,
            workflow=wf.id,
            step=step.name,
            round=wf.round,
            merge=spec,
        )
    elif role.produces == "report":
        task = agentless.new_agentless_task(
            ctx,
            "report",
            "Consolidate the review passes into one report.",
            title,
            deps,
            workflow=wf.id,
            step=step.name,
            round=wf.round,
        )
    else:
        prompt = _step_prompt(ctx, wf, step, role, on_task)
        base = None if on_task else (wf.head_sha if wf.subject == "range" else wf.base_sha)
        task = task_cases.submit(
            ctx,
            task_cases.Submission(
                prompt,
                role=step.role,
                after=deps,
                on=on_task.id if on_task else None,
                base=base,
                title=title,
                review=step.review,
                workflow=wf.id,
                step=step.name,
                round=wf.round,
                resources=dict(step.resources) if step.resources else None,
            ),
        )
    tasks[task.id] = task
    wf.add_instance(step.name, task.id)
    return task


def _step_prompt(ctx: Context, wf: Workflow, step: Step, role: Role, on_task: Task | None) -> str:
    parts = []
    if step.prompt:
        parts.append(step.prompt)
    parts.append(f"## The request\n\n{wf.request.strip()}")
    context = [
        f"Workflow {wf.id} ({wf.template}), step {step.name!r} as {step.role}, "
        f"round {wf.round} of at most {wf.max_rounds}."
    ]
    if on_task is not None:
        context.append(
            f"Your branch starts from the branch of step {on_task.step or on_task.role!r} "
            f"(task {on_task.id}, {on_task.branch}), which holds the work so far."
        )
    parts.append("## Context\n\n" + " ".join(context))
    if wf.comments and wf.round > 1:
        parts.append(
            "## The previous review asked for changes\n\n"
            + format_comments(wf.comments)
            + "\n\nThe implementer has revised the work since; check that every comment was addressed."
        )
    if step.review or role.produces == "verdict":
        if wf.subject == "range":
            head, label = wf.head_sha or "", f"the range {wf.base_ref}"
        else:
            assert on_task is not None, "a review step in a branch workflow starts from the branch it reviews"
            head = refs.branch_head(ctx.root, on_task.branch) or ""
            label = f"branch {on_task.branch}"
        parts.append(review.review_material(ctx.root, wf.base_sha, head, label))
    return "\n\n".join(parts)


# -- the review loop ----------------------------------------------------------------------


def _start_revision(
    ctx: Context, wf: Workflow, tasks: dict[str, Task], comments: list[dict[str, Any]], unrecorded: _Unrecorded
) -> None:
    """The revising agent continues its own session on its own branch, which first takes in the reviewed work."""
    tpl = wf.template_obj()
    revise = tpl.revise_step
    assert revise is not None
    prev = current_task(wf, tasks, revise.name)
    assert prev is not None
    root = ctx.root
    prev_head = refs.branch_head(root, prev.branch)
    if prev_head is None:
        raise OrchestraError(f"branch {prev.branch} of task {prev.id} no longer exists")
    merge.release_worktree(ctx, prev)
    for review_step in [s for s in tpl.steps if s.name in {c["step"] for c in comments}]:
        reviewed = current_task(wf, tasks, review_step.on) if review_step.on else None
        if reviewed is None or reviewed.branch == prev.branch:
            continue
        head = refs.branch_head(root, reviewed.branch)
        if head and head != prev_head and refs.is_ancestor(root, prev_head, head):
            refs.update_ref(root, prev.branch, head, prev_head, f"orchestra: revision of workflow {wf.id}")
            prev_head = head
        break
    new_round = wf.round + 1
    prompt = (
        f"A reviewer requested changes to the work on your branch (review round {wf.round}). Address every "
        "comment below, keep the existing tests passing, and commit. Your branch also holds the commits "
        "made after yours in this workflow (for example the tester's tests).\n\n"
        f"## Review comments\n\n{format_comments(comments)}\n\n"
        f"## The request\n\n{wf.request.strip()}\n\n"
        f"## Context\n\nWorkflow {wf.id} ({wf.template}), step {revise.name!r} as {revise.role}, "
        f"round {new_round} of at most {wf.max_rounds}."
    )
    made = unrecorded.take(revise.name, new_round)  # by an advance killed before it saved the record
    task = made or task_cases.submit(
        ctx,
        task_cases.Submission(
            prompt,
            role=revise.role,
            base=prev.base_sha or prev_head,
            title=f"{revise.name} (round {new_round}): {wf.title}",
            workflow=wf.id,
            step=revise.name,
            round=new_round,
            revision_of=prev.id,
            continue_session=prev.session_id,
            branch=prev.branch,
            resources=dict(revise.resources) if revise.resources else None,  # a revision runs where the step does
        ),
    )
    if made is None:
        ctx.store.append_event(task.id, "revision", round=new_round, branch=prev.branch, resumes=prev.session_id)
    wf.comments = comments
    wf.round = new_round
    wf.add_instance(revise.name, task.id)


def start_resolve_in_workflow(ctx: Context, wf: Workflow, merge_task: Task) -> tuple[Task, Task]:
    spec = merge_task.merge
    assert spec is not None
    source = ctx.store.load(spec.source_task)
    files = (merge_task.merge_result or {}).get("files", [])
    resolver, retry = merge.start_resolve(
        ctx, source, spec.into, spec.strategy, files, workflow=wf.id, round=wf.round, request=wf.request
    )
    wf.add_instance("resolve", resolver.id)
    wf.add_instance(merge_task.step or "merge", retry.id)
    wf.resume()
    return resolver, retry


# -- agentless steps ------------------------------------------------------------------------


def run_agentless(ctx: Context, task_id: str) -> Task:
    """Run a merge or report step in this process and record its end like an agent's."""
    with agentless.running_here(task_id):
        return _run_agentless(ctx, ctx.store.load(task_id))


def _run_agentless(ctx: Context, task: Task) -> Task:
    error: str | None = None
    result_text = ""
    merge_result: dict[str, Any] | None = None
    verdict: str | None = None
    try:
        if task.produces == "merge":
            result = merge.run_merge_task(ctx, task)
            merge_result = result.to_dict()
            result_text = result.message
            error = None if result.ok else result.message
        elif task.produces == "report":
            passes = [(str(t.step or t.id), t) for t in (ctx.store.load(d) for d in task.depends_on)]
            result_text, verdict = build_report(passes)
        else:
            error = f"role {task.role!r} needs an agent"
    except OrchestraError as exc:
        error = str(exc)
    ended = agentless.finish_agentless(
        ctx, task.id, error, result_text, merge_result=merge_result, verdict=verdict, attempt=task.attempts
    )
    if ended.state.final:
        ctx.log(f"{ended.id} {ended.state}" + (f": {ended.error}" if ended.error else ""))
    return ended


def approve_merge(ctx: Context, wf: Workflow) -> Workflow:
    """A person approved the merge of a workflow waiting at `awaiting_merge`: its merge step may run."""
    with ctx.store.locked():
        wf = records.load(ctx.store, wf.id)
        wf.merge_approved = True
        wf.merge_approved_at = now()
        records.save(ctx.store, wf)
    return advance(ctx, wf.id)

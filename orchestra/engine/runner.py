"""One run of one task: launch it through the executor, watch it, and record how it ended.

The scheduler decides *when* a task runs; this module decides what the run is (role,
prompt, permissions, budget), and turns what the agent left behind into the task's
new state. Any failure on the way ends the run as failed with the reason: a task is
never left `running` without an agent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestra.agent import backoff, claude, permissions, sandbox
from orchestra.agent.outcome import TOKEN_KEYS, Outcome, read_init, read_outcome, stderr_reason
from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import OrchestraError
from orchestra.core.redact import mask_data, mask_secrets
from orchestra.core.roles import Role, role_for_task, verdict_problem
from orchestra.core.task import State, Task, now
from orchestra.engine import approvals, changes, merge, notify, refguard
from orchestra.engine.context import Context
from orchestra.executors.base import RUNNING, Collected, Handle, Launch
from orchestra.git import refs, review
from orchestra.store import ratelimit

CANCEL_CHECK_SECONDS = 0.5
POLL_SECONDS = 0.2


# -- launching ---------------------------------------------------------------------------


def launch(ctx: Context, task_id: str) -> Handle:
    """Prepare the checkout and start the agent of a claimed task; raises OrchestraError with the reason."""
    executor = ctx.executor()
    task = ctx.store.load(task_id)
    role = role_for_task(ctx.paths.state, task)
    base_sha = task.base_sha
    if task.on:
        dep = ctx.store.load(task.on)
        base_sha = refs.branch_head(ctx.root, dep.branch)
        if not base_sha:
            raise OrchestraError(f"branch {dep.branch} of task {task.on} no longer exists")
    if not base_sha:
        raise OrchestraError("task has no base commit")
    policy = permissions.policy_for(role, ctx.config)
    role = permissions.apply(role, policy)
    permissions.check_environment(policy, dict(os.environ))
    # A reviewer only reads (Read, Grep, Glob): there is nothing for the sandbox to contain.
    sandboxed = policy.sandboxed and role.produces != "verdict"
    if sandboxed:
        problems = executor.problems()
        if problems:
            raise OrchestraError(problems[0])
    spec = Launch(task=task, role=role, prompt="", system_prompt="", base_sha=base_sha)
    spec.sandbox = (
        sandbox.settings(list(ctx.config.sandbox_allow_write), list(ctx.config.sandbox_allow_domains))
        if sandboxed
        else None
    )
    spec.resources = {**ctx.config.resources, **role.resources, **task.resources}  # where it may run: before prepare
    copied = executor.prepare(spec, bootstrap_needed=not task.bootstrapped)
    if copied or ((ctx.config.copy or ctx.config.setup) and not task.bootstrapped):

        def bootstrapped(t: Task) -> None:
            t.bootstrapped = True
            t.copied = sorted(set(t.copied) | set(copied))

        task = ctx.store.update(task.id, bootstrapped, "bootstrapped", copied=copied, setup=bool(ctx.config.setup))
    spec.task = task
    refguard.record(ctx, task)
    spec.prompt, spec.resume = _prompt(ctx, task, role)
    spec.system_prompt = _system_prompt(task, role, base_sha)
    spec.max_budget_usd = remaining_budget(task, role.budget_usd)
    spec.claude_args = list(ctx.config.claude_args)
    spec.env = {"ORCHESTRA_ROLE": task.role, "ORCHESTRA_BRANCH": task.branch}
    permissions.agent_env(policy, spec.env)
    spec.prompt_tool = policy.uses_prompt_tool
    spec.permission_timeout = float(ctx.config.permission_timeout)
    handle: Handle = executor.spawn(spec)

    def started(t: Task) -> None:
        t.launched(
            handle.pid,
            handle.proc_start,
            handle.log_offset,
            base_sha,
            handle.worktree,
            node=handle.node,
            node_id=handle.node_id,
        )
        t.branch_sha = spec.branch_sha or t.branch_sha

    extra = {"node": handle.node} if handle.node else {}
    try:
        ctx.store.update(
            task.id, started, "started", pid=handle.pid, resume=spec.resume, attempt=task.attempts, **extra
        )
    except Exception:
        # An agent nobody could find again must not run on: stop it before the failure is handled.
        executor.stop(handle, ctx.config.kill_grace)
        raise
    crash_point("after_started")
    ctx.log(
        f"{task.id} started ({task.role}, attempt {task.attempts}{', resuming ' + spec.resume if spec.resume else ''})"
    )
    return handle


def _prompt(ctx: Context, task: Task, role: Role) -> tuple[str, str | None]:
    """A crashed or answered run resumes its session with a nudge or the person's reply; a workflow
    revision continues the implementer's session with the task's own prompt."""
    resume = task.resume_session or task.continue_session
    if task.resume_session:
        return task.next_prompt or claude.RESUME_PROMPT, resume
    prompt = task.prompt
    if role.produces == "verdict" and task.on and not task.workflow:
        prompt += "\n\n" + _review_material(ctx, task.on)
    return prompt, resume


def _system_prompt(task: Task, role: Role, base_sha: str) -> str:
    text = f"{role.full_system_prompt()}\n\nTask {task.id} on branch {task.branch}, started from {base_sha[:12]}."
    if task.copied:
        text += f"\nCopied in or made by the setup command, not part of the change (never commit them): {', '.join(task.copied)}."
    return text


def _review_material(ctx: Context, on_id: str) -> str:
    """What a reviewer started `--on` a task reads: that branch's commits and diff against its base."""
    reviewed = ctx.store.load(on_id)
    head = refs.branch_head(ctx.root, reviewed.branch)
    if not head or not reviewed.base_sha:
        raise OrchestraError(f"branch {reviewed.branch} of task {on_id} has nothing to review")
    return review.review_material(ctx.root, reviewed.base_sha, head, f"branch {reviewed.branch}")


def remaining_budget(task: Task, role_default: float | None) -> float | None:
    """What this run may still spend (--max-budget-usd); the budget covers all attempts."""
    budget = task.budget_usd if task.budget_usd is not None else role_default
    if budget is None:
        return None
    remaining = round(budget - (task.cost_usd or 0.0), 6)
    if remaining <= 0:
        raise OrchestraError(
            f"budget exhausted: ${task.cost_usd or 0:.4f} spent of the ${budget:.2f} budget "
            "(raise it with 'orchestra retry --budget USD')"
        )
    return remaining


# -- watching ---------------------------------------------------------------------------


def watch(ctx: Context, task_id: str, handle: Handle, stopping: Callable[[], bool]) -> tuple[Any, str]:
    """Wait for the agent; returns (exit code, "exit" | "timeout" | "cancel" | "abandoned").

    Meanwhile it carries the transcript and questions home, turns open questions into
    `awaiting_input` (and tells the on_event hook), and enforces the timeout, which
    does not count time spent waiting for a person.
    """
    executor = ctx.executor()
    task = ctx.store.load(task_id)
    limit = task.timeout or ctx.config.timeout
    deadline = (task.started_at or now()) + limit + task.time_waited()
    next_check = 0.0
    told: set[str] = set()
    init_checked = not handle.sandboxed
    while True:
        code = executor.poll(handle)
        if code is not RUNNING:
            executor.sync(handle)
            return code, "exit"
        if stopping():
            return None, "abandoned"  # the agent lives on; the next scheduler adopts it
        if time.time() >= deadline:
            ctx.log(f"{task_id} timed out after {limit:.0f}s; stopping it")
            return executor.stop(handle, ctx.config.kill_grace), "timeout"
        if not init_checked:
            init = read_init(ctx.paths.log_file(task_id), handle.log_offset)
            if init is not None:
                init_checked = True
                if init.get("sandbox_enabled") is not True:
                    # Settings that did not take (a typo, an old CLI, an override in claude_args):
                    # every command the agent runs would be unconfined. finalize says why it failed.
                    ctx.log(f"{task_id}: Claude Code started without its sandbox; stopping it")
                    return executor.stop(handle, ctx.config.kill_grace), "exit"
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + CANCEL_CHECK_SECONDS
            executor.sync(handle)
            try:
                approvals.observe(ctx, task_id, told)
                current = ctx.store.load(task_id)
                deadline = (current.started_at or now()) + limit + current.time_waited()
                if current.cancel_requested:
                    ctx.log(f"{task_id} cancelled; stopping it")
                    return executor.stop(handle, ctx.config.kill_grace), "cancel"
            except OrchestraError as exc:
                ctx.log(f"{task_id}: {exc}")
        executor.wait(handle, min(POLL_SECONDS, max(deadline - time.time(), 0.01)))


# -- finishing ---------------------------------------------------------------------------


@dataclass
class Verdict:
    """How a run ended, decided from what it left; `retry` set when an API error will pass."""

    state: State
    error: str | None
    retry: backoff.Retry | None = None
    resume: str | None = None  # set when an adopted agent died: the next run resumes this session


def judge(
    ctx: Context,
    task: Task,
    outcome: Outcome,
    exit_code: int | None,
    *,
    timed_out: bool,
    launch_error: str | None,
    collect_error: str | None,
    adopted: bool = False,
) -> Verdict:
    def also(error: str) -> str:
        return f"{error}; {collect_error}" if collect_error else error

    if task.cancel_requested:
        return Verdict(State.CANCELLED, also("cancelled"))
    if timed_out:
        return Verdict(State.TIMED_OUT, also(f"timed out after {task.timeout or ctx.config.timeout:.0f}s"))
    if adopted and not launch_error and not outcome.has_result:
        # An agent found again after a scheduler restart died without finishing: like an agent that
        # died while no scheduler watched, it is resumed (recovery.recover_one), attempts allowing.
        if task.attempts < task.max_attempts:
            session = outcome.session_id or task.session_id
            return Verdict(State.QUEUED, also(outcome.failure_reason(exit_code)), resume=session or "")
        return Verdict(State.FAILED, also(f"agent died and all {task.max_attempts} attempts are used"))
    if launch_error:
        state, error = State.FAILED, launch_error
    elif outcome.succeeded:
        state, error = State.SUCCEEDED, None
    else:
        state, error = State.FAILED, outcome.failure_reason(exit_code)
    if collect_error:
        return Verdict(State.FAILED, f"{error}; {collect_error}" if error else collect_error)
    if state == State.FAILED and not launch_error:
        retry = backoff.plan(ctx.config, task, outcome, error or "API error")
        if retry:
            return Verdict(State.QUEUED, error, retry)
    return Verdict(state, error)


def output_error(task: Task, outcome: Outcome) -> str | None:
    """A run that succeeded without the output its role must hand on is a failure, with this reason."""
    if task.produces != "verdict" or not outcome.succeeded:
        return None
    problem = verdict_problem(outcome.structured_output)
    return f"no verdict: {problem}" if problem else None


def unclaim(ctx: Context, task_id: str, why: str) -> Task:
    """The run never began because where runs start did not let us in: the task waits in the queue as it was
    (or ends, when it was cancelled meanwhile)."""
    why = mask_secrets(why)

    def put_back(t: Task) -> None:
        if t.cancel_requested:
            t.finish(State.CANCELLED, "cancelled")
        else:
            t.unclaim()

    task = ctx.store.update(task_id, put_back, "requeued", reason="executor unreachable", error=why)
    ctx.log(f"{task_id} {'cancelled' if task.state == State.CANCELLED else 'back in the queue'}: {why}")
    return task


def finalize(
    ctx: Context,
    task_id: str,
    *,
    exit_code: int | None,
    handle: Handle | None = None,
    timed_out: bool = False,
    launch_error: str | None = None,
    lost_at_launch: str | None = None,
) -> Task:
    """Record the end of a run: commit the agent's leftovers, judge the outcome, move the task on.

    `lost_at_launch`: the machine went away while the run was being started (RunLost); there is nothing to collect.
    """
    crash_point("before_finalize")
    task = ctx.store.load(task_id)
    if task.state == State.QUEUED:
        ctx.log(f"{task_id}: the end of this run is not recorded: it was queued again meanwhile")
        return task  # nothing of its checkout is committed either: the next run works there
    attempt = task.attempts
    # Read the log even without a pid: the scheduler may have died after spawning the agent
    # but before recording it, and the agent may have finished since (log_offset is set at claim).
    outcome = read_outcome(ctx.paths.log_file(task_id), task.log_offset)
    before_any_output = not (outcome.has_result or outcome.init_seen or outcome.assistant_messages)
    if before_any_output and not outcome.last_error_text and handle is not None and handle.err_offset is not None:
        # Only a CLI that stopped before any stream-json: the last stderr line of one that ran and then died
        # (killed, out of memory) is whatever it said earlier (a start-up warning), not why it ended.
        outcome.last_error_text = stderr_reason(ctx.paths.stderr_file(task_id), handle.err_offset)
    launch_error = launch_error or output_error(task, outcome)
    if handle is not None:
        sandboxed = handle.sandboxed
    else:  # a run that ended while no scheduler watched it
        sandboxed = task.produces != "verdict" and ctx.config.sandbox == sandbox.REQUIRED and outcome.init_seen
    if sandboxed and not launch_error and outcome.sandbox_enabled is not True:
        if outcome.init_seen:
            launch_error = "Claude Code ran without its sandbox (init line: sandbox_enabled false); the run was stopped"
        elif outcome.succeeded:
            launch_error = "Claude Code did not say whether its sandbox was on (no init line); not trusted"
    unfinished = merge.unfinished_resolution(ctx, task) if task.resolves else None
    if lost_at_launch:
        collected = Collected(lost=lost_at_launch)
    elif unfinished:
        collected = Collected(error=unfinished)  # never commit a half-done merge: its markers would reach a target
    else:
        try:
            collected = ctx.executor().collect(task, handle)
        except OrchestraError as exc:
            collected = Collected(error=str(exc))
        if task.resolves and not collected.error:
            left = merge.markers_left(ctx, task)
            if left:
                collected = Collected(commit=collected.commit, error=left)
    if collected.commit:
        ctx.store.append_event(task.id, "autocommit", commit=collected.commit)
    refguard.settle(ctx, task)
    if collected.gitlinks:
        ctx.store.append_event(task.id, "gitlinks_left_out", paths=collected.gitlinks)
        ctx.log(f"{task.id}: nested repositories not committed by orchestra: {', '.join(collected.gitlinks[:5])}")
    crash_point("after_commit")
    try:
        diffstat = changes.branch_stat(ctx, task)
    except OrchestraError:
        diffstat = None  # a listing then says nothing rather than something wrong
    verdict: Verdict | None = None
    paused: float | None = None
    lost = False
    taken_over: str | None = None

    def record(t: Task) -> None:
        nonlocal verdict, paused, lost, taken_over
        if t.state.final:
            return
        taken_over = t.moved_on(attempt)
        if taken_over:
            return  # another scheduler's recovery took the task on: the next run is theirs
        if collected.lost and not t.cancel_requested and not timed_out and t.attempts < t.max_attempts:
            # The machine died with the run: nothing to judge. Run it again, fresh (its session
            # was on that machine), wherever there is room.
            lost = True
            t.requeue(session=None)
            t.error = mask_secrets(collected.lost)
            return
        verdict = judge(
            ctx,
            t,
            outcome,
            exit_code,
            timed_out=timed_out,
            launch_error=launch_error,
            collect_error=collected.error or collected.lost,
            adopted=handle is not None and handle.adopted,
        )
        if collected.branch_sha:
            t.branch_sha = collected.branch_sha
        _add_outcome(t, outcome)
        if diffstat is not None:
            t.diffstat = diffstat
        error = mask_secrets(verdict.error) if verdict.error else None  # agent text: it may echo a secret
        if verdict.resume is not None:
            t.requeue(session=verdict.resume or None)
            t.error, t.exit_code = error, exit_code
        elif verdict.retry:
            verdict.retry.apply(t)
            t.error, t.exit_code = error, exit_code
            if verdict.retry.kind == backoff.RATE_LIMIT:
                paused = ratelimit.record_rate_limit(ctx.paths, ctx.config)
        else:
            t.finish(verdict.state, error, exit_code=exit_code)

    task = ctx.store.update(task_id, record)
    if taken_over:
        ctx.log(f"{task_id}: the end of attempt {attempt} is not recorded: {taken_over}")
        return task
    crash_point("after_finalize")
    approvals.abandon_all(ctx, task, "the run ended")
    if lost:
        ctx.store.append_event(task_id, "requeued", reason="node lost", error=task.error, attempt=task.attempts)
        ctx.log(
            f"{task_id} lost its node ({task.error}); it runs again (attempt {task.attempts} of {task.max_attempts})"
        )
        return task
    if verdict is None:
        return task  # it had already ended
    if verdict.resume is not None:
        ctx.store.append_event(
            task_id, "requeued", reason="adopted agent ended without a result", resume=verdict.resume or None
        )
        again = f"will resume session {verdict.resume}" if verdict.resume else "will run again"
        ctx.log(f"{task_id} agent ended without a result after a restart; {again}")
        return task
    if verdict.retry:
        _note_retry(ctx, task, verdict.retry, paused)
        return task
    ctx.store.append_event(task_id, "finished", state=str(task.state), exit_code=exit_code, error=task.error)
    ctx.log(f"{task_id} {task.state}" + (f": {task.error}" if task.error else ""))
    if task.state in (State.SUCCEEDED, State.FAILED, State.TIMED_OUT):
        notify.fire(ctx, str(task.state), task)
    return task


def _add_outcome(t: Task, outcome: Outcome) -> None:
    t.session_id = outcome.session_id or t.session_id
    if outcome.cost_usd is not None:
        t.cost_usd = round((t.cost_usd or 0.0) + outcome.cost_usd, 6)
    for name in TOKEN_KEYS:
        value = getattr(outcome, name)
        if value is not None:
            setattr(t, name, (getattr(t, name) or 0) + value)
    if outcome.has_result:
        t.num_turns = outcome.num_turns
        t.result = mask_secrets(outcome.result) if outcome.result else outcome.result
        t.permission_denials = mask_data(outcome.permission_denials)
        if outcome.structured_output is not None:
            t.structured_output = mask_data(outcome.structured_output)
    elif outcome.assistant_messages:
        t.num_turns = outcome.assistant_messages


def _note_retry(ctx: Context, task: Task, retry: backoff.Retry, paused: float | None) -> None:
    ctx.store.append_event(
        task.id,
        "requeued",
        reason="transient API error",
        error=task.error,
        retry=retry.number,
        of=ctx.config.api_retries,
        not_before=retry.not_before,
        resume=retry.session,
    )
    wait = max(retry.not_before - time.time(), 0)
    ctx.log(f"{task.id} {task.error}; retry {retry.number} of {ctx.config.api_retries} in {wait:.0f}s")
    if paused:
        ctx.log(
            f"rate limits hit several agents; new starts pause until {time.strftime('%H:%M:%S', time.localtime(paused))}"
        )

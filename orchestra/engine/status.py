"""What is going on: the status picture, the queue in run order, spend. Reading only, never writing.

Built from the live index and the running totals (store.tasks), so its cost follows the live
work, not the history: the history is read only for its last few lines, and only live tasks'
transcripts are read, from their tail.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.agent import sandbox
from orchestra.core.errors import CorruptTaskFile, OrchestraError
from orchestra.core.spend import budget_message, totals
from orchestra.core.task import FINAL_STATES, LIVE_STATES, State, busy_slots, now
from orchestra.core.workflow import Workflow
from orchestra.engine import approvals, changes
from orchestra.engine.context import Context
from orchestra.executors import agents_run_here, quick_problems
from orchestra.store import ratelimit
from orchestra.store import workflows as records
from orchestra.store.scheduler import max_concurrent_flag, no_starts, scheduler_pid
from orchestra.store.tasks import View


@dataclass
class StatusReport:
    root: Path
    scheduler_pid: int | None
    counts: dict[str, int]
    running: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    total_cost_usd: float = 0.0
    corrupt: dict[str, str] = field(default_factory=dict)
    paused_until: float | None = None  # new starts paused after a burst of rate limits
    spend: dict[str, Any] = field(default_factory=dict)
    budget_usd: float = 0.0
    budget_message: str | None = None
    workflows: list[dict[str, Any]] = field(default_factory=list)
    sandbox: dict[str, Any] = field(default_factory=dict)  # the setting; why agents cannot start, if so
    merges: dict[str, int] = field(default_factory=dict)  # manual merge attempts by state
    merges_waiting: list[dict[str, Any]] = field(default_factory=list)  # workflows at awaiting_merge
    more_failures: int = 0  # failed tasks left out of `recent`
    executor: str = "local"
    executor_problems: list[str] = field(default_factory=list)  # why queued tasks do not start (Ray unreachable)
    autostart: bool = True  # whether submit starts a scheduler (the setting), for the hint when none runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": str(self.root),
            "scheduler_pid": self.scheduler_pid,
            "counts": self.counts,
            "running": self.running,
            "awaiting_input": self.waiting,
            "queued": self.queued,
            "recent": self.recent,
            "total_cost_usd": round(self.total_cost_usd, 6),
            "corrupt_task_files": self.corrupt,
            "paused_until": self.paused_until,
            "spend": self.spend,
            "budget_usd": self.budget_usd or None,
            "budget_message": self.budget_message,
            "workflows": self.workflows,
            "sandbox": self.sandbox,
            "manual_merges": self.merges,
            "awaiting_merge": self.merges_waiting,
            "more_failures": self.more_failures,
            "executor": self.executor,
            "executor_problems": self.executor_problems,
        }


def status(ctx: Context, recent: int = 5) -> StatusReport:
    """From the live index and the running totals; the history is read only for its last few lines."""
    view = ctx.store.checked_view()
    live = view.live
    counts = view.counts()
    for state, n in view.manual_counts().items():
        counts[state] = counts.get(state, 0) - n  # listed apart, under merges
    live_workflows: set[str] = set()
    running: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    for s in live.values():
        state = s["state"]
        if s.get("manual"):  # a person's `orchestra merge`, not an agent's task: counted apart
            continue
        if s.get("workflow"):
            live_workflows.add(s["workflow"])
        if state == State.RUNNING:
            running.append(s)
        elif state == State.AWAITING_INPUT:
            waiting.append(s)
    spent = view.spend()
    report = StatusReport(
        root=ctx.root,
        scheduler_pid=scheduler_pid(ctx.paths),
        counts=counts,
        total_cost_usd=spent["cost_usd"],
        corrupt=dict(view.corrupt),
        spend=spent,
        budget_usd=ctx.config.budget_usd,
        budget_message=budget_message(spent["cost_usd"], ctx.config.budget_usd, counts.get(State.QUEUED, 0)),
        autostart=bool(ctx.config.autostart),
    )
    t = now()
    for s in running:
        row = dict(s)
        row["elapsed"] = round(t - (s.get("started_at") or t), 1)
        row.update(activity(ctx, s["id"], report.corrupt))
        report.running.append(row)
    for s in waiting:
        row = dict(s)
        row.update(activity(ctx, s["id"], report.corrupt))
        report.waiting.append(row)
    report.running.sort(key=lambda r: r.get("started_at") or 0)
    report.waiting.sort(key=lambda r: r.get("started_at") or 0)
    report.executor_problems = _no_starts(ctx)
    report.queued = _queue(ctx, view, report.executor_problems) if counts.get(State.QUEUED) else []
    if live_workflows:
        report.workflows = _workflow_rows(ctx, view, live_workflows)
    report.merges = view.manual_counts()
    report.merges_waiting = _merges_waiting(ctx)
    report.recent, report.more_failures = _recent(view, counts, recent)
    report.paused_until = ratelimit.paused_until(ctx.paths)
    here = agents_run_here(ctx.config)
    report.sandbox = {"setting": ctx.config.sandbox, "problem": sandbox.problem(ctx.config.sandbox) if here else None}
    report.executor = ctx.config.executor_name
    return report


def _merges_waiting(ctx: Context) -> list[dict[str, Any]]:
    """Workflows stopped before their merge for a person's approval, each with what it would merge."""
    rows = []
    for wf_id in records.unfinished_ids(ctx.store):
        try:
            wf = records.load(ctx.store, wf_id)
        except OrchestraError:
            continue
        if wf.state != "awaiting_merge":
            continue
        row: dict[str, Any] = {"id": wf.id, "title": wf.title, "into": wf.into, "created_at": wf.created_at}
        try:
            change = changes.of_workflow(ctx, wf, with_commits=False)
            row.update(branch=change.branch, task=change.task, diffstat=change.stat.to_dict())
            row["summary"] = change.stat.summary()
        except OrchestraError as exc:
            row["summary"] = f"cannot read its change: {exc}"
        rows.append(row)
    rows.sort(key=lambda r: (r["created_at"], r["id"]))
    return rows


def _recent(view: View, counts: dict[str, int], count: int) -> tuple[list[dict[str, Any]], int]:
    """The last `count` agent tasks to end, then failures that fell out of them (as many again).

    A burst of successes must not push a failure out of sight; the failures that do not fit
    are counted (from the running totals, so the history is read only RECENT_SCAN lines back).
    Manual merge attempts are counted apart, not listed here.
    """
    if count <= 0:
        return [], 0
    latest: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for s in itertools.islice(view.finished(), RECENT_SCAN):
        if s.get("manual"):
            continue
        if len(latest) < count:
            latest.append(s)
        elif s["state"] in _FAILURES and len(failures) < count:
            failures.append(s)
        if len(latest) >= count and len(failures) >= count:
            break
    failed_total = sum(counts.get(str(f), 0) for f in _FAILURES)  # agents' tasks only
    shown_failed = sum(1 for s in latest + failures if s["state"] in _FAILURES)
    rows = [dict(s) for s in latest + failures]
    return rows, max(failed_total - shown_failed, 0)


RECENT_SCAN = 200  # how far back RECENT looks for failures pushed out by later tasks: a fixed cost
_FAILURES = frozenset({State.FAILED, State.TIMED_OUT})


def activity(ctx: Context, task_id: str, corrupt: dict[str, str] | None = None) -> dict[str, Any]:
    """What a live task is doing: turns, spend so far and its last step, from a bounded log tail.

    A task file found unreadable is added to `corrupt`, so the picture names it.
    """
    try:
        task = ctx.store.load(task_id)
    except CorruptTaskFile as exc:
        if corrupt is not None:
            corrupt[str(exc.path)] = str(exc)
        return {}
    except OrchestraError:
        return {}
    from orchestra.agent import transcript  # ~30 ms: only a status with live agents pays

    events, complete = transcript.tail_events(ctx.paths.log_file(task.id), task.log_offset)
    info = transcript.summarize(events)
    out: dict[str, Any] = {
        "num_turns": info["num_turns"] or None,
        "turns_partial": not complete,
        "last_activity": transcript.relative_paths(info["last_activity"], task.worktree),
    }
    if info["cost_usd"] is not None:
        out["cost_usd"] = round((task.cost_usd or 0.0) + info["cost_usd"], 6)
    if task.state == State.AWAITING_INPUT:
        request = approvals.pending_request(ctx, task)
        if request:
            if isinstance(request.get("summary"), str):
                request["summary"] = transcript.relative_paths(request["summary"], task.worktree)
            out["request"] = request
    return out


def _workflow_rows(ctx: Context, view: View, wanted: set[str]) -> list[dict[str, Any]]:
    """Workflows with unfinished steps: their members are read one by one, never the whole history."""
    rows = []
    for wf_id in sorted(wanted):
        wf, members = _workflow_members(ctx, view, wf_id)
        if not members:
            continue
        live = [m for m in members if m["state"] not in FINAL_STATES]
        current = [
            {"id": m["id"], "step": str(m.get("step") or m["role"]), "state": m["state"]}
            for m in sorted(live, key=lambda m: (m.get("created_at") or 0, m["id"]))
        ]
        by_id = {m["id"]: m for m in members}
        done = (
            sum(1 for inst in wf.latest().values() if (by_id.get(inst["task"]) or {}).get("state") == State.SUCCEEDED)
            if wf
            else 0
        )
        rows.append(
            {
                "id": wf_id,
                "tasks": len(members),
                "steps_done": done,
                "steps": len(wf.steps) if wf else None,
                "current": current,
                **{k: v for k, v in totals(members).items() if k != "tasks"},
                "created_at": min(m.get("created_at") or 0 for m in members),
            }
        )
    rows.sort(key=lambda r: (r["created_at"], r["id"]))
    return rows


def _workflow_members(ctx: Context, view: View, wf_id: str) -> tuple[Workflow | None, list[dict[str, Any]]]:
    """A workflow's record and its tasks' summaries: the steps it recorded, and any live task naming it."""
    try:
        wf: Workflow | None = records.load(ctx.store, wf_id)
    except OrchestraError:
        wf = None
    ids = dict.fromkeys(wf.task_ids() if wf else [])
    ids.update(dict.fromkeys(tid for tid, s in view.live.items() if s.get("workflow") == wf_id))
    if wf is None:  # tasks that name a workflow with no record: only the history knows its ended ones
        ids.update(dict.fromkeys(s["id"] for s in view.finished() if s.get("workflow") == wf_id))
    members = [m for m in (_summary(ctx, view, tid) for tid in ids) if m is not None and m.get("workflow") == wf_id]
    return wf, members


def _summary(ctx: Context, view: View, task_id: str) -> dict[str, Any] | None:
    try:
        return ctx.store.summary_of(task_id, view)
    except OrchestraError:
        return None


def queue(ctx: Context) -> list[dict[str, Any]]:
    """Queued tasks in the order the scheduler will take them, with what each waits for and why.

    `why` is None for a task that starts at the next pass, else one line a person reads
    under WAITS FOR: a dependency, a retry time, a rate-limit pause, the budget, the
    slots (waiting agents hold none, up to max_waiting) or no scheduler at all.
    """
    return _queue(ctx, ctx.store.view(), _no_starts(ctx))


def stuck(ctx: Context, ids: Iterable[str]) -> dict[str, str]:
    """Why each of these queued tasks cannot start until a person acts (no scheduler, the budget, the
    cluster): `wait` says so instead of blocking in silence."""
    wanted = set(ids)
    hints = {
        "no scheduler running": "no scheduler running; start one with 'orchestra worker'",
        "budget spent": "budget spent; raise it with 'orchestra config set budget_usd <USD>'",
    }
    return {
        str(row["id"]): hints.get(str(row["why"]), str(row["why"]))
        for row in queue(ctx)
        if row["id"] in wanted and (row["why"] in hints or str(row["why"] or "").startswith("no new starts"))
    }


def _no_starts(ctx: Context) -> list[str]:
    """Why nothing can start: the cluster does not answer here, or the live scheduler says it refuses it."""
    return quick_problems(ctx.config) or [why for why in [no_starts(ctx.paths)] if why]


def _queue(ctx: Context, view: View, stopped: list[str]) -> list[dict[str, Any]]:
    rows = []
    t = now()
    for s in view.live.values():
        if s["state"] != State.QUEUED:
            continue
        waiting = []
        for dep in s.get("depends_on") or []:
            try:
                d = ctx.store.summary_of(dep, view)
                state = d["state"] if d else "missing"
            except OrchestraError:
                state = "unreadable"
            if state != State.SUCCEEDED:
                waiting.append({"id": dep, "state": state})
        row = dict(s)
        row["waiting_for"] = waiting
        row["ready"] = not waiting
        rows.append(row)
    rows.sort(key=lambda r: (not r["ready"], -int(r.get("priority") or 0), r.get("created_at") or 0, r["id"]))
    limit = max_concurrent_flag(ctx.paths) or ctx.config.max_concurrent
    live = [str(s["state"]) for s in view.live.values() if s["state"] in LIVE_STATES and not s.get("manual")]
    free = limit - busy_slots(live, ctx.config.max_waiting)
    paused = ratelimit.paused_until(ctx.paths)
    over = budget_message(view.spend()["cost_usd"], ctx.config.budget_usd, len(rows))
    running_scheduler = scheduler_pid(ctx.paths) is not None
    for position, row in enumerate(rows, 1):
        row["position"] = position
        row["why"] = _why(row, t, limit, paused, over, running_scheduler) or (
            f"no new starts: {stopped[0]}" if stopped and row["ready"] else None
        )
        if row["why"] is None and row["ready"] and (row.get("not_before") or 0) <= t:
            if free > 0:
                free -= 1
            else:
                row["why"] = f"all {limit} slots busy"
    return rows


def _why(row: dict[str, Any], t: float, limit: int, paused: float | None, over: str | None, sched: bool) -> str | None:
    waiting = row["waiting_for"]
    if waiting:
        first = waiting[0]
        more = f" (+{len(waiting) - 1})" if len(waiting) > 1 else ""
        return f"waiting on dependency {first['id']} ({first['state']}){more}"
    if row.get("not_before") and row["not_before"] > t:
        return f"after {time.strftime('%H:%M', time.localtime(row['not_before']))}"
    if paused:
        return f"paused until {time.strftime('%H:%M', time.localtime(paused))}"
    if over:
        return "budget spent"
    if not sched:
        return "no scheduler running"
    return None


def spend(ctx: Context) -> dict[str, Any]:
    """Cost and tokens for the whole repo, per workflow and per role, and the budget.

    The totals are the running ones; the breakdowns read the whole history, one line at a time.
    """
    view = ctx.store.view()
    total = view.spend()
    queued = view.counts().get(State.QUEUED, 0)
    by_workflow: dict[str, list[float | int]] = {}
    by_role: dict[str, list[float | int]] = {}
    for s in view.every():
        for key, groups in (("workflow", by_workflow), ("role", by_role)):
            name = s.get(key)
            if isinstance(name, str) and name:
                _add(groups.setdefault(name, [0, 0.0, 0, 0]), s)
    return {
        "total": total,
        "budget_usd": ctx.config.budget_usd or None,
        "budget_message": budget_message(total["cost_usd"], ctx.config.budget_usd, queued),
        "by_workflow": _groups(by_workflow),
        "by_role": _groups(by_role),
    }


def _add(acc: list[float | int], s: dict[str, Any]) -> None:
    """One task into a [tasks, cost, input tokens, output tokens] accumulator (as core.spend.totals counts)."""
    acc[0] += 1
    c, i, o = s.get("cost_usd"), s.get("input_tokens"), s.get("output_tokens")
    if c.__class__ in (float, int):
        acc[1] += c
    if i.__class__ is int:
        acc[2] += i
    if o.__class__ is int:
        acc[3] += o


def _groups(groups: dict[str, list[float | int]]) -> dict[str, dict[str, Any]]:
    return {
        name: {"tasks": int(n), "cost_usd": round(cost, 6), "input_tokens": int(i), "output_tokens": int(o)}
        for name, (n, cost, i, o) in sorted(groups.items())
    }


def workflow_spend(ctx: Context, workflow_id: str) -> dict[str, Any]:
    """Cost and tokens summed over the tasks of one workflow (for `workflow show`), read one by one."""
    view = ctx.store.view()
    return totals(_workflow_members(ctx, view, workflow_id)[1])

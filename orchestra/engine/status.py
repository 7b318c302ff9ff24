"""What is going on: the status picture, the queue in run order, spend. Reading only, never writing.

Built from the index summaries in one pass, so it stays cheap with tens of
thousands of finished tasks; only live tasks' transcripts are read, from their tail.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.agent import transcript
from orchestra.core.errors import OrchestraError
from orchestra.core.spend import budget_message, by_key, totals
from orchestra.core.task import FINAL_STATES, State, now
from orchestra.engine import approvals
from orchestra.engine.context import Context
from orchestra.executors import quick_problems
from orchestra.store import ratelimit
from orchestra.store import workflows as records
from orchestra.store.scheduler import scheduler_pid


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
    executor: str = "local"
    executor_problems: list[str] = field(default_factory=list)  # why queued tasks do not start (Ray unreachable)

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
            "executor": self.executor,
            "executor_problems": self.executor_problems,
        }


def status(ctx: Context, recent: int = 5) -> StatusReport:
    """One pass over the index (it may hold tens of thousands of finished tasks)."""
    summaries = ctx.store.summaries()
    counts = {str(s): 0 for s in State}
    live_workflows: set[str] = set()
    running: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    for s in summaries.values():
        state = s["state"]
        counts[state] = counts.get(state, 0) + 1
        if state in FINAL_STATES:
            continue
        if s.get("workflow"):
            live_workflows.add(s["workflow"])
        if state == State.RUNNING:
            running.append(s)
        elif state == State.AWAITING_INPUT:
            waiting.append(s)
    spent = totals(summaries.values())
    report = StatusReport(
        root=ctx.root,
        scheduler_pid=scheduler_pid(ctx.paths),
        counts=counts,
        total_cost_usd=spent["cost_usd"],
        corrupt=dict(ctx.store.corrupt_files()),
        spend=spent,
        budget_usd=ctx.config.budget_usd,
        budget_message=budget_message(spent["cost_usd"], ctx.config.budget_usd, counts.get(State.QUEUED, 0)),
    )
    t = now()
    for s in running:
        row = dict(s)
        row["elapsed"] = round(t - (s.get("started_at") or t), 1)
        row.update(activity(ctx, s["id"]))
        report.running.append(row)
    for s in waiting:
        row = dict(s)
        row.update(activity(ctx, s["id"]))
        report.waiting.append(row)
    report.running.sort(key=lambda r: r.get("started_at") or 0)
    report.waiting.sort(key=lambda r: r.get("started_at") or 0)
    report.queued = queue(ctx) if counts.get(State.QUEUED) else []
    if live_workflows:
        report.workflows = _workflow_rows(ctx, summaries, live_workflows)
    finished = (s for s in summaries.values() if s["state"] in FINAL_STATES)
    report.recent = [dict(s) for s in heapq.nlargest(recent, finished, key=lambda s: s.get("finished_at") or 0)]
    report.paused_until = ratelimit.paused_until(ctx.paths)
    report.executor = ctx.config.executor_name
    report.executor_problems = quick_problems(ctx.config)
    return report


def activity(ctx: Context, task_id: str) -> dict[str, Any]:
    """What a live task is doing: turns, spend so far and its last step, from a bounded log tail."""
    try:
        task = ctx.store.load(task_id)
    except OrchestraError:
        return {}
    events, complete = transcript.tail_events(ctx.paths.log_file(task.id), task.log_offset)
    info = transcript.summarize(events)
    out: dict[str, Any] = {
        "num_turns": info["num_turns"] or None,
        "turns_partial": not complete,
        "last_activity": info["last_activity"],
    }
    if info["cost_usd"] is not None:
        out["cost_usd"] = round((task.cost_usd or 0.0) + info["cost_usd"], 6)
    if task.state == State.AWAITING_INPUT:
        request = approvals.pending_request(ctx, task)
        if request:
            out["request"] = request
    return out


def _workflow_rows(ctx: Context, summaries: dict[str, dict[str, Any]], wanted: set[str]) -> list[dict[str, Any]]:
    """Workflows with unfinished steps."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in summaries.values():
        wf = s.get("workflow")
        if wf in wanted:
            groups.setdefault(wf, []).append(s)
    rows = []
    for wf_id, members in groups.items():
        live = [m for m in members if m["state"] not in FINAL_STATES]
        current = [
            {"id": m["id"], "step": str(m.get("step") or m["role"]), "state": m["state"]}
            for m in sorted(live, key=lambda m: (m.get("created_at") or 0, m["id"]))
        ]
        done, planned = _workflow_progress(ctx, wf_id, summaries)
        rows.append(
            {
                "id": wf_id,
                "tasks": len(members),
                "steps_done": done,
                "steps": planned,
                "current": current,
                **{k: v for k, v in totals(members).items() if k != "tasks"},
                "created_at": min(m.get("created_at") or 0 for m in members),
            }
        )
    rows.sort(key=lambda r: (r["created_at"], r["id"]))
    return rows


def _workflow_progress(ctx: Context, wf_id: str, summaries: dict[str, dict[str, Any]]) -> tuple[int, int | None]:
    """Steps whose latest run succeeded, and the steps the template plans (None if unreadable)."""
    try:
        wf = records.load(ctx.store, wf_id)
    except OrchestraError:
        return 0, None
    done = sum(
        1 for inst in wf.latest().values() if (summaries.get(inst["task"]) or {}).get("state") == State.SUCCEEDED
    )
    return done, len(wf.steps)


def queue(ctx: Context) -> list[dict[str, Any]]:
    """Queued tasks in the order the scheduler will take them, with what each waits for."""
    summaries = ctx.store.summaries()
    rows = []
    for s in summaries.values():
        if s["state"] != State.QUEUED:
            continue
        waiting = []
        for dep in s.get("depends_on") or []:
            d = summaries.get(dep)
            state = d["state"] if d else "missing"
            if state != State.SUCCEEDED:
                waiting.append({"id": dep, "state": state})
        row = dict(s)
        row["waiting_for"] = waiting
        row["ready"] = not waiting
        rows.append(row)
    rows.sort(key=lambda r: (not r["ready"], -int(r.get("priority") or 0), r.get("created_at") or 0, r["id"]))
    for position, row in enumerate(rows, 1):
        row["position"] = position
    return rows


def spend(ctx: Context) -> dict[str, Any]:
    """Cost and tokens for the whole repo, per workflow and per role, and the budget."""
    rows = list(ctx.store.summaries().values())
    total = totals(rows)
    queued = sum(1 for r in rows if r["state"] == State.QUEUED)
    return {
        "total": total,
        "budget_usd": ctx.config.budget_usd or None,
        "budget_message": budget_message(total["cost_usd"], ctx.config.budget_usd, queued),
        "by_workflow": by_key(rows, "workflow"),
        "by_role": by_key(rows, "role"),
    }


def workflow_spend(ctx: Context, workflow_id: str) -> dict[str, Any]:
    """Cost and tokens summed over the tasks of one workflow (for `workflow show`)."""
    return totals(s for s in ctx.store.summaries().values() if s.get("workflow") == workflow_id)

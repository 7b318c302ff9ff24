"""Plain-text views of tasks and status, shared by the CLI and the MCP server.

Plain text on purpose: it must read well in an 80-column terminal, in a pipe and
in a model's context, and `status` must not pay for importing rich.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Iterable

from orchestra.task import Task

_STATE_ORDER = ("awaiting_input", "running", "queued", "succeeded", "failed", "timed_out", "cancelled")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}" if value < 1 else f"${value:.2f}"


def clock(ts: float | None) -> str:
    if not ts:
        return "-"
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def status_text(report: Any) -> str:
    lines = []
    if report.scheduler_pid:
        sched = f"running (pid {report.scheduler_pid})" if report.scheduler_pid > 0 else "running"
    else:
        sched = "not running (start one with 'orchestra worker', or submit a task)"
    lines.append(f"repo       {report.root}")
    lines.append(f"scheduler  {sched}")
    counts = "  ".join(f"{state} {report.counts.get(state, 0)}" for state in _STATE_ORDER)
    lines.append(f"tasks      {counts}")
    lines.append(f"spent      {money(report.total_cost_usd)}")
    if getattr(report, "paused_until", None):
        lines.append(f"paused     new starts wait until {clock(report.paused_until)} (rate limits hit several agents)")
    if report.waiting:
        lines.append("")
        lines.append(f"WAITING FOR YOU ({len(report.waiting)})")
        for s in report.waiting:
            lines.append(f"  {s['id']}  {s['role']:<11} {clip(s.get('title'), 50)}")
            if s.get("request"):
                lines.append(f"          asks to run {clip(s['request'].get('summary'), 62)}")
                lines.append(f"          answer: orchestra respond {s['id']} --allow | --deny [--message TEXT]")
    if report.running:
        lines.append("")
        lines.append(f"RUNNING ({len(report.running)})")
        for s in report.running:
            turns = s.get("num_turns")
            lines.append(
                f"  {s['id']}  {s['role']:<11} {duration(s.get('elapsed')):>7}  "
                f"turns {turns if turns is not None else '-':>3}  {money(s.get('cost_usd')):>8}  "
                f"{clip(s.get('title'), 30)}"
            )
    if report.queued:
        lines.append("")
        lines.append(f"QUEUED ({len(report.queued)}, next first)")
        for s in report.queued[:10]:
            after = f" after {','.join(s['depends_on'])}" if s.get("depends_on") else ""
            if s.get("not_before") and s["not_before"] > time.time():
                after += f" retry at {clock(s['not_before'])[11:]}"
            lines.append(f"  {s['id']}  {s['role']:<11} p{s.get('priority', 0):<4} {clip(s.get('title'), 40)}{after}")
        if len(report.queued) > 10:
            lines.append(f"  … and {len(report.queued) - 10} more")
    if report.recent:
        lines.append("")
        lines.append("RECENT")
        for s in report.recent:
            detail = f"  {clip(s.get('error'), 40)}" if s.get("error") else ""
            lines.append(
                f"  {s['id']}  {s['state']:<10} {s['role']:<11} {money(s.get('cost_usd')):>8}  "
                f"{clip(s.get('title'), 30)}{detail}"
            )
    for path, reason in report.corrupt.items():
        lines.append(f"warning: {reason}")
    return _masked("\n".join(lines))


def _masked(text: str) -> str:
    """Titles and errors quote agents and prompts; a secret in them is not shown."""
    from orchestra.transcript import mask_secrets

    return mask_secrets(text)


def task_table(rows: Iterable[dict[str, Any]]) -> str:
    out = [f"{'ID':<8} {'STATE':<14} {'ROLE':<11} {'PRI':>4} {'AGE':>7}  TITLE"]
    t = time.time()
    for s in rows:
        out.append(
            f"{s['id']:<8} {s['state']:<14} {s['role']:<11} {s.get('priority', 0):>4} "
            f"{duration(t - (s.get('created_at') or t)):>7}  {clip(s.get('title'), 44)}"
        )
    return "\n".join(out)


def task_text(task: Task, events: list[dict[str, Any]] | None = None) -> str:
    lines = [
        f"id           {task.id}",
        f"title        {task.title}",
        f"state        {task.state}" + (f"  ({task.error})" if task.error else ""),
        f"role         {task.role}",
        f"priority     {task.priority}",
        f"depends on   {', '.join(task.depends_on) or '-'}",
        f"base         {task.base_ref}" + (f" @ {task.base_sha[:12]}" if task.base_sha else ""),
        f"branch       {task.branch}",
        f"worktree     {task.worktree}",
        f"attempts     {task.attempts} of {task.max_attempts}",
        f"session      {task.session_id or '-'}",
        f"created      {clock(task.created_at)}",
        f"started      {clock(task.started_at)}",
        f"finished     {clock(task.finished_at)}",
        f"exit code    {task.exit_code if task.exit_code is not None else '-'}",
        f"turns        {task.num_turns if task.num_turns is not None else '-'}",
        f"cost         {money(task.cost_usd)}",
    ]
    if task.timeout:
        lines.append(f"timeout      {duration(task.timeout)}")
    if task.permission_denials:
        names = ", ".join(str(d.get("tool_name")) for d in task.permission_denials)
        lines.append(f"denied       {len(task.permission_denials)} tool call(s): {names}")
    lines.append("")
    lines.append("prompt")
    lines.extend(f"  {line}" for line in task.prompt.splitlines() or [""])
    if task.result:
        lines.append("")
        lines.append("result")
        lines.extend(f"  {line}" for line in task.result.splitlines())
    if events:
        lines.append("")
        lines.append("events")
        for e in events[-15:]:
            data = {k: v for k, v in e.items() if k not in ("ts", "event") and v not in (None, [], {})}
            detail = " ".join(f"{k}={clip(str(v), 60)}" for k, v in data.items())
            lines.append(f"  {clock(e.get('ts'))}  {e.get('event')}  {detail}".rstrip())
    return _masked("\n".join(lines))


def request_text(request: dict[str, Any]) -> str:
    """A pending permission request, for `orchestra show`."""
    lines = [
        "",
        "waiting for a person",
        f"  tool         {request.get('tool_name')}",
        f"  asks         {clip(request.get('summary'), 200)}",
        f"  since        {clock(request.get('created_at'))}",
        f"  denied at    {clock(request.get('deadline'))} if nobody answers",
        f"  answer with  orchestra respond {request.get('task_id')} --allow | --deny [--message TEXT] [--always]",
    ]
    if (request.get("waiting") or 1) > 1:
        lines.append(f"  ({request['waiting'] - 1} more request(s) queued behind this one)")
    return "\n".join(lines)


def queue_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "the queue is empty"
    out = [f"{'#':>3} {'ID':<8} {'ROLE':<11} {'PRI':>4}  {'WAITS FOR':<22} TITLE"]
    for r in rows:
        waits = ", ".join(f"{w['id']} ({w['state']})" for w in r["waiting_for"]) or "ready"
        out.append(
            f"{r['position']:>3} {r['id']:<8} {r['role']:<11} {r.get('priority', 0):>4}  "
            f"{clip(waits, 22):<22} {clip(r.get('title'), 30)}"
        )
    return "\n".join(out)


def doctor_text(report: Any) -> str:
    """One line per finding: what, where, and what was done about it."""
    if not report.findings:
        return f"{report.root}: no problems found"
    lines = []
    for f in report.findings:
        mark = "fixed" if f.fixed else "problem"
        note = f"  ({f.note})" if f.note else ""
        lines.append(f"{mark:<8} {f.kind:<24} {f.subject}: {f.detail}{note}")
    left = sum(1 for f in report.findings if not f.fixed)
    fixable = sum(1 for f in report.findings if f.fixable and not f.fixed)
    summary = f"{len(report.findings)} finding(s), {left} left"
    if fixable and not report.fix:
        summary += f"; {fixable} can be repaired with 'orchestra doctor --fix'"
    lines.append(summary)
    return "\n".join(lines)

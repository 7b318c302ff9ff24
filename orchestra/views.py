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
    if report.waiting:
        lines.append("")
        lines.append(f"WAITING FOR YOU ({len(report.waiting)})")
        for s in report.waiting:
            lines.append(f"  {s['id']}  {s['role']:<11} {clip(s.get('title'), 50)}")
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
    return "\n".join(lines)


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
    return "\n".join(lines)


# -- roles, workflows, merges ----------------------------------------------------


def roles_table(roles: dict[str, Any]) -> str:
    out = [f"{'ROLE':<12} {'PRODUCES':<9} {'TOOLS':<16} SOURCE / DESCRIPTION"]
    for name in sorted(roles, key=lambda n: (roles[n].agentless, n)):
        r = roles[name]
        tools = "none (no agent)" if r.agentless else ("default" if r.tools is None else ",".join(r.tools) or "none")
        out.append(f"{name:<12} {r.produces:<9} {clip(tools, 16):<16} {r.source}")
        out.append(f"{'':<12} {'':<9} {'':<16} {clip(r.description, 60)}")
    return "\n".join(out)


def role_text(role: Any) -> str:
    lines = [
        f"role             {role.name}",
        f"source           {role.source}",
        f"description      {role.description}",
        f"produces         {role.produces}" + ("  (no agent: orchestra runs this step itself)" if role.agentless else ""),
    ]
    if not role.agentless:
        lines += [
            f"tools            {'(Claude Code default)' if role.tools is None else ', '.join(role.tools) or '(none)'}",
            f"permission mode  {role.permission_mode}",
            f"timeout          {duration(role.timeout) if role.timeout else '(config default)'}",
            f"max turns        {role.max_turns or '-'}",
            f"allow            {', '.join(role.allow) or '-'}",
            f"deny             {', '.join(role.deny) or '-'}",
            "",
            "system prompt",
        ]
        lines += [f"  {line}" for line in role.full_system_prompt().splitlines()]
    return "\n".join(lines)


def templates_text(templates: dict[str, Any]) -> str:
    out = []
    for name, t in sorted(templates.items()):
        depth: dict[str, int] = {}
        for step in t.steps:  # topological order: a step's depth is one more than its deepest dependency
            depth[step.name] = 1 + max((depth[d] for d in step.deps), default=-1)
        layers = [[s for s in t.steps if depth[s.name] == level] for level in range(max(depth.values()) + 1)]
        chain = " → ".join(
            " | ".join(f"{s.name}({s.role})" if s.name != s.role else s.name for s in layer) for layer in layers
        )
        out.append(f"{name:<12} {clip(t.description, 66)}")
        out.append(f"{'':<12} steps: {chain}")
        out.append(f"{'':<12} source: {t.source}")
    return "\n".join(out)


def workflow_table(workflows: Iterable[Any]) -> str:
    out = [f"{'ID':<8} {'TEMPLATE':<12} {'STATE':<18} {'ROUND':>5} {'AGE':>7}  REQUEST"]
    t = time.time()
    for w in workflows:
        out.append(
            f"{w.id:<8} {w.template:<12} {w.state:<18} {w.round:>5} {duration(t - w.created_at):>7}  {clip(w.title, 40)}"
        )
    return "\n".join(out)


def workflow_text(wf: Any, tasks: dict[str, Any]) -> str:
    """The task graph: every planned step, each instance's task and state, in order."""
    lines = [
        f"workflow   {wf.id}  ({wf.template})",
        f"state      {wf.state}" + (f"  ({wf.error})" if wf.error else ""),
        f"round      {wf.round} of at most {wf.max_rounds}",
        f"request    {clip(wf.request, 66)}",
    ]
    if wf.subject == "range":
        lines.append(f"reviews    {wf.base_ref}  ({wf.base_sha[:12]}..{(wf.head_sha or '')[:12]})")
    else:
        lines.append(f"base       {wf.base_ref} @ {wf.base_sha[:12]}" + (f"   into {wf.into}" if wf.into else ""))
    lines += ["", f"{'STEP':<12} {'ROLE':<12} {'ROUND':>5}  {'TASK':<8} {'STATE':<14} DETAIL"]
    seen: set[str] = set()
    for inst in wf.instances:
        task = tasks.get(inst["task"])
        state = str(task.state) if task else "missing"
        lines.append(
            f"{inst['step']:<12} {task.role if task else '?':<12} {inst['round']:>5}  {inst['task']:<8} "
            f"{state:<14} {_instance_detail(task)}"
        )
        seen.add(inst["step"])
    for step in wf.steps:
        if step["name"] not in seen:
            after = ", ".join(([step["on"]] if step.get("on") else []) + list(step.get("after", [])))
            lines.append(f"{step['name']:<12} {step['role']:<12} {'':>5}  {'-':<8} {'pending':<14} "
                         + (f"after {after}" if after else ""))
    if wf.conflict:
        lines += ["", f"conflict merging {wf.conflict.get('branch')} into {wf.conflict.get('into')}:"]
        lines += [f"  {f}" for f in wf.conflict.get("files") or []]
        lines.append(f"  resolve with: orchestra merge {wf.id} --resolve")
    if wf.comments and wf.state in ("changes_requested", "running"):
        lines += ["", "review comments" + (" (last round)" if wf.state == "changes_requested" else "")]
        from orchestra.workflows import format_comments

        lines += [f"  {line}" for line in format_comments(wf.comments).splitlines()]
    if wf.merge:
        lines += ["", f"merge      {wf.merge.get('message')}"]
    if wf.report:
        lines += ["", *wf.report.rstrip("\n").splitlines()]
    return "\n".join(lines)


def _instance_detail(task: Any) -> str:
    if task is None:
        return ""
    if task.error:
        return clip(task.error, 50)
    output = task.extra.get("structured_output")
    if isinstance(output, dict) and output.get("verdict"):
        return f"verdict: {output['verdict']}"
    result = task.extra.get("merge_result")
    if isinstance(result, dict):
        return clip(result.get("message"), 50)
    return clip(task.branch, 50)


def merge_text(result: Any) -> str:
    lines = [result.message]
    if result.status == "conflict" and result.files:
        lines += ["conflicting files:", *[f"  {f}" for f in result.files]]
    if result.gate and result.gate.get("exit_code") not in (0, None):
        lines += [f"gate output (last lines of {result.gate['log']}):", *[f"  {l}" for l in result.gate["tail"]]]
    if result.resolve_task:
        lines.append(f"started task {result.resolve_task} to resolve the conflict; task {result.retry_task} "
                     "retries the merge after it")
    elif result.status == "conflict":
        lines.append("to let an implementer resolve it: orchestra merge ... --resolve")
    return "\n".join(lines)


def cleanup_text(report: Any) -> str:
    verb = "would remove" if report.dry_run else "removed"
    lines = []
    for w in report.removed_worktrees:
        lines.append(f"{verb} worktree {w['path']} (task {w['task']})")
    for b in report.deleted_branches:
        how = "merged into " + str(b.get("into")) if not b.get("lost") else "UNMERGED, forced"
        lines.append(f"{'would delete' if report.dry_run else 'deleted'} branch {b['branch']} ({how})")
    for k in report.kept:
        name = k.get("branch") or k.get("path")
        lines.append(f"kept {k['what']} {name}: {k['reason']}")
    lost = report.would_lose
    if lost:
        lines.append("")
        lines.append("would be lost with --force:" if not report.force else
                     ("would lose:" if report.dry_run else "lost:"))
        for item in lost:
            lines.append(f"  {item.get('branch') or item.get('path')}")
            lines += [f"    {entry}" for entry in item["lost"]]
    return "\n".join(lines) if lines else "nothing to clean up"

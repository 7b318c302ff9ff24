"""Plain-text views of tasks and status, shared by the CLI and the MCP server.

Plain text on purpose: it must read well in an 80-column terminal, in a pipe and
in a model's context, and `status` must not pay for importing rich.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import re
import textwrap
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from orchestra.core.redact import mask_secrets
from orchestra.core.spend import tokens
from orchestra.core.task import Task
from orchestra.core.workflow import format_comments
from orchestra.ui.term import paint

# Control characters (but newline and tab) from titles, errors or file names would drive the terminal:
# clear it, retitle it, move the cursor. They are shown escaped instead.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_F = TypeVar("_F", bound=Callable[..., str])


def printable(text: str) -> str:
    """`text` with every control character but newline and tab shown as an escape (`\\x1b`)."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _printable(view: _F) -> _F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        return printable(view(*args, **kwargs))

    return wrapper  # type: ignore[return-value]


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
    text = printable(" ".join((text or "").split()))
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


_LABELS = {"awaiting_input": "awaiting input", "timed_out": "timed out"}
_FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
_ROLE_W = 11
_QUEUE_SHOWN = 10


def status_text(report: Any, width: int = 80) -> str:
    return "\n".join(text for _, text in status_lines(report, width))


def status_lines(report: Any, width: int = 80) -> list[tuple[str, str]]:
    """The status picture as (kind, line) pairs, each line at most `width` columns.

    The kind names a style in orchestra.term, so the plain output, the coloured
    output and the live dashboard draw the same picture.
    """
    out: list[tuple[str, str]] = []
    idw = max([6] + [len(r["id"]) for r in (*report.waiting, *report.running, *report.queued, *report.recent)])

    def add(kind: str, text: str, cut: Callable[[str, int], str] = fit) -> None:
        out.append((kind, cut(printable(_masked(text)), width)))

    def blank() -> None:
        if out and out[-1][1]:
            out.append(("plain", ""))

    if report.scheduler_pid:
        sched = f"running (pid {report.scheduler_pid})" if report.scheduler_pid > 0 else "running"
    else:
        # With autostart = false, submitting starts nothing: only `worker` does.
        also = ", or submit a task" if getattr(report, "autostart", True) else "; autostart is off"
        sched = f"not running (start one with 'orchestra worker'{also})"
    add("plain", f"repo       {report.root}")
    add("plain", f"scheduler  {sched}")
    counts = "  ".join(f"{state} {report.counts[state]}" for state in _STATE_ORDER if report.counts.get(state))
    add("plain", f"tasks      {counts or 'none yet'}")
    merges = getattr(report, "merges", None) or {}
    if merges:
        by_state = "  ".join(f"{state} {merges[state]}" for state in _STATE_ORDER if merges.get(state))
        add("plain", f"merges     {sum(merges.values())} by hand: {by_state}")
    spend_ = getattr(report, "spend", None) or {}
    spent = f"spent      {money(report.total_cost_usd)}"
    if spend_.get("input_tokens") or spend_.get("output_tokens"):
        spent += f"  ({tokens(spend_.get('input_tokens'), spend_.get('output_tokens'))} tokens)"
    if getattr(report, "budget_usd", 0):
        spent += f"  budget {money(report.budget_usd)}"
    add("plain", spent)
    if getattr(report, "paused_until", None):
        add(
            "warning", f"paused     new starts wait until {clock(report.paused_until)} (rate limits hit several agents)"
        )
    if getattr(report, "budget_message", None):
        for line in wrap(f"!! {report.budget_message}", width, indent="   "):
            out.append(("warning", printable(line)))
    box = getattr(report, "sandbox", None) or {}
    if box.get("problem"):
        for line in wrap(f"!! agents cannot start: {box['problem']}", width, indent="   "):
            out.append(("warning", printable(line)))
    elif box.get("setting") == "off":
        add("warning", 'sandbox    off: agents run unconfined (sandbox = "off")')
    for problem in getattr(report, "executor_problems", None) or []:
        for line in wrap(f"!! no new starts: {problem}", width, indent="   "):
            out.append(("warning", printable(line)))

    merges_waiting = getattr(report, "merges_waiting", None) or []
    if report.waiting or merges_waiting:
        blank()
        how = "answer with 'orchestra respond ID'" if report.waiting else "approve with 'orchestra merge WF'"
        add("alert", f" !! WAITING FOR YOU ({len(report.waiting) + len(merges_waiting)}): {how} ")
        for m in merges_waiting:
            add("waiting", f"  {m['id']:<{idw}}  merge into {m.get('into') or '?'}: {m.get('summary')}")
            add("activity", f"  {'':<{idw}}  {clip(m.get('title'), width)} · approve: orchestra merge {m['id']}")
        for r in report.waiting:
            add("waiting", f"  {r['id']:<{idw}}  {r['role']:<{_ROLE_W}} {clip(r.get('title'), width)}")
            asks = _request_text(r.get("request")) or r.get("last_activity")
            if asks:
                add("activity", f"  {'':<{idw}}  asks: {asks}", fit_middle)

    if report.running:
        blank()
        add("heading", f"RUNNING ({len(report.running)})")
        add("dim", f"  {'ID':<{idw}}  {'ROLE':<{_ROLE_W}} {'ELAPSED':>7} {'TURNS':>5} {'COST':>8}  TITLE")
        for r in report.running:
            turns = r.get("num_turns")
            turns_s = "-" if turns is None else f"{turns}+" if r.get("turns_partial") else str(turns)
            add(
                "running",
                f"  {r['id']:<{idw}}  {r['role']:<{_ROLE_W}} {duration(r.get('elapsed')):>7} {turns_s:>5} "
                f"{money(r.get('cost_usd')):>8}  {clip(r.get('title'), width)}",
            )
            if r.get("node"):
                add("activity", f"  {'':<{idw}}  on node {r['node']}")
            if r.get("last_activity"):
                add("activity", f"  {'':<{idw}}  └ {r['last_activity']}")

    if report.queued:
        blank()
        add("heading", f"QUEUED ({len(report.queued)}, in run order)")
        add("dim", f"  {'#':>3} {'ID':<{idw}}  {'ROLE':<{_ROLE_W}} {'PRI':>4}  {'WAITS FOR':<20} TITLE")
        for r in report.queued[:_QUEUE_SHOWN]:
            waits = r.get("waiting_for")
            if waits is None:
                waits_s = ",".join(r.get("depends_on") or []) or "ready"
            else:
                waits_s = ", ".join(f"{w['id']} ({_LABELS.get(w['state'], w['state'])})" for w in waits) or "ready"
            if r.get("not_before") and r["not_before"] > time.time():
                waits_s = f"retry at {clock(r['not_before'])[11:]}"
            if waits_s == "ready" and getattr(report, "budget_message", None):
                waits_s = "budget"
            if waits_s == "ready" and r.get("why"):
                waits_s = r["why"]  # why a ready task does not start: the slots, a pause, no scheduler
            position = r.get("position", "")
            add(
                "queued",
                f"  {position:>3} {r['id']:<{idw}}  {r['role']:<{_ROLE_W}} {r.get('priority', 0):>4}  "
                f"{clip(waits_s, 20):<20} {clip(r.get('title'), width)}",
            )
        if len(report.queued) > _QUEUE_SHOWN:
            add("dim", f"  … and {len(report.queued) - _QUEUE_SHOWN} more (orchestra queue)")

    workflows = getattr(report, "workflows", None) or []
    if workflows:
        blank()
        add("heading", f"WORKFLOWS ({len(workflows)} active)")
        for w in workflows:
            add(
                "plain",
                f"  {w['id']}  {w.get('steps_done', 0)}/{w.get('steps') or '?'} steps done  {money(w.get('cost_usd'))}",
            )
            now_s = ", ".join(f"{c['step']} {c['id']} ({_LABELS.get(c['state'], c['state'])})" for c in w["current"])
            add("activity", f"    now: {now_s}")

    if report.recent:
        blank()
        add("heading", "RECENT")
        changes = [change_summary(r.get("diffstat")) for r in report.recent]
        chw = min(max(len(c) for c in changes), _CHANGES_MAX)
        for r, change in zip(report.recent, changes, strict=True):
            kind = "succeeded" if r["state"] == "succeeded" else "failed"
            add(
                kind,
                f"  {r['id']:<{idw}}  {_LABELS.get(r['state'], r['state']):<10} {r['role']:<{_ROLE_W}} "
                f"{money(r.get('cost_usd')):>8}  "
                + (f"{clip(change, chw):<{chw}}  " if chw else "")
                + clip(r.get("title"), width),
            )
            if r.get("error"):
                add("activity", f"  {'':<{idw}}  └ {r['error']}")
        if getattr(report, "more_failures", 0):
            add("dim", f"  … and {report.more_failures} more failed (orchestra list --state failed --state timed_out)")
    for path in report.corrupt:
        add("warning", f"warning: corrupt task file {path.rsplit('/', 1)[-1]} (details on stderr)")
    return out


def _request_text(request: Any) -> str | None:
    """One line for what a waiting agent asks; the shape belongs to the interaction module."""
    if not request:
        return None
    if isinstance(request, str):
        return request
    if isinstance(request, dict):
        if request.get("summary"):
            return str(request["summary"])
        tool = request.get("tool_name") or request.get("tool")
        detail = request.get("input") or request.get("message") or request.get("question")
        if isinstance(detail, dict):
            detail = detail.get("command") or detail.get("file_path") or json.dumps(detail, sort_keys=True)
        return " ".join(str(p) for p in (tool, detail) if p) or None
    return str(request)


def fit(text: str, width: int) -> str:
    """One line of at most `width` columns; the cut is marked."""
    text = text.replace("\n", " ").rstrip()
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def fit_middle(text: str, width: int) -> str:
    """fit(), cut in the middle: for what an agent asks to run, whose end matters as much as its start."""
    text = text.replace("\n", " ").rstrip()
    head = width * 2 // 3
    tail = width - head - 3
    if len(text) <= width or tail < 8:
        return fit(text, width)
    return text[:head] + " … " + text[len(text) - tail :]


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    return textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=True) or [""]


def _masked(text: str) -> str:
    """Titles and errors quote agents and prompts; a secret in them is not shown."""
    return mask_secrets(text)


def unseen_warning(paths: list[str]) -> str:
    """One line: the main worktree's uncommitted changes stay out of the agent's checkout."""
    named = ", ".join(paths[:3]) + (f", … ({len(paths)} in all)" if len(paths) > 3 else "")
    return (
        f"uncommitted changes in the main worktree will not be in the agent's checkout: {named}; "
        "commit them first (untracked files can be listed in the 'copy' setting)"
    )


def change_summary(diffstat: Any) -> str:
    """`+12 −3 · 2 files` from a recorded stat, `no changes` for none, '' when nothing was recorded."""
    if not isinstance(diffstat, dict):
        return ""
    files = int(diffstat.get("files") or 0)
    if not files:
        return "no changes"
    return f"+{int(diffstat.get('added') or 0)} −{int(diffstat.get('removed') or 0)} · {files} file{'s' if files != 1 else ''}"


_CHANGES_MAX = 22


@_printable
def task_table(rows: Iterable[dict[str, Any]], width: int = 80) -> str:
    """One line per task, at most `width` columns: the title takes what the other columns leave.

    Finished tasks say what their branch changed, so one that changed nothing stands out.
    """
    rows = list(rows)
    t = time.time()
    idw = max([2] + [len(s["id"]) for s in rows])
    show_pri = any(s.get("priority") for s in rows)
    changes = [change_summary(s.get("diffstat")) if s.get("state") in _FINAL else "" for s in rows]
    chw = min(max([0] + [len(c) for c in changes]), _CHANGES_MAX)
    if chw:
        chw = max(chw, len("CHANGES"))

    def line(id_: str, state: str, role: str, pri: str, age: str, change: str, title: str) -> str:
        head = f"{id_:<{idw}} {state:<14} {clip(role, _ROLE_W):<{_ROLE_W}} "
        if show_pri:
            head += f"{pri:>4} "
        head += f"{age:>7}  "
        if chw:
            head += f"{clip(change, chw):<{chw}}  "
        return fit(head + clip(title, max(width - len(head), 10)), width)

    out = [line("ID", "STATE", "ROLE", "PRI", "AGE", "CHANGES", "TITLE")]
    for s, change in zip(rows, changes, strict=True):
        out.append(
            line(
                s["id"],
                _LABELS.get(s["state"], s["state"]),
                s["role"],
                str(s.get("priority", 0)),
                duration(t - (s.get("created_at") or t)),
                change,
                _masked(s.get("title") or ""),
            )
        )
    return "\n".join(out)


@_printable
def change_text(change: Any, stat_picture: str) -> str:
    """The commits and the diff stat of a change, for `show` and `diff --stat`."""
    lines = [f"commits      {len(change.commits)}{'+' if change.more_commits else ''} on {change.branch}"]
    lines += [f"  {c['sha'][:8]} {clip(c['subject'], 66)}" for c in change.commits]
    if change.more_commits:
        lines.append("  … (only the first ones are listed)")
    lines.append(f"changes      {change.stat.summary()} against {change.base[:12]}")
    lines += [f"  {line.strip()}" for line in stat_picture.splitlines()[:-1]] if change.stat.count else []
    return _masked("\n".join(lines))


def diff_kind(line: str) -> str:
    """The style of one diff line: added green, removed red, hunk headers cyan, file headers bold."""
    if line.startswith(("+++", "---", "diff --git", "index ")):
        return "heading"
    if line.startswith("+"):
        return "succeeded"
    if line.startswith("-"):
        return "failed"
    if line.startswith("@@"):
        return "running"
    return "plain"


def shown_path(path: str | None, root: Any = None) -> str:
    """A path under the repository as `.orchestra/worktrees/ID`, not an absolute path eating the line."""
    if not path:
        return "-"
    if root is not None:
        prefix = str(root).rstrip("/") + "/"
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


@_printable
def task_text(task: Task, events: list[dict[str, Any]] | None = None, root: Any = None) -> str:
    lines = [
        f"id           {task.id}",
        f"title        {task.title}",
        f"state        {task.state}" + (f"  ({task.error})" if task.error else ""),
        f"role         {task.role}",
        f"priority     {task.priority}",
        f"depends on   {', '.join(task.depends_on) or '-'}",
        f"base         {task.base_ref}" + (f" @ {task.base_sha[:12]}" if task.base_sha else ""),
        f"branch       {task.branch}",
        f"worktree     {shown_path(task.worktree, root)}",
        f"attempts     {task.attempts} of {task.max_attempts}"
        + (f" ({task.api_retries} after API errors)" if task.api_retries else ""),
        f"session      {task.session_id or '-'}",
        f"created      {clock(task.created_at)}",
        f"started      {clock(task.started_at)}",
        f"finished     {clock(task.finished_at)}",
        f"exit code    {task.exit_code if task.exit_code is not None else '-'}",
        f"turns        {task.num_turns if task.num_turns is not None else '-'}",
        f"cost         {money(task.cost_usd)}" + (f" of {money(task.budget_usd)} budget" if task.budget_usd else ""),
        f"tokens       {_token_detail(task)}",
    ]
    if task.workflow:
        step = task.step
        lines.append(f"workflow     {task.workflow}" + (f" (step {step})" if step else ""))
    if task.timeout:
        lines.append(f"timeout      {duration(task.timeout)}")
    if task.permission_denials:
        names = ", ".join(str(d.get("tool_name")) for d in task.permission_denials)
        lines.append(f"denied       {len(task.permission_denials)} tool call(s): {names}")
    for m in task.manual_sessions:
        made = f"committed {str(m['commit'])[:10]}" if m.get("commit") else f"{m.get('commits') or 0} new commit(s)"
        took = duration(float(m.get("ended_at") or 0) - float(m.get("started_at") or 0))
        lines.append(f"by hand      {clock(m.get('started_at'))}  attach, {took}, {made}")
    verdict = task.structured_output
    if isinstance(verdict, dict) and verdict.get("verdict"):
        lines.append(
            f"verdict      {verdict['verdict']}"
            + (f": {clip(str(verdict.get('summary') or ''), 60)}" if verdict.get("summary") else "")
        )
        for c in verdict.get("comments") or []:
            if isinstance(c, dict):
                where = ":".join(str(c[k]) for k in ("file", "line") if c.get(k) is not None)
                lines.append(
                    f"  - {where + ' ' if where else ''}{clip(str(c.get('comment') or c.get('text') or c), 70)}"
                )
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


@_printable
def request_text(request: dict[str, Any]) -> str:
    """A pending permission request, for `orchestra show`."""
    lines = [
        "",
        "waiting for a person",
        f"  tool         {request.get('tool_name')}",
        f"  asks         {clip(request.get('summary'), 200)}",
    ]
    command = (request.get("input") or {}).get("command") if isinstance(request.get("input"), dict) else None
    if isinstance(command, str) and ("\n" in command or " ".join(command.split()) not in str(request.get("summary"))):
        # The whole command, as it would run: the one-line summary shortens or joins it.
        lines += [f"  {'command' if i == 0 else '':<12} {line}" for i, line in enumerate(command.splitlines())]
    lines += [
        f"  since        {clock(request.get('created_at'))}",
        f"  denied at    {clock(request.get('deadline'))} if nobody answers",
        f"  answer with  orchestra respond {request.get('task_id')} --allow | --deny [--message TEXT] [--always]",
    ]
    if (request.get("waiting") or 1) > 1:
        lines.append(f"  ({request['waiting'] - 1} more request(s) queued behind this one)")
    return "\n".join(lines)


def _token_detail(task: Task) -> str:
    text = tokens(task.input_tokens, task.output_tokens)
    cache = [
        f"{label} {n}"
        for label, n in (("cache read", task.cache_read_tokens), ("cache write", task.cache_creation_tokens))
        if n
    ]
    return text + (f" ({', '.join(cache)})" if cache else "")


@_printable
def queue_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "the queue is empty"
    out = [f"{'#':>3} {'ID':<8} {'ROLE':<11} {'PRI':>4}  {'WAITS FOR':<22} TITLE"]
    for r in rows:
        waits = ", ".join(f"{w['id']} ({w['state']})" for w in r["waiting_for"]) or r.get("why") or "ready"
        out.append(
            f"{r['position']:>3} {r['id']:<8} {r['role']:<11} {r.get('priority', 0):>4}  "
            f"{clip(waits, 22):<22} {clip(r.get('title'), 30)}"
        )
    return "\n".join(out)


# -- roles, workflows, merges ----------------------------------------------------


@_printable
def roles_table(roles: dict[str, Any]) -> str:
    out = [f"{'ROLE':<12} {'PRODUCES':<9} {'TOOLS':<16} SOURCE / DESCRIPTION"]
    for name in sorted(roles, key=lambda n: (roles[n].agentless, n)):
        r = roles[name]
        tools = "none (no agent)" if r.agentless else ("default" if r.tools is None else ",".join(r.tools) or "none")
        out.append(f"{name:<12} {r.produces:<9} {clip(tools, 16):<16} {r.source}")
        out.append(f"{'':<12} {'':<9} {'':<16} {clip(r.description, 60)}")
    return "\n".join(out)


@_printable
def role_text(role: Any) -> str:
    lines = [
        f"role             {role.name}",
        f"source           {role.source}",
        f"description      {role.description}",
        f"produces         {role.produces}"
        + ("  (no agent: orchestra runs this step itself)" if role.agentless else ""),
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


@_printable
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


@_printable
def workflow_table(workflows: Iterable[Any]) -> str:
    out = [f"{'ID':<8} {'TEMPLATE':<12} {'STATE':<18} {'ROUND':>5} {'AGE':>7}  REQUEST"]
    t = time.time()
    for w in workflows:
        out.append(
            f"{w.id:<8} {w.template:<12} {w.state:<18} {w.round:>5} {duration(t - w.created_at):>7}  {clip(w.title, 40)}"
        )
    return "\n".join(out)


def transcript_tail(paths: Any, task: Task, lines: int = 40, *, color: bool = False) -> list[str]:
    """The last `lines` lines of a task's rendered transcript (all attempts), from a bounded read.

    Shared by `orchestra logs`-style displays and the MCP `process_details` tool.
    """
    from orchestra.agent import transcript  # ~30 ms: only `show` and the dashboard's transcript pay

    events, _ = transcript.tail_events(paths.log_file(task.id), 0)
    out: list[str] = []
    for event in events:
        for item in transcript.render_event(event):
            out.extend(paint(item.kind, line, color) for line in item.text.splitlines() or [""])
    return out[-lines:] if lines > 0 else []


@_printable
def spend_text(report: dict[str, Any]) -> str:
    def row(name: str, t: dict[str, Any]) -> str:
        return (
            f"  {clip(name, 24):<24} {t['tasks']:>5}  {money(t['cost_usd']):>9}  "
            f"{tokens(t['input_tokens'], t['output_tokens'])}"
        )

    total = report["total"]
    lines = [
        f"total      {money(total['cost_usd'])} over {total['tasks']} task(s), "
        f"{tokens(total['input_tokens'], total['output_tokens'])} tokens"
    ]
    lines.append(f"budget     {money(report['budget_usd']) if report.get('budget_usd') else 'none (budget_usd = 0)'}")
    if report.get("budget_message"):
        lines.append(f"!! {report['budget_message']}")
    for title, key in (("BY WORKFLOW", "by_workflow"), ("BY ROLE", "by_role")):
        if report.get(key):
            lines += ["", title, f"  {'':<24} {'TASKS':>5}  {'COST':>9}  TOKENS"]
            lines += [row(name, t) for name, t in report[key].items()]
    return "\n".join(lines)


@_printable
def workflow_text(wf: Any, tasks: dict[str, Any], spend: dict[str, Any] | None = None) -> str:
    """The task graph: every planned step, each instance's task and state, in order."""
    lines = [
        f"workflow   {wf.id}  ({wf.template})",
        f"state      {wf.state}" + (f"  ({wf.error})" if wf.error else ""),
        f"round      {wf.round} of at most {wf.max_rounds}",
        f"request    {clip(wf.request, 66)}",
    ]
    if spend is not None:
        lines.append(
            f"spent      {money(spend['cost_usd'])} over {spend['tasks']} task(s), "
            f"{tokens(spend['input_tokens'], spend['output_tokens'])} tokens"
        )
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
            lines.append(
                f"{step['name']:<12} {step['role']:<12} {'':>5}  {'-':<8} {'pending':<14} "
                + (f"after {after}" if after else "")
            )
    if wf.conflict:
        lines += ["", f"conflict merging {wf.conflict.get('branch')} into {wf.conflict.get('into')}:"]
        lines += [f"  {f}" for f in wf.conflict.get("files") or []]
        lines.append(f"  resolve with: orchestra merge {wf.id} --resolve")
    if wf.comments and wf.state in ("changes_requested", "running"):
        lines += ["", "review comments" + (" (last round)" if wf.state == "changes_requested" else "")]
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
    output = task.structured_output
    if isinstance(output, dict) and output.get("verdict"):
        return f"verdict: {output['verdict']}"
    result = task.merge_result
    if isinstance(result, dict):
        return clip(result.get("message"), 50)
    return clip(task.branch, 50)


@_printable
def merge_text(result: Any, ref: str = "ID") -> str:
    lines = [result.message]
    if result.status == "conflict" and result.files:
        lines += ["conflicting files:", *[f"  {f}" for f in result.files]]
    if result.gate and result.gate.get("exit_code") not in (0, None):
        lines += [f"gate output (last lines of {result.gate['log']}):", *[f"  {l}" for l in result.gate["tail"]]]
    if result.resolve_task:
        lines.append(
            f"started task {result.resolve_task} to resolve the conflict; task {result.retry_task} "
            "retries the merge after it"
        )
    elif result.status == "conflict":
        lines.append(f"to let an implementer resolve it: orchestra merge {ref} --resolve")
    return "\n".join(lines)


@_printable
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
        lines += [f"  {entry}" for entry in k.get("unsaved", [])]
    lost = report.would_lose
    if lost:
        heading = "would be lost with --force:" if not report.force else ("would lose:" if report.dry_run else "lost:")
        listed = [heading]
        for item in lost:
            listed.append(f"  {item.get('branch') or item.get('path')}")
            listed += [f"    {entry}" for entry in item["lost"]]
        # What --force throws away comes first, before the lines of what it removed.
        lines = [*listed, "", *lines] if report.force else [*lines, "", *listed]
    return "\n".join(lines) if lines else "nothing to clean up"


@_printable
def prune_text(report: Any, shown: int = 20) -> str:
    """What was (or would be) archived, what old enough was kept and why; long lists are cut with a count."""
    verb = "would archive" if report.dry_run else "archived"
    lines = []
    for a in report.archived[:shown]:
        lines.append(
            f"{verb} {a['task']} {a['state']:<10} ended {clock(a.get('finished_at'))}  {clip(a.get('title'), 40)}"
        )
    if len(report.archived) > shown:
        lines.append(f"... and {len(report.archived) - shown} more")
    for wf_id in report.workflows:
        lines.append(f"{verb} workflow {wf_id} (all its tasks are archived)")
    kept = report.kept
    for k in kept[:shown]:
        lines.append(f"kept {k['task']}: {k['reason']}")
    if len(kept) > shown:
        lines.append(f"... and {len(kept) - shown} more kept (--json lists them all)")
    n = len(report.archived)
    if not n:
        lines.append("nothing to archive")
    elif report.dry_run:
        lines.append(f"{n} task record(s) would move into an archive under .orchestra/archive/")
    else:
        lines.append(f"{n} task record(s) moved into {report.archive}")
    return "\n".join(lines)


@_printable
def config_text(settings: dict[str, dict[str, Any]], *, person_only: bool = False) -> str:
    """'*' marks values set in config.toml; the rest are defaults. `person_only` notes the settings a
    model may read but not change (MCP)."""
    width = max((len(name) for name in settings), default=0)
    lines = []
    for name, info in settings.items():
        mark = "*" if info["set"] else " "
        note = " (read-only here: a person changes it)" if person_only and info.get("privileged") else ""
        lines.append(f"{mark} {name:<{width}}  {json.dumps(info['value'])}  # {info['help']}{note}")
    return "\n".join(lines)


@_printable
def doctor_text(report: Any) -> str:
    """One line per finding: what, where, and what was done about it (and the Ray cluster's nodes, if any)."""
    sandbox = getattr(report, "sandbox", None) or {}
    unconfined = sandbox.get("setting") == "off"
    note = 'note     agents run unconfined: sandbox = "off"' + (
        "" if sandbox.get("available") else f" ({sandbox.get('missing')})"
    )
    notes = ([note] if unconfined else []) + [f"notice   {n}" for n in getattr(report, "notices", None) or []]
    cluster = getattr(report, "cluster", None)
    if cluster:
        notes.append(
            f"cluster  {cluster['address']}: {len(cluster['nodes'])} node(s), {cluster['slots']:g} agent slot(s)"
        )
        for n in cluster["nodes"]:
            if not n.get("slots"):  # not probed: it never runs an agent
                notes.append(
                    f"  {n.get('node') or n['node_id'][:12]:<16} slots 0  (no orchestra_agent: runs no agents)"
                )
                continue
            claude_s = n.get("claude") or n.get("claude_error") or "-"
            box = "" if "sandbox_tools" not in n else f"  sandbox {'ok' if not n.get('sandbox_missing') else 'missing'}"
            remote = "" if "remote_error" not in n else f"  remote {'unreachable' if n['remote_error'] else 'ok'}"
            notes.append(
                f"  {n.get('node') or n['node_id'][:12]:<16} slots {n.get('slots', 0):g}  ray {n.get('ray', '?')}  "
                f"python {n.get('python', '?')}  orchestra {n.get('orchestra', '?')}  claude {claude_s}{box}{remote}"
            )
    if not report.findings:
        return "\n".join([f"{report.root}: no problems found", *notes])
    lines = list(notes)
    for f in report.findings:
        mark = "fixed" if f.fixed else ("note" if getattr(f, "harmless", False) else "problem")
        note = f"  ({f.note})" if f.note else ""
        lines.append(f"{mark:<8} {f.kind:<24} {f.subject}: {f.detail}{note}")
    left = sum(1 for f in report.findings if not f.fixed and not getattr(f, "harmless", False))
    fixable = sum(1 for f in report.findings if f.fixable and not f.fixed)
    summary = f"{len(report.findings)} finding(s), {left} left"
    if fixable and not report.fix:
        summary += f"; {fixable} can be repaired with 'orchestra doctor --fix'"
    lines.append(summary)
    return "\n".join(lines)

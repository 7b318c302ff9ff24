"""`orchestra serve`: the whole orchestra for any MCP client, over stdio.

Every tool is a thin call into `Orchestra` (the same core the CLI uses); arguments
are untrusted model output and are validated there, and an `OrchestraError` comes
back as a `ToolError` whose text the model can act on. Each call opens the store
afresh, so settings changed elsewhere apply at once. Long work is a task id to
poll: no call blocks longer than `MAX_WAIT` seconds.

Only the protocol may reach stdout: the SDK's stdio transport moves fd 1 onto
stderr while it runs, so stray prints and child processes cannot corrupt it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from orchestra import __version__
from orchestra.agent import transcript
from orchestra.app import Orchestra
from orchestra.core.errors import OrchestraError, TaskNotFound
from orchestra.core.redact import mask_data
from orchestra.core.task import State, Task
from orchestra.ui import views

MAX_WAIT = 50.0
LIST_LIMIT = 50
MAX_TRANSCRIPT_LINES = 500
MAX_DIFF_CHARS = 100_000  # a model's context, not a terminal: longer diffs are cut and say so
LOG_RESOURCE_CHARS = 200_000
LOG_RESOURCE_BYTES = 2 * 1024 * 1024
MODEL_WIDTH = 160  # a model reads the status picture, not an 80-column terminal: keep paths whole

Result = Annotated[CallToolResult, dict[str, Any]]


def _doc(text: str) -> Any:
    """A parameter's description, which is what the model reads to fill it in."""
    return Field(description=text)


TaskId = Annotated[str, _doc("A task id, or a unique prefix of one (as shown by list_processes).")]
WorkflowId = Annotated[str, _doc("A workflow id, or a unique prefix of one.")]
WaitSeconds = Annotated[
    float, Field(ge=1, le=MAX_WAIT, description=f"Return after this long at most (1..{MAX_WAIT:g}).")
]
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
INSTRUCTIONS = """orchestra runs a team of Claude Code agents on one git repository. Each task runs
in its own git worktree and branch. Submit work with submit_task (or create_workflow), then poll it with
wait_for_task or process_details: calls never block for long. status_dashboard shows what is running,
what waits for a person (answer with respond_to_process) and what is queued."""


def _acts(*, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=False
    )


@contextlib.contextmanager
def _model_errors() -> Iterator[None]:
    """The core's one-line messages are written for people; they serve the model as well."""
    try:
        yield
    except OrchestraError as exc:
        raise ToolError(str(exc)) from exc


def _result(data: dict[str, Any], text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=_jsonable(data))


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


def _with_elapsed(row: dict[str, Any]) -> dict[str, Any]:
    started = row.get("started_at")
    row = dict(row)
    row["elapsed_seconds"] = round((row.get("finished_at") or time.time()) - started, 1) if started else None
    return row


def _transcript(orch: Orchestra, task: Task) -> tuple[list[str], bool]:
    """The transcript's tail for the log resource, read with fixed memory; True when earlier lines were left out."""
    rendered, cut = transcript.render_tail(
        orch.paths.log_file(task.id), LOG_RESOURCE_BYTES, include_partial=task.state.final
    )
    return [r.text for r in rendered], cut


def _task_line(task: Task) -> str:
    return f"task {task.id} [{task.role}] {task.state}" + (f" ({task.error})" if task.error else "") + f": {task.title}"


class _Background:
    """Work that may outlast an MCP call: it keeps going (the process waits for it at exit)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="orchestra-mcp-work", daemon=False)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the caller in result()
            self._error = exc

    def wait(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return not self._thread.is_alive()

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


def build_server(repo: Path) -> MCPServer:
    """A server bound to one repository; nothing a tool receives can point it elsewhere."""
    root = Orchestra(repo).paths.root

    def core() -> Orchestra:
        return Orchestra(root)

    server: MCPServer = MCPServer(
        "orchestra",
        title="orchestra",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )

    # -- tools ---------------------------------------------------------------------

    @server.tool(annotations=_acts())
    def submit_task(
        prompt: Annotated[
            str | None, _doc("What the agent should do, in full; it works alone, unattended. Omit when giving tasks.")
        ] = None,
        role: Annotated[str, _doc("The agent's role (see the orchestra://roles resource).")] = "generalist",
        priority: Annotated[int, _doc("Higher runs first, -1000..1000.")] = 0,
        depends_on: Annotated[list[str], _doc("Task ids that must succeed before this one starts.")] = [],  # noqa: B006
        on: Annotated[str | None, _doc("Start from this task's branch (implies depending on it).")] = None,
        base: Annotated[str | None, _doc("A git ref to start from instead of HEAD.")] = None,
        title: Annotated[str | None, _doc("A short title (default: the prompt's first line).")] = None,
        timeout: Annotated[float | str | None, _doc('Wall-clock limit per run: seconds, or "30m", "2h".')] = None,
        budget_usd: Annotated[
            float | str | None, _doc('Spending limit in USD over all of the task\'s runs (e.g. 2 or "0.50").')
        ] = None,
        tasks: Annotated[
            list[dict[str, Any]] | None,
            _doc(
                "Submit many tasks at once instead, all or none: each an object with the fields above (prompt "
                "required; depends_on may also be written after, budget_usd budget) and an optional key. "
                'depends_on and on may name an earlier task of the list as "#N" (its 1-based position) or by '
                "its key. If any is refused, every refused one is named and nothing is submitted."
            ),
        ] = None,
    ) -> Result:
        """Queue a task (or, with tasks, many at once) for Claude Code agents, each in its own worktree and branch."""
        if tasks is not None:
            single = {
                "prompt": prompt is not None,
                "role": role != "generalist",
                "priority": priority != 0,
                "depends_on": bool(depends_on),
                "on": on is not None,
                "base": base is not None,
                "title": title is not None,
                "timeout": timeout is not None,
                "budget_usd": budget_usd is not None,
            }
            clash = [name for name, yes in single.items() if yes]
            if clash:
                raise ToolError(f"with tasks, give each task's fields inside its object, not {', '.join(clash)}")
            with _model_errors():
                orch = core()
                made = orch.submit_batch(list(tasks), start=False)
                started = orch.autostart()
            text = f"queued {len(made)} tasks:\n" + "\n".join(_task_line(t) for t in made)
            text += "\nfollow them with wait_for_task, list_processes or status_dashboard"
            return _result({"tasks": [t.to_dict() for t in made], "scheduler_started": started}, text)
        if prompt is None:
            raise ToolError("give prompt (one task) or tasks (several)")
        with _model_errors():
            orch = core()
            task = orch.submit(
                prompt,
                role=role,
                priority=priority,
                after=depends_on,
                on=on,
                base=base,
                title=title,
                timeout=timeout,
                budget=budget_usd,
                start=False,
            )
            started = orch.autostart()
            unseen = orch.unseen_changes(task)
        text = f"queued {_task_line(task)}\nbranch {task.branch}\nfollow it with wait_for_task or process_details"
        if unseen:
            text += f"\nwarning: {views.unseen_warning(unseen)}"
        data = {"task": task.to_dict(), "scheduler_started": started, "uncommitted_not_seen": unseen}
        return _result(data, text)

    @server.tool(annotations=READ)
    def list_processes(
        states: Annotated[list[State], _doc("Only tasks in these states (empty: all).")] = [],  # noqa: B006
        roles: Annotated[list[str], _doc("Only tasks with these roles (empty: all).")] = [],  # noqa: B006
        limit: Annotated[
            int, Field(ge=0, le=10_000, description="At most this many tasks, newest first (0: all).")
        ] = LIST_LIMIT,
    ) -> Result:
        """List tasks, newest first (unfinished ones, then the most recently ended), with state, role, elapsed time and cost."""
        with _model_errors():
            orch = core()
            corrupt = dict(orch.corrupt_files())
            rows = [_with_elapsed(s) for s in orch.summaries([str(s) for s in states], roles, limit or None)]
        text = views.task_table(rows) if rows else "no tasks match"
        if corrupt:
            text += "\n" + "\n".join(f"warning: {reason}" for reason in corrupt.values())
        return _result({"tasks": rows, "corrupt_task_files": corrupt}, text)

    @server.tool(annotations=READ)
    def process_details(
        task_id: TaskId,
        transcript_lines: Annotated[
            int, Field(ge=0, le=MAX_TRANSCRIPT_LINES, description="Also return this many last lines of its transcript.")
        ] = 0,
    ) -> Result:
        """Everything about one task, optionally with the tail of its rendered transcript."""
        with _model_errors():
            orch = core()
            task = orch.get(task_id)
            events = orch.events(task.id)
            pending = orch.pending_request(task.id)
            tail = views.transcript_tail(orch.paths, task, transcript_lines)
        text = views.task_text(task, events)
        if pending:
            text += f"\n\nwaiting for a person: {pending.get('summary')}\nanswer with respond_to_process"
        if transcript_lines:
            text += "\n\ntranscript (last lines)\n" + ("\n".join(tail) or "  (nothing yet)")
        data = {"task": _with_elapsed(task.to_dict()), "pending_request": pending, "transcript": tail}
        return _result(data, text)

    @server.tool(annotations=_acts())
    def respond_to_process(
        task_id: TaskId,
        allow: Annotated[bool | None, _doc("Answer a pending permission request: true allows, false denies.")] = None,
        message: Annotated[str | None, _doc("With allow=false: tells the agent why it was denied.")] = None,
        always: Annotated[bool, _doc("With allow=true: allow the same request for the rest of this task.")] = False,
        text: Annotated[str | None, _doc("Continue an ended task's session with this message instead.")] = None,
    ) -> Result:
        """Answer a task's pending permission request, or continue an ended task with a message."""
        with _model_errors():
            orch = core()
            task = orch.respond(task_id, allow=allow, message=message, always=always, text=text)
        done = "continuing its session" if text is not None else ("allowed" if allow else "denied")
        return _result({"task": task.to_dict()}, f"{done}: {_task_line(task)}")

    @server.tool(annotations=_acts(destructive=True))
    def manage_queue(
        action: Annotated[
            Literal["list", "set_priority", "remove"],
            _doc("list: queued tasks in run order; set_priority: change one; remove: take one out."),
        ] = "list",
        task_id: Annotated[str | None, _doc("The queued task (for set_priority and remove).")] = None,
        priority: Annotated[int | None, _doc("The new priority for set_priority, -1000..1000.")] = None,
    ) -> Result:
        """Show the queue in the order tasks will run, change a queued task's priority, or remove it."""
        with _model_errors():
            orch = core()
            if action != "list" and not task_id:
                raise ToolError(f"{action} needs task_id")
            if action == "set_priority":
                if priority is None:
                    raise ToolError("set_priority needs priority (a whole number, -1000..1000)")
                task = orch.set_priority(task_id or "", priority)
                note = f"task {task.id} priority {task.priority}"
            elif action == "remove":
                task = orch.remove_from_queue(task_id or "")
                note = f"task {task.id} removed from the queue"
            else:
                note = ""
            rows = orch.queue()
        text = "\n".join(x for x in (note, views.queue_text(rows)) if x)
        return _result({"queue": rows}, text)

    @server.tool(annotations=_acts(destructive=True))
    def stop_process(
        task_id: Annotated[str | None, _doc("The running task to stop.")] = None,
        all: Annotated[bool, _doc("Stop every running agent instead (needs confirm=true).")] = False,
        confirm: Annotated[bool, _doc("Must be true to stop all agents.")] = False,
    ) -> Result:
        """Stop a running agent (or all, with confirm); its worktree, branch and commits are kept."""
        if all == bool(task_id):
            raise ToolError("give task_id, or all=true with confirm=true (not both)")
        if all and not confirm:
            raise ToolError("stopping every running agent needs confirm=true")
        with _model_errors():
            orch = core()
            tasks = orch.stop_all() if all else [orch.stop(task_id or "")]
        text = "\n".join(f"task {t.id} stopping" for t in tasks) or "no running agents"
        return _result({"stopping": [t.id for t in tasks]}, text)

    @server.tool(annotations=_acts(idempotent=True))
    def configure_orchestrator(
        key: Annotated[str | None, _doc("A setting name; omit to list every setting.")] = None,
        value: Annotated[
            str | int | float | bool | list[str] | None,
            _doc("A new value for key (validated); omit to read the current one."),
        ] = None,
        unset: Annotated[bool, _doc("Remove key from config.toml, back to its default (not with value).")] = False,
    ) -> Result:
        """Read all settings, read one, or change or unset one that cannot run commands or widen permissions."""
        with _model_errors():
            orch = core()
            if key is None:
                if value is not None or unset:
                    raise ToolError("give key with value or unset")
                settings = mask_data(orch.config_list())
                return _result({"settings": settings}, views.config_text(settings, person_only=True))
            if unset:
                if value is not None:
                    raise ToolError("give value or unset, not both")
                default = orch.config_unset(key, by_person=False)
                return _result(
                    {"key": key, "value": default, "changed": True}, f"{key} = {json.dumps(default)} (the default)"
                )
            if value is None:
                current = mask_data(orch.config_get(key))
                return _result({"key": key, "value": current}, f"{key} = {json.dumps(current)}")
            stored = orch.config_set(key, value, by_person=False)
        return _result({"key": key, "value": stored, "changed": True}, f"{key} = {json.dumps(stored)} (saved)")

    @server.tool(annotations=_acts(idempotent=True))
    def assign_role(
        task_id: TaskId,
        role: Annotated[str, _doc("The new role (see the orchestra://roles resource).")],
    ) -> Result:
        """Change the role of a task that has not started yet."""
        with _model_errors():
            task = core().assign_role(task_id, role)
        return _result({"task": task.to_dict()}, f"{_task_line(task)}")

    @server.tool(annotations=_acts())
    def create_workflow(
        template: Annotated[str, _doc("A workflow template (see the orchestra://workflows resource).")],
        request: Annotated[str, _doc("What the workflow should achieve, in full.")],
        base: Annotated[str | None, _doc("A git ref to start from instead of HEAD.")] = None,
        into: Annotated[str | None, _doc("The branch the result is meant to merge into.")] = None,
        approve_merge: Annotated[
            bool, _doc("Stop before the merge until a person approves it ('orchestra merge WF'; not over MCP).")
        ] = False,
    ) -> Result:
        """Start a workflow from a template: returns the workflow and the tasks it queued."""
        with _model_errors():
            orch = core()
            workflow = orch.start_workflow(template, request, base=base, into=into, approve_merge=approve_merge)
        data = workflow.to_dict()
        lines = [f"workflow {data.get('id')} ({data.get('template')}) {data.get('state')}: {data.get('title')}"]
        lines += [f"  {i.get('step')}: task {i.get('task')}" for i in data.get("instances") or []]
        lines.append("follow its tasks with list_processes, wait_for_task or process_details")
        return _result({"workflow": data}, "\n".join(lines))

    @server.tool(annotations=READ)
    def status_dashboard() -> Result:
        """The whole picture: counts, running agents, who waits for input, the queue, recent results, spend."""
        with _model_errors():
            report = core().status()
        return _result(report.to_dict(), views.status_text(report, MODEL_WIDTH))

    @server.tool(annotations=READ)
    def wait_for_task(
        task_id: TaskId,
        timeout_seconds: WaitSeconds = MAX_WAIT,
    ) -> Result:
        """Wait until a task ends or needs a person's answer, or at most ~50 s; says which."""
        with _model_errors():
            orch = core()
            started = time.monotonic()
            (task,) = orch.wait([task_id], timeout=min(timeout_seconds, MAX_WAIT))
            pending = orch.pending_request(task.id)
        waited = round(time.monotonic() - started, 1)
        if task.state.final:
            outcome = "ended"
            text = f"ended: {_task_line(task)}" + (f"\nresult: {task.result}" if task.result else "")
        elif pending:
            outcome = "awaiting_input"
            text = (
                f"waiting for a person: {_task_line(task)}\nasks: {pending.get('summary')}\n"
                "answer with respond_to_process (allow true/false)"
            )
        else:
            outcome = "still_going"
            text = f"still going after {waited:g}s: {_task_line(task)}; call wait_for_task again to keep waiting"
        data = {
            "outcome": outcome,
            "ended": outcome == "ended",
            "waited_seconds": waited,
            "pending_request": pending,
            "task": _with_elapsed(task.to_dict()),
        }
        return _result(data, text)

    @server.tool(annotations=_acts())
    def merge(
        ref: Annotated[str, _doc("A task id or workflow id whose branch to merge.")],
        into: Annotated[str | None, _doc("The branch to merge into (default: the configured one).")] = None,
        strategy: Annotated[
            str | None, _doc("How to merge: merge, squash, ff-only or pr (default: the merge_strategy setting).")
        ] = None,
        resolve: Annotated[bool, _doc("On conflicts, queue an agent to resolve them.")] = False,
    ) -> Result:
        """Merge a finished task's or workflow's branch (behind the gate; conflicts are reported); not one waiting for a person's approval."""
        done = _Background(lambda: core().merge(ref, into=into, strategy=strategy, resolve=resolve, by_person=False))
        if not done.wait(MAX_WAIT):
            text = (
                f"the merge of {ref} is still running (a gate or another merge holds it); it finishes on its "
                "own and is recorded as a merge task: see list_processes or status_dashboard"
            )
            return _result({"ended": False, "merge": None}, text)
        with _model_errors():
            outcome = done.result()
        data = outcome.to_dict()
        return _result({"ended": True, "merge": data}, str(data.get("message") or json.dumps(data, default=str)))

    @server.tool(annotations=_acts())
    def push_branch(
        ref: Annotated[str, _doc("A finished task's id or a workflow id whose branch to push.")],
        remote: Annotated[str | None, _doc("The git remote (default: origin, or the only remote).")] = None,
        pr: Annotated[bool, _doc("Then open a pull request with `gh pr create`.")] = False,
    ) -> Result:
        """Push a task's or workflow's branch to a remote (hooks off, never over newer commits), optionally opening a PR."""
        with _model_errors():
            pushed = core().push(ref, remote=remote, pr=pr)
        return _result({"push": pushed.to_dict()}, pushed.message)

    @server.tool(annotations=_acts())
    def retry_task(task_id: TaskId) -> Result:
        """Queue a failed, cancelled or timed-out task again, on the same branch."""
        with _model_errors():
            orch = core()
            task = orch.retry(task_id)
        return _result({"task": task.to_dict()}, f"queued again: {_task_line(task)}")

    @server.tool(annotations=_acts(idempotent=True))
    def set_budget(
        task_id: TaskId,
        budget_usd: Annotated[float | str, _doc("The task's new spending limit in USD, over all its runs.")],
    ) -> Result:
        """Change a task's spending limit (Claude Code's --max-budget-usd); it applies from its next run."""
        with _model_errors():
            task = core().set_budget(task_id, budget_usd)
        return _result({"task": task.to_dict()}, f"{_task_line(task)}\nbudget ${task.budget_usd:g}")

    @server.tool(annotations=READ)
    def list_workflows() -> Result:
        """Every workflow, oldest first: its template, state, round and title (as `orchestra workflow list`)."""
        with _model_errors():
            workflows = core().workflows()
        text = views.workflow_table(workflows) if workflows else "no workflows yet"
        return _result({"workflows": [w.to_dict() for w in workflows]}, text)

    @server.tool(annotations=READ)
    def show_workflow(
        workflow_id: WorkflowId,
    ) -> Result:
        """One workflow: its steps with each task's state, its verdicts and comments, and its spend."""
        with _model_errors():
            orch = core()
            wf = orch.workflow(workflow_id)
            tasks = orch.workflow_tasks(wf)
            spend = orch.workflow_spend(wf.id)
        data = {**wf.to_dict(), "tasks": {tid: t.to_dict() for tid, t in tasks.items()}, "spend": spend}
        return _result({"workflow": data}, views.workflow_text(wf, tasks, spend))

    @server.tool(annotations=READ)
    def show_diff(
        ref: Annotated[str, _doc("A task id or a workflow id (or a unique prefix of one).")],
        stat_only: Annotated[bool, _doc("Only the commits and the diff stat, not the diff itself.")] = False,
    ) -> Result:
        """What a task's branch changed against its base, or a workflow's result against where it started."""
        with _model_errors():
            orch = core()
            change = orch.change(ref)
            picture = orch.stat_text(change)
            diff_text, cut = "", False
            if not stat_only:
                parts: list[str] = []
                size = 0
                for line in orch.diff_lines(change):
                    if size + len(line) > MAX_DIFF_CHARS:
                        cut = True
                        break
                    parts.append(line)
                    size += len(line)
                diff_text = "".join(parts)
        data = {**change.to_dict(), "diff": diff_text if not stat_only else None, "diff_truncated": cut}
        text = views.change_text(change, picture)
        if diff_text:
            text += "\n\n" + diff_text
        if cut:
            text += f"\n… the diff is longer than {MAX_DIFF_CHARS} characters; read the rest in the branch"
        return _result(data, text)

    @server.tool(annotations=READ)
    def wait_for_workflow(
        workflow_id: WorkflowId,
        timeout_seconds: WaitSeconds = MAX_WAIT,
    ) -> Result:
        """Wait until a workflow ends or needs a person (a step's question, its merge's approval), ~50 s at most."""
        with _model_errors():
            orch = core()
            started = time.monotonic()
            wf, waiting = orch.wait_workflow(workflow_id, timeout=min(timeout_seconds, MAX_WAIT))
        waited = round(time.monotonic() - started, 1)
        line = f"workflow {wf.id} {wf.state}" + (f": {wf.error}" if wf.error else "")
        if wf.state == "awaiting_merge":
            outcome = "awaiting_merge"
            text = f"{line}; its merge waits for a person's approval ('orchestra merge {wf.id}')"
        elif waiting:
            outcome = "awaiting_input"
            text = f"{line}; a step waits for a person's answer (status_dashboard shows it, respond_to_process answers)"
        elif wf.state == "running":
            outcome = "still_going"
            text = f"{line} after {waited:g}s; call wait_for_workflow again to keep waiting"
        else:
            outcome = "ended"
            text = line
        data = {"outcome": outcome, "ended": outcome == "ended", "waited_seconds": waited, "workflow": wf.to_dict()}
        return _result(data, text)

    @server.tool(annotations=_acts(destructive=True))
    def cancel_workflow(
        workflow_id: Annotated[str, _doc("The workflow to cancel.")],
    ) -> Result:
        """Cancel a workflow: its live steps are stopped; its branches and finished work are kept."""
        with _model_errors():
            wf = core().cancel_workflow(workflow_id)
        return _result({"workflow": wf.to_dict()}, f"workflow {wf.id} {wf.state}")

    # -- resources -----------------------------------------------------------------

    @contextlib.contextmanager
    def resource_errors() -> Iterator[None]:
        try:
            yield
        except TaskNotFound as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except OrchestraError as exc:
            raise ResourceError(str(exc)) from exc

    def all_roles(orch: Orchestra) -> dict[str, Any]:
        return orch.roles()

    @server.resource(
        "orchestra://status",
        name="status",
        mime_type="text/plain",
        description="What runs, waits for input, is queued and recently ended; spend.",
    )
    def status_resource() -> str:
        with resource_errors():
            return views.status_text(core().status(), MODEL_WIDTH)

    @server.resource(
        "orchestra://tasks/{id}/log",
        name="task-log",
        mime_type="text/plain",
        description="A task's transcript, rendered for reading.",
    )
    def task_log(id: str) -> str:
        with resource_errors():
            orch = core()
            task = orch.get(id)
            lines, cut = _transcript(orch, task)
        text = "\n".join(lines) if lines else f"(no transcript yet; task {task.id} is {task.state})"
        if cut or len(text) > LOG_RESOURCE_CHARS:
            text = f"(earlier transcript omitted)\n{text[-LOG_RESOURCE_CHARS:]}"
        return text

    @server.resource(
        "orchestra://roles", name="roles", mime_type="application/json", description="The roles a task can have."
    )
    def roles_resource() -> str:
        with resource_errors():
            roles = all_roles(core())
        return json.dumps({name: r.to_dict() for name, r in roles.items()}, indent=2, default=str)

    @server.resource(
        "orchestra://roles/{name}",
        name="role",
        mime_type="application/json",
        description="One role: its prompt, tools and permissions.",
    )
    def role_resource(name: str) -> str:
        with resource_errors():
            roles = all_roles(core())
        if name not in roles:
            raise ResourceNotFoundError(f"unknown role {name!r}; known roles: {', '.join(sorted(roles))}")
        return json.dumps(roles[name].to_dict(), indent=2, default=str)

    @server.resource(
        "orchestra://workflows",
        name="workflows",
        mime_type="application/json",
        description="The workflow templates create_workflow accepts.",
    )
    def workflows_resource() -> str:
        with resource_errors():
            templates = core().workflow_templates()
        return json.dumps({n: t.to_dict() for n, t in templates.items()}, indent=2, default=str)

    @server.resource(
        "orchestra://workflows/{name}",
        name="workflow",
        mime_type="application/json",
        description="One workflow template: its steps and roles.",
    )
    def workflow_resource(name: str) -> str:
        with resource_errors():
            templates = core().workflow_templates()
        if name not in templates:
            raise ResourceNotFoundError(f"unknown workflow {name!r}; known: {', '.join(sorted(templates))}")
        return json.dumps(templates[name].to_dict(), indent=2, default=str)

    return server


def serve(repo: Path | None) -> None:
    """Bind to the repository first, so a wrong --repo fails before the protocol starts."""
    orch = Orchestra(repo)
    server = build_server(orch.paths.root)
    orch.autostart()
    server.run("stdio")

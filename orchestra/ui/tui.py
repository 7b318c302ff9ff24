"""`orchestra tui`: one screen to watch the team and answer it with a key.

A live table of tasks (refreshed from the store about once a second), with the ones
waiting for you first, then workflows with their steps, then the other tasks. Keys act
on the selected row through the same façade calls the command line makes (`respond`,
`stop`, `cancel`, `retry`, `merge`), so a key refuses exactly what the command would,
with the same words. Textual is imported here and nowhere else (an import-linter
contract in pyproject.toml), so no other command pays for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Label, RichLog, Static

from orchestra.agent import transcript
from orchestra.app import Orchestra
from orchestra.core.errors import OrchestraError
from orchestra.ui import term
from orchestra.ui.views import clip, duration, fit_middle, printable

REFRESH_SECONDS = 1.0
FINISHED_SHOWN = 200  # finished tasks outside workflows kept in the table, newest first
FINISHED_WORKFLOWS_SHOWN = 5
WAITING_WORKFLOW = "awaiting_merge"
ACTIVE_WORKFLOWS = ("running", WAITING_WORKFLOW)
# Ended without their work merged: their steps stay listed, to read the review or retry the step that failed.
UNSETTLED_WORKFLOWS = ("failed", "changes_requested")
_STATE_LABEL = {"awaiting_input": "WAITING", "timed_out": "timed out", WAITING_WORKFLOW: "MERGE?"}
_STATE_KIND = {
    "awaiting_input": "waiting",
    WAITING_WORKFLOW: "waiting",
    "running": "running",
    "queued": "queued",
    "succeeded": "succeeded",
    "failed": "failed",
    "timed_out": "failed",
    "conflict": "failed",
    "changes_requested": "warning",
    "cancelled": "dim",
}
HELP = (
    "a allow · d deny · A always · r reply · ⏎ transcript · v diff · o open\n"
    "s stop · c cancel · R retry · m merge · ↑/↓ select · q quit"
)


@dataclass(frozen=True)
class Row:
    """One line of the table and what a key pressed on it acts on."""

    key: str
    ref: str  # the task or workflow id the keys act on
    kind: str  # "task" or "workflow"
    state: str
    role: str
    title: str
    age: str
    error: str = ""  # why an ended task failed

    @property
    def name(self) -> str:
        """The title without the tree's mark, for a heading or a question."""
        return self.title.removeprefix("└ ")

    def cells(self, title_width: int) -> tuple[Text, ...]:
        style = term.rich_style(_STATE_KIND.get(self.state, "plain"), self.state)
        return (
            Text(self.ref),
            Text(_STATE_LABEL.get(self.state, self.state), style=style),
            Text(clip(self.role, 11)),
            Text(self.age),
            Text(clip(self.title, title_width)),
        )


def arrange(summaries: Iterable[dict[str, Any]], workflows: Iterable[Any], at: float | None = None) -> list[Row]:
    """The table's rows: waiting for you first, then workflows with their steps, then the other tasks.

    A pure function of the records, so the order can be tested without a screen.
    """
    at = at or time.time()
    by_id = {s["id"]: s for s in summaries}

    def age(s: dict[str, Any]) -> str:
        since = s.get("finished_at") or s.get("started_at") or s.get("created_at")
        return duration(at - since) if since else "-"

    def task_row(key: str, s: dict[str, Any], title: str | None = None) -> Row:
        return Row(
            key,
            s["id"],
            "task",
            s["state"],
            s.get("role") or "",
            title or s.get("title") or "",
            age(s),
            s.get("error") or "",
        )

    rows: list[Row] = []
    waiting = sorted((s for s in by_id.values() if s["state"] == "awaiting_input"), key=lambda s: s["created_at"])
    flows = sorted(workflows, key=lambda w: w.created_at)
    for wf in flows:
        if wf.state == WAITING_WORKFLOW:
            rows.append(Row(f"w:{wf.id}", wf.id, "workflow", wf.state, "workflow", f"merge? {wf.title}", "-"))
    rows.extend(task_row(f"w:{s['id']}", s) for s in waiting)
    shown_in_flows: set[str] = set()
    finished = [w for w in flows if w.state not in ACTIVE_WORKFLOWS][-FINISHED_WORKFLOWS_SHOWN:]
    for wf in [w for w in flows if w.state in ACTIVE_WORKFLOWS] + finished[::-1]:
        rows.append(Row(f"f:{wf.id}", wf.id, "workflow", wf.state, wf.template, wf.title, duration(at - wf.created_at)))
        for inst in wf.instances:
            s = by_id.get(inst.get("task", ""))
            shown_in_flows.add(inst.get("task", ""))
            if s is not None and wf.state in (*ACTIVE_WORKFLOWS, *UNSETTLED_WORKFLOWS):
                step = inst.get("step") or s.get("step") or ""
                title = s.get("title") or ""
                title = title if title.startswith((f"{step}: ", f"{step} (")) else f"{step}: {title}"
                rows.append(task_row(f"s:{s['id']}", s, f"└ {title}"))
    rest = [s for s in by_id.values() if s["id"] not in shown_in_flows and not s.get("workflow")]
    live = [s for s in rest if s["state"] == "running"]  # the waiting ones are at the top already
    queued = [s for s in rest if s["state"] == "queued"]
    done = [s for s in rest if s["state"] not in ("running", "awaiting_input", "queued")]
    rows.extend(task_row(f"t:{s['id']}", s) for s in sorted(live, key=lambda s: s["created_at"]))
    rows.extend(task_row(f"t:{s['id']}", s) for s in sorted(queued, key=lambda s: s["created_at"]))
    done.sort(key=lambda s: s.get("finished_at") or s.get("created_at") or 0, reverse=True)
    rows.extend(task_row(f"t:{s['id']}", s) for s in done[:FINISHED_SHOWN])
    return rows


# -- screens over the table ------------------------------------------------------------------


class TextScreen(Screen[None]):
    """A scrollable page of text (a diff, a transcript); escape or q goes back to the table."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "back")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.heading = title

    def compose(self) -> ComposeResult:
        yield Static(Text(self.heading, style="bold"), id="heading")
        yield RichLog(id="body", wrap=False, highlight=False, markup=False, auto_scroll=True)
        yield Static("esc/q back · ↑/↓ PgUp/PgDn scroll", id="help")

    @property
    def body(self) -> RichLog:
        return self.query_one("#body", RichLog)

    def lines(self) -> list[str]:
        """The text shown so far, one string per line (what a test or a person reads)."""
        return [strip.text for strip in self.body.lines]


class DiffScreen(TextScreen):
    def __init__(self, title: str, text: str) -> None:
        super().__init__(title)
        self.text = text

    def on_mount(self) -> None:
        self.body.auto_scroll = False
        for line in self.text.split("\n"):  # not splitlines(): a carriage return in a file is shown, not obeyed
            style = ""
            if line.startswith("+") and not line.startswith("+++"):
                style = "green"
            elif line.startswith("-") and not line.startswith("---"):
                style = "red"
            elif line.startswith("@@"):
                style = "cyan"
            elif line.startswith("diff --git"):
                style = "bold"
            self.body.write(Text(printable(line), style=style))
        self.body.scroll_home(animate=False)


class TranscriptScreen(TextScreen):
    """The agent's transcript as `orchestra logs --follow` renders it, growing while the task runs."""

    def __init__(self, title: str, path: Any) -> None:
        super().__init__(title)
        self.path = path
        self.read_to = 0

    def on_mount(self) -> None:
        self.follow()
        self.set_interval(0.5, self.follow)

    def follow(self) -> None:
        while True:
            items, offset = transcript.render_file(self.path, self.read_to)
            for item in items:
                style = term.rich_style(item.kind, item.text)
                for line in item.text.splitlines() or [""]:
                    self.body.write(Text(line, style=style))
            if offset == self.read_to:
                break
            self.read_to = offset


class ReplyScreen(ModalScreen[str | None]):
    """One line of text for the agent (`orchestra respond ID TEXT`)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Reply to {self.task_id} (continues its session; enter sends, esc cancels):")
            yield Input(id="reply")

    @on(Input.Submitted)
    def send(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; only y says yes."""

    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.question))  # a title is not markup: "[/x]" once crashed this
            yield Static("y yes · n no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


# -- the app ------------------------------------------------------------------------------------


class OrchestraTUI(App[int]):
    """The table of tasks and the keys that answer them."""

    TITLE = "orchestra"
    CSS = """
    #top { height: 1; background: $boost; }
    #tasks { height: 1fr; }
    #detail { height: 2; color: $text-muted; }
    #message { height: 1; }
    #help { height: 2; color: $text-muted; }
    #heading { height: 1; }
    ReplyScreen, ConfirmScreen { align: center middle; }
    #dialog { width: 76; height: auto; padding: 1 2; border: round $accent; background: $panel; }
    """
    BINDINGS = [
        Binding("q", "quit_app", "quit"),
        Binding("a", "answer(True, False)", "allow"),
        Binding("A", "answer(True, True)", "always allow"),
        Binding("d", "answer(False, False)", "deny"),
        Binding("r", "reply", "reply"),
        Binding("s", "act('stop')", "stop"),
        Binding("c", "act('cancel')", "cancel"),
        Binding("R", "act('retry')", "retry"),
        Binding("m", "merge", "merge"),
        Binding("v", "diff", "diff"),
        Binding("o", "open", "open"),
    ]

    # The keys that act on the selected row: on a diff, a transcript or a dialog they do nothing.
    TABLE_ACTIONS = frozenset({"quit_app", "answer", "reply", "act", "merge", "diff", "open"})

    def __init__(self, orch: Orchestra, *, interval: float = REFRESH_SECONDS, bell: bool | None = None) -> None:
        super().__init__()
        self.orch = orch
        self.interval = interval
        self.ring = bool(orch.config.tui_bell) if bell is None else bell
        self.rows: list[Row] = []
        self.waiting: set[str] | None = None  # None until the first look: what waits at start does not ring
        self.message = ""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A person reading a diff who presses `c` must not cancel the task behind it, unseen."""
        return action not in self.TABLE_ACTIONS or len(self.screen_stack) == 1

    def compose(self) -> ComposeResult:
        yield Static(id="top")
        table: DataTable[Text] = DataTable(id="tasks", cursor_type="row", zebra_stripes=False)
        yield table
        yield Static(id="detail")
        yield Static(id="message")
        yield Static(HELP, id="help")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#tasks", DataTable)

    def on_mount(self) -> None:
        self.table.add_columns("ID", "STATE", "ROLE", "AGE", "TITLE")
        self.reload()
        self.table.focus()
        self.set_interval(self.interval, self.reload)

    # -- the table ------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the store again and redraw what changed; the selection stays on the same task."""
        try:
            rows = arrange(self.orch.summaries(), self.orch.workflows())
        except OrchestraError as exc:
            self.say(f"cannot read the queue: {exc}", error=True)
            return
        waiting = {r.ref for r in rows if r.state in ("awaiting_input", WAITING_WORKFLOW)}
        if self.waiting is not None and waiting - self.waiting and self.ring:
            self.bell()
        self.waiting = waiting
        counts: dict[str, int] = {}
        for r in rows:
            if r.kind == "task" and not r.key.startswith("w:"):
                counts[r.state] = counts.get(r.state, 0) + 1
        top = f"orchestra · {self.orch.paths.root.name} · {len(waiting)} waiting for you"
        for state in ("running", "queued", "failed"):
            if counts.get(state):
                top += f" · {counts[state]} {state}"
        self.query_one("#top", Static).update(Text(clip(top, max(self.size.width, 40)), style="bold"))
        if rows != self.rows:
            self._redraw(rows)
        self.show_detail()

    def _redraw(self, rows: list[Row]) -> None:
        table = self.table
        selected = self.selected()
        old_index = table.cursor_row
        title_width = max(self.size.width - 40, 20)
        table.clear()
        for row in rows:
            table.add_row(*row.cells(title_width), key=row.key)
        self.rows = rows
        if not rows:
            return
        index = old_index
        if selected is not None:  # the same row, else the same task where it moved (waiting → done)
            same = [i for i, r in enumerate(rows) if r.key == selected.key]
            moved = [i for i, r in enumerate(rows) if r.ref == selected.ref]
            index = (same or moved or [old_index])[0]
        table.move_cursor(row=min(max(index, 0), len(rows) - 1), animate=False)

    def selected(self) -> Row | None:
        if not self.rows:
            return None
        index = self.table.cursor_row
        return self.rows[index] if 0 <= index < len(self.rows) else None

    @on(DataTable.RowHighlighted)
    def show_detail(self) -> None:
        row = self.selected()
        detail = self.query_one("#detail", Static)
        if row is None:
            detail.update("No tasks yet: 'orchestra submit' adds one.")
            return
        if row.kind == "workflow":
            detail.update(Text(clip(f"workflow {row.ref} ({row.role}): {row.title}", self.size.width * 2 - 4)))
            return
        text = f"{row.ref} {row.role}: {row.name}" + (f" ({row.state}: {row.error})" if row.error else "")
        if row.state == "awaiting_input":
            try:
                request = self.orch.pending_request(row.ref)
            except OrchestraError:
                request = None
            if request:
                text = f"{row.ref} asks: {request['summary']}"
        asking = "asks:" in text
        text = (
            fit_middle(clip(text, 10_000), self.size.width * 2 - 4) if asking else clip(text, self.size.width * 2 - 4)
        )
        detail.update(Text(text, style="bold" if asking else ""))

    def say(self, text: str, *, error: bool = False) -> None:
        """One line under the table: what the last key did, or why it did nothing."""
        self.message = text
        self.query_one("#message", Static).update(
            Text(clip(text, max(self.size.width, 40)), style="bold red" if error else "")
        )

    # -- acting -------------------------------------------------------------------------------

    def _selected_task(self, what: str) -> Row | None:
        row = self.selected()
        if row is None or row.kind != "task":
            self.say(f"select a task to {what}", error=True)
            return None
        return row

    def _run(self, call: Callable[[], str]) -> None:
        """Run a façade call off the screen's thread (a stop may wait for its grace period), then say how it went."""

        def work() -> None:
            try:
                text, error = call(), False
            except OrchestraError as exc:
                text, error = str(exc), True
            except Exception as exc:  # a bug must show on the screen, not end the worker in silence
                text, error = f"{type(exc).__name__}: {exc}", True
            self.call_from_thread(self.say, text, error=error)
            self.call_from_thread(self.reload)

        self.run_worker(work, thread=True, group="actions", exit_on_error=False)

    def action_answer(self, allow: bool, always: bool) -> None:
        row = self._selected_task("answer")
        if row is None:
            return
        ref = row.ref

        def call() -> str:
            task = self.orch.respond(ref, allow=allow, always=always)
            return f"{task.id} {'allowed' if allow else 'denied'}" + (" (always, for this task)" if always else "")

        self._run(call)

    def action_act(self, verb: str) -> None:
        row = self._selected_task(verb)
        if row is None:
            return
        ref = row.ref
        if verb == "stop":

            def call() -> str:
                return f"{self.orch.stop(ref).id} stopping"

        elif verb == "cancel":

            def call() -> str:
                task = self.orch.cancel(ref)
                return f"{task.id} {'cancelled' if task.state == 'cancelled' else 'cancelling'}"

        else:

            def call() -> str:
                return f"{self.orch.retry(ref).id} queued"

        self._run(call)

    def action_reply(self) -> None:
        row = self._selected_task("reply to")
        if row is None:
            return
        ref = row.ref

        def sent(text: str | None) -> None:
            if text is None:
                self.say("reply cancelled")
                return

            def call() -> str:
                task = self.orch.respond(ref, text=text)
                return f"{task.id} queued (continuing session {task.resume_session})"

            self._run(call)

        self.push_screen(ReplyScreen(ref), sent)

    def action_merge(self) -> None:
        row = self.selected()
        if row is None:
            self.say("select a task or workflow to merge", error=True)
            return
        ref, what = row.ref, ("workflow" if row.kind == "workflow" else "task")

        def decided(yes: bool | None) -> None:
            if not yes:
                self.say("merge cancelled: nothing was changed")
                return

            def call() -> str:
                result = self.orch.merge(ref)
                if not (result.ok or result.resolve_task):
                    raise OrchestraError(result.message or f"{ref} not merged ({result.status})")
                return result.message or f"{ref} {result.status}"

            self._run(call)

        try:
            question = self.orch.merge_question(ref)
        except OrchestraError as exc:
            self.say(str(exc), error=True)  # asked only about a merge that can happen
            return
        self.push_screen(ConfirmScreen(f"{question}\n{what} {ref}: {clip(row.name, 60)}"), decided)

    def action_diff(self) -> None:
        row = self.selected()
        if row is None:
            self.say("select a task or workflow to show the diff of", error=True)
            return
        try:
            text = self.orch.diff(row.ref)  # a workflow's: what its merge would bring, to look at before approving
        except OrchestraError as exc:
            self.say(str(exc), error=True)
            return
        self.push_screen(DiffScreen(f"diff of {row.ref}: {clip(row.name, 50)}", text))

    @on(DataTable.RowSelected)
    def show_transcript(self) -> None:
        row = self._selected_task("show the transcript of")
        if row is None:
            return
        self.push_screen(
            TranscriptScreen(f"transcript of {row.ref}: {clip(row.name, 50)}", self.orch.paths.log_file(row.ref))
        )

    def action_open(self) -> None:
        row = self._selected_task("open")
        if row is None:
            return
        try:
            where = self.orch.worktree(row.ref)
            with self.suspend():
                code = term.run_here(term.editor_argv(), where)
        except SuspendNotSupported:
            self.say("cannot leave the screen here to open an editor; use 'orchestra open'", error=True)
            return
        except OrchestraError as exc:
            self.say(str(exc), error=True)
            return
        self.say(f"back from {row.ref}'s worktree" + (f" (exit {code})" if code else ""))
        self.reload()

    def action_quit_app(self) -> None:
        self.exit(0)


def run(orch: Orchestra, interval: float = REFRESH_SECONDS) -> int:
    """Run the screen until q; the terminal is restored however it ends."""
    return OrchestraTUI(orch, interval=interval).run() or 0

"""`orchestra tui`, driven headless by Textual's pilot against a real repository and the fake claude.

Each test starts a real scheduler (`orchestra worker` as a process), runs the screen in
this process with `App.run_test()` at 80×24, presses keys, and checks what a person would
see on the screen and what landed in the repository. The fake claude's `@fake ask ...`
goes through orchestra's real permission server, so `a` and `d` answer a real question.
While the screen runs, the tests read state through the façade, not through `Orch.run`
(which swaps stdout and the environment of this process under the running app).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import git

from orchestra.app import Orchestra
from orchestra.core.task import Task
from orchestra.ui.tui import HELP, ConfirmScreen, DiffScreen, OrchestraTUI, ReplyScreen, TranscriptScreen, arrange

SIZE = (80, 24)


@pytest.fixture
def env(orch, monkeypatch):
    """The screen runs in this process: give it the environment the worker and agents have."""
    for key, value in orch.env.items():
        monkeypatch.setenv(key, value)
    return orch


def _waiting(orch, task_id: str) -> bool:
    task = orch.show(task_id)
    return task["state"] == "awaiting_input" and bool(task["pending_request"])


async def _until(pilot: Any, predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        value = predicate()
        if value:
            return value
    raise AssertionError(f"timed out waiting for {what}")


def _select(app: OrchestraTUI, task_id: str) -> None:
    keys = [r.key for r in app.rows]
    index = next(i for i, r in enumerate(app.rows) if r.ref == task_id)
    app.table.move_cursor(row=index, animate=False)
    assert app.selected() is not None and app.selected().ref == task_id, keys


def _screen_text(app: OrchestraTUI) -> list[str]:
    """The rows of the table as rendered, one string per row (state labels included)."""
    return [" ".join(cell.plain for cell in app.table.get_row_at(i)) for i in range(app.table.row_count)]


def _state(app: OrchestraTUI, task_id: str) -> Task:
    return app.orch.get(task_id)


def test_waiting_tasks_come_first_and_a_d_A_answer_them(env):
    orch = env
    done = orch.submit("plain\n@fake text hello")
    assert orch.work().returncode == 0
    allow = orch.submit("guarded\n@fake ask bash printf allowed > effect.txt\n@fake text carried on")
    deny = orch.submit("risky\n@fake ask bash rm -f README.md\n@fake text went on")
    always = orch.submit("repeat\n@fake ask bash echo one >> log.txt\n@fake ask bash echo one >> log.txt")
    orch.start_worker()
    for tid in (allow, deny, always):
        orch.wait_for(lambda tid=tid: _waiting(orch, tid), what=f"{tid} to ask")

    async def scenario() -> None:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2)
        bells: list[float] = []
        app.bell = lambda: bells.append(time.time())  # type: ignore[method-assign]
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            rows = _screen_text(app)
            # The three waiting tasks first, marked; the finished one after them.
            assert [r.split()[:2] for r in rows[:3]] == [[allow, "WAITING"], [deny, "WAITING"], [always, "WAITING"]]
            assert any(r.startswith(f"{done} succeeded") for r in rows[3:])
            assert "waiting for you" in str(app.query_one("#top").render())
            # The detail line says what the selected task asks.
            assert app.selected().ref == allow
            assert "asks: " in str(app.query_one("#detail").render())
            assert "printf allowed > effect.txt" in str(app.query_one("#detail").render())

            await pilot.press("a")
            await _until(pilot, lambda: _state(app, allow).state == "succeeded", "the allowed task to finish")
            assert app.message == f"{allow} allowed"
            assert app.selected().ref == allow  # the selection follows the task out of the waiting group

            _select(app, deny)
            await pilot.press("d")
            await _until(pilot, lambda: _state(app, deny).state == "succeeded", "the denied task to finish")
            assert app.message == f"{deny} denied"

            _select(app, always)
            await pilot.press("A")
            await _until(
                pilot,
                lambda: _state(app, always).state == "succeeded",
                f"the always-allowed task: {app.message!r} {_state(app, always)}",
            )
            assert app.message == f"{always} allowed (always, for this task)"

            # A key on a task with nothing to answer says so, in the command's words.
            _select(app, done)
            await pilot.press("a")
            await _until(pilot, lambda: "no pending permission request" in app.message, "the refusal")
            await pilot.pause(0.5)
            assert not [r for r in _screen_text(app) if "WAITING" in r]
            assert bells == []  # what already waited when the screen opened does not ring
            await pilot.press("q")
        assert app.return_value == 0

    asyncio.run(scenario())
    assert git(orch.repo, "show", f"{orch.show(allow)['branch']}:effect.txt") == "allowed"
    denied = orch.show(deny)
    assert [d["tool_name"] for d in denied["permission_denials"]] == ["Bash"]
    assert git(orch.repo, "show", f"{denied['branch']}:README.md") == "# demo"
    assert git(orch.repo, "show", f"{orch.show(always)['branch']}:log.txt") == "one\none"


def test_the_bell_rings_when_a_task_starts_waiting_unless_turned_off(env):
    orch = env
    orch.start_worker()

    async def scenario(bell: bool) -> list[float]:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2, bell=bell)
        bells: list[float] = []
        app.bell = lambda: bells.append(time.time())  # type: ignore[method-assign]
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            tid = Orchestra(orch.repo).submit("asks\n@fake ask bash true", start=False).id
            await _until(pilot, lambda: any(r.startswith(f"{tid} WAITING") for r in _screen_text(app)), "waiting")
            await pilot.pause(0.5)
            _select(app, tid)
            await pilot.press("a")
            await _until(pilot, lambda: _state(app, tid).state == "succeeded", "the end")
            await pilot.press("q")
        return bells

    assert len(asyncio.run(scenario(True))) == 1
    assert asyncio.run(scenario(False)) == []
    assert orch.run("config", "get", "tui_bell", check=True).stdout.strip() == "true"
    orch.run("config", "set", "tui_bell", "false", check=True)
    assert OrchestraTUI(Orchestra(orch.repo)).ring is False


def test_stop_cancel_and_retry_keys(env):
    orch = env
    first = orch.submit("slow\n@fake if-attempt 1 sleep 60\n@fake write done.txt again")
    second = orch.submit("slower\n@fake sleep 60")
    orch.start_worker()
    for tid in (first, second):
        orch.wait_for(lambda tid=tid: orch.state(tid) == "running", what=f"{tid} to run")

    async def scenario() -> None:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            _select(app, first)
            await pilot.press("s")
            await _until(pilot, lambda: _state(app, first).state == "cancelled", "the stopped task to end")
            assert app.message == f"{first} stopping"
            _select(app, second)
            await pilot.press("c")
            await _until(pilot, lambda: _state(app, second).state == "cancelled", "the cancelled task to end")
            assert app.message == f"{second} cancelling"
            await _until(pilot, lambda: any(r.startswith(f"{second} cancelled") for r in _screen_text(app)), "row")
            # Stop on a task that is not running: the command's refusal, on the message line.
            await pilot.press("s")
            await _until(pilot, lambda: "not running" in app.message, "the refusal")
            _select(app, first)
            await pilot.press("R")
            await _until(pilot, lambda: _state(app, first).state == "succeeded", "the retried task to succeed")
            assert app.message == f"{first} queued"
            await pilot.press("q")

    asyncio.run(scenario())
    task = orch.show(first)
    assert task["attempts"] == 2
    assert git(orch.repo, "show", f"{task['branch']}:done.txt") == "again"


def test_diff_transcript_reply_and_merge_with_confirmation(env):
    orch = env
    tid = orch.submit(
        "colour\n@fake if-new write colour.txt red\n@fake if-new commit Pick red\n@fake if-new text Which shade?\n"
        "@fake if-resume write shade.txt dark\n@fake if-resume text Dark it is."
    )
    orch.start_worker()
    orch.wait_for(lambda: orch.state(tid) == "succeeded", what="the task to succeed")
    main_before = git(orch.repo, "rev-parse", "main")

    async def scenario() -> None:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            diff = await _open_diff(app, pilot, tid)  # v: the branch's diff against its base
            assert diff[0].endswith("+1 −0 · 1 file against " + app.orch.get(tid).base_sha[:10])
            assert "+red" in diff and any(line.startswith("diff --git a/colour.txt") for line in diff)
            await pilot.press("escape")
            # enter: the transcript, rendered as `orchestra logs` renders it.
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, TranscriptScreen)
            await _until(pilot, lambda: any("Which shade?" in line for line in app.screen.lines()), "the transcript")
            assert any("colour.txt" in line for line in app.screen.lines())
            await pilot.press("q")
            assert not isinstance(app.screen, TranscriptScreen)
            # r: a reply continues the session on the same branch.
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, ReplyScreen)
            await pilot.press(*"Dark.")
            await pilot.press("enter")
            await _until(pilot, lambda: app.message.startswith(f"{tid} queued (continuing session"), "the reply")
            await _until(pilot, lambda: _state(app, tid).attempts == 2 and _state(app, tid).state == "succeeded", "2nd")
            # m asks first: n changes nothing, y merges.
            await pilot.press("m")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen) and tid in app.screen.question
            await pilot.press("n")
            await pilot.pause()
            assert app.message == "merge cancelled: nothing was changed"
            assert git(orch.repo, "rev-parse", "main") == main_before
            await pilot.press("m")
            await pilot.pause()
            await pilot.press("y")
            await _until(pilot, lambda: git(orch.repo, "rev-parse", "main") != main_before, "the merge", timeout=60)
            await _until(
                pilot,
                lambda: "merged" in app.message or app.message.startswith("merge"),
                "the merge message",
                timeout=90,
            )
            assert "merged" in app.message, app.message
            await pilot.press("q")

    asyncio.run(scenario())
    assert orch.invocations()[1]["prompt"] == "Dark."
    assert git(orch.repo, "show", "main:colour.txt") == "red"
    assert git(orch.repo, "show", "main:shade.txt") == "dark"


def test_fits_80x24_and_quits_cleanly(env):
    orch = env
    long_title = "A task with a very long title " * 5
    tid = orch.submit(long_title)

    async def scenario() -> None:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.size.width == 80 and app.size.height == 24
            assert app.table.virtual_size.width <= 80  # no sideways scrolling at 80 columns
            assert app.table.region.height >= 15  # most of the screen is the table
            row = _screen_text(app)[0]
            assert row.startswith(f"{tid} queued") and row.endswith("…")
            help_widget = app.query_one("#help")
            assert help_widget.region.bottom == 24 and all(len(line) <= 80 for line in HELP.splitlines())
            # Keys on a row that is not a task, or with nothing selected, say why.
            await pilot.press("v")
            await pilot.pause()
            assert isinstance(app.screen, DiffScreen) and app.screen.lines() == [
                f"task {tid} has not started yet (queued): nothing changed so far"
            ]
            await pilot.press("escape", "q")
        assert app.return_value == 0

    asyncio.run(scenario())


def test_arrange_puts_waiting_first_then_workflows_with_steps():
    now = 1000.0

    def s(tid: str, state: str, created: float, workflow: str | None = None, step: str | None = None) -> dict:
        return {"id": tid, "state": state, "role": "implementer", "title": tid, "created_at": created,
                "workflow": workflow, "step": step}  # fmt: skip

    class Wf:
        def __init__(self, wid: str, state: str, instances: list[dict]) -> None:
            self.id, self.state, self.instances = wid, state, instances
            self.template, self.title, self.created_at = "feature", f"wf {wid}", 1.0

    rows = arrange(
        [
            s("done1", "succeeded", 1),
            s("run1", "running", 2),
            s("ask1", "awaiting_input", 3),
            s("stepa", "succeeded", 4, "wf1", "implement"),
            s("stepb", "awaiting_input", 5, "wf1", "test"),
            s("que1", "queued", 6),
            {**s("stepc", "queued", 7, "wf1", "implement"), "title": "implement (round 2): wf wf1"},
        ],
        [
            Wf(
                "wf1",
                "running",
                [
                    {"step": "implement", "task": "stepa"},
                    {"step": "test", "task": "stepb"},
                    {"step": "implement", "task": "stepc"},
                ],
            )
        ],
        at=now,
    )
    assert [(r.key, r.title) for r in rows] == [
        ("w:ask1", "ask1"),
        ("w:stepb", "stepb"),
        ("f:wf1", "wf wf1"),
        ("s:stepa", "└ implement: stepa"),
        ("s:stepb", "└ test: stepb"),
        ("s:stepc", "└ implement (round 2): wf wf1"),  # the step is named once
        ("t:run1", "run1"),
        ("t:que1", "que1"),
        ("t:done1", "done1"),
    ]


def test_the_diff_screen_shows_what_an_agent_wrote_escaped(env):
    """A file with a title change, a screen clear and a carriage return: shown as text, not obeyed."""
    orch = env
    hostile = r"@fake bash printf 'A\033]0;PWNED\007B\033[2JC\rD\n' > evil.txt"
    tid = orch.submit(f"escapes\n{hostile}\n@fake commit add")
    assert orch.work().returncode == 0
    lines = asyncio.run(_diff_screen(Orchestra(orch.repo), tid))
    assert "+A\\x1b]0;PWNED\\x07B\\x1b[2JC\\x0dD" in lines
    assert not [line for line in lines if any(c in line for c in "\x1b\x07\r")]


async def _diff_screen(orch: Orchestra, tid: str) -> list[str]:
    """What `v` on the task shows."""
    app = OrchestraTUI(orch, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        lines = await _open_diff(app, pilot, tid)
        await pilot.press("escape", "q")
    return lines


async def _open_diff(app: OrchestraTUI, pilot: Any, tid: str) -> list[str]:
    _select(app, tid)
    await pilot.press("v")
    await pilot.pause()
    assert isinstance(app.screen, DiffScreen)
    return app.screen.lines()


def test_keys_for_the_table_do_nothing_while_a_diff_or_transcript_is_open(env):
    """`c` on a diff page must not cancel the task behind it, nor `a` on a transcript answer its question."""
    orch = env
    busy = orch.submit("busy\n@fake write x.txt x\n@fake sleep 60")
    asks = orch.submit("asks\n@fake ask bash echo hi")
    orch.start_worker()
    orch.wait_for(lambda: orch.show(busy)["pid"], what="the busy agent")
    orch.wait_for(lambda: _waiting(orch, asks), what="the question")

    async def scenario() -> None:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await _open_diff(app, pilot, busy)
            await pilot.press("c", "s", "R", "m", "a", "d")
            await pilot.pause(0.5)
            assert isinstance(app.screen, DiffScreen)  # no dialog opened over it either
            await pilot.press("escape")
            _select(app, asks)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, TranscriptScreen)
            await pilot.press("a", "A", "d", "c")
            await pilot.pause(0.5)
            await pilot.press("escape", "q")

    asyncio.run(scenario())
    assert orch.state(busy) == "running"
    assert orch.state(asks) == "awaiting_input" and _waiting(orch, asks)


def test_v_on_a_workflow_waiting_for_approval_shows_what_its_merge_would_bring(env):
    orch = env
    approve = '{"verdict": "approve", "comments": [], "summary": "fine"}'
    request = (
        "Greet\n@fake if-role implementer if-new write greeting.py hi\\n\n"
        f"@fake if-role implementer if-new commit Add greeting\n@fake if-role reviewer structured {approve}\n"
    )
    wf_id = orch.run(
        "workflow", "start", "--no-start", "--approve-merge", "feature", request, check=True
    ).stdout.strip()
    assert orch.work().returncode == 0

    async def scenario() -> None:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            index = next(i for i, r in enumerate(app.rows) if r.ref == wf_id)
            app.table.move_cursor(row=index, animate=False)
            await pilot.press("v")
            await pilot.pause()
            assert isinstance(app.screen, DiffScreen)
            lines = app.screen.lines()
            assert "+hi" in lines and any(line.startswith("diff --git a/greeting.py") for line in lines)
            await pilot.press("escape")
            await pilot.pause()
            await pilot.press("m")  # the question says what `y` does here: approve, into which branch
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            assert app.screen.question.startswith(f"Approve the merge of workflow {wf_id} into main?")
            await pilot.press("n", "q")

    asyncio.run(scenario())


def test_a_failed_task_says_why_and_a_failed_workflow_keeps_its_steps_to_retry(env):
    orch = env
    failed = orch.submit("hard fail\n@fake fail 400")
    wf_id = orch.run(
        "workflow", "start", "--no-start", "feature", "Greet\n@fake if-role implementer fail 400", check=True
    ).stdout.strip()
    assert orch.work().returncode == 0
    wf = json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)
    assert wf["state"] == "failed"
    step = next(i["task"] for i in wf["instances"] if orch.state(i["task"]) == "failed")

    async def scenario() -> None:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            _select(app, failed)
            await pilot.pause()
            assert "(failed: API error 400" in str(app.query_one("#detail").render())
            _select(app, step)  # listed under its workflow, to read or retry
            await pilot.press("R")
            await _until(pilot, lambda: app.message == f"{step} queued", f"the retry: {app.message!r}")
            await pilot.press("q")

    asyncio.run(scenario())
    after = orch.show(step)
    assert after["state"] == "queued" or after["attempts"] == 2  # queued again (and maybe run since)


def test_m_asks_only_about_a_merge_that_can_happen_and_names_where_it_goes(env):
    """A task that cannot be merged is refused at once, with the reason; the question names the target, and a
    title that looks like markup is shown as written (it once crashed the dialog)."""
    orch = env
    failed = orch.submit("broken\n@fake exit 1")
    done = orch.submit("fix the [/x] parser [bold]now\n@fake write p.txt p\n@fake commit Fix parser")
    assert orch.work().returncode == 0
    assert (orch.state(failed), orch.state(done)) == ("failed", "succeeded")

    async def scenario() -> None:
        app = OrchestraTUI(Orchestra(orch.repo), interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            _select(app, failed)
            await pilot.press("m")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen)
            assert f"task {failed} is failed; only succeeded tasks are merged" in app.message
            _select(app, done)
            await pilot.press("m")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            branch = app.orch.get(done).branch
            assert app.screen.question.startswith(f"Merge task {done} ({branch}) into main?")
            assert "fix the [/x] parser [bold]now" in app.screen.question
            await pilot.press("n")
            await pilot.pause()
            assert app.message == "merge cancelled: nothing was changed"
            await pilot.press("q")

    asyncio.run(scenario())

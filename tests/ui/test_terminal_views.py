"""What a person at a terminal sees: coloured transcripts, the status picture, man pages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
from rich.console import Console

from orchestra.agent import transcript
from orchestra.core.task import Task
from orchestra.engine.status import StatusReport
from orchestra.ui import manpages, term
from orchestra.ui.cli import cli
from orchestra.ui.dashboard import render
from orchestra.ui.views import status_lines, status_text, transcript_tail

ROOT = Path(__file__).resolve().parents[2]
TRANSCRIPTS = ROOT / "fixtures" / "transcripts"  # vendored copies of shared/claude-code/transcripts
TRANSCRIPT_FILES = sorted(TRANSCRIPTS.glob("*.jsonl")) if TRANSCRIPTS.is_dir() else []
ANSI = re.compile(r"\x1b\[[0-9;]*m")
needs_transcripts = pytest.mark.skipif(not TRANSCRIPT_FILES, reason=f"no captures in {TRANSCRIPTS}")


# --------------------------------------------------------------------- transcripts in colour


@needs_transcripts
@pytest.mark.parametrize("path", TRANSCRIPT_FILES, ids=lambda p: p.name)
def test_colour_only_wraps_the_plain_text(path: Path) -> None:
    items, _ = transcript.render_file(path)
    assert items
    for item in items:
        plain = term.paint(item.kind, item.text, False)
        coloured = term.paint(item.kind, item.text, True)
        assert plain == item.text and "\x1b" not in plain
        assert ANSI.sub("", coloured) == item.text
        if term.STYLES[term.style_kind(item.kind, item.text)][0]:
            assert coloured != plain, item  # every styled kind really is coloured


@needs_transcripts
def test_every_transcript_kind_has_a_style_and_results_read_by_outcome() -> None:
    assert set(term.STYLES) >= transcript.KINDS
    items, _ = transcript.render_file(TRANSCRIPTS / "max-turns.jsonl")
    failed = [i for i in items if i.kind == "result"]
    assert failed and term.style_kind("result", failed[-1].text) == "result_failed"
    items, _ = transcript.render_file(TRANSCRIPTS / "tool-write-bash.jsonl")
    ok = [i for i in items if i.kind == "result"]
    assert term.style_kind("result", ok[-1].text) == "result"
    assert "\x1b[31" in term.paint("result", failed[-1].text, True)  # red
    assert "\x1b[32" in term.paint("result", ok[-1].text, True)  # green


def test_color_enabled_respects_no_color_and_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert term.color_enabled(Tty())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not term.color_enabled(Tty())  # type: ignore[arg-type]
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not term.color_enabled(Tty())  # type: ignore[arg-type]
    monkeypatch.setenv("TERM", "xterm")
    with open(__file__) as not_a_tty:
        assert not term.color_enabled(not_a_tty)


@needs_transcripts
def test_transcript_tail_reads_the_end_of_the_log(tmp_path: Path) -> None:
    class FakePaths:
        def log_file(self, task_id: str) -> Path:
            return tmp_path / f"{task_id}.jsonl"

    task = Task(id="abc123", prompt="p", role="generalist")
    log = tmp_path / "abc123.jsonl"
    # Two runs in one log, as after a retry; the tail shows the second one's end.
    log.write_bytes(
        (TRANSCRIPTS / "max-turns.jsonl").read_bytes() + (TRANSCRIPTS / "tool-write-bash.jsonl").read_bytes()
    )
    lines = transcript_tail(FakePaths(), task, lines=3)
    assert len(lines) == 3
    assert lines[-1].startswith("✓ success")
    everything = transcript_tail(FakePaths(), task, lines=1000)
    assert any("error_max_turns" in line for line in everything)
    assert all("\x1b" not in line for line in everything)
    assert any("\x1b[" in line for line in transcript_tail(FakePaths(), task, lines=5, color=True))
    assert transcript_tail(FakePaths(), Task(id="nolog1", prompt="p", role="generalist")) == []


def test_tail_events_is_bounded_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "big.jsonl"
    line = json.dumps({"type": "assistant", "message": {"id": "m", "content": [{"type": "text", "text": "x" * 100}]}})
    with log.open("w") as fh:
        for i in range(3000):
            fh.write(line.replace('"m"', f'"m{i}"') + "\n")
    events, complete = transcript.tail_events(log, 0, max_bytes=20_000)
    assert not complete and 0 < len(events) < 200
    assert events[-1]["message"]["id"] == "m2999"
    last = log.read_bytes().splitlines(keepends=True)[-1]
    events, complete = transcript.tail_events(log, log.stat().st_size - len(last))
    assert complete and len(events) == 1
    assert transcript.tail_events(tmp_path / "missing.jsonl", 0) == ([], True)


# --------------------------------------------------------------------- the status picture


def _row(task_id: str, state: str, role: str, title: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "state": state, "role": role, "title": title, "priority": 0, "depends_on": [], **extra}


LONG = "Refactor the configuration loader so that every setting is validated in one place " * 2


def sample_report() -> StatusReport:
    report = StatusReport(
        root=Path("/home/someone/projects/a-repository-with-a-rather-long-name-for-testing"),
        scheduler_pid=4242,
        counts={"awaiting_input": 1, "running": 2, "queued": 12, "succeeded": 7, "failed": 1},
        total_cost_usd=12.5,
        spend={"tasks": 23, "cost_usd": 12.5, "input_tokens": 1_234_567, "output_tokens": 45_678},
        budget_usd=10.0,
        budget_message="repo budget reached: $12.50 spent of $10.00 (budget_usd); 12 queued task(s) wait; "
        "no new task starts until you raise it: orchestra config set budget_usd <USD>",
    )
    report.waiting = [
        _row(
            "wait01",
            "awaiting_input",
            "implementer",
            LONG,
            request={"tool_name": "Bash", "input": {"command": "rm -rf build && make " + "x" * 80}},
        ),
    ]
    report.running = [
        _row(
            "run001",
            "running",
            "implementer",
            LONG,
            elapsed=754.2,
            num_turns=14,
            cost_usd=0.4321,
            last_activity="→ Bash: python -m pytest -q tests/test_config.py " + "y" * 60,
        ),
        _row("run002", "running", "documenter", "Docs", elapsed=3.0, num_turns=120, turns_partial=True),
    ]
    report.queued = [
        _row(
            f"q{i:05d}",
            "queued",
            "tester",
            LONG,
            position=i + 1,
            waiting_for=[{"id": "run001", "state": "running"}] if i % 2 else [],
        )
        for i in range(12)
    ]
    report.workflows = [
        {
            "id": "wf0001",
            "tasks": 4,
            "succeeded": 1,
            "cost_usd": 0.9,
            "current": [
                {"id": "run001", "step": "implement", "state": "running"},
                {"id": "q00001", "step": "test", "state": "queued"},
            ],
        },
    ]
    report.recent = [
        _row("done01", "succeeded", "reviewer", LONG, cost_usd=0.05),
        _row("fail01", "failed", "implementer", "Broke", cost_usd=1.25, error="API error 529: " + "z" * 200),
    ]
    return report


def test_dashboard_snapshot_at_80_columns() -> None:
    console = Console(width=80, record=True, color_system=None, force_terminal=False)
    console.print(render(sample_report(), 80, header="orchestra status --watch · 12:00:00"))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "\x1b" not in text
    order = [
        next(i for i, line in enumerate(lines) if marker in line)
        for marker in (
            "orchestra status --watch",
            "repo budget reached",
            "WAITING FOR YOU (1)",
            "RUNNING (2)",
            "QUEUED (12, in run order)",
            "WORKFLOWS (1 active)",
            "RECENT",
        )
    ]
    assert order == sorted(order), text
    assert "asks: Bash rm -rf build" in text
    assert "└ → Bash: python -m pytest" in text  # the last thing the agent did
    assert re.search(r"run001\s+implementer\s+12m34s\s+14\s+\$0\.4321", text)
    assert re.search(r"run002\s+documenter\s+3s\s+120\+", text)  # a cut log: a lower bound
    assert "run001 (running)" in text and "ready" not in text  # over budget: "budget", not "ready"
    assert "… and 2 more (orchestra queue)" in text
    assert "now: implement run001 (running), test q00001 (queued)" in text
    assert "1.2M in / 45.7k out tokens" in text and "budget $10.00" in text
    assert "└ API error 529" in text


def test_plain_status_is_the_same_picture_and_fits_any_width() -> None:
    report = sample_report()
    console = Console(width=80, record=True, color_system=None)
    console.print(render(report, 80))
    assert console.export_text().rstrip("\n") == status_text(report, 80)
    for width in (40, 80, 132):
        assert all(len(text) <= width for _, text in status_lines(report, width))
    kinds = {kind for kind, _ in status_lines(report, 80)}
    assert {"alert", "waiting", "running", "activity", "queued", "succeeded", "failed", "warning"} <= kinds
    assert kinds <= set(term.STYLES)


def test_dashboard_styles_waiting_as_unmissable() -> None:
    console = Console(width=80, record=True, color_system="standard", force_terminal=True)
    console.print(render(sample_report(), 80))
    coloured = console.export_text(styles=True)
    alert = next(line for line in coloured.splitlines() if "WAITING FOR YOU" in line)
    assert "\x1b[" in alert and "43" in alert  # yellow background


def test_empty_status() -> None:
    report = StatusReport(root=Path("/r"), scheduler_pid=None, counts={})
    text = status_text(report)
    assert "tasks      none yet" in text and "not running" in text
    assert "WAITING" not in text and "RUNNING" not in text


# --------------------------------------------------------------------- man pages


def test_committed_man_pages_are_up_to_date(tmp_path: Path) -> None:
    manpages.write(tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.1")}
    committed = {p.name: p.read_text() for p in (ROOT / "man").glob("orchestra*.1")}
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert not stale, f"man pages out of date: {stale}; run: python -m orchestra.ui.manpages man/"


def test_man_pages_cover_every_command_and_are_deterministic(tmp_path: Path) -> None:
    pages = manpages.pages(cli)
    assert pages == manpages.pages(cli)
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        assert f"orchestra-{name}.1" in pages
    assert "orchestra-queue-remove.1" in pages and "orchestra-config-set.1" in pages
    root = pages["orchestra.1"]
    for code in ("0", "1", "2", "3", "124"):
        assert f".TP\n.B {code}\n" in root
    assert "_ORCHESTRA_COMPLETE=bash_source orchestra" in root and "fish_source" in root
    assert "\\-\\-max\\-budget\\-usd" in pages["orchestra-submit.1"]
    old = tmp_path / "orchestra-removed-command.1"
    old.write_text("stale")
    manpages.write(tmp_path)
    assert not old.exists()


def test_every_argument_has_a_real_description() -> None:
    """No "REF  The ref." placeholder: each positional argument says what it takes."""
    pages = manpages.pages(cli)
    for name, page in pages.items():
        lines = page.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(".I ") and ".SH ARGUMENTS" in lines[:i]:
                described = lines[i + 1]
                assert not re.fullmatch(r"The [a-z_]+\.", described), f"{name}: {line} {described}"
    assert "A task id or a workflow id" in pages["orchestra-merge.1"]
    assert "whole number from \\-1000 to 1000" in pages["orchestra-priority.1"]
    undocumented = click.Command("frob", params=[click.Argument(["widget"])])
    with pytest.raises(KeyError, match="widget"):
        manpages.pages(click.Group("orchestra", commands={"frob": undocumented}))


def test_roff_escaping() -> None:
    assert manpages.esc(".starts with a dot") == "\\&.starts with a dot"
    assert manpages.esc("a-b \\ c") == "a\\-b \\e c"

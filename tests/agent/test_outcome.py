"""orchestra.agent.outcome.read_outcome on every real Claude Code capture in fixtures/transcripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TRANSCRIPTS

from orchestra.agent.outcome import read_outcome

CAPTURES = sorted(TRANSCRIPTS.glob("*.jsonl"))
EXIT_CODES = {e["file"]: e["exit_code"] for e in json.loads((TRANSCRIPTS / "index.json").read_text())}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_there_are_captures_to_read():
    assert len(CAPTURES) >= 20


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_the_last_result_line_decides_and_every_figure_is_taken_from_it(path: Path) -> None:
    events = lines(path)
    results = [e for e in events if e.get("type") == "result"]
    out = read_outcome(path)
    if not results:
        assert not out.has_result and not out.succeeded
        assert out.cost_usd is None and out.num_turns is None and out.input_tokens is None
        assert "without a result" in out.failure_reason(EXIT_CODES.get(path.name))
        return
    last = results[-1]
    assert out.has_result
    assert out.succeeded == (last["subtype"] == "success" and not last["is_error"])
    assert (out.subtype, out.is_error) == (last["subtype"], last["is_error"])
    assert out.cost_usd == last["total_cost_usd"] and out.num_turns == last["num_turns"]
    assert out.session_id == last["session_id"]
    init = [e for e in events if e.get("subtype") == "init"]
    if init:
        assert out.session_id == init[-1]["session_id"]
    usage = last["usage"]
    assert (out.input_tokens, out.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    assert out.cache_read_tokens == usage["cache_read_input_tokens"]
    assert out.cache_creation_tokens == usage["cache_creation_input_tokens"]
    assert out.permission_denials == last.get("permission_denials", [])
    assert out.api_error_status == last.get("api_error_status")
    assert out.structured_output == last.get("structured_output")
    turns = {e["message"]["id"] for e in events if e.get("type") == "assistant" and e["message"].get("id")}
    assert out.assistant_messages == len(turns)
    if not out.succeeded:
        assert out.failure_reason(EXIT_CODES.get(path.name))  # a failure always has a reason to show


@pytest.mark.parametrize(
    "name, succeeded, reason",
    [
        ("text.jsonl", True, None),
        ("tool-write-bash.jsonl", True, None),
        ("api-error-529-recovered.jsonl", True, None),  # retried by the CLI itself, then fine
        ("permission-denied.jsonl", True, None),  # denials do not fail a run
        ("api-error-529.jsonl", False, "API error 529: API Error: Repeated 529 Overloaded errors."),
        ("api-error-401.jsonl", False, "API error 401: Invalid API key"),
        ("timeout.jsonl", False, "API error timeout: Request timed out."),
        ("max-turns.jsonl", False, "error_max_turns: Reached maximum number of turns (2)"),
        ("resume-unknown-session.jsonl", False, "error_during_execution: No conversation found with session ID"),
        ("sigint-during-tool.jsonl", False, "error_during_execution: [ede_diagnostic]"),
        ("sigterm-during-tool.jsonl", False, "claude exited with code 143 without a result"),
    ],
)
def test_what_a_person_is_told_about_each_kind_of_run(name: str, succeeded: bool, reason: str | None) -> None:
    out = read_outcome(TRANSCRIPTS / name)
    assert out.succeeded is succeeded
    if reason is not None:
        assert out.failure_reason(EXIT_CODES[name]).startswith(reason), out.failure_reason(EXIT_CODES[name])


def test_api_errors_carry_their_status_and_kind() -> None:
    overloaded = read_outcome(TRANSCRIPTS / "api-error-529.jsonl")
    assert overloaded.api_error_status == 529 and overloaded.terminal_reason == "api_error"
    assert overloaded.api_retry_errors and set(overloaded.api_retry_errors) == {"overloaded"}
    auth = read_outcome(TRANSCRIPTS / "api-error-401.jsonl")
    assert auth.api_error_status == 401 and auth.api_error_kind == "authentication_failed"
    assert auth.last_error_text == "Invalid API key · Fix external API key"
    timeout = read_outcome(TRANSCRIPTS / "timeout.jsonl")
    assert timeout.api_error_status is None and timeout.terminal_reason == "api_error"


def test_verdicts_denials_and_costs() -> None:
    verdict = read_outcome(TRANSCRIPTS / "json-schema.jsonl")
    assert isinstance(verdict.structured_output, dict) and verdict.succeeded
    denied = read_outcome(TRANSCRIPTS / "permission-denied.jsonl")
    assert [d["tool_name"] for d in denied.permission_denials] == ["Write", "Bash"]
    run = read_outcome(TRANSCRIPTS / "tool-write-bash.jsonl")
    assert run.cost_usd == pytest.approx(0.153232) and run.num_turns == 3
    assert run.session_id == "cbbc596c-6430-4558-b5f8-1f267fd8bc12"
    assert (run.input_tokens, run.output_tokens) == (37918, 78)
    fixed = read_outcome(TRANSCRIPTS / "session-id.jsonl")
    assert fixed.session_id == "00000000-0000-4000-8000-000000000abc"  # the one --session-id asked for


def test_a_run_without_a_result_still_has_its_session(tmp_path: Path) -> None:
    out = read_outcome(TRANSCRIPTS / "sigterm-during-tool.jsonl")
    assert not out.has_result and out.session_id == "3f858996-10f6-4801-b599-e6f832eb4443"
    assert out.assistant_messages == 1
    missing = read_outcome(tmp_path / "never-written.jsonl")
    assert not missing.has_result and missing.failure_reason(None) == "claude ended without a result"


def test_reading_from_an_offset_sees_only_the_later_run(tmp_path: Path) -> None:
    first = (TRANSCRIPTS / "max-turns.jsonl").read_bytes()
    log = tmp_path / "task.jsonl"
    log.write_bytes(first + (TRANSCRIPTS / "resume-2.jsonl").read_bytes())
    later = read_outcome(log, offset=len(first))
    assert later.succeeded and later.cost_usd == pytest.approx(0.100336)
    assert later.session_id == "e13f252b-add2-4e55-a779-6fa966ec3490"
    whole = read_outcome(log)
    assert whole.succeeded  # the last result line decides...
    assert whole.assistant_messages == later.assistant_messages + 2  # ...but every turn in the log counts


def test_garbage_and_a_half_written_last_line_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "task.jsonl"
    good = (TRANSCRIPTS / "text.jsonl").read_bytes()
    log.write_bytes(b"not json\n[1, 2]\n\xff\xfe\n" + good + b'{"type": "result", "subtype": "error_during_ex')
    out = read_outcome(log)
    assert out.succeeded and out.result == lines(TRANSCRIPTS / "text.jsonl")[-1]["result"]

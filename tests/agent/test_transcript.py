"""Tests for orchestra.agent.transcript against real Claude Code captures and hostile input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestra.agent.transcript import (
    KINDS,
    Rendered,
    render_event,
    render_file,
    render_line,
    render_lines,
    summarize,
)

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "fixtures" / "transcripts"
TRANSCRIPT_FILES = sorted(TRANSCRIPTS.glob("*.jsonl")) if TRANSCRIPTS.is_dir() else []

needs_transcripts = pytest.mark.skipif(not TRANSCRIPT_FILES, reason=f"no captures in {TRANSCRIPTS}")

# (type, subtype) pairs that are deliberately rendered as nothing.
SILENT = {("system", "status"), ("system", "ui_invalidate"), ("system", "background_tasks_changed")}


def events_of(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (TRANSCRIPTS / name).read_text().splitlines() if line.strip()]


def texts_of(name: str) -> list[Rendered]:
    rendered, _ = render_file(TRANSCRIPTS / name)
    return rendered


def joined(items: list[Rendered], kind: str | None = None) -> str:
    return "\n".join(r.text for r in items if kind is None or r.kind == kind)


def check_well_formed(items: list[Rendered]) -> None:
    for item in items:
        assert isinstance(item, Rendered)
        assert item.kind in KINDS, item
        assert isinstance(item.text, str)
        assert not item.text.endswith("\n"), item
        assert "\x1b" not in item.text, item


# --------------------------------------------------------------------- every capture


@needs_transcripts
@pytest.mark.parametrize("path", TRANSCRIPT_FILES, ids=lambda p: p.name)
def test_every_line_of_every_capture_renders(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        event = json.loads(line)
        rendered = render_line(line)
        check_well_formed(rendered)
        key = (event.get("type"), event.get("subtype"))
        if key not in SILENT:
            assert rendered, f"nothing rendered for {key}: {line[:200]}"
        # A real line must never fall back to raw, nor to the unknown-type placeholder.
        assert all(r.kind != "raw" for r in rendered), rendered
        assert all(not r.text.startswith("(") for r in rendered), rendered
        if key == ("system", "init"):
            assert rendered[0].kind == "init"
            assert f"session {event['session_id']}" in rendered[0].text
            assert f"model {event['model']}" in rendered[0].text
            assert event["permissionMode"] in rendered[0].text
            assert f"cwd {event['cwd']}" in rendered[0].text
        if event.get("type") == "result":
            assert rendered[0].kind == "result"
            ok = event["subtype"] == "success" and not event["is_error"]
            assert rendered[0].text.startswith("✓" if ok else "✗")
        if event.get("type") == "assistant":
            block = event["message"]["content"][0]
            if block["type"] == "tool_use":
                assert [r.kind for r in rendered] == ["tool"]
                assert rendered[0].text.startswith(f"→ {block['name']}")
            elif event.get("is_api_error_message"):
                assert [r.kind for r in rendered] == ["error"]
            else:
                assert [r.kind for r in rendered] == ["text"]
                assert rendered[0].text == block["text"].strip()
        if event.get("type") == "user" and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in event["message"]["content"]
        ):
            assert rendered[0].kind in ("tool_result", "tool_error")
            assert "\n" not in rendered[0].text


@needs_transcripts
@pytest.mark.parametrize("path", TRANSCRIPT_FILES, ids=lambda p: p.name)
def test_render_file_consumes_whole_capture(path: Path) -> None:
    rendered, offset = render_file(path)
    assert offset == path.stat().st_size
    assert rendered == list(render_lines(path.read_text().splitlines()))
    again, offset2 = render_file(path, offset)
    assert again == [] and offset2 == offset


@needs_transcripts
def test_tool_write_bash() -> None:
    items = texts_of("tool-write-bash.jsonl")
    tools = [r.text for r in items if r.kind == "tool"]
    assert tools[0] == "→ Write <repo>/hello.txt"
    assert tools[1].startswith("→ Bash: git add hello.txt && git")
    assert tools[1].endswith("(Commit hello.txt)")
    results = [r.text for r in items if r.kind == "tool_result"]
    assert results == ["  ← created <repo>/hello.txt", "  ← 913b31b Add hello.txt"]
    assert [r.text for r in items if r.kind == "text"] == [
        "I'll create the file.",
        "Done: wrote hello.txt and committed it.",
    ]
    assert items[-1] == Rendered("result", "✓ success · 3 turns · $0.1532 · 0.3s")
    assert items[0].kind == "init" and "bypassPermissions" in items[0].text


@needs_transcripts
def test_api_error_529_shows_retries_and_error() -> None:
    items = texts_of("api-error-529.jsonl")
    retries = [r.text for r in items if r.kind == "retry"]
    assert retries == [
        "retry 1/10 after 529 overloaded (waiting 0.5s)",
        "retry 2/10 after 529 overloaded (waiting 1.2s)",
    ]
    errors = [r.text for r in items if r.kind == "error"]
    assert len(errors) == 1 and errors[0].startswith("api error 529 (server_error): API Error: Repeated 529")
    assert items[-1].kind == "result"
    assert items[-1].text.startswith("✗ api error 529: API Error: Repeated 529 Overloaded errors.")


@needs_transcripts
def test_api_error_401_and_timeout() -> None:
    items = texts_of("api-error-401.jsonl")
    assert "api error 401 (authentication_failed): Invalid API key · Fix external API key" in joined(items, "error")
    assert items[-1].text.startswith("✗ api error 401: Invalid API key")

    items = texts_of("timeout.jsonl")
    assert joined(items, "retry") == "retry 1/1 after timeout unknown (waiting 0.6s)"
    assert joined(items, "error").startswith("api error (server_error): Request timed out.")
    assert items[-1].text.startswith("✗ api error: Request timed out.")


@needs_transcripts
def test_529_recovered_is_success() -> None:
    items = texts_of("api-error-529-recovered.jsonl")
    assert [r.kind for r in items] == ["init", "retry", "retry", "text", "result"]
    assert items[-1].text.startswith("✓ success · 1 turn · $0.0500")


@needs_transcripts
def test_max_turns_shows_errors() -> None:
    items = texts_of("max-turns.jsonl")
    assert [r.text for r in items if r.kind == "tool"] == ["→ Bash: echo one", "→ Bash: echo two"]
    assert [r.text for r in items if r.kind == "tool_result"] == ["  ← one", "  ← two"]
    assert items[-1].text.startswith("✗ error_max_turns: Reached maximum number of turns (2) · 3 turns · $0.1006")


@needs_transcripts
def test_permission_denied_shows_two_denials() -> None:
    items = texts_of("permission-denied.jsonl")
    denied = [r.text for r in items if r.kind == "denied"]
    assert len(denied) == 2
    assert denied[0].startswith("denied: Write: Claude requested permissions to write to <repo>/hello.txt")
    assert denied[1].startswith("denied: Bash: This Bash command contains multiple operations.")
    assert len([r for r in items if r.kind == "tool_error"]) == 2
    assert items[-1].text.startswith("✓ success")
    assert "2 permission denials (Bash, Write)" in items[-1].text


@needs_transcripts
def test_reviewer_tools_restricted_shows_no_such_tool() -> None:
    items = texts_of("reviewer-tools-restricted.jsonl")
    errors = [r.text for r in items if r.kind == "tool_error"]
    assert errors == [
        "  ✗ No such tool available: Write. Write is disabled for this session, in subagents as well as here.",
        "  ✗ No such tool available: Bash. Bash is disabled for this session, in subagents as well as here.",
    ]
    assert "→ Read <repo>/README.md" in joined(items, "tool")
    assert "  ← read <repo>/README.md (2 lines)" in joined(items, "tool_result")


@needs_transcripts
def test_json_schema_shows_structured_output() -> None:
    items = texts_of("json-schema.jsonl")
    assert '→ StructuredOutput {"verdict":"approve","score":7}' in joined(items, "tool")
    assert items[-1] == Rendered("result", 'structured_output: {"verdict":"approve","score":7}')
    # Without --json-schema there is no structured_output line at all.
    assert "structured_output" not in joined(texts_of("text.jsonl"))


@needs_transcripts
def test_resume_unknown_session() -> None:
    items = texts_of("resume-unknown-session.jsonl")
    assert len(items) == 1 and items[0].kind == "result"
    assert items[0].text.startswith(
        "✗ error_during_execution: No conversation found with session ID: 00000000-0000-0000-0000-000000000001"
    )


@needs_transcripts
def test_permission_prompts_and_control_lines() -> None:
    items = texts_of("permission-stdio.jsonl")
    asked = [r.text for r in items if r.text.startswith("permission asked:")]
    assert asked == ["permission asked: Write <repo>/allowed.txt", "permission asked: Bash: touch denied.txt"]
    assert "  ✗ Bash denied by host" in joined(items, "tool_error")

    answers = joined(texts_of("permission-stdio.stdin.jsonl"))
    assert "control response: allow" in answers
    assert "control response: deny: Bash denied by host" in answers

    items = texts_of("control-interrupt.jsonl")
    assert "control response: success" in joined(items, "info")
    assert "[Request interrupted by user]" in joined(items, "info")
    assert "(aborted_streaming)" in joined(items, "result")
    assert "control request: interrupt" in joined(texts_of("control-interrupt.stdin.jsonl"))


@needs_transcripts
def test_signals_during_tool() -> None:
    items = texts_of("sigint-during-tool.jsonl")
    assert "→ Bash: python3 -c 'import time; time.sleep(60)' (Wait a minute)" in joined(items, "tool")
    assert "task started: Wait a minute (local_bash)" in joined(items, "info")
    assert "task stopped: Wait a minute" in joined(items, "info")
    assert "[Request interrupted by user for tool use]" in joined(items, "info")
    assert "(+65 chars)" in joined(items, "tool_error")
    assert items[-1].text.startswith("✗ error_during_execution (aborted_tools)")

    items = texts_of("sigterm-during-tool.jsonl")
    assert items[-1] == Rendered("tool_error", "  ✗ Exit code 137")


# --------------------------------------------------------------------- synthetic events


def assistant(*blocks: dict[str, Any], parent: str | None = None, msg_id: str = "m1") -> dict[str, Any]:
    return {
        "type": "assistant",
        "message": {"id": msg_id, "model": "claude-x", "content": list(blocks)},
        "parent_tool_use_id": parent,
        "session_id": "s1",
    }


def tool_use(name: str, **inp: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": "t1", "name": name, "input": inp}


def test_tool_formats() -> None:
    def one(name: str, **inp: Any) -> str:
        (item,) = render_event(assistant(tool_use(name, **inp)))
        assert item.kind == "tool"
        return item.text

    assert one("Edit", file_path="src/a.py", old_string="a", new_string="b") == "→ Edit src/a.py"
    assert one("Read", file_path="a.py", offset=10, limit=5) == "→ Read a.py [offset 10, limit 5]"
    assert one("Grep", pattern="def main", path="src") == "→ Grep def main in src"
    assert one("Glob", pattern="**/*.py") == "→ Glob **/*.py"
    assert one("Bash", command="make test\nmake lint") == "→ Bash: make test (+1 lines)"
    assert one("Task", subagent_type="Explore", description="Find the parser", prompt="…") == (
        "→ Task Explore: Find the parser"
    )
    assert one("WebFetch", url="https://example.com", prompt="x") == "→ WebFetch https://example.com"
    assert one("mcp__orchestra__add_task", title="t") == '→ mcp__orchestra__add_task {"title":"t"}'
    assert one("NoArgs") == "→ NoArgs"
    long = one("Other", blob="x" * 1000)
    assert long.startswith('→ Other {"blob":"xxx') and "… (+" in long and long.endswith(" chars)")
    assert len(long) < 260


def test_tool_results() -> None:
    def result(content: Any, tur: Any = None, is_error: bool | None = None) -> Rendered:
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": "t1", "content": content}
        if is_error is not None:
            block["is_error"] = is_error
        event = {"type": "user", "message": {"role": "user", "content": [block]}, "tool_use_result": tur}
        (item,) = render_event(event)
        return item

    assert result("a\nb\nc").text == "  ← a (+2 lines)"
    assert result("", {"stdout": "", "stderr": "warning: x\nmore"}).text == "  ← stderr: warning: x (+1 lines)"
    assert result("", {"stdout": "", "stderr": ""}).text == "  ← (no output)"
    assert result("", {"stdout": "y", "stderr": "", "interrupted": True}).text == "  ← y (interrupted)"
    assert result("ok", {"type": "update", "filePath": "a.txt"}).text == "  ← updated a.txt"
    assert result("ok", {"filePath": "a.py", "oldString": "x", "newString": "y"}).text == "  ← edited a.py"
    assert result([{"type": "text", "text": "from blocks"}, {"type": "image"}]).text == "  ← from blocks (+1 lines)"
    assert result("").text == "  ← (empty)"
    err = result("<tool_use_error>Error: boom\ndetails</tool_use_error>", "Error: boom", True)
    assert err == Rendered("tool_error", "  ✗ boom (+1 lines)")
    assert result("x" * 500).text == "  ← " + "x" * 160 + "… (+340 chars)"


def test_subagent_lines_are_prefixed() -> None:
    items = render_event(assistant({"type": "text", "text": "line one\nline two"}, parent="toolu_1"))
    assert items == [Rendered("text", "  │ line one\n  │ line two")]
    (item,) = render_event(assistant(tool_use("Read", file_path="x.py"), parent="toolu_1"))
    assert item.text == "  │ → Read x.py"
    (item,) = render_event(assistant({"type": "text", "text": "top"}))
    assert item.text == "top"


def test_assistant_text_is_trimmed_and_capped() -> None:
    (item,) = render_event(assistant({"type": "text", "text": "\n  hello\nworld  \n"}))
    assert item == Rendered("text", "hello\nworld")
    (item,) = render_event(assistant({"type": "text", "text": "y" * 5000}))
    assert item.text.endswith("… (+3000 chars)")
    assert render_event(assistant({"type": "text", "text": "   "})) == []
    (item,) = render_event(assistant({"type": "thinking", "thinking": "hmm\nmore"}))
    assert item == Rendered("info", "thinking: hmm (+1 lines)")


def test_system_subtypes() -> None:
    def sys(subtype: str, **fields: Any) -> list[Rendered]:
        return render_event({"type": "system", "subtype": subtype, **fields})

    assert sys("model_fallback", trigger="overloaded", original_model="a", fallback_model="b") == [
        Rendered("info", "model fallback: a → b (overloaded)")
    ]
    assert sys("status", status=None) == []
    assert sys("ui_invalidate") == []
    assert sys("hook_started", hook_name="x") == [Rendered("info", "system/hook_started")]
    assert sys("api_retry") == [Rendered("retry", "retry ?/? after timeout")]
    assert sys("permission_denied", tool_name="Bash") == [Rendered("denied", "denied: Bash: (no reason given)")]
    assert sys("compact_boundary", compact_metadata={"trigger": "auto", "pre_tokens": 1000}) == [
        Rendered("info", "context compacted (auto, 1000 tokens before)")
    ]
    init = sys(
        "init",
        session_id="s",
        model="m",
        permissionMode="default",
        cwd="/r",
        mcp_servers=[{"name": "perm", "status": "failed"}, {"name": "ok", "status": "connected"}],
    )
    assert init == [Rendered("init", "session s · model m · default · cwd /r · mcp perm (failed)")]


def test_result_variants() -> None:
    (item,) = render_event(
        {
            "type": "result",
            "subtype": "error_max_budget_usd",
            "is_error": True,
            "num_turns": 1,
            "total_cost_usd": 2.5,
            "duration_ms": 125_000,
        }
    )
    assert item == Rendered("result", "✗ error_max_budget_usd · 1 turn · $2.5000 · 2m05s")
    (item,) = render_event({"type": "result", "subtype": "success", "is_error": True, "result": "odd"})
    assert item.text == "✗ error: odd"
    items = render_event({"type": "result", "subtype": "success", "is_error": False, "structured_output": None})
    assert items[-1] == Rendered("result", "structured_output: null")


def test_unknown_types_and_user_text() -> None:
    assert render_event({"type": "brand_new"}) == [Rendered("info", "(brand_new)")]
    assert render_event({"type": "stream_event", "event": {}}) == []
    assert render_event({"no": "type"})[0].text.startswith("(line without type)")
    user = {"type": "user", "message": {"role": "user", "content": "please review\nthe diff"}}
    assert render_event(user) == [Rendered("info", "user: please review (+1 lines)")]
    note = {"type": "user", "message": {"content": [{"type": "text", "text": "[structured-output-enforce] x"}]}}
    assert render_event(note) == [Rendered("info", "[structured-output-enforce] x")]
    synthetic = {
        "type": "assistant",
        "message": {"model": "<synthetic>", "content": [{"type": "text", "text": "No response requested."}]},
    }
    assert render_event(synthetic) == [Rendered("info", "No response requested.")]


GARBAGE = [
    "",
    "   ",
    "not json at all",
    '{"type": "assistant", "message": {"content": [{"type": "text", "text": "cut he',
    "{",
    "[1, 2]",
    "42",
    "null",
    '"a string"',
    "true",
    '{"type": 5}',
    '{"type": null}',
    '{"type": ["assistant"]}',
    '{"type": "assistant"}',
    '{"type": "assistant", "message": "x"}',
    '{"type": "assistant", "message": {"content": [null, 5, "s", {"type": "tool_use"}, {"type": "text"}]}}',
    '{"type": "assistant", "message": {"content": {"type": "text"}}}',
    '{"type": "assistant", "message": {"content": [{"type": "tool_use", "name": 3, "input": [1]}]}}',
    '{"type": "assistant", "parent_tool_use_id": 7, "message": {"content": [{"type": "text", "text": 12}]}}',
    '{"type": "assistant", "is_api_error_message": true, "api_error_status": "x", "message": null}',
    '{"type": "user", "message": {"content": [{"type": "tool_result", "content": {"a": 1}, "is_error": "yes"}]}}',
    '{"type": "user", "message": {"content": [{"type": "tool_result", "content": [1, null]}]}, "tool_use_result": 5}',
    '{"type": "user", "message": {"content": [{"type": "tool_result"}]}, "tool_use_result": {"stdout": 5}}',
    '{"type": "user", "message": {"content": [{"type": "tool_result"}]}, "tool_use_result": {"type": "text", "file": 3}}',
    '{"type": "system"}',
    '{"type": "system", "subtype": "init", "mcp_servers": "x"}',
    '{"type": "system", "subtype": "init", "mcp_servers": [1, {"status": "failed"}]}',
    '{"type": "system", "subtype": "api_retry", "attempt": "1", "retry_delay_ms": "soon"}',
    '{"type": "system", "subtype": "api_retry", "retry_delay_ms": 1e308}',
    '{"type": "system", "subtype": "compact_boundary", "compact_metadata": {"pre_tokens": "many"}}',
    '{"type": "system", "subtype": "task_notification", "summary": {"x": 1}}',
    '{"type": "result"}',
    '{"type": "result", "num_turns": "3", "total_cost_usd": "free", "duration_ms": true, "errors": "boom"}',
    '{"type": "result", "subtype": "success", "permission_denials": [1, null, {"tool_name": 4}]}',
    '{"type": "result", "duration_ms": 1e300, "total_cost_usd": NaN, "num_turns": Infinity}',
    '{"type": "result", "duration_ms": -Infinity, "total_cost_usd": 1e999}',
    '{"type": "control_request", "request": [1]}',
    '{"type": "control_request", "request": {"subtype": "can_use_tool", "input": "rm -rf"}}',
    '{"type": "control_response", "response": {"subtype": "error"}}',
    '{"type": "control_response", "response": {"response": {"behavior": 1}}}',
    "\x00\x01\x1b[31mred\x1b[0m",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[" * 30,
]


@pytest.mark.parametrize("line", GARBAGE, ids=lambda line: repr(line[:40]))
def test_garbage_never_raises(line: str) -> None:
    items = render_line(line)
    check_well_formed(items)
    try:
        parsed = json.loads(line)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        # Malformed but parseable events are handled by the renderers themselves, not by
        # the last-resort fallback (which tags its output "raw").
        assert all(r.kind != "raw" for r in items), items
    elif line.strip():
        assert [r.kind for r in items] == ["raw"]


def test_truncated_line_renders_raw() -> None:
    (item,) = render_line('{"type": "assistant", "message": {"content": [{"type": "text", "text": "cut he')
    assert item.kind == "raw" and item.text.startswith('{"type": "assistant"')
    (item,) = render_line("x" * 1000)
    assert item.kind == "raw" and item.text.endswith("… (+840 chars)")


def _mutations(value: Any) -> list[Any]:
    return [None, 0, -1, 1.5, True, "", "x", [], [None], {}, {"type": None}, value if not isinstance(value, str) else 5]


@needs_transcripts
def test_mutated_real_events_never_raise() -> None:
    """Swap every field (down to content blocks) for values of the wrong type."""
    seen = 0
    for path in TRANSCRIPT_FILES:
        for line in (line for line in path.read_text().splitlines() if line.strip()):
            event = json.loads(line)
            targets: list[dict[str, Any]] = [event]
            for key in ("message", "request", "response", "tool_use_result"):
                if isinstance(event.get(key), dict):
                    targets.append(event[key])
            content = event.get("message", {}).get("content") if isinstance(event.get("message"), dict) else None
            if isinstance(content, list):
                targets.extend(b for b in content if isinstance(b, dict))
            for target_index, target in enumerate(targets):
                for key in list(target):
                    for replacement in _mutations(target[key]):
                        mutated = json.loads(line)  # a fresh deep copy, 5x cheaper than copy.deepcopy
                        clone = [mutated]
                        for k in ("message", "request", "response", "tool_use_result"):
                            if isinstance(mutated.get(k), dict):
                                clone.append(mutated[k])
                        c = (
                            mutated.get("message", {}).get("content")
                            if isinstance(mutated.get("message"), dict)
                            else None
                        )
                        if isinstance(c, list):
                            clone.extend(b for b in c if isinstance(b, dict))
                        clone[target_index][key] = replacement
                        items = render_event(mutated)
                        check_well_formed(items)
                        assert all(r.kind != "raw" for r in items), (path.name, key, replacement, items)
                        summarize([mutated])
                        seen += 1
    assert seen > 1000


# --------------------------------------------------------------------- render_file


def test_render_file_follows_a_growing_file(tmp_path: Path) -> None:
    log = tmp_path / "task.jsonl"
    assert render_file(log) == ([], 0)  # not created yet

    first = json.dumps({"type": "assistant", "message": {"id": "a", "content": [{"type": "text", "text": "héllo"}]}})
    second = json.dumps({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1})
    log.write_bytes((first + "\n").encode())
    items, offset = render_file(log)
    assert items == [Rendered("text", "héllo")]
    assert offset == len((first + "\n").encode())

    # Half of the next line (cut inside the multi-byte "✓"-free JSON, and mid-token).
    data = second.encode()
    with log.open("ab") as fh:
        fh.write(data[:20])
    items, offset2 = render_file(log, offset)
    assert items == [] and offset2 == offset

    # Still incomplete: the rest of the text but no newline yet.
    with log.open("ab") as fh:
        fh.write(data[20:])
    assert render_file(log, offset) == ([], offset)

    # A finished writer's partial line can be shown on request.
    partial, end = render_file(log, offset, include_partial=True)
    assert [r.kind for r in partial] == ["result"] and end == log.stat().st_size

    with log.open("ab") as fh:
        fh.write(b"\n")
    items, offset3 = render_file(log, offset)
    assert items == [Rendered("result", "✓ success · 1 turn")]
    assert offset3 == log.stat().st_size
    assert render_file(log, offset3) == ([], offset3)


def test_render_file_splits_multibyte_characters_safely(tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    line = json.dumps(
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "✓ done"}]}}, ensure_ascii=False
    ).encode()
    cut = line.index("✓".encode()) + 1  # inside the 3-byte character
    log.write_bytes(line[:cut])
    assert render_file(log) == ([], 0)
    with log.open("ab") as fh:
        fh.write(line[cut:] + b"\n")
    assert render_file(log) == ([Rendered("text", "✓ done")], len(line) + 1)


def test_render_file_garbage_and_replaced_file(tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    log.write_bytes(b'\xff\xfe not utf8\n\n{"type": "brand_new"}\r\n')
    items, offset = render_file(log)
    assert [r.kind for r in items] == ["raw", "info"]
    assert offset == log.stat().st_size
    log.write_bytes(b'{"type": "brand_new"}\n')  # truncated/replaced: shorter than offset
    items, offset = render_file(log, offset)
    assert items == [Rendered("info", "(brand_new)")] and offset == log.stat().st_size


# --------------------------------------------------------------------- secrets


KEY = "sk-ant-api03-" + "Ab3_dE-f" * 10


def test_secrets_are_masked_everywhere() -> None:
    env_dump = f"PATH=/usr/bin\nANTHROPIC_API_KEY={KEY}\nHOME=/root"
    events = [
        assistant({"type": "text", "text": f"Your key is {KEY}"}),
        assistant(tool_use("Bash", command=f"curl -H 'x-api-key: {KEY}' https://api")),
        assistant(tool_use("Other", env={"ANTHROPIC_API_KEY": "abcdefgh12345678"})),
        {
            "type": "user",
            "message": {"content": [{"type": "tool_result", "content": env_dump}]},
            "tool_use_result": {"stdout": f"ANTHROPIC_API_KEY=abcdefgh12345678 {KEY}", "stderr": ""},
        },
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": KEY, "is_error": True}]}},
        {"type": "system", "subtype": "permission_denied", "tool_name": "Bash", "message": KEY},
        {"type": "result", "subtype": "error_during_execution", "is_error": True, "errors": [KEY]},
    ]
    for event in events:
        items = render_event(event)
        assert items
        text = joined(items)
        assert "Ab3_dE-f" not in text, text
        assert "abcdefgh12345678" not in text, text
    # A key inside a line that is not even JSON.
    (raw,) = render_line(f"garbage ANTHROPIC_API_KEY={KEY}")
    assert raw.kind == "raw" and "Ab3_dE-f" not in raw.text
    # A key cut by truncation must not leak its head either.
    (item,) = render_event(assistant(tool_use("Other", pad="p" * 180, key=KEY)))
    assert "Ab3_dE" not in item.text
    summary = summarize([assistant({"type": "text", "text": KEY})])
    assert "Ab3_dE" not in summary["last_activity"]


def test_terminal_escapes_are_stripped() -> None:
    event = {"type": "user", "message": {"content": [{"type": "tool_result", "content": "\x1b[31mred\x1b[0m\x07"}]}}
    assert render_event(event) == [Rendered("tool_result", "  ← red")]


# --------------------------------------------------------------------- summarize


@needs_transcripts
def test_summarize_tool_write_bash() -> None:
    events = events_of("tool-write-bash.jsonl")
    summary = summarize(events)
    assert summary["session_id"] == "cbbc596c-6430-4558-b5f8-1f267fd8bc12"
    assert summary["num_turns"] == 3
    assert summary["cost_usd"] == pytest.approx(0.153232)
    assert summary["last_activity"] == "Done: wrote hello.txt and committed it."
    assert summary["result"] is events[-1]

    # Mid-run (before the result): turns counted from distinct message ids.
    partial = summarize(events[:5])
    assert partial["num_turns"] == 2  # text+Write share one id, then the Bash call
    assert partial["cost_usd"] is None and partial["result"] is None
    assert partial["last_activity"] is not None
    assert partial["last_activity"].startswith("→ Bash: git add hello.txt")
    assert len(partial["last_activity"]) <= 80


@needs_transcripts
def test_summarize_without_result() -> None:
    summary = summarize(events_of("sigterm-during-tool.jsonl"))
    assert summary == {
        "session_id": "3f858996-10f6-4801-b599-e6f832eb4443",
        "num_turns": 1,
        "cost_usd": None,
        "last_activity": "→ Bash: python3 -c 'import time; time.sleep(60)' (Wait a minute)",
        "result": None,
    }


@needs_transcripts
def test_summarize_api_error_and_unknown_session() -> None:
    summary = summarize(events_of("api-error-529.jsonl"))
    assert summary["last_activity"].startswith("api error 529")
    assert summary["result"]["is_error"] is True and summary["cost_usd"] == 0
    summary = summarize(events_of("resume-unknown-session.jsonl"))
    assert summary["num_turns"] == 0 and summary["last_activity"] is None
    assert summary["result"]["subtype"] == "error_during_execution"


def test_summarize_edge_cases() -> None:
    assert summarize([]) == {
        "session_id": None,
        "num_turns": 0,
        "cost_usd": None,
        "last_activity": None,
        "result": None,
    }
    events: list[Any] = [
        None,
        5,
        "x",
        {"type": "assistant", "message": None},
        assistant({"type": "text", "text": "a " * 100}, msg_id="m1"),
        assistant(tool_use("Read", file_path="x"), msg_id="sub", parent="toolu_1"),
    ]
    summary = summarize(events)
    assert summary["num_turns"] == 1  # subagent messages are not the main agent's turns
    assert summary["session_id"] == "s1"
    assert summary["last_activity"] == "→ Read x"  # no subagent prefix in a one-liner
    (only,) = [summarize([assistant({"type": "text", "text": "word " * 50})])["last_activity"]]
    assert len(only) == 80 and only.endswith("…")

"""Turn Claude Code ``stream-json`` transcripts into lines a person can read.

A task's log (``.orchestra/logs/<task-id>.jsonl``) is the agent's raw stdout: one JSON
object per line, most of it bookkeeping (usage, uuids, capability lists). People
following a task want the story: what the agent said, which tools it ran and how
they went, what was refused, retried or failed, and how the run ended.

This module is stdlib only because fast commands (``status``, ``logs``) import it,
and it returns plain strings tagged with a ``kind`` so a caller can colour them
without parsing them again. Rendering must never raise: logs can be truncated by a
crash, written by a newer CLI with unknown line types, or simply garbage, and a
viewer that dies on line 3000 is worse than one that shows ``raw`` for it.

Everything rendered passes through :func:`mask_secrets`, because tool output can
echo environment variables and these lines end up on screens and in bug reports.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from orchestra.core.redact import mask_secrets

__all__ = [
    "KINDS",
    "Rendered",
    "iter_rendered",
    "render_event",
    "render_file",
    "render_line",
    "render_lines",
    "render_tail",
    "summarize",
    "tail_events",
]

KINDS: frozenset[str] = frozenset(
    {
        "init",
        "text",
        "tool",
        "tool_result",
        "tool_error",
        "denied",
        "retry",
        "error",
        "result",
        "info",
        "raw",
    }
)

# Limits keep one chatty tool from flooding a terminal; every cut says how much went.
_TEXT_LIMIT = 2000  # assistant prose: people do want to read it
_LINE_LIMIT = 160  # a tool's key argument, a result's first line
_JSON_LIMIT = 200  # compact JSON of a tool input
_MESSAGE_LIMIT = 300  # denials, errors, structured output
_ACTIVITY_LIMIT = 80  # summarize()["last_activity"]

_SUBAGENT_PREFIX = "  │ "
_SYNTHETIC_MODEL = "<synthetic>"

# Path-like first argument: show it as the model gave it.
_PATH_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "Read", "NotebookEdit", "NotebookRead"})
# Lines that only exist to keep a UI in sync; showing them would bury the story.
_SILENT_SYSTEM = frozenset({"status", "ui_invalidate", "background_tasks_changed"})
_SILENT_TYPES = frozenset({"stream_event", "keep_alive"})


@dataclass(frozen=True)
class Rendered:
    """One displayable item; ``kind`` lets a caller colour it without re-parsing."""

    kind: str
    text: str


# ANSI escapes and C0 controls from tool output would repaint the viewer's terminal.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C1 too: \x9b is a CSI to some terminals


def _clean(text: str) -> str:
    text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def _sanitize(text: str) -> str:
    return mask_secrets(_clean(text))


# Text is masked before it is cut, over this much beyond the cut: enough for any secret that starts
# before the cut to be seen whole, without masking megabytes of tool output that is never shown.
_MASK_MARGIN = 4096


# --------------------------------------------------------------------------- helpers


def _str(value: Any) -> str:
    """Coerce any JSON value to text, because real logs put numbers/null where text goes."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _compact(value)


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # e.g. circular structures from a caller
        return repr(value)


def _clip(text: str, limit: int) -> str:
    """Cut to ``limit`` chars and say how much was dropped, so nothing vanishes silently."""
    # Mask first: a cut could otherwise leave a key's prefix too short to recognise.
    masked = mask_secrets(text[: limit + _MASK_MARGIN])
    if len(text) <= limit + _MASK_MARGIN and len(masked) <= limit:
        return masked
    return f"{masked[:limit]}… (+{len(text) - limit} chars)"


def _first_line(text: str, limit: int = _LINE_LIMIT) -> str:
    """First non-blank line, clipped, noting how many lines followed."""
    lines = _clean(text).strip().split("\n")
    if not lines or not lines[0].strip():
        return ""
    out = _clip(lines[0].strip(), limit)
    if len(lines) > 1:
        out += f" (+{len(lines) - 1} lines)"
    return out


def _one_line(text: str, limit: int) -> str:
    """Whitespace-collapsed and hard-capped at ``limit`` chars, for fixed-width displays."""
    flat = " ".join(_clean(text).split())
    cut = len(flat) > limit
    flat = mask_secrets(flat[: limit + _MASK_MARGIN])
    return flat if not cut and len(flat) <= limit else flat[: limit - 1] + "…"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(ms: Any) -> str:
    seconds = float(ms) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _content_text(content: Any) -> str:
    """Text of a tool_result/user ``content``: a string or a list of blocks."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in _list(content):
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            if block.get("type") == "text":
                parts.append(_str(block.get("text")))
            elif block.get("type") == "image":
                parts.append("[image]")
    return "\n".join(parts)


# --------------------------------------------------------------------------- tools


def _tool_summary(name: str, tool_input: Any) -> str:
    """``Name <the argument a person recognises the call by>``."""
    if not isinstance(tool_input, dict):
        return f"{name} {_clip(_compact(tool_input), _JSON_LIMIT)}" if tool_input is not None else name
    inp: dict[str, Any] = tool_input

    if name in _PATH_TOOLS:
        path = inp.get("file_path") or inp.get("notebook_path") or inp.get("path")
        if path:
            out = f"{name} {_clip(_str(path), _LINE_LIMIT)}"
            if name == "Read" and (inp.get("offset") is not None or inp.get("limit") is not None):
                out += f" [offset {_str(inp.get('offset')) or 0}, limit {_str(inp.get('limit')) or '-'}]"
            if name == "Edit" and inp.get("replace_all") is True:
                out += " [all]"
            return out

    if name == "Bash" and "command" in inp:
        out = f"Bash: {_first_line(_str(inp.get('command')))}"
        description = _str(inp.get("description")).strip()
        if description:
            out += f" ({_clip(description, 80)})"
        if inp.get("run_in_background") is True:
            out += " [background]"
        return out

    if name in ("Grep", "Glob") and "pattern" in inp:
        out = f"{name} {_clip(_str(inp.get('pattern')), _LINE_LIMIT)}"
        if inp.get("glob"):
            out += f" [{_clip(_str(inp.get('glob')), 60)}]"
        if inp.get("path"):
            out += f" in {_clip(_str(inp.get('path')), _LINE_LIMIT)}"
        return out

    if name in ("Task", "Agent") and ("description" in inp or "subagent_type" in inp):
        agent = _str(inp.get("subagent_type")) or "agent"
        return f"{name} {agent}: {_clip(_str(inp.get('description')), 120)}"

    if name == "WebFetch" and "url" in inp:
        return f"WebFetch {_clip(_str(inp.get('url')), _LINE_LIMIT)}"
    if name == "WebSearch" and "query" in inp:
        return f"WebSearch {_clip(_str(inp.get('query')), _LINE_LIMIT)}"

    if name == "TodoWrite" and isinstance(inp.get("todos"), list):
        todos = [t for t in inp["todos"] if isinstance(t, dict)]
        doing = [t for t in todos if t.get("status") == "in_progress"]
        done = sum(1 for t in todos if t.get("status") == "completed")
        out = f"TodoWrite {done}/{len(todos)} done"
        if doing:
            out += f", now: {_clip(_str(doing[0].get('activeForm') or doing[0].get('content')), 80)}"
        return out

    if not inp:
        return name
    return f"{name} {_clip(_compact(inp), _JSON_LIMIT)}"


def _render_tool_use(block: dict[str, Any]) -> Rendered:
    name = _str(block.get("name")) or "?"
    return Rendered("tool", f"→ {_tool_summary(name, block.get('input'))}")


def _tool_use_result_summary(tur: Any) -> str | None:
    """Prefer the CLI's structured result: it says what happened more plainly than prose."""
    if not isinstance(tur, dict):
        return None
    if "stdout" in tur or "stderr" in tur:  # Bash
        stdout = _str(tur.get("stdout"))
        stderr = _str(tur.get("stderr"))
        if stdout.strip():
            out = _first_line(stdout)
        elif stderr.strip():
            out = f"stderr: {_first_line(stderr)}"
        else:
            out = "(no output)"
        if tur.get("interrupted") is True:
            out += " (interrupted)"
        if tur.get("backgroundTaskId"):
            out += f" (background task {_str(tur.get('backgroundTaskId'))})"
        return out
    kind = tur.get("type")
    file_info = _dict(tur.get("file"))
    if kind in ("create", "update") and tur.get("filePath"):
        verb = "created" if kind == "create" else "updated"
        out = f"{verb} {_clip(_str(tur.get('filePath')), _LINE_LIMIT)}"
        if tur.get("userModified") is True:
            out += " (modified by the user)"
        return out
    if tur.get("filePath") and "oldString" in tur:  # Edit
        out = f"edited {_clip(_str(tur.get('filePath')), _LINE_LIMIT)}"
        if tur.get("userModified") is True:
            out += " (modified by the user)"
        return out
    if kind == "text" and file_info.get("filePath"):  # Read
        out = f"read {_clip(_str(file_info.get('filePath')), _LINE_LIMIT)}"
        num = file_info.get("numLines")
        if _is_number(num):
            out += f" ({_plural(int(num), 'line')})"
        return out
    return None


_TOOL_ERROR_TAG = re.compile(r"</?tool_use_error>")
# "[Request interrupted by user]", "[structured-output-enforce] ...": the CLI's own notes.
_CLI_NOTE = re.compile(r"\[[A-Za-z][^\[\]]*\]")


def _render_tool_result(block: dict[str, Any], tool_use_result: Any) -> Rendered:
    text = _content_text(block.get("content"))
    if block.get("is_error") is True:
        message = _TOOL_ERROR_TAG.sub("", text).strip()
        if message.startswith("Error: "):
            message = message[len("Error: ") :]
        if not message and isinstance(tool_use_result, str):
            message = tool_use_result
        return Rendered("tool_error", f"  ✗ {_first_line(message) or '(error)'}")
    summary = _tool_use_result_summary(tool_use_result)
    if summary is None:
        summary = _first_line(text) or "(empty)"
    return Rendered("tool_result", f"  ← {summary}")


# --------------------------------------------------------------------------- by type


def _render_assistant(event: dict[str, Any]) -> list[Rendered]:
    message = _dict(event.get("message"))
    content = message.get("content")
    synthetic = message.get("model") == _SYNTHETIC_MODEL
    if event.get("is_api_error_message") is True or (
        synthetic and (event.get("error") or event.get("api_error_status") is not None)
    ):
        status = event.get("api_error_status")
        head = "api error" + (f" {_str(status)}" if status is not None else "")
        if event.get("error"):
            head += f" ({_str(event.get('error'))})"
        text = _content_text(content).strip() or "(no message)"
        return [Rendered("error", f"{head}: {_clip(_one_line(text, 10_000), _MESSAGE_LIMIT)}")]

    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    out: list[Rendered] = []
    for block in _list(content):
        if not isinstance(block, dict):
            continue
        btype = block.get("type")
        if btype == "text":
            text = _clean(_str(block.get("text"))).strip()
            if text:
                out.append(Rendered("info" if synthetic else "text", _clip(text, _TEXT_LIMIT)))
        elif btype == "tool_use" or btype == "server_tool_use":
            out.append(_render_tool_use(block))
        elif btype == "thinking":
            thought = _first_line(_str(block.get("thinking")), 120)
            if thought:
                out.append(Rendered("info", f"thinking: {thought}"))
        elif btype == "redacted_thinking":
            continue
        else:
            out.append(Rendered("info", f"({_str(btype) or 'unknown'} block)"))
    return out


def _render_user(event: dict[str, Any]) -> list[Rendered]:
    message = _dict(event.get("message"))
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = [b for b in _list(content) if isinstance(b, dict)]
    results = [b for b in blocks if b.get("type") == "tool_result"]
    # tool_use_result describes the message's only result; with several it is ambiguous.
    tool_use_result = event.get("tool_use_result") if len(results) == 1 else None
    out: list[Rendered] = []
    for block in blocks:
        btype = block.get("type")
        if btype == "tool_result":
            out.append(_render_tool_result(block, tool_use_result))
        elif btype == "text":
            text = _str(block.get("text")).strip()
            if not text:
                continue
            # Anything that is not a CLI note is a prompt (replayed, or a subagent's brief).
            label = "" if _CLI_NOTE.match(text) else "user: "
            out.append(Rendered("info", f"{label}{_first_line(text, 200)}"))
        elif btype == "image":
            out.append(Rendered("info", "user: [image]"))
    return out


def _render_init(event: dict[str, Any]) -> list[Rendered]:
    parts = [
        f"session {_str(event.get('session_id')) or '?'}",
        f"model {_str(event.get('model')) or '?'}",
        _str(event.get("permissionMode")) or "?",
        f"cwd {_str(event.get('cwd')) or '?'}",
    ]
    # A permission-prompt or task MCP server that failed to start explains later refusals.
    broken = [
        f"{_str(s.get('name'))} ({_str(s.get('status'))})"
        for s in _list(event.get("mcp_servers"))
        if isinstance(s, dict) and s.get("status") not in ("connected", None)
    ]
    if broken:
        parts.append("mcp " + ", ".join(broken))
    return [Rendered("init", " · ".join(parts))]


def _render_system(event: dict[str, Any]) -> list[Rendered]:
    subtype = _str(event.get("subtype"))
    if subtype == "init":
        return _render_init(event)
    if subtype == "api_retry":
        status = event.get("error_status")
        cause = _str(status) if status is not None else "timeout"
        text = f"retry {_str(event.get('attempt')) or '?'}/{_str(event.get('max_retries')) or '?'} after {cause}"
        if event.get("error"):
            text += f" {_str(event.get('error'))}"
        delay = event.get("retry_delay_ms")
        if _is_number(delay):
            text += f" (waiting {_seconds(delay)})"
        return [Rendered("retry", text)]
    if subtype == "permission_denied":
        tool = _str(event.get("tool_name")) or "?"
        message = _one_line(_str(event.get("message")), 10_000) or "(no reason given)"
        return [Rendered("denied", f"denied: {tool}: {_clip(message, _MESSAGE_LIMIT)}")]
    if subtype == "model_fallback":
        text = (
            f"model fallback: {_str(event.get('original_model')) or '?'} → {_str(event.get('fallback_model')) or '?'}"
        )
        if event.get("trigger"):
            text += f" ({_str(event.get('trigger'))})"
        return [Rendered("info", text)]
    if subtype == "task_started":
        what = _str(event.get("description")) or _str(event.get("task_id")) or "?"
        text = f"task started: {_clip(what, 120)}"
        if event.get("task_type"):
            text += f" ({_str(event.get('task_type'))})"
        return [Rendered("info", text)]
    if subtype == "task_notification":
        what = _str(event.get("summary")) or _str(event.get("task_id")) or "?"
        status = _str(event.get("status")) or "update"
        return [Rendered("info", f"task {status}: {_clip(what, 120)}")]
    if subtype == "task_updated":
        status = _str(event.get("status"))
        if not status:
            return []
        return [Rendered("info", f"task {status}: {_str(event.get('task_id')) or '?'}")]
    if subtype == "compact_boundary":
        meta = _dict(event.get("compact_metadata"))
        text = "context compacted"
        details = [_str(meta.get("trigger"))]
        if _is_number(meta.get("pre_tokens")):
            details.append(f"{int(meta['pre_tokens'])} tokens before")
        details = [d for d in details if d]
        if details:
            text += f" ({', '.join(details)})"
        return [Rendered("info", text)]
    if subtype in _SILENT_SYSTEM:
        return []
    return [Rendered("info", f"system/{subtype or '?'}")]


def _render_result(event: dict[str, Any]) -> list[Rendered]:
    subtype = _str(event.get("subtype")) or "?"
    is_error = event.get("is_error") is True
    result_text = _one_line(_str(event.get("result")), 10_000)
    errors = "; ".join(_one_line(_str(e), 10_000) for e in _list(event.get("errors")) if e)
    status = event.get("api_error_status")

    if subtype == "success" and not is_error:
        head = "✓ success"
    elif subtype == "success" and (status is not None or event.get("terminal_reason") == "api_error"):
        # The CLI reports API failures as "success" + is_error (PROTOCOL §3).
        head = "✗ api error" + (f" {_str(status)}" if status is not None else "")
        head += f": {_clip(result_text or errors or '(no message)', _MESSAGE_LIMIT)}"
    else:
        head = f"✗ {subtype if subtype != 'success' else 'error'}"
        reason = _str(event.get("terminal_reason"))
        if subtype == "error_during_execution" and reason:
            head += f" ({reason})"
        detail = errors or result_text
        if detail:
            head += f": {_clip(detail, _MESSAGE_LIMIT)}"

    parts = [head]
    turns = event.get("num_turns")
    if _is_number(turns):
        parts.append(_plural(int(turns), "turn"))
    cost = event.get("total_cost_usd")
    if _is_number(cost):
        parts.append(f"${cost:.4f}")
    duration = event.get("duration_ms")
    if _is_number(duration):
        parts.append(_seconds(duration))
    denials = _list(event.get("permission_denials"))
    if denials:
        tools = sorted({_str(_dict(d).get("tool_name")) or "?" for d in denials})
        parts.append(f"{_plural(len(denials), 'permission denial')} ({', '.join(tools)})")
    out = [Rendered("result", " · ".join(parts))]
    if "structured_output" in event:  # only present with --json-schema; null means "not given"
        out.append(
            Rendered("result", f"structured_output: {_clip(_compact(event['structured_output']), _MESSAGE_LIMIT)}")
        )
    return out


def _render_control_request(event: dict[str, Any]) -> list[Rendered]:
    request = _dict(event.get("request"))
    subtype = _str(request.get("subtype")) or "?"
    if subtype == "can_use_tool":
        tool = _str(request.get("tool_name")) or "?"
        return [Rendered("info", f"permission asked: {_tool_summary(tool, request.get('input'))}")]
    return [Rendered("info", f"control request: {subtype}")]


def _render_control_response(event: dict[str, Any]) -> list[Rendered]:
    response = _dict(event.get("response"))
    subtype = _str(response.get("subtype")) or "?"
    if subtype == "error":
        return [Rendered("info", f"control response: error: {_clip(_str(response.get('error')), _MESSAGE_LIMIT)}")]
    inner = _dict(response.get("response"))
    if inner.get("behavior"):  # our own answer to can_use_tool, when stdin is logged too
        text = f"control response: {_str(inner.get('behavior'))}"
        if inner.get("message"):
            text += f": {_clip(_one_line(_str(inner.get('message')), 10_000), _MESSAGE_LIMIT)}"
        return [Rendered("info", text)]
    return [Rendered("info", f"control response: {subtype}")]


def _render_unprefixed(event: dict[str, Any]) -> list[Rendered]:
    etype = event.get("type")
    if etype == "assistant":
        return _render_assistant(event)
    if etype == "user":
        return _render_user(event)
    if etype == "system":
        return _render_system(event)
    if etype == "result":
        return _render_result(event)
    if etype == "control_request":
        return _render_control_request(event)
    if etype == "control_response":
        return _render_control_response(event)
    if etype == "control_cancel_request":
        return [Rendered("info", "control request cancelled")]
    if not isinstance(etype, str) or not etype:
        return [Rendered("info", f"(line without type) {_clip(_compact(event), _JSON_LIMIT)}")]
    if etype in _SILENT_TYPES:
        return []
    return [Rendered("info", f"({_clip(etype, 60)})")]


def _finish(items: list[Rendered], subagent: bool) -> list[Rendered]:
    out = []
    for item in items:
        text = _sanitize(item.text).rstrip("\n")
        if subagent:
            text = "\n".join(_SUBAGENT_PREFIX + line for line in text.split("\n"))
        out.append(Rendered(item.kind, text))
    return out


def _safe_render(event: dict[str, Any]) -> list[Rendered]:
    try:
        return _render_unprefixed(event)
    except Exception:
        return [Rendered("raw", _clip(_compact(event), _JSON_LIMIT))]


# --------------------------------------------------------------------------- public API


def render_event(event: dict[str, Any]) -> list[Rendered]:
    """Render one parsed stdout line; unknown or malformed input degrades, never raises."""
    if not isinstance(event, dict):
        return _finish([Rendered("raw", _clip(_compact(event), _JSON_LIMIT))], False)
    subagent = event.get("parent_tool_use_id") not in (None, "")
    return _finish(_safe_render(event), subagent)


def render_line(line: str) -> list[Rendered]:
    """Render one raw log line; crash-truncated or non-JSON lines come back as ``raw``."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    if not isinstance(line, str):
        return [Rendered("raw", _sanitize(_clip(repr(line), _LINE_LIMIT)))]
    stripped = line.strip()
    if not stripped:
        return []
    try:
        event = json.loads(stripped)
    except (ValueError, RecursionError):
        return [Rendered("raw", _sanitize(_clip(_one_line(stripped, 100_000), _LINE_LIMIT)))]
    return render_event(event)


def render_lines(lines: Iterable[str]) -> Iterator[Rendered]:
    """Lazy, so a caller can stream a long log without holding its rendering."""
    for line in lines:
        yield from render_line(line)


CHUNK_BYTES = 1024 * 1024


def render_file(
    path: Path, offset: int = 0, *, include_partial: bool = False, max_bytes: int = CHUNK_BYTES
) -> tuple[list[Rendered], int]:
    """Render the complete lines after ``offset``, reading at most ``max_bytes``; returns (items, new offset).

    Callers loop until the offset stops moving, so a transcript of any size is rendered
    with fixed memory. A line longer than ``max_bytes`` is shown as cut, not held whole.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            if offset < 0 or offset > size:
                offset = 0
            fh.seek(offset)
            data = fh.read(max_bytes)
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    if include_partial and len(data) < max_bytes:
        end = len(data)
    elif not end and len(data) >= max_bytes:
        # One enormous line: say so and skip past it rather than hold it.
        nl = _find_newline(path, offset + len(data))
        skipped = (nl + 1 if nl is not None else size) - offset
        return [Rendered("raw", f"(a transcript line of {skipped} bytes is not shown)")], offset + skipped
    rendered: list[Rendered] = []
    for raw in data[:end].split(b"\n"):
        rendered.extend(render_line(raw.decode("utf-8", errors="replace")))
    return rendered, offset + end


_SAFE_CUT = re.compile(rb"[\s\"'`<>()\[\]{},\\]")


def raw_chunk(
    path: Path, offset: int = 0, *, include_partial: bool = False, max_bytes: int = CHUNK_BYTES
) -> tuple[bytes, int]:
    """The raw stream-json after ``offset``, masked, at most ``max_bytes`` at a time; returns (bytes, new offset).

    Whole lines only (plus a last partial one with ``include_partial``). A line longer than
    ``max_bytes`` comes out in pieces cut where no secret can straddle (quotes, spaces, commas),
    so a transcript of any size is copied with fixed memory. Bytes that are not UTF-8 pass through.
    """
    try:
        with Path(path).open("rb") as fh:
            size = fh.seek(0, 2)
            if offset < 0 or offset > size:
                offset = 0
            fh.seek(offset)
            data = fh.read(max_bytes)
    except FileNotFoundError:
        return b"", offset
    end = data.rfind(b"\n") + 1
    if include_partial and len(data) < max_bytes:
        end = len(data)
    elif not end and len(data) >= max_bytes:
        cuts = [m.end() for m in _SAFE_CUT.finditer(data, max(0, len(data) - 64 * 1024))]
        end = cuts[-1] if cuts else len(data)
    if not end:
        return b"", offset
    text = data[:end].decode("utf-8", "surrogateescape")
    return mask_secrets(text).encode("utf-8", "surrogateescape"), offset + end


def _find_newline(path: Path, start: int) -> int | None:
    with path.open("rb") as fh:
        fh.seek(start)
        pos = start
        while True:
            block = fh.read(CHUNK_BYTES)
            if not block:
                return None
            i = block.find(b"\n")
            if i >= 0:
                return pos + i
            pos += len(block)


def iter_rendered(path: Path, offset: int = 0, *, include_partial: bool = False) -> Iterator[Rendered]:
    """Every rendered item after ``offset``, a chunk at a time."""
    while True:
        items, new = render_file(path, offset, include_partial=include_partial)
        yield from items
        if new == offset:
            return
        offset = new


def render_tail(path: Path, max_bytes: int, *, include_partial: bool = False) -> tuple[list[Rendered], bool]:
    """The rendered last ``max_bytes`` of a transcript, and whether earlier lines were left out."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        return [], False
    start = max(0, size - max_bytes)
    if start:
        nl = _find_newline(Path(path), start)
        start = nl + 1 if nl is not None else size
    items: list[Rendered] = []
    offset = start
    while offset < size:
        chunk, new = render_file(path, offset, include_partial=include_partial)
        items.extend(chunk)
        if new == offset:
            break
        offset = new
    return items, start > 0


def relative_paths(text: str, base: str | None) -> str:
    """`text` with the absolute paths under `base` (a task's worktree) written relative to it.

    Agents name files by absolute path; in an 80-column line `/home/me/repo/.orchestra/
    worktrees/abc123/src/app.py` leaves no room for what the agent did with it.
    """
    if not base or not text:
        return text
    base = base.rstrip("/")
    return text.replace(base + "/", "").replace(base, ".")


def summarize(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Fold a run's events into what a one-line status display needs.

    ``num_turns`` counts distinct main-agent message ids (the CLI writes one line per
    content block) until a result gives the authoritative number.
    """
    session_id: str | None = None
    message_ids: set[str] = set()
    cost: float | None = None
    last_activity: str | None = None
    result: dict[str, Any] | None = None

    for event in events:
        if not isinstance(event, dict):
            continue
        sid = event.get("session_id")
        if isinstance(sid, str) and sid and session_id is None:
            session_id = sid
        etype = event.get("type")
        if etype == "assistant":
            message = _dict(event.get("message"))
            if event.get("parent_tool_use_id") in (None, "") and isinstance(message.get("id"), str):
                message_ids.add(message["id"])
            for item in _safe_render(event):
                if item.kind in ("text", "tool", "error"):
                    last_activity = _one_line(item.text, _ACTIVITY_LIMIT)
        elif etype == "result":
            result = event
            total = event.get("total_cost_usd")
            cost = float(total) if _is_number(total) else None

    num_turns: int = len(message_ids)
    if result is not None and _is_number(result.get("num_turns")):
        num_turns = int(result["num_turns"])
    return {
        "session_id": session_id,
        "num_turns": num_turns,
        "cost_usd": cost,
        "last_activity": last_activity,
        "result": result,
    }


TAIL_BYTES = 256 * 1024


def tail_events(path: Path, offset: int = 0, max_bytes: int = TAIL_BYTES) -> tuple[list[dict[str, Any]], bool]:
    """The JSON objects of a log after ``offset``, reading at most the last ``max_bytes``.

    Status displays poll this for every live task, so a log of many megabytes must
    cost no more than a small one. Returns ``(events, complete)``; ``complete`` is
    False when the start was cut, so counts taken from the events are lower bounds.
    """
    try:
        with Path(path).open("rb") as fh:
            size = fh.seek(0, 2)
            if offset < 0 or offset > size:
                offset = 0
            start = max(offset, size - max_bytes)
            fh.seek(start)
            data = fh.read(size - start)
    except OSError:
        return [], True
    complete = start == offset
    if not complete:
        data = data[data.find(b"\n") + 1 :]  # the first line was cut
    events = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events, complete

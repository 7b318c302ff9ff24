"""What a Claude Code run's stream-json says happened.

The last `result` line decides the outcome, success meaning subtype "success" and
not is_error; a run without a result line failed whatever its exit code. Logs can be
hundreds of megabytes: they are streamed, and only the lines that matter are parsed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Outcome/Task attribute -> key of the result line's `usage` object.
TOKEN_KEYS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_input_tokens",
    "cache_creation_tokens": "cache_creation_input_tokens",
}


@dataclass
class Outcome:
    has_result: bool = False
    succeeded: bool = False
    session_id: str | None = None
    subtype: str | None = None
    is_error: bool = False
    result: str | None = None
    errors: list[str] = field(default_factory=list)
    cost_usd: float | None = None
    num_turns: int | None = None
    permission_denials: list[dict[str, Any]] = field(default_factory=list)
    api_error_status: int | None = None
    terminal_reason: str | None = None
    structured_output: Any = None
    assistant_messages: int = 0
    last_error_text: str | None = None
    api_error_kind: str | None = None  # the synthetic error line's `error`, or the result's api_error_type
    api_retry_errors: list[str] = field(default_factory=list)  # `error` of each system/api_retry line
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    init_seen: bool = False
    sandbox_enabled: bool | None = None  # the first init line's `sandbox_enabled`

    def failure_reason(self, exit_code: int | None) -> str:
        if not self.has_result:
            how = f"exited with code {exit_code}" if exit_code is not None else "ended"
            detail = f" ({self.last_error_text})" if self.last_error_text else ""
            return f"claude {how} without a result{detail}"
        if self.subtype == "error_max_budget_usd" or self.terminal_reason == "budget_exhausted":
            spent = f"${self.cost_usd:.4f}" if self.cost_usd is not None else "its budget"
            detail = f" ({'; '.join(_one_line(e) for e in self.errors)})" if self.errors else ""
            return f"budget exhausted: the run spent {spent} and hit --max-budget-usd{detail}"
        if self.api_error_status is not None or self.terminal_reason == "api_error":
            status = self.api_error_status if self.api_error_status is not None else "timeout"
            return f"API error {status}: {_one_line(self.result)}"
        if self.errors:
            return f"{self.subtype}: {'; '.join(_one_line(e) for e in self.errors)}"
        if self.is_error:
            return f"{self.subtype or 'error'}: {_one_line(self.result)}"
        return f"claude result {self.subtype}"


def stderr_reason(path: Path, offset: int) -> str | None:
    """The last line a run wrote on stderr after `offset`: why the CLI stopped before any stream-json
    (an unknown option, bypassPermissions as root). None when it wrote nothing."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(offset, size - 4096))
            data = fh.read()
    except OSError:
        return None
    for line in reversed(data.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return _one_line(line)
    return None


def _one_line(text: object, limit: int = 300) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


_MESSAGE_ID = re.compile(rb'"message":\s*\{"id":\s*"([^"]+)"|"id":\s*"(msg_[^"]+)"')
_INTERESTING = (b'"result"', b'"init"', b'"api_retry"', b"<synthetic>", b"is_api_error_message")


def read_outcome(log_path: Path, offset: int = 0) -> Outcome:
    """Interpret the stream-json a run appended to the log after `offset`, in one streaming pass."""
    out = Outcome()
    message_ids: set[bytes] = set()
    try:
        fh = open(log_path, "rb")  # noqa: SIM115 - a missing log is an empty outcome, not an error
    except FileNotFoundError:
        return out
    with fh:
        fh.seek(offset)
        for raw in fh:
            if not any(marker in raw for marker in _INTERESTING):
                if b'"assistant"' in raw[:200]:
                    m = _MESSAGE_ID.search(raw, 0, 600)
                    if m:
                        message_ids.add(m.group(1) or m.group(2))
                if out.session_id is None:
                    m = _SESSION_ID.search(raw)
                    if m:
                        out.session_id = m.group(1).decode("utf-8", "replace")
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if isinstance(event.get("session_id"), str) and not out.session_id:
                out.session_id = event["session_id"]
            if kind == "system" and event.get("subtype") == "init":
                out.session_id = event.get("session_id") or out.session_id
                if not out.init_seen:
                    out.init_seen = True
                    out.sandbox_enabled = event.get("sandbox_enabled") is True
            elif kind == "assistant":
                msg = event.get("message") or {}
                if isinstance(msg, dict):
                    if msg.get("id"):
                        message_ids.add(str(msg["id"]).encode())
                    if event.get("is_api_error_message") or msg.get("model") == "<synthetic>":
                        if isinstance(event.get("error"), str):
                            out.api_error_kind = event["error"]
                        for block in msg.get("content") or []:
                            if isinstance(block, dict) and block.get("type") == "text":
                                out.last_error_text = _one_line(block.get("text"))
            elif kind == "system" and event.get("subtype") == "api_retry":
                out.api_retry_errors.append(str(event.get("error") or "unknown"))
            elif kind == "result":
                _apply_result(out, event)
    out.assistant_messages = len(message_ids)
    return out


_SESSION_ID = re.compile(rb'"session_id":\s*"([^"]+)"')
INIT_SCAN_BYTES = 1 << 20


def read_init(log_path: Path, offset: int = 0) -> dict[str, Any] | None:
    """The run's `system/init` line (after `offset`), or None while it has not been written.

    Claude Code writes it before its first model call; only the first MB is looked at.
    """
    try:
        fh = open(log_path, "rb")  # noqa: SIM115
    except OSError:
        return None
    with fh:
        fh.seek(offset)
        data = fh.read(INIT_SCAN_BYTES)
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n") or b'"init"' not in raw:
            continue  # a line still being written
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "system" and event.get("subtype") == "init":
            return event
    return None


def _apply_result(out: Outcome, event: dict[str, Any]) -> None:
    out.has_result = True
    out.subtype = event.get("subtype")
    out.is_error = bool(event.get("is_error"))
    out.succeeded = out.subtype == "success" and not out.is_error
    result = event.get("result")
    out.result = result if isinstance(result, str) else None
    errors = event.get("errors")
    out.errors = [str(e) for e in errors] if isinstance(errors, list) else []
    cost = event.get("total_cost_usd")
    out.cost_usd = float(cost) if isinstance(cost, (int, float)) else None
    turns = event.get("num_turns")
    out.num_turns = int(turns) if isinstance(turns, int) else None
    denials = event.get("permission_denials")
    out.permission_denials = [d for d in denials if isinstance(d, dict)] if isinstance(denials, list) else []
    status = event.get("api_error_status")
    out.api_error_status = status if isinstance(status, int) else None
    out.terminal_reason = event.get("terminal_reason")
    if isinstance(event.get("api_error_type"), str):
        out.api_error_kind = out.api_error_kind or event["api_error_type"]
    out.structured_output = event.get("structured_output")
    usage = event.get("usage")
    if isinstance(usage, dict):
        for name, key in TOKEN_KEYS.items():
            value = usage.get(key)
            setattr(out, name, value if isinstance(value, int) and not isinstance(value, bool) else None)
    if isinstance(event.get("session_id"), str):
        out.session_id = event["session_id"]

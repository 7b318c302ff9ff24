"""The Claude Code adapter: the argv for a run, the process, and what its stream-json means.

Facts relied on (shared/claude-code/PROTOCOL.md): stream-json output needs
--verbose; stdin must be /dev/null or the CLI reads it into the prompt; the last
`result` line decides the outcome, success meaning subtype "success" and not
is_error; a run without a result line failed whatever its exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from orchestra.errors import OrchestraError
from orchestra.fileio import private_opener
from orchestra.roles import READ_ONLY_TOOLS, VERDICT_SCHEMA, Role

RESUME_PROMPT = (
    "Your previous run on this task was interrupted before it finished (the orchestrator "
    "restarted or the process died). Check the state of the worktree, then continue the "
    "task from where you left off and finish it."
)


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


def _one_line(text: object, limit: int = 300) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def build_argv(
    binary: str,
    role: Role,
    prompt: str,
    *,
    system_prompt: str,
    extra_args: list[str] | None = None,
    resume: str | None = None,
    max_budget_usd: float | None = None,
) -> list[str]:
    argv = [binary, "-p", "--output-format", "stream-json", "--verbose"]
    if role.permission_mode and role.permission_mode != "default":
        argv += ["--permission-mode", role.permission_mode]
    tools = role.tools
    if role.produces == "verdict":
        # A verdict role only reads, whatever a role file says: enforced by the CLI's whitelist.
        tools = [t for t in (tools if tools is not None else READ_ONLY_TOOLS) if t in READ_ONLY_TOOLS]
        argv += ["--json-schema", json.dumps(VERDICT_SCHEMA, separators=(",", ":"))]
    if tools is not None:
        argv += ["--tools", ",".join(tools)]
    settings = role.settings()
    if settings:
        argv += ["--settings", json.dumps(settings)]
    if role.max_turns:
        argv += ["--max-turns", str(role.max_turns)]
    if resume:
        argv += ["--resume", resume]
    if max_budget_usd is not None:
        argv += ["--max-budget-usd", format_usd(max_budget_usd)]
    argv += ["--append-system-prompt", system_prompt]
    argv += list(extra_args or [])
    # The prompt always follows "--": a prompt starting with "-" would otherwise be read as a flag.
    argv += ["--", prompt]
    return argv


def format_usd(value: float) -> str:
    """A plain decimal for the CLI: never an exponent, never more than cents' fractions."""
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def resolve_binary(binary: str) -> str:
    if os.sep in binary:
        path = Path(binary).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        raise OrchestraError(f"claude binary not found or not executable: {binary}")
    found = shutil.which(binary)
    if not found:
        raise OrchestraError(
            f"claude binary not found: {binary!r} is not on PATH "
            "(install Claude Code or set ORCHESTRA_CLAUDE / claude_binary)"
        )
    return found


def spawn(
    argv: list[str], cwd: Path, log_path: Path, stderr_path: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start the agent in its own session, writing straight to files it keeps after we die."""
    with open(log_path, "ab", opener=private_opener) as out, open(stderr_path, "ab", opener=private_opener) as err:
        try:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise OrchestraError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None


def read_outcome(log_path: Path, offset: int = 0) -> Outcome:
    """Interpret the stream-json a run appended to the log after `offset`."""
    out = Outcome()
    message_ids: set[str] = set()
    try:
        fh = open(log_path, "rb")
    except FileNotFoundError:
        return out
    with fh:
        fh.seek(offset)
        for raw in fh:
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
            elif kind == "assistant":
                msg = event.get("message") or {}
                if isinstance(msg, dict):
                    if msg.get("id"):
                        message_ids.add(str(msg["id"]))
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

"""One Claude Code run: the argv for it and the process.

Facts relied on (shared/claude-code/PROTOCOL.md): stream-json output needs
--verbose; stdin must be /dev/null or the CLI reads it into the prompt; a prompt
after `--` can start with '-'.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestra.agent import sandbox as sandboxing
from orchestra.core.errors import OrchestraError
from orchestra.core.roles import READ_ONLY_TOOLS, VERDICT_SCHEMA, Role
from orchestra.store.files import private_opener

RESUME_PROMPT = (
    "Your previous run on this task was interrupted before it finished (the orchestrator "
    "restarted or the process died). Check the state of the worktree, then continue the "
    "task from where you left off and finish it."
)


def build_argv(
    binary: str,
    role: Role,
    prompt: str,
    *,
    system_prompt: str,
    extra_args: list[str] | None = None,
    resume: str | None = None,
    max_budget_usd: float | None = None,
    sandbox: dict[str, Any] | None = None,
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
    if settings and role.produces != "verdict":
        settings["permissions"].update(sandboxing.PERMISSION_SETTINGS)
    if sandbox:
        settings = {**(settings or {}), "sandbox": sandbox}
    if settings:
        argv += ["--settings", json.dumps(settings)]
    argv += list(sandboxing.CLI_FLAGS)
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


INSTALL_HINT = "install Claude Code or set ORCHESTRA_CLAUDE / claude_binary"


def resolve_binary(binary: str) -> str:
    if os.sep in binary:
        path = Path(binary).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        raise OrchestraError(f"claude binary not found or not executable: {binary}")
    found = shutil.which(binary)
    if not found:
        raise OrchestraError(f"claude binary not found: {binary!r} is not on PATH ({INSTALL_HINT})")
    return found


def version(binary: str, timeout: float = 20.0) -> str:
    """`claude --version`'s answer; raises OrchestraError saying why the CLI does not run.

    A binary that is on PATH but broken (a half-finished npm install, a wrong Node)
    fails every task the same way; `doctor` finds that once, before a queue of them.
    """
    path = resolve_binary(binary)
    try:
        proc = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise OrchestraError(f"{binary} --version did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise OrchestraError(f"cannot run {binary}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise OrchestraError(f"{binary} --version exited {proc.returncode}" + (f": {said[-1][:200]}" if said else ""))
    return (proc.stdout.strip().splitlines() or ["?"])[0][:100]


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
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise OrchestraError(f"cannot start {argv[0]}: {why}") from None

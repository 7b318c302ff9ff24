"""The user's `on_event` command: told when a task needs input, succeeds, fails or times out.

The command is the user's own config string, run with `sh -c`; task data never
enters it. It arrives as environment variables and as JSON on stdin, so a title
full of quotes or `$(...)` stays data. A failing or hanging hook is logged and
otherwise ignored: a notification must never decide a task's fate.
"""

from __future__ import annotations

import json
import os
from typing import Any

from orchestra.agent import processes
from orchestra.core.redact import mask_data, mask_secrets
from orchestra.core.task import Task
from orchestra.engine.context import Context

EVENTS = ("needs_input", "succeeded", "failed", "timed_out")
HOOK_TIMEOUT = 60.0


def fire(ctx: Context, event: str, task: Task, *, request: dict[str, Any] | None = None) -> bool:
    """Run the hook; True when it ran and exited 0, False when it failed or none is set."""
    command = ctx.config.on_event
    if not command or event not in EVENTS:
        return False
    env = dict(os.environ)
    env.update(
        {
            "ORCHESTRA_EVENT": event,
            "ORCHESTRA_TASK_ID": task.id,
            "ORCHESTRA_TASK_STATE": str(task.state),
            "ORCHESTRA_TASK_ROLE": task.role,
            "ORCHESTRA_TASK_TITLE": task.title,
            "ORCHESTRA_TASK_BRANCH": task.branch,
            "ORCHESTRA_TASK_ERROR": task.error or "",
            "ORCHESTRA_REPO": str(ctx.root),
        }
    )
    if request is not None:
        env["ORCHESTRA_REQUEST_TOOL"] = str(request.get("tool_name"))
    # Agent text (an error) may hold a NUL byte, which no environment can carry.
    env = {k: v.replace("\0", "\\0") for k, v in env.items()}
    payload = {"event": event, "task": mask_data(task.to_dict())}
    if request is not None:
        payload["request"] = mask_data(request)
    try:
        code, out = processes.run_captured(
            ["sh", "-c", command], ctx.root, env, HOOK_TIMEOUT, json.dumps(payload, default=str).encode()
        )
    except (OSError, ValueError) as exc:
        code, out = -1, str(getattr(exc, "strerror", None) or exc)
    error = None
    if code is None:
        error = f"timed out after {HOOK_TIMEOUT:.0f}s"
    elif code != 0:
        out = out.strip()
        error = f"exit {code}" + (f": {mask_secrets(out)[-500:]}" if out else "")
    if error:
        ctx.store.append_event(task.id, "on_event_failed", hook_event=event, error=error)
    else:
        ctx.store.append_event(task.id, "on_event", hook_event=event)
    return error is None

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

from orchestra import processes
from orchestra.config import Config
from orchestra.paths import Paths
from orchestra.task import Task

EVENTS = ("needs_input", "succeeded", "failed", "timed_out")
HOOK_TIMEOUT = 60.0


def fire(
    paths: Paths,
    config: Config,
    event: str,
    task: Task,
    *,
    request: dict[str, Any] | None = None,
    store: Any = None,
) -> bool:
    """Run the hook; True when it ran and exited 0, False when it failed or none is set."""
    command = config.on_event
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
            "ORCHESTRA_REPO": str(paths.root),
        }
    )
    if request is not None:
        env["ORCHESTRA_REQUEST_TOOL"] = str(request.get("tool_name"))
    payload = {"event": event, "task": task.to_dict()}
    if request is not None:
        payload["request"] = request
    try:
        code, out = processes.run_captured(
            ["sh", "-c", command], paths.root, env, HOOK_TIMEOUT, json.dumps(payload, default=str).encode()
        )
    except OSError as exc:
        code, out = -1, str(exc.strerror or exc)
    error = None
    if code is None:
        error = f"timed out after {HOOK_TIMEOUT:.0f}s"
    elif code != 0:
        out = out.strip()
        error = f"exit {code}" + (f": {out[-500:]}" if out else "")
    if store is not None:
        if error:
            store.append_event(task.id, "on_event_failed", hook_event=event, error=error)
        else:
            store.append_event(task.id, "on_event", hook_event=event)
    return error is None

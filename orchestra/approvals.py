"""Permission requests waiting for a person, as files under `.orchestra/requests/<task>/`.

The permission server (running beside the agent) writes a request and polls it;
`orchestra respond` writes the answer into the same file. Both sides change a
request only under the store lock, so an answer and a timeout cannot both win, and
the task's `awaiting_input` state changes in the same locked step.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from orchestra.errors import InvalidInput, OrchestraError
from orchestra.fileio import write_atomic
from orchestra.paths import Paths
from orchestra.store import Store
from orchestra.task import State, Task, now, validate_id

PENDING = "pending"
ALLOWED = "allowed"
DENIED = "denied"
TIMED_OUT = "timed_out"
ABANDONED = "abandoned"


def _file(paths: Paths, task_id: str, request_id: str) -> Path:
    return paths.request_dir(validate_id(task_id)) / f"{validate_id(request_id)}.json"


def read(paths: Paths, task_id: str, request_id: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_file(paths, task_id, request_id).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(paths: Paths, request: dict[str, Any]) -> None:
    directory = paths.request_dir(request["task_id"])
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(_file(paths, request["task_id"], request["id"]), json.dumps(request, indent=1).encode())


def pending(paths: Paths, task: Task) -> list[dict[str, Any]]:
    """Unanswered requests of the task's current run, oldest first."""
    directory = paths.request_dir(task.id)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("*.json"):
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("state") == PENDING and data.get("attempt") == task.attempts:
            found.append(data)
    found.sort(key=lambda r: (r.get("created_at") or 0, r.get("id") or ""))
    return found


def open_request(
    store: Store, task_id: str, tool_name: str, tool_input: dict[str, Any], tool_use_id: str | None, timeout: float
) -> dict[str, Any] | None:
    """Record a request and put the task in awaiting_input; None when the task is not running."""
    with store.locked():
        task = store.load(task_id)
        if task.state not in (State.RUNNING, State.AWAITING_INPUT):
            return None
        created = now()
        request = {
            "id": "r" + secrets.token_hex(6),
            "task_id": task.id,
            "attempt": task.attempts,
            "tool_name": tool_name,
            "input": tool_input,
            "tool_use_id": tool_use_id,
            "created_at": created,
            "deadline": round(created + timeout, 3),
            "state": PENDING,
        }
        _write(store.paths, request)
        if task.state == State.RUNNING:
            task.state = State.AWAITING_INPUT
            task.extra["awaiting_since"] = created
        store.save(task, "awaiting_input", request=request["id"], tool=tool_name)
        return request


def answer(
    store: Store, task_id: str, *, allow: bool, message: str | None = None, always_rule: str | None = None
) -> dict[str, Any]:
    """A person's answer to the oldest pending request; the permission server picks it up."""
    with store.locked():
        task = store.load(task_id)
        waiting = pending(store.paths, task) if task.state == State.AWAITING_INPUT else []
        if not waiting:
            raise InvalidInput(f"task {task.id} has no pending permission request (it is {task.state})")
        request = waiting[0]
        request.update(
            state=ALLOWED if allow else DENIED,
            message=message,
            always=bool(always_rule),
            answered_at=now(),
        )
        _write(store.paths, request)
        if always_rule:
            rules = task.extra.setdefault("always_allow", [])
            if always_rule not in rules:
                rules.append(always_rule)
        store.save(
            task,
            "input_answered",
            request=request["id"],
            decision=request["state"],
            always=always_rule,
        )
        return request


def close(store: Store, task_id: str, request_id: str, *, timed_out: bool = False) -> dict[str, Any]:
    """Settle a request (answered, or now timed out) and resume the task if nothing else waits."""
    with store.locked():
        request = read(store.paths, task_id, request_id)
        if request is None:
            raise OrchestraError(f"permission request {request_id} of task {task_id} disappeared")
        if request.get("state") == PENDING and timed_out:
            request.update(state=TIMED_OUT, answered_at=now())
            _write(store.paths, request)
        task = store.load(task_id)
        if task.state == State.AWAITING_INPUT and not pending(store.paths, task):
            since = task.extra.pop("awaiting_since", None)
            if since:
                task.extra["input_wait"] = [task.attempts, round(_waited_before(task) + now() - since, 3)]
            task.state = State.RUNNING
            store.save(task, "input_done", request=request_id, decision=request.get("state"))
        elif request.get("state") == TIMED_OUT:
            store.append_event(task_id, "input_done", request=request_id, decision=TIMED_OUT)
        return request


def abandon(store: Store, task_id: str, request_id: str) -> None:
    """The agent went away while asking; keep the record, drop it from what waits."""
    with store.locked():
        request = read(store.paths, task_id, request_id)
        if request is not None and request.get("state") == PENDING:
            request.update(state=ABANDONED, answered_at=now())
            _write(store.paths, request)


def describe(request: dict[str, Any], width: int = 200) -> str:
    """One line naming the tool and what it would do, secrets masked."""
    from orchestra.transcript import mask_secrets

    tool = str(request.get("tool_name"))
    data = request.get("input") if isinstance(request.get("input"), dict) else {}
    if isinstance(data.get("command"), str):
        detail = data["command"]
    elif isinstance(data.get("file_path"), str):
        detail = data["file_path"]
    else:
        detail = json.dumps(data, ensure_ascii=False, sort_keys=True)
    text = mask_secrets(" ".join(f"{tool}: {detail}".split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def time_waited(task: Task, at: float | None = None) -> float:
    """Seconds this run spent waiting for a person; the wall-clock limit does not count them."""
    waited = _waited_before(task)
    since = task.extra.get("awaiting_since")
    if task.state == State.AWAITING_INPUT and since:
        waited += max((at or now()) - float(since), 0.0)
    return waited


def _waited_before(task: Task) -> float:
    record = task.extra.get("input_wait")
    if isinstance(record, list) and len(record) == 2 and record[0] == task.attempts:
        return float(record[1])
    return 0.0

"""Permission requests as files: the channel between an agent's permission server and a person.

A request directory holds, per request, `<rid>.json` (written once by the permission
server beside the agent) and `<rid>.answer.json` (the decision). The answer file is
created by a hard link that fails when it exists, so the first decision wins: a
person's answer and the server's timeout can never both take effect, and no lock is
needed across processes or machines. `always.json` lists the rules a person allowed
for the rest of the task. Tool input is stored masked; the server keeps the original
in memory to hand back to Claude Code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from orchestra.core.redact import mask_data, mask_secrets
from orchestra.core.task import now, validate_id
from orchestra.store.files import unlink_quietly, write_atomic

PENDING = "pending"
ALLOWED = "allowed"
DENIED = "denied"
TIMED_OUT = "timed_out"
ABANDONED = "abandoned"
DECISIONS = (ALLOWED, DENIED, TIMED_OUT, ABANDONED)
BY_RULE = "rule"  # decided by a rule a person allowed for the rest of the task


def new_request_id() -> str:
    return "r" + os.urandom(6).hex()


def _request_file(directory: Path, rid: str) -> Path:
    return directory / f"{validate_id(rid)}.json"


def _answer_file(directory: Path, rid: str) -> Path:
    return directory / f"{validate_id(rid)}.answer.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_request(directory: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Record a new request (its tool input masked); returns what was written."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stored = dict(request)
    stored["input"] = mask_data(request.get("input") or {})
    stored.setdefault("created_at", now())
    write_atomic(_request_file(directory, stored["id"]), json.dumps(stored, indent=1, default=str).encode())
    return stored


def read_request(directory: Path, rid: str) -> dict[str, Any] | None:
    return _read(_request_file(directory, rid))


def read_answer(directory: Path, rid: str) -> dict[str, Any] | None:
    return _read(_answer_file(directory, rid))


def answer(
    directory: Path, rid: str, state: str, *, message: str | None = None, always: str | None = None, by: str = "person"
) -> tuple[dict[str, Any], bool]:
    """Decide a request unless it is decided already; returns (the decision in force, whether it is ours)."""
    if state not in DECISIONS:
        raise ValueError(f"unknown decision {state!r}")
    decision = {
        "state": state,
        "message": mask_data(message) if message else message,
        "always": always,
        "by": by,
        "answered_at": now(),
    }
    target = _answer_file(directory, rid)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = directory / f".{rid}.answer.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    write_atomic(tmp, json.dumps(decision).encode())
    try:
        os.link(tmp, target)
        won = True
    except FileExistsError:
        won = False
    finally:
        unlink_quietly(tmp)
    if won:
        return decision, True
    existing = _read(target)
    return (existing or decision), False


def requests(directory: Path) -> list[dict[str, Any]]:
    """Every request in the directory with its `state` (pending, or the decision), oldest first."""
    if not directory.is_dir():
        return []
    out = []
    for path in directory.glob("r*.json"):
        if path.name.endswith(".answer.json"):
            continue
        request = _read(path)
        if request is None or not isinstance(request.get("id"), str):
            continue
        decided = read_answer(directory, request["id"])
        request["state"] = decided["state"] if decided else PENDING
        if decided:
            request["answer"] = decided
        out.append(request)
    out.sort(key=lambda r: (r.get("created_at") or 0, r.get("id") or ""))
    return out


def pending(directory: Path, attempt: int | None = None) -> list[dict[str, Any]]:
    """Unanswered requests (of one attempt of the task, when given), oldest first."""
    return [
        r for r in requests(directory) if r["state"] == PENDING and (attempt is None or r.get("attempt") == attempt)
    ]


def always_rules(directory: Path) -> list[str]:
    data = _read(directory / "always.json")
    rules = data.get("rules") if data else None
    return [r for r in rules if isinstance(r, str)] if isinstance(rules, list) else []


def set_always_rules(directory: Path, rules: list[str]) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(directory / "always.json", json.dumps({"rules": list(dict.fromkeys(rules))}).encode())


def describe(request: dict[str, Any], width: int = 200) -> str:
    """One line naming the tool and what it would do (the stored input is already masked)."""
    tool = str(request.get("tool_name"))
    data = request.get("input") if isinstance(request.get("input"), dict) else {}
    assert isinstance(data, dict)
    if isinstance(data.get("command"), str):
        detail = data["command"]
    elif isinstance(data.get("file_path"), str):
        detail = data["file_path"]
    else:
        detail = json.dumps(data, ensure_ascii=False, sort_keys=True)
    detail = detail.replace("\r\n", "\n").replace("\n", " ↵ ")  # two commands must not read as one
    text = mask_secrets(" ".join(f"{tool}: {detail}".split()))
    if len(text) <= width:
        return text
    head = width * 2 // 3  # the end stays in sight: a long harmless start must not hide what follows it
    return text[:head] + " … " + text[len(text) - (width - head - 3) :]

"""The task: what one agent is asked to do, and everything that happened to it.

States and the moves between them are defined here and nowhere else; the store
refuses any change of state that `check_transition` does not allow.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from orchestra.errors import InvalidInput, InvalidTransition

SCHEMA_VERSION = 1


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_INPUT = "awaiting_input"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.TIMED_OUT})
# A dependency in one of these states can never succeed without a person retrying it.
BLOCKING_STATES = frozenset({State.FAILED, State.CANCELLED, State.TIMED_OUT})

_ALLOWED: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.CANCELLED, State.FAILED}),
    State.RUNNING: frozenset(
        {State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.CANCELLED, State.AWAITING_INPUT, State.QUEUED}
    ),
    State.AWAITING_INPUT: frozenset(
        {State.RUNNING, State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.CANCELLED, State.QUEUED}
    ),
    # Final states only move back to the queue, by an explicit retry or reply.
    State.SUCCEEDED: frozenset({State.QUEUED}),
    State.FAILED: frozenset({State.QUEUED}),
    State.CANCELLED: frozenset({State.QUEUED}),
    State.TIMED_OUT: frozenset({State.QUEUED}),
}


def check_transition(old: State, new: State) -> None:
    if new not in _ALLOWED[old]:
        raise InvalidTransition(f"a {old} task cannot become {new}")


_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: easy to read and type
ID_LENGTH = 6
_ID_RE = re.compile(r"^[a-z0-9]{2,32}$")


def new_task_id() -> str:
    return secrets.choice(_ID_ALPHABET[:23]) + "".join(
        secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH - 1)
    )


def validate_id(text: str) -> str:
    """Ids reach paths and branch names, so anything but [a-z0-9] is refused outright."""
    if not isinstance(text, str) or not _ID_RE.match(text):
        raise InvalidInput(f"invalid task id {text!r}: task ids are lowercase letters and digits")
    return text


def slugify(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = slug[:limit].rstrip("-")
    return slug or "task"


def make_title(prompt: str, limit: int = 72) -> str:
    for line in prompt.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return "untitled"


def now() -> float:
    return round(time.time(), 3)


@dataclass
class Task:
    id: str
    prompt: str
    role: str
    title: str = ""
    priority: int = 0
    depends_on: list[str] = field(default_factory=list)
    on: str | None = None  # the task whose branch this one starts from
    base_ref: str = "HEAD"
    base_sha: str | None = None
    branch: str = ""
    worktree: str = ""
    state: State = State.QUEUED
    attempts: int = 0
    max_attempts: int = 3
    timeout: float | None = None
    session_id: str | None = None
    resume_session: str | None = None  # set when the next run must continue a session
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    cost_usd: float | None = None
    num_turns: int | None = None
    result: str | None = None
    permission_denials: list[dict[str, Any]] = field(default_factory=list)
    # The live agent process, so a restarted scheduler can adopt or resume it.
    pid: int | None = None
    proc_start: int | None = None
    log_offset: int = 0
    cancel_requested: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Task":
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"schema version {version!r} is newer than this orchestra understands")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for required in ("id", "prompt", "role"):
            if not isinstance(kwargs.get(required), str):
                raise ValueError(f"missing or invalid field {required!r}")
        validate_id(kwargs["id"])
        try:
            kwargs["state"] = State(kwargs.get("state", "queued"))
        except ValueError:
            raise ValueError(f"unknown state {data.get('state')!r}") from None
        return cls(**kwargs)

    def summary(self) -> dict[str, Any]:
        """The fields listings and the scheduler need, kept in the index."""
        return {
            "id": self.id,
            "title": self.title,
            "role": self.role,
            "state": str(self.state),
            "priority": self.priority,
            "depends_on": self.depends_on,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": self.attempts,
            "cost_usd": self.cost_usd,
            "num_turns": self.num_turns,
            "error": self.error,
            "branch": self.branch,
            "pid": self.pid,
            "workflow": self.extra.get("workflow"),
            "not_before": self.extra.get("not_before"),
        }

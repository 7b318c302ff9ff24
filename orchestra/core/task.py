"""The task: what one agent is asked to do, and everything that happened to it.

States and the moves between them are defined here and nowhere else: a task's
state changes only through its methods, each of which checks the move, so no
caller can put a task somewhere the state machine does not allow.
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from orchestra.core.errors import InvalidInput, InvalidTransition

SCHEMA_VERSION = 2


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
LIVE_STATES = frozenset({State.RUNNING, State.AWAITING_INPUT})

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


def busy_slots(live_states: list[str], max_waiting: int) -> int:
    """Slots of max_concurrent that live agents hold.

    An agent waiting for a person uses no model time, so it holds no slot, up to
    `max_waiting` such agents (each is still a process and a worktree); the ones
    beyond that count again.
    """
    waiting = sum(1 for s in live_states if s == State.AWAITING_INPUT)
    return len(live_states) - waiting + max(waiting - max_waiting, 0)


def check_transition(old: State, new: State) -> None:
    if new not in _ALLOWED[old]:
        raise InvalidTransition(f"a {old} task cannot become {new}")


def validate_state(value: str) -> str:
    try:
        return str(State(value))
    except ValueError:
        raise InvalidInput(f"unknown state {value!r}; states: {', '.join(s.value for s in State)}") from None


# What a task hands on. Merge and report steps are run by orchestra itself, without an agent.
PRODUCTS = ("branch", "verdict", "merge", "report")
AGENTLESS_PRODUCTS = frozenset({"merge", "report"})

ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: easy to read and type
ID_LENGTH = 6
ID_MIN, ID_MAX = 2, 32  # a prefix people type must say enough to pick one id out of many
_ID_RE = re.compile(rf"^[a-z0-9]{{{ID_MIN},{ID_MAX}}}$")


def random_text(alphabet: str, length: int) -> str:
    """Uniform characters from the OS's random source (what `secrets.choice` uses, without its imports)."""
    limit = 256 - 256 % len(alphabet)  # bytes at or above this would favour the first letters
    out: list[str] = []
    while len(out) < length:
        out.extend(alphabet[b % len(alphabet)] for b in os.urandom(2 * length) if b < limit)
    return "".join(out[:length])


def new_task_id() -> str:
    return random_text(ID_ALPHABET[:23], 1) + random_text(ID_ALPHABET, ID_LENGTH - 1)


def is_valid_id(text: object) -> bool:
    return isinstance(text, str) and _ID_RE.match(text) is not None


def validate_id(text: str) -> str:
    """Ids reach paths and branch names, so anything but [a-z0-9] is refused outright."""
    if not is_valid_id(text):
        if isinstance(text, str) and re.fullmatch(r"[a-z0-9]+", text):
            rule = f"a prefix needs at least {ID_MIN}" if len(text) < ID_MIN else f"ids have at most {ID_MAX}"
            raise InvalidInput(f"invalid task id {text!r}: {rule} characters")
        raise InvalidInput(f"invalid task id {text!r}: task ids are lowercase letters and digits")
    return text


def slugify(text: str, limit: int = 40) -> str:
    """An ASCII slug for a branch name; accented letters keep their base letter (`Ünïcödé` -> `unicode`)."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = slug[:limit].rstrip("-")
    return slug or "task"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def make_title(prompt: str, limit: int = 72) -> str:
    for line in prompt.splitlines():
        line = " ".join(_CONTROL.sub(" ", line).split())
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return "untitled"


def now() -> float:
    return round(time.time(), 3)


@dataclass
class MergeSpec:
    """What a merge step merges: the branch of `source_task` into `into`."""

    source_task: str
    into: str
    strategy: str = "merge"

    def to_dict(self) -> dict[str, Any]:
        return {"source_task": self.source_task, "into": self.into, "strategy": self.strategy}

    @classmethod
    def from_dict(cls, data: Any) -> MergeSpec | None:
        if not isinstance(data, dict) or not isinstance(data.get("source_task"), str):
            return None
        return cls(str(data["source_task"]), str(data.get("into") or ""), str(data.get("strategy") or "merge"))


@dataclass
class Task:
    id: str
    prompt: str
    role: str
    title: str = ""
    produces: str = "branch"  # one of PRODUCTS, fixed at submit from the role (or the review flag)
    priority: int = 0
    depends_on: list[str] = field(default_factory=list)
    on: str | None = None  # the task whose branch this one starts from
    base_ref: str = "HEAD"
    base_sha: str | None = None
    branch: str = ""
    worktree: str = ""
    branch_sha: str | None = None  # where orchestra last left the branch in the main repository
    state: State = State.QUEUED
    attempts: int = 0
    max_attempts: int = 3
    timeout: float | None = None
    session_id: str | None = None
    resume_session: str | None = None  # set when the next run must continue a session
    next_prompt: str | None = None  # the prompt of that continuing run (a reply, or a nudge)
    continue_session: str | None = None  # a revision round continues this earlier task's session
    not_before: float | None = None  # a retry after a transient API error waits until then
    api_retries: int = 0
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    cost_usd: float | None = None
    num_turns: int | None = None
    # Tokens from the result lines' `usage`, summed over attempts like cost_usd.
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    budget_usd: float | None = None  # per-task spending limit over all attempts
    result: str | None = None
    permission_denials: list[dict[str, Any]] = field(default_factory=list)
    structured_output: Any = None  # a verdict run's answer
    # The live agent process, so a restarted scheduler can adopt or resume it.
    pid: int | None = None
    proc_start: int | None = None
    # Where the run happens when that is not this machine (executor = ray): a node's name and id.
    node: str | None = None
    node_id: str | None = None
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources this task asks for
    log_offset: int = 0
    cancel_requested: bool = False
    # Waiting for a person: since when, and how long this attempt waited before.
    awaiting_since: float | None = None
    input_wait: list[float] | None = None  # [attempt, seconds]
    always_allow: list[str] = field(default_factory=list)
    # Making the worktree usable.
    copied: list[str] = field(default_factory=list)
    bootstrapped: bool = False
    # Workflow membership.
    workflow: str | None = None
    step: str | None = None
    round: int | None = None
    revision_of: str | None = None
    review: bool = False  # a read-only review pass of its role
    # Merge and report steps.
    merge: MergeSpec | None = None
    merge_result: dict[str, Any] | None = None
    verdict: str | None = None  # a report step's overall verdict
    merged: dict[str, Any] | None = None  # set on the source task once its branch merged
    resolves: str | None = None  # a conflict resolver: the task whose branch it resolves
    conflict_files: list[str] = field(default_factory=list)
    manual: bool = False  # a merge a person asked for (`orchestra merge`), counted apart from agents' tasks
    # What the branch changed against its base when the last run ended: {"added", "removed", "files"},
    # kept so listings show it without a git call per task.
    diffstat: dict[str, int] | None = None
    # Interactive sessions a person had on this task's branch ('orchestra attach'), oldest first.
    manual_sessions: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # fields a newer orchestra wrote, kept as they were
    schema_version: int = SCHEMA_VERSION

    # -- what it is ---------------------------------------------------------------

    @property
    def agentless(self) -> bool:
        return self.produces in AGENTLESS_PRODUCTS

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    # -- moves ------------------------------------------------------------------------

    def _move(self, new: State) -> None:
        check_transition(self.state, new)
        self.state = new

    def _reset_run(self) -> None:
        self.finished_at = None
        self.exit_code = None
        self.error = None
        self.pid = None
        self.proc_start = None
        self.cancel_requested = False

    def claim(self, log_offset: int) -> None:
        """The scheduler takes a queued task for a new run."""
        self._move(State.RUNNING)
        self._reset_run()
        self.attempts += 1
        self.started_at = now()
        self.log_offset = log_offset

    def unclaim(self) -> None:
        """The run never began: where runs start did not answer. Back to the queue as it was, the attempt not
        counted (nothing ran, nothing was spent), its session and next prompt kept for the run that will."""
        self._move(State.QUEUED)
        self.attempts = max(self.attempts - 1, 0)
        self.started_at = None
        self.pid = None
        self.proc_start = None

    def start_agentless(self, pid: int | None = None, proc_start: int | None = None) -> None:
        """A merge run now, in the caller's process (orchestra merge, or a scheduler's runner), which `pid`
        names: no scheduler may take a merge another process is running for a run whose agent died."""
        self.claim(0)
        if pid:
            self.record_process(pid, proc_start)

    def record_process(
        self,
        pid: int,
        proc_start: int | None,
        *,
        log_offset: int | None = None,
        node: str | None = None,
        node_id: str | None = None,
    ) -> None:
        """The agent of this run is alive as `pid` (spawned now, or found again after a restart), on `node`."""
        self.pid = pid
        self.proc_start = proc_start
        self.node = node
        self.node_id = node_id
        if log_offset is not None:
            self.log_offset = log_offset

    def launched(
        self,
        pid: int,
        proc_start: int | None,
        log_offset: int,
        base_sha: str,
        worktree: str,
        *,
        node: str | None = None,
        node_id: str | None = None,
    ) -> None:
        self.record_process(pid, proc_start, log_offset=log_offset, node=node, node_id=node_id)
        self.base_sha = base_sha
        self.worktree = worktree
        self.resume_session = None
        self.next_prompt = None
        self.not_before = None

    def finish(self, state: State, error: str | None, *, exit_code: int | None = None) -> None:
        """The end of a run: one of the final states."""
        if not state.final:
            raise InvalidTransition(f"{state} is not a final state")
        self._move(state)
        self.error = error
        self.exit_code = exit_code
        self.finished_at = now()
        self.pid = None
        self.proc_start = None
        self.awaiting_since = None

    def requeue(self, *, session: str | None, next_prompt: str | None = None, not_before: float | None = None) -> None:
        """Back to the queue mid-run (the agent died, or an API error will pass): the next run resumes."""
        self._move(State.QUEUED)
        self.finished_at = None
        self.pid = None
        self.proc_start = None
        self.awaiting_since = None
        self.resume_session = session
        self.session_id = session or self.session_id
        self.next_prompt = next_prompt
        self.not_before = not_before

    def reopen(self, *, resume: str | None, next_prompt: str | None, extra_attempts: int) -> None:
        """An ended task queued again on its branch: fresh (`resume` None) or continuing a session."""
        self._move(State.QUEUED)
        self._reset_run()
        self.resume_session = resume
        self.next_prompt = next_prompt
        self.not_before = None
        self.api_retries = 0 if resume else self.api_retries
        self.max_attempts = max(self.max_attempts, self.attempts + extra_attempts)

    def moved_on(self, attempt: int) -> str | None:
        """Why an unfinished task is no longer run `attempt`, whose end must then not be recorded over it:
        queued again, or claimed by a later attempt. None while it still is that run."""
        if self.state == State.QUEUED:
            return "it was queued again meanwhile"
        if self.attempts != attempt:
            return f"attempt {self.attempts} has been claimed since"
        return None

    def request_cancel(self) -> None:
        """Queued tasks end at once; a live one is marked, and whoever watches its agent stops it."""
        if self.state.final:
            raise InvalidInput(f"task {self.id} has already ended ({self.state}); there is nothing to cancel")
        if self.state == State.QUEUED:
            self.finish(State.CANCELLED, "cancelled")
        else:
            self.cancel_requested = True

    def fail_queued(self, reason: str) -> bool:
        """A queued task that can never run; False when it is no longer queued."""
        if self.state != State.QUEUED:
            return False
        self.finish(State.FAILED, reason)
        return True

    def await_input(self, since: float) -> None:
        if self.state == State.RUNNING:
            self._move(State.AWAITING_INPUT)
            self.awaiting_since = since

    def input_settled(self) -> bool:
        """Nothing waits for a person any more: back to running, counting the time waited."""
        if self.state != State.AWAITING_INPUT:
            return False
        since = self.awaiting_since
        self.awaiting_since = None
        if since:
            self.input_wait = [self.attempts, round(self._waited_before() + now() - since, 3)]
        self._move(State.RUNNING)
        return True

    def time_waited(self, at: float | None = None) -> float:
        """Seconds this run spent waiting for a person; the wall-clock limit does not count them."""
        waited = self._waited_before()
        if self.state == State.AWAITING_INPUT and self.awaiting_since:
            waited += max((at or now()) - float(self.awaiting_since), 0.0)
        return waited

    def _waited_before(self) -> float:
        record = self.input_wait
        if isinstance(record, list) and len(record) == 2 and record[0] == self.attempts:
            return float(record[1])
        return 0.0

    # -- serialisation ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy made `list --json` of 10,000 tasks 7x slower.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        for name, value in data.items():
            if isinstance(value, list):
                data[name] = list(value)
            elif isinstance(value, dict):
                data[name] = dict(value)
        data["state"] = str(self.state)
        data["merge"] = self.merge.to_dict() if self.merge else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"schema version {version!r} is newer than this orchestra understands")
        kwargs = {k: v for k, v in data.items() if k in _FIELD_SET}
        if version < 2:
            _migrate_v1(kwargs)
        for required in ("id", "prompt", "role"):
            if not isinstance(kwargs.get(required), str):
                raise ValueError(f"missing or invalid field {required!r}")
        validate_id(kwargs["id"])
        try:
            kwargs["state"] = State(kwargs.get("state", "queued"))
        except ValueError:
            raise ValueError(f"unknown state {data.get('state')!r}") from None
        if kwargs.get("produces", "branch") not in PRODUCTS:
            raise ValueError(f"unknown product {kwargs.get('produces')!r}")
        kwargs["merge"] = MergeSpec.from_dict(kwargs.get("merge"))
        kwargs["schema_version"] = SCHEMA_VERSION
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
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "error": self.error,
            "branch": self.branch,
            "pid": self.pid,
            "node": self.node,
            "workflow": self.workflow,
            "step": self.step,
            "produces": self.produces,
            "not_before": self.not_before,
            "manual": self.manual,
            "diffstat": self.diffstat,
        }


_FIELD_NAMES = tuple(f.name for f in fields(Task))
_FIELD_SET = frozenset(_FIELD_NAMES)
_AGENTLESS_ROLE_NAMES = {"merge": "merge", "report": "report"}


def _migrate_v1(kwargs: dict[str, Any]) -> None:
    """Schema 1 kept workflow and run bookkeeping in an untyped `extra` bag; lift it into fields."""
    extra = dict(kwargs.get("extra") or {})
    for key in (
        "next_prompt",
        "continue_session",
        "not_before",
        "workflow",
        "step",
        "round",
        "revision_of",
        "structured_output",
        "merge_result",
        "verdict",
        "merged",
        "resolves",
        "awaiting_since",
        "input_wait",
    ):
        if key in extra:
            kwargs[key] = extra.pop(key)
    for key in ("copied", "always_allow", "conflict_files"):
        if key in extra:
            kwargs[key] = list(extra.pop(key) or [])
    if "api_retries" in extra:
        kwargs["api_retries"] = int(extra.pop("api_retries") or 0)
    kwargs["bootstrapped"] = bool(extra.pop("bootstrapped", False))
    kwargs["review"] = bool(extra.pop("review", False))
    if "merge" in extra:
        kwargs["merge"] = extra.pop("merge")
    produces = extra.pop("produces", None)
    role = kwargs.get("role")
    kwargs["produces"] = produces or _AGENTLESS_ROLE_NAMES.get(role if isinstance(role, str) else "", "branch")
    kwargs["extra"] = extra

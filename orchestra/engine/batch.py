"""Many tasks in one submit: JSON lines from `submit --batch`, or the MCP submit_task's `tasks` list.

Each task has submit's fields plus an optional `key`; `after` and `on` may name an earlier task of
the batch by `#N` (its line, or its position in the list) or by its key. Everything is checked before
anything is written, every refused task is named with its number in one message, and then nothing is
submitted. The batch is written by engine.tasks.submit_many: one lock, one index update.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchestra.core.errors import ConfigError, InvalidInput, TaskNotFound
from orchestra.core.task import Task
from orchestra.core.values import did_you_mean
from orchestra.engine.context import Context
from orchestra.engine.tasks import _CONTROL, Submission, _check, submit_many
from orchestra.git import refs

BATCH_FIELDS = ("prompt", "role", "priority", "after", "on", "base", "title", "timeout", "budget", "key")
# The MCP single form's names for the same fields, accepted too.
BATCH_ALIASES = {"depends_on": "after", "budget_usd": "budget"}
MAX_BATCH = 1000
MAX_KEY_CHARS = 100


@dataclass
class BatchEntry:
    """One task of a batch as it came in: its number (a line, or a position) and its decoded JSON.

    `error` is set instead of `data` when the entry could not even be decoded.
    """

    number: int
    data: object = None
    error: str | None = None


def from_lines(text: str) -> list[BatchEntry]:
    """JSON lines, one task each; blank lines are skipped but keep the numbering of the lines."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(BatchEntry(number, json.loads(line)))
        except ValueError as exc:
            entries.append(BatchEntry(number, error=f"not JSON ({exc})"))
    return entries


def from_list(items: list[object]) -> list[BatchEntry]:
    """The MCP form: a list of objects, numbered by their 1-based position."""
    return [BatchEntry(n, item) for n, item in enumerate(items, 1)]


def submit_batch(ctx: Context, entries: list[BatchEntry], word: str = "line") -> list[Task]:
    """Submit a batch as one: each entry has submit's fields plus an optional `key`; `after` and `on` may
    name an earlier entry by `#N` (its number) or by its key. Every refused entry is named, with its
    number, in one message, and then nothing is submitted.
    """
    if not entries:
        raise InvalidInput(f"an empty batch: give one task per {word}, as a JSON object with at least a prompt")
    if len(entries) > MAX_BATCH:
        raise InvalidInput(f"a batch of {len(entries)} tasks; the limit is {MAX_BATCH}: split it")
    roles = ctx.roles()
    if not refs.has_commits(ctx.root):
        raise InvalidInput("the repository has no commits yet; make a first commit, then submit")
    errors: list[str] = []
    subs: list[Submission] = []
    numbers: dict[int, int | None] = {}  # an entry's number -> its position in subs (None: refused)
    keys: dict[str, tuple[int, int | None]] = {}  # a key -> (number, position; None: refused)
    for entry in entries:  # keys first, so a reference to a refused or later entry says so
        if isinstance(entry.data, dict) and isinstance(entry.data.get("key"), str):
            keys.setdefault(entry.data["key"], (entry.number, None))
    commits: dict[str, str | InvalidInput] = {}
    for entry in entries:
        where = f"{word} {entry.number}"
        try:
            if entry.error is not None:
                raise InvalidInput(entry.error)
            sub, key = _batch_submission(entry, numbers, keys, word)
            _check(sub, roles)
            for ref in [*sub.after, *([sub.on] if sub.on else [])]:
                ctx.store.resolve(ref)
            base = None if (sub.on or sub.on_item is not None) else (sub.base or "HEAD")
            if base is not None and base not in commits:
                try:
                    commits[base] = refs.resolve_commit(ctx.root, base)
                except InvalidInput as exc:
                    commits[base] = exc  # each distinct base is looked up once
            found = commits.get(base) if base is not None else None
            if isinstance(found, InvalidInput):
                raise found
        except (InvalidInput, TaskNotFound, ConfigError) as exc:
            errors.append(f"{where}: {exc}")
            numbers[entry.number] = None
            continue
        numbers[entry.number] = len(subs)
        if key is not None:
            keys[key] = (entry.number, len(subs))
        subs.append(sub)
    if errors:
        raise InvalidInput(
            f"{len(errors)} of {len(entries)} {word}s refused; nothing was submitted:\n" + "\n".join(errors)
        )
    return submit_many(ctx, subs, {b: c for b, c in commits.items() if isinstance(c, str)})


def _batch_submission(
    entry: BatchEntry, numbers: dict[int, int | None], keys: dict[str, tuple[int, int | None]], word: str
) -> tuple[Submission, str | None]:
    data = entry.data
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object with at least a prompt")
    fields: dict[str, Any] = {}
    for name, value in data.items():
        field_name = BATCH_ALIASES.get(name, name)
        if field_name not in BATCH_FIELDS:
            raise InvalidInput(
                f"unknown field {name!r}{did_you_mean(name, [*BATCH_FIELDS, *BATCH_ALIASES])}; "
                f"fields: {', '.join(BATCH_FIELDS)}"
            )
        if field_name in fields:
            raise InvalidInput(f"{field_name!r} is given twice")
        fields[field_name] = value
    if "prompt" not in fields:
        raise InvalidInput("no prompt: say what the agent should do")
    if not isinstance(fields["prompt"], str):
        raise InvalidInput("prompt must be a string: say what the agent should do")
    for name in ("role", "on", "base", "title", "key"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise InvalidInput(f"{name} must be a string")
    for name in ("priority", "timeout", "budget"):
        if isinstance(fields.get(name), (dict, list)):
            raise InvalidInput(f"{name} must be a number or a string")
    after = fields.get("after") or []
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise InvalidInput("after must be a list of task ids, #N or keys")
    key = fields.get("key")
    if key is not None:
        if not key.strip() or key.startswith("#") or len(key) > MAX_KEY_CHARS or _CONTROL.search(key):
            raise InvalidInput(f"invalid key {key!r}: a short name, not starting with '#'")
        if keys.get(key, (entry.number, None))[0] != entry.number:
            raise InvalidInput(f"key {key!r} is already used by {word} {keys[key][0]}")
    sub = Submission(
        fields["prompt"],
        role=fields.get("role") or "generalist",
        priority=fields.get("priority", 0),
        base=fields.get("base"),
        title=fields.get("title"),
        timeout=fields.get("timeout"),
        budget=fields.get("budget"),
    )
    for ref in after:
        position = _batch_ref(ref, entry.number, numbers, keys, word)
        if position is None:
            sub.after.append(ref)
        elif position >= 0:
            sub.after_items.append(position)
    on = fields.get("on")
    if on:
        position = _batch_ref(on, entry.number, numbers, keys, word)
        if position is None:
            sub.on = on
        elif position >= 0:
            sub.on_item = position
    return sub, key


def _batch_ref(
    ref: str, number: int, numbers: dict[int, int | None], keys: dict[str, tuple[int, int | None]], word: str
) -> int | None:
    """An earlier batch member's position; None for a task already in the store; -1 for a refused member."""
    if ref in keys:
        target, position = keys[ref]
        if target >= number:
            raise InvalidInput(f"{ref!r} names {word} {target}, which is not before this one")
        return -1 if position is None else position
    if not ref.startswith("#"):
        return None
    try:
        target = int(ref[1:])
    except ValueError:
        raise InvalidInput(f"invalid reference {ref!r}: #N names the task on {word} N") from None
    if target >= number:
        raise InvalidInput(f"{ref} names {word} {target}, which is not before this one")
    if target not in numbers:
        raise InvalidInput(f"{ref} names {word} {target}, which holds no task")
    position = numbers[target]
    return -1 if position is None else position

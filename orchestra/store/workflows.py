"""Workflow records: one JSON file each under `.orchestra/workflows/`, written under the store lock."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from orchestra.core.errors import InvalidInput, OrchestraError
from orchestra.core.task import ID_ALPHABET, is_valid_id, now, random_text, validate_id
from orchestra.core.workflow import LIVE_WORKFLOW_STATES, Workflow
from orchestra.store.files import write_atomic
from orchestra.store.tasks import Store


def load(store: Store, wf_id: str) -> Workflow:
    path = store.paths.workflow_file(validate_id(wf_id))
    try:
        data = json.loads(path.read_bytes())
        return Workflow.from_dict(data)
    except FileNotFoundError:
        raise InvalidInput(f"no workflow {wf_id}") from None
    except (ValueError, TypeError, InvalidInput) as exc:
        raise OrchestraError(f"corrupt workflow file {path}: {exc}") from None


def holding(store: Store, wf_ids: Iterable[str]) -> tuple[set[str], dict[str, Workflow]]:
    """The tasks that workflows not yet ended still need, for cleanup and prune to leave alone: those of
    a live one (running, or its merge awaiting approval), and, by task, the stopped one (failed,
    conflict, changes_requested) whose step a person may still retry or merge. A record that cannot
    be read holds nothing."""
    live: set[str] = set()
    stopped: dict[str, Workflow] = {}
    for wf_id in wf_ids:
        try:
            wf = load(store, wf_id)
        except OrchestraError:
            continue
        if wf.state in LIVE_WORKFLOW_STATES:
            live.update(wf.task_ids())
        elif not wf.final:
            for task_id in wf.task_ids():
                stopped.setdefault(task_id, wf)
    return live, stopped


def save(store: Store, wf: Workflow) -> None:
    """Write a workflow record; the caller holds the store lock, like every other state change.

    The unfinished set's marker is made before a record says unfinished and removed only
    after it says finished, so a crash in between leaves a marker too many, never one too few.
    """
    store.require_lock()
    wf.updated_at = now()
    d = store.paths.workflows
    if not d.is_dir():
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        _unfinished_dir(store).mkdir(mode=0o700, exist_ok=True)  # no records yet: the empty set is exact
    marker = _unfinished_dir(store) / validate_id(wf.id)
    tracked = marker.parent.is_dir()
    if tracked and not wf.final:
        marker.touch(mode=0o600)
    write_atomic(store.paths.workflow_file(wf.id), json.dumps(wf.to_dict(), indent=1, sort_keys=True).encode())
    if tracked and wf.final:
        marker.unlink(missing_ok=True)


def remove(store: Store, wf_id: str) -> None:
    store.require_lock()
    store.paths.workflow_file(validate_id(wf_id)).unlink(missing_ok=True)
    (_unfinished_dir(store) / wf_id).unlink(missing_ok=True)


def _unfinished_dir(store: Store) -> Path:
    return store.paths.workflows / UNFINISHED_DIR


UNFINISHED_DIR = "unfinished"


def unfinished_ids(store: Store) -> list[str]:
    """Workflows that may not have finished: what status and a starting scheduler look at.

    A cache of one empty file per workflow (so its cost follows the unfinished work, not
    every workflow ever run); it may name a finished one, never miss an unfinished one.
    When it is missing (a person deleted it, or an older orchestra wrote the records) it
    is rebuilt from the records under the store lock.
    """
    d = _unfinished_dir(store)
    if not d.is_dir():
        if not store.paths.workflows.is_dir():
            return []
        rebuild_unfinished(store, force=False)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if is_valid_id(n))


def rebuild_unfinished(store: Store, *, force: bool = True) -> None:
    """Make the unfinished set again from every record (doctor --fix, or a first read)."""
    with store.locked():
        d = _unfinished_dir(store)
        if d.is_dir() and not force:
            return  # another reader rebuilt it while this one waited for the lock
        tmp = store.paths.workflows / f".{UNFINISHED_DIR}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        unfinished, unreadable = unfinished_on_record(store)
        for wf_id in unfinished | unreadable:  # a corrupt record is for its readers to name, not for this to hide
            (tmp / wf_id).touch(mode=0o600)
        shutil.rmtree(d, ignore_errors=True)
        os.rename(tmp, d)


def unfinished_on_record(store: Store) -> tuple[set[str], set[str]]:
    """What every record says, read one by one: the unfinished workflows, and the records that cannot be read."""
    unfinished, unreadable = set(), set()
    for wf_id in ids(store):
        try:
            if not load(store, wf_id).final:
                unfinished.add(wf_id)
        except OrchestraError:
            unreadable.add(wf_id)
    return unfinished, unreadable


def ids(store: Store) -> list[str]:
    d = store.paths.workflows
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if not p.name.startswith("."))


def resolve(store: Store, text: str) -> str | None:
    """A workflow id or a unique prefix of one; None when nothing matches."""
    text = validate_id((text or "").strip().lower())
    known = ids(store)
    if text in known:
        return text
    matches = [i for i in known if i.startswith(text)]
    if len(matches) > 1:
        raise InvalidInput(f"workflow id {text!r} is ambiguous: {', '.join(matches[:5])}")
    return matches[0] if matches else None


def new_id(store: Store) -> str:
    taken = set(ids(store))
    for _ in range(100):
        wf_id = "w" + random_text(ID_ALPHABET, 5)
        if wf_id not in taken and not store.paths.task_file(wf_id).exists():  # ids are one namespace
            return wf_id
    raise OrchestraError("could not find an unused workflow id")

"""Workflow records: one JSON file each under `.orchestra/workflows/`, written under the store lock."""

from __future__ import annotations

import json
import secrets

from orchestra.core.errors import InvalidInput, OrchestraError
from orchestra.core.task import now, validate_id
from orchestra.core.workflow import Workflow
from orchestra.store.files import write_atomic
from orchestra.store.tasks import Store

_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def load(store: Store, wf_id: str) -> Workflow:
    path = store.paths.workflow_file(validate_id(wf_id))
    try:
        data = json.loads(path.read_bytes())
        return Workflow.from_dict(data)
    except FileNotFoundError:
        raise InvalidInput(f"no workflow {wf_id}") from None
    except (ValueError, TypeError, InvalidInput) as exc:
        raise OrchestraError(f"corrupt workflow file {path}: {exc}") from None


def save(store: Store, wf: Workflow) -> None:
    """Write a workflow record; the caller holds the store lock, like every other state change."""
    store.require_lock()
    wf.updated_at = now()
    d = store.paths.workflows
    if not d.is_dir():
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(store.paths.workflow_file(wf.id), json.dumps(wf.to_dict(), indent=1, sort_keys=True).encode())


def remove(store: Store, wf_id: str) -> None:
    store.require_lock()
    store.paths.workflow_file(validate_id(wf_id)).unlink(missing_ok=True)


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
        wf_id = "w" + "".join(secrets.choice(_ALPHABET) for _ in range(5))
        if wf_id not in taken and not store.paths.task_file(wf_id).exists():  # ids are one namespace
            return wf_id
    raise OrchestraError("could not find an unused workflow id")

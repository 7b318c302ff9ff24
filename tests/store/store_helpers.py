"""Helpers for the store tests: a history made quickly, and the caches read straight from disk."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from orchestra.core.task import State, Task, new_task_id
from orchestra.store.files import write_atomic
from orchestra.store.paths import Paths
from orchestra.store.tasks import Store

FINALS = [State.SUCCEEDED] * 7 + [State.FAILED, State.CANCELLED, State.TIMED_OUT]


def populate(repo: Path, n: int, t0: float = 1_700_000_000.0, spacing: float = 60) -> list[str]:
    """n finished tasks written as task files (as a long-lived repository has them), then the caches
    rebuilt by the store itself. Returns their ids, oldest first."""
    paths = Paths(root=repo)
    paths.ensure()
    store = Store(paths)
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    ids: list[str] = []
    with store.locked():
        for i in range(n):
            task_id = new_task_id()
            while task_id in ids:
                task_id = new_task_id()
            ids.append(task_id)
            created = t0 + i * spacing
            task = Task(
                id=task_id,
                prompt=f"old task {i}",
                role=("implementer", "tester", "reviewer", "generalist")[i % 4],
                title=f"old task {i}",
                base_sha=base,
                branch=f"orchestra/{task_id}-old-task-{i}",
                worktree=str(paths.worktree(task_id)),
                state=FINALS[i % len(FINALS)],
                attempts=1,
                created_at=created,
                updated_at=created + 30,
                started_at=created + 1,
                finished_at=created + 30,
                cost_usd=round(0.01 * (1 + i % 7), 6),
                input_tokens=1000 + i,
                output_tokens=10 + i % 3,
            )
            write_atomic(paths.task_file(task_id), json.dumps(task.to_dict()).encode(), durable=False)
        store.rebuild_index()
    return ids


def caches(repo: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The index as on disk, and every task the caches describe (history's newest line, then the live index)."""
    state = repo / ".orchestra"
    index = json.loads((state / "index.json").read_text())
    described: dict[str, dict[str, Any]] = {}
    history = state / "history.jsonl"
    if history.exists():
        for line in history.read_bytes().splitlines():
            try:
                s = json.loads(line)
            except ValueError:
                continue
            described[s["id"]] = s
    for tid in list(described):
        if tid in index["tasks"]:
            del described[tid]
    described.update(index["tasks"])
    return index, described


def on_disk(repo: Path) -> dict[str, dict[str, Any]]:
    """Every readable task file's summary, by id."""
    out = {}
    for p in (repo / ".orchestra" / "tasks").glob("*.json"):
        try:
            task = Task.from_dict(json.loads(p.read_bytes()))
        except (ValueError, TypeError):
            continue
        out[task.id] = task.summary()
    return out


def assert_caches_agree(repo: Path) -> None:
    index, described = caches(repo)
    files = on_disk(repo)
    assert {t: s["state"] for t, s in described.items()} == {t: s["state"] for t, s in files.items()}
    assert described == files
    assert not (repo / ".orchestra" / "index.stale").exists()
    done = [s for s in files.values() if s["state"] not in ("queued", "running", "awaiting_input")]
    assert index["finished"]["tasks"] == len(done)
    states: dict[str, int] = {}
    for s in done:
        states[s["state"]] = states.get(s["state"], 0) + 1
    assert index["finished"]["states"] == states
    assert index["finished"]["cost_micro"] == sum(round((s["cost_usd"] or 0) * 1_000_000) for s in done)

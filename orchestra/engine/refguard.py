"""The main repository's refs around a run: recorded when a task's run starts, compared when it ends.

A task's agent has no way to write the main repository (its checkout is a repository of its
own, and the sandbox keeps everything else read-only), so this is a tripwire, not a lock:
the refs that moved while the run went on, other than the task's own branch, are recorded
on the task (event `main_refs_moved`) and logged, and `doctor` lists them for runs still
going. Branches and tags of the user are compared as they are; other tasks' branches only
count when they moved other than forward (their own runs bring work home meanwhile).
A move can be the user's own commit or one of orchestra's merges; the record says which
refs, from where to where, so a person can tell.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from orchestra.core.task import Task, now
from orchestra.engine.context import Context
from orchestra.git import refs
from orchestra.git.repo import git_common_dir
from orchestra.git.runner import git
from orchestra.store.files import unlink_quietly, write_atomic


def snapshot(root: Path) -> dict[str, str]:
    """Every branch and tag of the main repository (name -> commit), and what HEAD names."""
    out: dict[str, str] = {}
    listing = git(root, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/", check=False)
    for line in listing.stdout.splitlines():
        sha, _, name = line.partition(" ")
        if name:
            out[name] = sha
    try:
        with open(git_common_dir(root) / "HEAD", encoding="utf-8", errors="replace") as fh:
            out["HEAD"] = fh.read(512).strip()
    except OSError:
        pass
    return out


def record(ctx: Context, task: Task) -> None:
    """Note the refs as the run starts (a failure to write it only costs the comparison)."""
    try:
        ctx.paths.guard.mkdir(mode=0o700, exist_ok=True)
        data = {"task": task.id, "at": now(), "refs": snapshot(ctx.root)}
        write_atomic(ctx.paths.guard_file(task.id), json.dumps(data).encode(), durable=False)
    except Exception as exc:  # a tripwire must never stop a run
        ctx.log(f"{task.id}: cannot record the main repository's refs: {exc}")


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("refs"), dict) else None


def changes(ctx: Context, task: Task) -> dict[str, list[str | None]] | None:
    """Refs that moved since the task's run started, other than its own branch: name -> [was, now].

    None when nothing was recorded for the run.
    """
    data = _load(ctx.paths.guard_file(task.id))
    if data is None:
        return None
    before: dict[str, str] = data["refs"]
    after = snapshot(ctx.root)
    prefix = f"refs/heads/{ctx.config.branch_prefix}"
    own = f"refs/heads/{task.branch}"
    moved: dict[str, list[str | None]] = {}
    for name in sorted(set(before) | set(after)):
        was, is_ = before.get(name), after.get(name)
        if was == is_ or name == own or name.startswith("refs/orchestra/"):
            continue
        # Another task's branch: its own runs and revisions move it forward, cleanup deletes it.
        if name.startswith(prefix) and (was is None or is_ is None or refs.is_ancestor(ctx.root, was, is_)):
            continue
        moved[name] = [was, is_]
    return moved


def settle(ctx: Context, task: Task) -> dict[str, list[str | None]]:
    """At the end of a run: record and log what moved, and forget the snapshot."""
    path = ctx.paths.guard_file(task.id)
    try:
        moved = changes(ctx, task) or {}
    except Exception as exc:
        ctx.log(f"{task.id}: cannot compare the main repository's refs: {exc}")
        moved = {}
    if moved:
        ctx.store.append_event(task.id, "main_refs_moved", refs=moved)
        shown = ", ".join(
            f"{name.removeprefix('refs/heads/')} {_short(a)}->{_short(b)}" for name, (a, b) in moved.items()
        )
        ctx.log(
            f"{task.id}: while it ran, refs moved in the main repository: {shown} "
            "(its agent cannot write there: your commits and orchestra's merges show here too)"
        )
    unlink_quietly(path)
    return moved


def _short(sha: str | None) -> str:
    if sha is None:
        return "(none)"
    return sha[:12] if not sha.startswith("ref:") else sha


def live_changes(ctx: Context, tasks: list[Task]) -> dict[str, dict[str, list[str | None]]]:
    """For doctor: what moved since each live task's run started."""
    out: dict[str, dict[str, list[str | None]]] = {}
    for task in tasks:
        if task.live and os.path.exists(ctx.paths.guard_file(task.id)):
            moved = changes(ctx, task)
            if moved:
                out[task.id] = moved
    return out

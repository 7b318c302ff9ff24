"""`orchestra prune`: move the records of old finished tasks whose work is safe into an archive.

History is pruned only when a person asks. A task's record is archived only when all of these hold:

- it ended (succeeded, failed, cancelled or timed out), before `--before`, and outside the `--keep`
  most recently ended;
- nothing live needs it: no unfinished task depends on it or starts from its branch, and no workflow
  that has not ended has it as a step (one stopped at changes_requested, conflict or failed can still
  have a step retried, until a person cancels it);
- its worktree is gone (`orchestra cleanup` removes finished tasks' worktrees);
- its work is safe: its branch is merged into its target (the branch `cleanup` checks), or `cleanup`
  deleted it once merged, or it never had a branch of its own (never started; merge and report steps).

Prune never touches a branch, a worktree or anything in git. The archive,
`.orchestra/archive/prune-<UTC time>-<random>.jsonl.gz`, holds one JSON line per task (its record,
event log, transcript, stderr and permission requests) and per workflow whose every task is archived.
It is written and synced before anything is removed; a task that changed meanwhile stays (its copy
in the archive is then only a copy).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra import __version__
from orchestra.core.errors import InvalidInput, OrchestraError
from orchestra.core.task import Task, now
from orchestra.core.values import parse_duration, whole
from orchestra.core.workflow import Workflow
from orchestra.engine.context import Context
from orchestra.git import refs, worktrees
from orchestra.store import workflows as records
from orchestra.store.files import atomic_writer

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?$")


@dataclass
class PruneReport:
    dry_run: bool
    before: float | None
    keep: int | None
    archive: str | None = None
    archived: list[dict[str, Any]] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)  # old enough, but kept, with the reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "before": self.before,
            "keep": self.keep,
            "archive": self.archive,
            "archived": self.archived,
            "workflows": self.workflows,
            "kept": self.kept,
        }


UNFINISHED = "an unfinished task or running workflow needs it"


def parse_before(value: object, at: float | None = None) -> float:
    """A moment: `2026-01-31` (local midnight), `2026-01-31T12:00`, or an age such as `30d` or `12h`."""
    text = str(value).strip()
    if _DATE.match(text):
        try:
            return dt.datetime.fromisoformat(text).timestamp()
        except ValueError:
            pass
        raise InvalidInput(f"invalid date {text!r}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM or an age such as 30d")
    try:
        age = parse_duration(text, "age")
    except InvalidInput:
        raise InvalidInput(f"invalid date {text!r}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM or an age such as 30d") from None
    return (at if at is not None else time.time()) - age


def prune(ctx: Context, *, before: object = None, keep: object = None, dry_run: bool = False) -> PruneReport:
    if before is None and keep is None:
        raise InvalidInput("say which tasks to prune: --before DATE, --keep N, or both")
    cutoff = parse_before(before) if before is not None else None
    keep_n = whole(keep, "keep", 0, 10**9) if keep is not None else None
    report = PruneReport(dry_run=dry_run, before=cutoff, keep=keep_n)
    chosen = _select(ctx, cutoff, keep_n, report)
    wf_done = _finished_workflows(ctx, {t.id for t in chosen})
    report.archived = [
        {"task": t.id, "state": str(t.state), "finished_at": t.finished_at, "title": t.title} for t in chosen
    ]
    report.workflows = [wf.id for wf in wf_done]
    if dry_run or not chosen:
        return report
    path, sizes = _write_archive(ctx, chosen, wf_done)
    report.archive = str(path)
    store = ctx.store
    with store.locked():
        # A task submitted or reopened meanwhile may name a chosen one (`--after`, `--on`, a merge of it) or
        # work on its branch, without changing it: what the choice saw of the live tasks is looked at again.
        live = store.live().values()
        needed = {dep for s in live for dep in s.get("depends_on") or []}
        live_branches = {s["branch"] for s in live if s.get("branch")}
        removable = []
        for t in chosen:
            try:
                current = store.load(t.id)
            except OrchestraError:
                current = None
            if (
                current is None
                or current.updated_at != t.updated_at
                or _size(ctx.paths.event_file(t.id)) != sizes[t.id]
            ):
                report.kept.append({"task": t.id, "reason": "changed while it was being archived; kept"})
                continue
            if t.id in needed:
                report.kept.append({"task": t.id, "reason": UNFINISHED})
                continue
            if t.branch and not t.agentless and t.branch in live_branches:
                report.kept.append({"task": t.id, "reason": f"its branch {t.branch} is in use by an unfinished task"})
                continue
            removable.append(t.id)
        store.remove(removable)
        _note_archived(ctx, removable, path)
        for wf in wf_done:
            if all(not ctx.paths.task_file(tid).exists() for tid in wf.task_ids()):
                records.remove(store, wf.id)
            else:
                report.workflows.remove(wf.id)
    gone = set(removable)
    report.archived = [a for a in report.archived if a["task"] in gone]
    return report


def _select(ctx: Context, cutoff: float | None, keep: int | None, report: PruneReport) -> list[Task]:
    """The tasks to archive, oldest ended first; those old enough but kept go into `report.kept`."""
    store = ctx.store
    view = store.view()
    busy: dict[str, str] = {}  # task id -> why it stays
    for s in view.live.values():
        for dep in s.get("depends_on") or []:  # a task started `on` another depends on it too
            busy[dep] = UNFINISHED
        busy[s["id"]] = UNFINISHED
    live, stopped = records.holding(store, records.ids(store))
    busy.update(dict.fromkeys(live, UNFINISHED))
    # A stopped workflow can still have a step retried, which needs every task it knows; without
    # them it turns "failed".
    for task_id, wf in stopped.items():
        busy.setdefault(
            task_id,
            f"its workflow {wf.id} is {wf.state}: retry its step, or end it with "
            f"'orchestra workflow cancel {wf.id}' to let prune archive it",
        )
    old: list[str] = []
    for n, s in enumerate(view.finished()):  # most recently ended first
        if keep is not None and n < keep:
            continue
        if cutoff is not None and (s.get("finished_at") or 0) >= cutoff:
            continue
        old.append(s["id"])
    if not old:
        return []
    root = ctx.root
    heads = refs.branch_heads(root)
    checked_out = {b for b in worktrees.list_worktrees(root).values() if b}
    registered = {str(p) for p in worktrees.list_worktrees(root)}
    targets = _Targets(ctx, heads)
    merged_into: dict[str, set[str]] = {}
    tasks: list[Task] = []
    branch_busy: set[str] = set()
    loaded: list[Task] = []
    for task_id in old:
        try:
            loaded.append(store.load(task_id))
        except OrchestraError as exc:
            report.kept.append({"task": task_id, "reason": f"cannot be read: {exc}"})
    for t in loaded:  # a branch shared by several tasks stays whole while any of them is busy
        if t.branch and t.id in busy:
            branch_busy.add(t.branch)
    for s in view.live.values():
        if s.get("branch"):
            branch_busy.add(s["branch"])
    for t in loaded:
        reason = _why_kept(ctx, t, busy, branch_busy, heads, checked_out, registered, targets, merged_into)
        if reason:
            report.kept.append({"task": t.id, "reason": reason})
        else:
            tasks.append(t)
    tasks.reverse()  # oldest first in the archive
    return tasks


def _why_kept(
    ctx: Context,
    t: Task,
    busy: dict[str, str],
    branch_busy: set[str],
    heads: dict[str, str],
    checked_out: set[str],
    registered: set[str],
    targets: _Targets,
    merged_into: dict[str, set[str]],
) -> str | None:
    if not t.state.final:
        return f"{t.state}"
    if t.id in busy:
        return busy[t.id]
    worktree = str(ctx.paths.worktree(t.id))
    if worktree in registered or Path(worktree).exists():
        return "its worktree still exists (orchestra cleanup removes it)"
    if t.agentless or not t.branch:
        return None
    if t.branch in branch_busy:
        return f"its branch {t.branch} is in use by an unfinished task"
    head = heads.get(t.branch)
    if head is None:
        if not t.attempts:
            return None  # never started: it never had a branch
        events = {e.get("event") for e in ctx.store.events(t.id)}
        if "branch_deleted" in events or "started" not in events:
            return None  # cleanup deleted it once merged, or no agent ever made it
        return f"its branch {t.branch} is gone, but not by cleanup (see orchestra doctor)"
    if t.branch in checked_out:
        return f"its branch {t.branch} is checked out"
    if isinstance(t.merged, dict) and t.merged.get("source_sha") == head:
        return None  # merged by orchestra (a squash leaves no ancestry to find)
    try:
        target = targets.of(t)
    except OrchestraError as exc:
        return f"no target to check its branch against: {exc}"
    target_head = heads.get(target)
    if target_head is None:
        return f"its target branch {target} does not exist"
    if target_head not in merged_into:
        merged_into[target_head] = refs.merged_branches(ctx.root, target_head)
    if t.branch in merged_into[target_head]:
        return None
    if t.base_sha == head and any(r != f"refs/heads/{t.branch}" for r in refs.containing(ctx.root, head)):
        return None  # no commits of its own
    return f"its branch {t.branch} is not merged into {target}"


class _Targets:
    """engine.merge.default_target, with the branch list and workflow records read once for many tasks."""

    def __init__(self, ctx: Context, heads: dict[str, str]) -> None:
        self.ctx = ctx
        self.heads = heads
        self.workflows: dict[str, Workflow | None] = {}
        self._current: str | bool | None = False

    def of(self, task: Task) -> str:
        if isinstance(task.merged, dict) and task.merged.get("into"):
            return str(task.merged["into"])
        if task.workflow:
            if task.workflow not in self.workflows:
                try:
                    self.workflows[task.workflow] = records.load(self.ctx.store, task.workflow)
                except OrchestraError:
                    self.workflows[task.workflow] = None
            wf = self.workflows[task.workflow]
            if wf is not None and wf.into:
                return wf.into
        first = task
        seen = {task.id}
        while first.on and first.on not in seen:
            seen.add(first.on)
            first = self.ctx.store.load(first.on)
        if first.base_ref and first.base_ref != "HEAD" and first.base_ref in self.heads:
            return first.base_ref
        if self._current is False:
            self._current = refs.current_branch(self.ctx.root)
        if not isinstance(self._current, str):
            raise InvalidInput("HEAD is detached, so there is no default branch to merge into")
        return self._current


def _finished_workflows(ctx: Context, chosen: set[str]) -> list[Workflow]:
    """Ended workflows whose every task is archived now or was before."""
    out = []
    for wf_id in records.ids(ctx.store):
        try:
            wf = records.load(ctx.store, wf_id)
        except OrchestraError:
            continue
        if not wf.final:
            continue
        ids = wf.task_ids()
        touched = any(tid in chosen for tid in ids)
        if touched and all(tid in chosen or not ctx.paths.task_file(tid).exists() for tid in ids):
            out.append(wf)
    return out


def _write_archive(ctx: Context, tasks: list[Task], wfs: list[Workflow]) -> tuple[Path, dict[str, int]]:
    """Everything about the tasks, compressed, synced and renamed into place; the event logs' sizes as read."""
    directory = ctx.paths.archive
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"prune-{stamp}-{secrets.token_hex(3)}.jsonl.gz"
    sizes: dict[str, int] = {}
    with atomic_writer(path, durable=True) as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        header = {"kind": "archive", "orchestra": __version__, "created_at": now(), "repo": str(ctx.root)}
        gz.write(_line({**header, "tasks": len(tasks), "workflows": len(wfs)}))
        for t in tasks:
            sizes[t.id] = _size(ctx.paths.event_file(t.id))
            gz.write(_line(_task_record(ctx, t)))
        for wf in wfs:
            gz.write(_line({"kind": "workflow", "id": wf.id, "workflow": wf.to_dict()}))
    return path, sizes


INDEX = "pruned.tsv"  # task id, tab, archive file name: `show` of a pruned id says where it went


def _note_archived(ctx: Context, ids: list[str], archive: Path) -> None:
    """One line per archived task: a lookup that never opens the archives. The archives stay the truth;
    without this file (deleted, or pruned by an older orchestra) a lookup reads them instead."""
    if not ids:
        return
    with open(ctx.paths.archive / INDEX, "a", encoding="utf-8") as fh:
        fh.write("".join(f"{task_id}\t{archive.name}\n" for task_id in ids))


def find_archived(ctx: Context, ref: str) -> list[tuple[str, str]]:
    """(task id, archive file name) of the pruned tasks whose id is `ref` or starts with it.

    The index answers for the archives it names; an archive it does not name (made by an older
    orchestra, or before the index was deleted; the next prune starts a new one) is read instead."""
    directory = ctx.paths.archive
    index = directory / INDEX
    found: dict[str, str] = {}
    indexed: set[str] = set()
    try:
        lines = index.read_text(encoding="utf-8").splitlines() if index.exists() else []
    except OSError:
        lines = []
    for line in lines:
        task_id, _, name = line.partition("\t")
        if not name:
            continue
        indexed.add(name)
        if task_id.startswith(ref):
            found[task_id] = name
    if directory.is_dir():
        for path in sorted(directory.glob("prune-*.jsonl.gz")):
            if path.name in indexed:
                continue
            try:
                for record in read_archive(path):
                    if record.get("kind") == "task" and str(record.get("id", "")).startswith(ref):
                        found.setdefault(str(record["id"]), path.name)  # the index knows where it was removed
            except (OSError, EOFError, ValueError):
                continue
    return sorted(found.items())


def _task_record(ctx: Context, t: Task) -> dict[str, Any]:
    paths = ctx.paths
    requests: dict[str, str] = {}
    request_dir = paths.request_dir(t.id)
    if request_dir.is_dir():
        for p in sorted(request_dir.iterdir()):
            if p.is_file() and not p.is_symlink():
                requests[p.name] = _text(p) or ""
    return {
        "kind": "task",
        "id": t.id,
        "task": t.to_dict(),
        "events": ctx.store.events(t.id),
        "transcript": _text(paths.log_file(t.id)),
        "stderr": _text(paths.stderr_file(t.id)),
        "gate_log": _text(paths.gate_log(t.id)),
        "requests": requests,
    }


def read_archive(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an archive, as written (for people and tests: `zcat FILE` shows the same)."""
    with gzip.open(path, "rb") as fh:
        for line in fh:
            yield json.loads(line)


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), default=str).encode("utf-8") + b"\n"


def _text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1

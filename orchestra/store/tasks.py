"""The durable queue: one JSON file per task (the truth), an event log per task, and two caches.

Task files are the truth, each written atomically under the store lock. Two caches make reading them
cost what the live work costs, not what the history costs. orchestra rebuilds both from the task
files whenever they are missing or in doubt, so a person may delete them at any time:

- `index.json`: the live tasks (queued, running, awaiting input) with their summaries; running
  totals of the tasks that ended (how many in each state, their cost and tokens); the corrupt task
  files met; and how much of the history it agrees with (bytes and inode). It is rewritten whole on
  every change, which costs what the live tasks cost.
- `history.jsonl`: one summary line per task that ended, appended as it ends (store.history). A
  task's newest line counts, and a task that is live again (retried, replied to) is described by the
  index, which wins over its old lines. Listings read it from the end and stop at their limit.

A write goes: journal, task files, history lines, index (its generation + 1), journal removed. The
journal (`index.stale`) holds the generation of the index the write started from and what that index
says about each task the write changes. Whoever next takes the lock and finds a journal replays it:
if the index is still at the journal's generation, each of those tasks is re-read from its file and
the index and history brought up to it; if not, the write had finished. So a crash anywhere costs a
repair of that one write, not a rebuild. An empty or unreadable journal, a missing or foreign index,
or a history shorter than the index says, means a full rebuild from the task files.

Readers take no lock unless they find a journal: the index is only ever replaced by rename and the
history only grows (or is replaced by rename, under a journal), so a reader sees one whole index and
exactly the part of the history that index describes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import CorruptTaskFile, InvalidInput, OrchestraError, StorageError, TaskNotFound
from orchestra.core.spend import totals
from orchestra.core.task import FINAL_STATES, State, Task, new_task_id, now, validate_id
from orchestra.store import history
from orchestra.store.files import (
    append_line,
    atomic_writer,
    commit_atomic,
    fsync_dir,
    prepare_atomic,
    read_json,
    unlink_quietly,
    write_atomic,
)
from orchestra.store.locks import ReentrantFileLock
from orchestra.store.paths import Paths

INDEX_VERSION = 2
UNFINISHED_STATES = frozenset(str(s) for s in State if not s.final)
FINISHED_STATES = frozenset(str(s) for s in FINAL_STATES)
# History lines beyond twice the tasks they describe, plus this many, are compacted away.
COMPACT_SLACK = 1000
_SUMMARY_CACHE = 512

Summary = dict[str, Any]
SaveItem = tuple[Task, str | None, dict[str, Any]]
StatKey = tuple[int, int, int]


def empty_index(gen: int = 0) -> dict[str, Any]:
    return {
        "version": INDEX_VERSION,
        "gen": gen,
        "tasks": {},
        "corrupt": {},
        "finished": {"tasks": 0, "states": {}, "manual": {}, "cost_micro": 0, "input_tokens": 0, "output_tokens": 0},
        "history": {"bytes": 0, "ino": None, "lines": 0},
    }


class View:
    """One consistent reading of the caches: an index, and the history as far as that index knows it."""

    def __init__(self, paths: Paths, index: dict[str, Any]) -> None:
        self.paths = paths
        self.index = index

    @property
    def live(self) -> dict[str, Summary]:
        """Queued, running and awaiting-input tasks by id."""
        tasks: dict[str, Summary] = self.index["tasks"]
        return tasks

    @property
    def corrupt(self) -> dict[str, str]:
        """Task files that could not be read, by path, with the reason."""
        corrupt: dict[str, str] = self.index["corrupt"]
        return corrupt

    def counts(self) -> dict[str, int]:
        """Tasks in each state (every state named, zero included)."""
        out = {str(s): 0 for s in State}
        for state, n in self.index["finished"]["states"].items():
            out[state] = out.get(state, 0) + int(n)
        for s in self.live.values():
            out[s["state"]] = out.get(s["state"], 0) + 1
        return out

    def manual_counts(self) -> dict[str, int]:
        """A person's merge attempts (`orchestra merge`, tasks marked manual) in each state: counted
        apart from agents' tasks, but included in counts()."""
        out: dict[str, int] = {state: int(n) for state, n in self.index["finished"]["manual"].items()}
        for s in self.live.values():
            if s.get("manual"):
                out[s["state"]] = out.get(s["state"], 0) + 1
        return out

    def spend(self) -> dict[str, Any]:
        """Cost and tokens of every task (core.spend.totals' shape), from the running totals."""
        done = self.index["finished"]
        live = totals(self.live.values())
        return {
            "tasks": done["tasks"] + live["tasks"],
            "cost_usd": round(done["cost_micro"] / 1_000_000 + live["cost_usd"], 6),
            "input_tokens": done["input_tokens"] + live["input_tokens"],
            "output_tokens": done["output_tokens"] + live["output_tokens"],
        }

    def live_newest_first(self) -> list[Summary]:
        return sorted(self.live.values(), key=lambda s: (s.get("created_at") or 0, s["id"]), reverse=True)

    def finished(self) -> Iterator[Summary]:
        """Tasks that ended, each once, the most recently ended first; reads only as far as asked."""
        h = self.index["history"]
        return history.newest_first(self.paths.history, int(h["bytes"]), h["ino"], skip=self.live)

    def every(self) -> Iterator[Summary]:
        """Every task: the live ones, newest first, then the ended ones, most recently ended first."""
        yield from self.live_newest_first()
        yield from self.finished()


class Store:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._ensured = False
        self._lock = ReentrantFileLock(paths.store_lock)
        self._index_cache: tuple[StatKey, dict[str, Any]] | None = None
        self._summary_cache: dict[str, tuple[StatKey, Summary]] = {}

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The store-wide write lock; re-entrant within one thread. Every state change happens under it."""
        if not self._ensured:
            self.paths.ensure()
            self._ensured = True
        with self._lock():
            yield

    def require_lock(self) -> None:
        if not self._lock.held:
            raise RuntimeError("store write without the store lock")

    # -- tasks -----------------------------------------------------------------

    def unused_id(self) -> str:
        self.require_lock()
        live = self._ensure()["tasks"]
        for _ in range(100):
            task_id = new_task_id()
            if (
                task_id not in live
                and not self.paths.task_file(task_id).exists()
                and not self.paths.event_file(task_id).exists()
            ):
                return task_id
        raise OrchestraError("could not find an unused task id")

    def load(self, task_id: str) -> Task:
        path = self.paths.task_file(validate_id(task_id))
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise TaskNotFound(f"no task {task_id}") from None
        except OSError as exc:
            raise OrchestraError(f"cannot read {path}: {exc.strerror}") from None
        try:
            task = Task.from_dict(json.loads(raw))
        except (ValueError, TypeError, UnicodeDecodeError, InvalidInput) as exc:
            raise CorruptTaskFile(path, str(exc) or type(exc).__name__) from None
        if task.id != task_id:
            raise CorruptTaskFile(path, f"holds task {task.id!r}")
        return task

    def save(self, task: Task, event: str | None = None, **event_data: Any) -> None:
        """Write a task and bring the caches up to it; the caller holds the lock."""
        self.save_many([(task, event, event_data)])

    def save_many(self, items: Sequence[SaveItem]) -> None:
        """Write several tasks with one journal and one index update; each item may name an event to log.

        A write the file system refuses before any task file changed (a full disk) changes nothing;
        one cut short later is repaired from its journal by the next command.
        """
        self.require_lock()
        if not items:
            return
        index = self._ensure()
        live = index["tasks"]
        before: dict[str, Summary | None] = {}
        last: dict[str, Task] = {}
        for task, _, _ in items:
            if task.id not in before:
                before[task.id] = live[task.id] if task.id in live else self._summary_on_disk(task.id)
            last[task.id] = task
        marker = self.paths.index_stale_marker
        write_atomic(marker, _journal(index["gen"], before), durable=False)
        stamp = now()
        prepared: list[tuple[Path, Path]] = []
        try:
            for task in last.values():
                task.updated_at = stamp
                path = self.paths.task_file(task.id)
                data = json.dumps(task.to_dict(), indent=1, sort_keys=True).encode("utf-8")
                prepared.append((prepare_atomic(path, data), path))
        except BaseException:
            for tmp, _ in prepared:
                unlink_quietly(tmp)
            unlink_quietly(marker)  # no task file changed, so the index still agrees with them
            raise
        done = 0
        try:
            for tmp, path in prepared:
                commit_atomic(tmp, path)
                done += 1
        except BaseException:
            for tmp, _ in prepared[done + 1 :]:
                unlink_quietly(tmp)
            raise  # the journal stays: the next command repairs the index from the files
        fsync_dir(self.paths.tasks)
        crash_point("between_task_and_index")
        new = _copy(index)
        lines: list[bytes] = []
        for task_id, task in last.items():
            new["corrupt"].pop(str(self.paths.task_file(task_id)), None)
            _apply(new, task_id, before[task_id], task.summary(), lines)
        if lines:
            self._append_history(new, lines)
        self._write_index(new)
        marker.unlink(missing_ok=True)
        self._maybe_compact(new)
        for task, event, event_data in items:
            if event:
                self.append_event(task.id, event, **event_data)

    def update(self, task_id: str, mutate: Callable[[Task], None], event: str | None = None, **event_data: Any) -> Task:
        """Load, change and save one task as a single locked step."""
        with self.locked():
            task = self.load(task_id)
            mutate(task)
            self.save(task, event, **event_data)
            return task

    def resolve(self, text: str) -> str:
        """A full id, or a unique prefix of one, as people type them."""
        text = validate_id((text or "").strip().lower())
        if self.paths.task_file(text).exists():
            return text
        matches = []
        try:
            with os.scandir(self.paths.tasks) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(text) and name.endswith(".json"):
                        matches.append(name[: -len(".json")])
        except FileNotFoundError:
            pass
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidInput(f"task id {text!r} is ambiguous: {', '.join(sorted(matches)[:5])}")
        raise TaskNotFound(f"no task {text}")

    def task_ids(self) -> list[str]:
        """The id of every task file, corrupt ones included (one directory listing)."""
        try:
            with os.scandir(self.paths.tasks) as entries:
                return sorted(
                    e.name[: -len(".json")] for e in entries if e.name.endswith(".json") and not e.name.startswith(".")
                )
        except FileNotFoundError:
            return []

    def all_tasks(self) -> tuple[list[Task], list[CorruptTaskFile]]:
        """Every task, read from its file (for the few callers that need the whole history)."""
        tasks: list[Task] = []
        bad: list[CorruptTaskFile] = []
        for task_id in self.task_ids():
            try:
                tasks.append(self.load(task_id))
            except CorruptTaskFile as exc:
                bad.append(exc)
            except (TaskNotFound, InvalidInput):
                continue
        return tasks, bad

    def remove(self, task_ids: Sequence[str]) -> None:
        """Delete tasks (their files, events, transcripts and requests) and forget them in the caches.

        Only for `prune`, after it has archived them; the caller holds the lock and has checked that
        each is still the one it archived.
        """
        self.require_lock()
        ids = list(dict.fromkeys(validate_id(t) for t in task_ids))
        if not ids:
            return
        index = self._ensure()
        live = index["tasks"]
        before = {t: (live[t] if t in live else self._summary_on_disk(t)) for t in ids}
        marker = self.paths.index_stale_marker
        write_atomic(marker, _journal(index["gen"], before, rewrite=ids), durable=False)
        for task_id in ids:
            try:
                self.paths.task_file(task_id).unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot remove {self.paths.task_file(task_id)}: {exc.strerror}") from exc
        fsync_dir(self.paths.tasks)
        crash_point("between_remove_and_index")
        new = _copy(index)
        for task_id in ids:
            new["corrupt"].pop(str(self.paths.task_file(task_id)), None)
            _apply(new, task_id, before[task_id], None, [])
        self._rewrite_history(new, drop=set(ids))
        self._write_index(new)
        self._remove_leftovers(ids)
        marker.unlink(missing_ok=True)

    def _remove_leftovers(self, task_ids: Iterable[str]) -> None:
        """What belonged to removed tasks besides their files: event logs, transcripts, requests."""
        for task_id in task_ids:
            if self.paths.task_file(task_id).exists():
                continue  # not removed after all (a journal replayed before the removal)
            for path in (
                self.paths.event_file(task_id),
                self.paths.log_file(task_id),
                self.paths.stderr_file(task_id),
                self.paths.gate_log(task_id),
            ):
                unlink_quietly(path)
            shutil.rmtree(self.paths.request_dir(task_id), ignore_errors=True)

    # -- reading -----------------------------------------------------------------

    def view(self) -> View:
        """The caches as they are now, repaired first when a write was cut short. Takes no lock unless it must."""
        marker = self.paths.index_stale_marker
        for _ in range(3):
            if os.path.lexists(marker):
                break
            index = self._read_index()
            if index is None:
                break
            if self.history_agrees(index):
                return View(self.paths, index)
            # The history was replaced after this index was read (a compaction): read the index again.
        if not self.paths.state.is_dir():
            return View(self.paths, empty_index())
        with self.locked():
            return View(self.paths, self._ensure())

    def live(self) -> dict[str, Summary]:
        """Queued, running and awaiting-input tasks by id: what the hot paths need, never the history."""
        return self.view().live

    def summary_of(self, task_id: str, view: View | None = None) -> Summary | None:
        """One task's summary: from the index when it is live, else from its file; None when there is no such task.

        Raises CorruptTaskFile when its file cannot be read.
        """
        live = (view or self.view()).live
        if task_id in live:
            return live[task_id]
        path = self.paths.task_file(validate_id(task_id))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OrchestraError(f"cannot read {path}: {exc.strerror}") from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._summary_cache.get(task_id)
        if cached and cached[0] == key:
            return cached[1]
        try:
            summary = self.load(task_id).summary()
        except TaskNotFound:
            return None
        if len(self._summary_cache) >= _SUMMARY_CACHE:
            self._summary_cache.clear()
        self._summary_cache[task_id] = (key, summary)
        return summary

    def corrupt_files(self) -> dict[str, str]:
        return self.view().corrupt

    def summaries(self) -> dict[str, Summary]:
        """Every task's summary, by id. Reads the whole history: only for callers that need all of it."""
        return {s["id"]: s for s in self.view().every()}

    # -- keeping the caches right ----------------------------------------------------

    def rebuild_index(self) -> dict[str, Any]:
        """Both caches from the task files (reads every one of them); the caller holds the lock."""
        self.require_lock()
        marker = self.paths.index_stale_marker
        old = self._read_index()
        try:
            write_atomic(marker, b"", durable=False)  # a rebuild cut short is started again
        except StorageError:
            pass
        new = empty_index(int(old["gen"]) if old else 0)
        ended: list[tuple[float, str, bytes]] = []
        for task_id in self.task_ids():
            path = str(self.paths.task_file(task_id))
            try:
                task = self.load(task_id)
            except TaskNotFound:
                continue
            except OrchestraError as exc:  # corrupt, or not even readable: named, never dropped silently
                new["corrupt"][path] = str(exc) if isinstance(exc, CorruptTaskFile) else f"corrupt task file {exc}"
                continue
            summary = task.summary()
            if summary["state"] in UNFINISHED_STATES:
                new["tasks"][task_id] = summary
            else:
                _count(new["finished"], summary, 1)
                ended.append(
                    (task.finished_at or task.updated_at or task.created_at or 0.0, task_id, history.encode(summary))
                )
        ended.sort()
        try:
            with atomic_writer(self.paths.history) as fh:
                for _, _, line in ended:
                    fh.write(line)
            st = os.stat(self.paths.history)
            new["history"] = {"bytes": st.st_size, "ino": st.st_ino, "lines": len(ended)}
            self._write_index(new)
        except (StorageError, OSError):
            return new  # a full disk must not stop anyone reading; the journal keeps the rebuild pending
        marker.unlink(missing_ok=True)
        return new

    def live_agrees(self, view: View) -> bool:
        """Whether each live task's file still says what the index says; no lock, no write.

        Files edited, cut short or replaced behind orchestra's back are noticed by the next `status`
        (which then calls verify_live) at the cost of reading the live tasks' files only.
        """
        for task_id, recorded in view.live.items():
            try:
                if self.load(task_id).summary() != recorded:
                    return False
            except OrchestraError:
                return False
        return True

    def checked_view(self) -> View:
        """view(), after noticing live task files changed behind orchestra's back (for status and list)."""
        view = self.view()
        if self.live_agrees(view):
            return view
        self.verify_live()
        return self.view()

    def verify_live(self) -> list[str]:
        """Check the live tasks and the known-corrupt files against their files (the scheduler's start).

        Costs what the live tasks cost. Returns a line for each correction made.
        """
        notes: list[str] = []
        with self.locked():
            index = self._ensure()
            new = _copy(index)
            lines: list[bytes] = []
            for task_id, recorded in index["tasks"].items():
                current = self._current(new, task_id)
                if current != recorded:
                    _apply(new, task_id, recorded, current, lines)
                    notes.append(
                        f"{task_id}: index said {recorded['state']}, its file says "
                        f"{current['state'] if current else 'corrupt or missing'}"
                    )
            for path in list(index["corrupt"]):
                task_id = Path(path).name[: -len(".json")] if path.endswith(".json") else ""
                try:
                    validate_id(task_id)
                except InvalidInput:
                    new["corrupt"].pop(path, None)
                    continue
                if task_id in new["tasks"]:
                    continue
                current = self._current(new, task_id)
                if current is not None:
                    _apply(new, task_id, None, current, lines)
                    notes.append(f"{task_id}: its task file is readable again")
            if new["corrupt"] != index["corrupt"] or notes:
                if lines:
                    self._append_history(new, lines)
                self._write_index(new)
                self._maybe_compact(new)
        return notes

    def note_corrupt(self, exc: CorruptTaskFile) -> None:
        """A live task whose file turned out unreadable: out of the live index, named as corrupt."""
        path = Path(str(exc.path))
        task_id = path.name[: -len(".json")]
        with self.locked():
            index = self._ensure()
            if task_id not in index["tasks"] or path != self.paths.task_file(task_id):
                return
            new = _copy(index)
            _apply(new, task_id, index["tasks"][task_id], None, [])
            new["corrupt"][str(path)] = str(exc)
            self._write_index(new)

    def _ensure(self) -> dict[str, Any]:
        """An index that agrees with the task files, repaired or rebuilt as needed; under the lock."""
        self.require_lock()
        index = self._read_index()
        if os.path.lexists(self.paths.index_stale_marker):
            return self._replay(index)
        if index is None or not self.history_agrees(index):
            return self.rebuild_index()
        return index

    def _replay(self, index: dict[str, Any] | None) -> dict[str, Any]:
        """Finish the write a journal describes, from the task files as they are now."""
        marker = self.paths.index_stale_marker
        journal = read_json(marker)
        if index is None or not _valid_journal(journal):
            return self.rebuild_index()
        assert isinstance(journal, dict)
        rewrite = journal.get("rewrite")
        if journal["gen"] + 1 == index["gen"]:
            # The index was written after the journal; only the journal's removal was missed.
            if rewrite is not None:
                self._remove_leftovers(rewrite)
            marker.unlink(missing_ok=True)
            return index
        if journal["gen"] != index["gen"] or (rewrite is None and not self.history_agrees(index)):
            return self.rebuild_index()
        new = _copy(index)
        lines: list[bytes] = []
        for task_id, before in journal["old"].items():
            _apply(new, task_id, before, self._current(new, task_id), lines)
        if rewrite is not None:
            gone = {t for t in rewrite if not self.paths.task_file(t).exists()}
            self._rewrite_history(new, drop=gone)
        if lines:
            self._append_history(new, lines)
        self._write_index(new)
        if rewrite is not None:
            self._remove_leftovers(rewrite)
        marker.unlink(missing_ok=True)
        return new

    def _current(self, index: dict[str, Any], task_id: str) -> Summary | None:
        """A task's summary from its file now; a corrupt file is named in `index` and counts as no task."""
        path = str(self.paths.task_file(task_id))
        try:
            summary = self.load(task_id).summary()
        except TaskNotFound:
            index["corrupt"].pop(path, None)
            return None
        except CorruptTaskFile as exc:
            index["corrupt"][path] = str(exc)
            return None
        except OrchestraError as exc:
            index["corrupt"][path] = f"corrupt task file {exc}"
            return None
        index["corrupt"].pop(path, None)
        return summary

    def _summary_on_disk(self, task_id: str) -> Summary | None:
        """What the caches count for a task that is not live: its file's summary (None: new or unreadable)."""
        try:
            return self.load(task_id).summary()
        except OrchestraError:
            return None

    def _read_index(self) -> dict[str, Any] | None:
        path = self.paths.index
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._index_cache and self._index_cache[0] == key:
            return self._index_cache[1]
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        if not _valid_index(data):
            return None
        self._index_cache = (key, data)
        return data

    def history_agrees(self, index: dict[str, Any]) -> bool:
        """The history on disk holds at least what the index says it does (same file, not shorter)."""
        recorded = index["history"]
        try:
            st = os.stat(self.paths.history)
        except FileNotFoundError:
            return int(recorded["bytes"]) == 0
        except OSError:
            return False
        if recorded["ino"] is None:
            return int(recorded["bytes"]) == 0
        return bool(st.st_ino == recorded["ino"] and st.st_size >= recorded["bytes"])

    def _append_history(self, index: dict[str, Any], lines: list[bytes]) -> None:
        path = self.paths.history
        recorded = index["history"]
        data = b"".join(lines)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if st.st_size and st.st_size != recorded["bytes"] and os.pread(fd, 1, st.st_size - 1) != b"\n":
                data = b"\n" + data  # a line torn by a crash must not swallow the next one
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            st = os.fstat(fd)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        index["history"] = {"bytes": st.st_size, "ino": st.st_ino, "lines": int(recorded["lines"]) + len(lines)}

    def _rewrite_history(self, index: dict[str, Any], drop: set[str]) -> None:
        """The history with one line per task (its newest), without `drop`; replaced by rename.

        The newest line of a task that is live again is kept: a reader still holding an older index,
        in which that task had ended, must find it in the new file too.
        """
        kept: list[bytes] = []
        recorded = index["history"]
        if recorded["ino"] is not None or self.paths.history.exists():
            for summary in history.newest_first(self.paths.history, int(recorded["bytes"]), recorded["ino"], drop):
                if summary["state"] in FINISHED_STATES:
                    kept.append(history.encode(summary))
        with atomic_writer(self.paths.history) as fh:
            for line in reversed(kept):
                fh.write(line)
        st = os.stat(self.paths.history)
        index["history"] = {"bytes": st.st_size, "ino": st.st_ino, "lines": len(kept)}

    def _maybe_compact(self, index: dict[str, Any]) -> None:
        """Drop superseded history lines once they outnumber the tasks; under a journal, like any write."""
        tasks = int(index["finished"]["tasks"]) + len(index["tasks"])
        if int(index["history"]["lines"]) <= 2 * tasks + COMPACT_SLACK:
            return
        marker = self.paths.index_stale_marker
        write_atomic(marker, _journal(index["gen"], {}, rewrite=[]), durable=False)
        new = _copy(index)
        self._rewrite_history(new, drop=set())
        self._write_index(new)
        marker.unlink(missing_ok=True)

    def _write_index(self, index: dict[str, Any]) -> None:
        index["gen"] = int(index["gen"]) + 1
        data = json.dumps(index, separators=(",", ":")).encode("utf-8")
        write_atomic(self.paths.index, data, durable=False)
        st = os.stat(self.paths.index)
        self._index_cache = ((st.st_ino, st.st_mtime_ns, st.st_size), index)

    # -- events ----------------------------------------------------------------

    def append_event(self, task_id: str, event: str, **data: Any) -> None:
        record = {"ts": now(), "event": event, **data}
        append_line(self.paths.event_file(validate_id(task_id)), json.dumps(record, default=str))

    def events(self, task_id: str) -> list[dict[str, Any]]:
        path = self.paths.event_file(validate_id(task_id))
        out: list[dict[str, Any]] = []
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        out.append({"event": "unreadable", "line": line.rstrip("\n")[:200]})
        except FileNotFoundError:
            pass
        return out


# -- the index as data -------------------------------------------------------------------


def read_index_file(path: Path) -> dict[str, Any] | None:
    """The index as it is on disk, or None when missing or not an index of this version (for doctor)."""
    data = read_json(path)
    return data if _valid_index(data) else None  # type: ignore[return-value]


def tally(summaries: Iterable[Summary]) -> dict[str, Any]:
    """The running totals the index keeps for these tasks that ended (for doctor to check them)."""
    finished = empty_index()["finished"]
    for s in summaries:
        _count(finished, s, 1)
    return dict(finished)


def _journal(gen: int, before: dict[str, Summary | None], rewrite: list[str] | None = None) -> bytes:
    data: dict[str, Any] = {"gen": gen, "old": before}
    if rewrite is not None:
        data["rewrite"] = rewrite
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def _valid_journal(data: object) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("gen"), int) or not isinstance(data.get("old"), dict):
        return False
    rewrite = data.get("rewrite", [])
    if not isinstance(rewrite, list):
        return False
    try:
        for task_id in [*data["old"], *rewrite]:
            validate_id(task_id)
    except InvalidInput:
        return False
    return all(s is None or (isinstance(s, dict) and isinstance(s.get("state"), str)) for s in data["old"].values())


def _valid_index(data: object) -> bool:
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION or not isinstance(data.get("gen"), int):
        return False
    finished, recorded = data.get("finished"), data.get("history")
    return (
        isinstance(data.get("tasks"), dict)
        and isinstance(data.get("corrupt"), dict)
        and isinstance(finished, dict)
        and isinstance(finished.get("states"), dict)
        and isinstance(finished.get("manual"), dict)
        and all(isinstance(finished.get(k), int) for k in ("tasks", "cost_micro", "input_tokens", "output_tokens"))
        and isinstance(recorded, dict)
        and isinstance(recorded.get("bytes"), int)
        and isinstance(recorded.get("lines"), int)
        and (recorded.get("ino") is None or isinstance(recorded.get("ino"), int))
    )


def _copy(index: dict[str, Any]) -> dict[str, Any]:
    """A copy to change: other threads may be reading the cached index right now."""
    finished = index["finished"]
    return {
        **index,
        "tasks": dict(index["tasks"]),
        "corrupt": dict(index["corrupt"]),
        "finished": {**finished, "states": dict(finished["states"]), "manual": dict(finished["manual"])},
        "history": dict(index["history"]),
    }


def _apply(
    index: dict[str, Any], task_id: str, before: Summary | None, after: Summary | None, lines: list[bytes]
) -> None:
    """Move one task's contribution to the caches from `before` to `after` (None: no such task)."""
    live = index["tasks"]
    if before is not None and before.get("state") not in UNFINISHED_STATES:
        _count(index["finished"], before, -1)
    live.pop(task_id, None)
    if after is None:
        return
    if after["state"] in UNFINISHED_STATES:
        live[task_id] = after
    else:
        _count(index["finished"], after, 1)
        lines.append(history.encode(after))


def _count(finished: dict[str, Any], summary: Summary, sign: int) -> None:
    finished["tasks"] += sign
    states = finished["states"]
    state = str(summary.get("state"))
    states[state] = states.get(state, 0) + sign
    if not states[state]:
        del states[state]
    if summary.get("manual"):
        manual = finished["manual"]
        manual[state] = manual.get(state, 0) + sign
        if not manual[state]:
            del manual[state]
    cost = summary.get("cost_usd")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        finished["cost_micro"] += sign * round(cost * 1_000_000)
    for key in ("input_tokens", "output_tokens"):
        value = summary.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            finished[key] += sign * value

"""The durable queue: one JSON file per task, an index, and an event log per task.

Task files are the truth. `index.json` is a cache of each task's summary so that
`status` and the scheduler need not read thousands of files; it is rewritten under
the same lock as the task file, and an `index.stale` marker brackets the pair of
writes so that a crash between them is noticed and the index rebuilt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import CorruptTaskFile, InvalidInput, OrchestraError, StorageError, TaskNotFound
from orchestra.core.task import Task, new_task_id, now, validate_id
from orchestra.store.files import append_line, unlink_quietly, write_atomic, write_many_atomic
from orchestra.store.locks import ReentrantFileLock
from orchestra.store.paths import Paths

INDEX_VERSION = 1


class Store:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._ensured = False
        self._lock = ReentrantFileLock(paths.store_lock)
        self._index_cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

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
        known = self.summaries()
        for _ in range(100):
            task_id = new_task_id()
            if task_id not in known and not self.paths.task_file(task_id).exists():
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
        """Write a task and its index entry; the caller holds the lock."""
        self.require_lock()
        task.updated_at = now()
        marker = self.paths.index_stale_marker
        data = json.dumps(task.to_dict(), indent=1, sort_keys=True).encode("utf-8")
        try:
            marker.touch()
        except OSError as exc:
            raise StorageError(f"cannot write {marker}: {exc.strerror}; nothing was changed") from exc
        try:
            write_atomic(self.paths.task_file(task.id), data)
        except StorageError:
            unlink_quietly(marker)  # the task file is unchanged, so the index still agrees with it
            raise
        crash_point("between_task_and_index")
        index = self._load_index_for_write()
        index["tasks"][task.id] = task.summary()
        index["corrupt"].pop(str(self.paths.task_file(task.id)), None)
        index["files"][task.id] = _file_key(self.paths.task_file(task.id))
        index["dir"] = _dir_key(self.paths.tasks)
        self._write_index(index)
        marker.unlink(missing_ok=True)
        if event:
            self.append_event(task.id, event, **event_data)

    def save_many(self, tasks: list[Task], event: str | None = None, **event_data: Any) -> None:
        """Write many tasks as one batch: their files with one sync, and one index write; the caller holds the lock.

        A value in `event_data` may be a function of the task (each task's own error, say).
        """
        self.require_lock()
        if not tasks:
            return
        marker = self.paths.index_stale_marker
        try:
            marker.touch()
        except OSError as exc:
            raise StorageError(f"cannot write {marker}: {exc.strerror}; nothing was changed") from exc
        items = []
        for task in tasks:
            task.updated_at = now()
            # Compact: json's C encoder, ten times faster than the indented form for a batch of thousands.
            data = json.dumps(task.to_dict(), sort_keys=True, separators=(",", ":")).encode()
            items.append((self.paths.task_file(task.id), data))
        write_many_atomic(items)
        index = self._load_index_for_write()
        for task in tasks:
            index["tasks"][task.id] = task.summary()
            index["corrupt"].pop(str(self.paths.task_file(task.id)), None)
            index["files"][task.id] = _file_key(self.paths.task_file(task.id))
        index["dir"] = _dir_key(self.paths.tasks)
        self._write_index(index)
        marker.unlink(missing_ok=True)
        if event:
            for task in tasks:
                fields = {k: (v(task) if callable(v) else v) for k, v in event_data.items()}
                self.append_event(task.id, event, **fields)

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
        matches = [tid for tid in self.summaries() if tid.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidInput(f"task id {text!r} is ambiguous: {', '.join(sorted(matches)[:5])}")
        raise TaskNotFound(f"no task {text}")

    def all_tasks(self) -> tuple[list[Task], list[CorruptTaskFile]]:
        tasks: list[Task] = []
        bad: list[CorruptTaskFile] = []
        for task_id in self.summaries():
            try:
                tasks.append(self.load(task_id))
            except CorruptTaskFile as exc:
                bad.append(exc)
            except TaskNotFound:
                continue
        return tasks, bad

    # -- index -----------------------------------------------------------------

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Every task's summary, by id; rebuilt from the task files when in doubt."""
        return self.index()["tasks"]

    def corrupt_files(self) -> dict[str, str]:
        return self.index()["corrupt"]

    def verify(self, ids: Iterable[str] | None = None) -> bool:
        """Notice task files changed behind the index's back (edited, truncated, replaced or added by
        another tool) and rebuild the index, so listings show them as they are, or name them as corrupt.

        Every task file is looked at (one stat each), or with `ids` only those and the directory
        itself (which any file added, removed or replaced changes): cheap enough for `status`.
        Returns True when the index was rebuilt.
        """
        index = self.index()
        if self._matches(index, ids):
            return False
        with self.locked():  # a writer between its task file and the index holds the lock
            index = self.index()
            if self._matches(index, ids):
                return False
            self.rebuild_index()
            return True

    def _matches(self, index: dict[str, Any], ids: Iterable[str] | None = None) -> bool:
        files = index.get("files") or {}
        if ids is not None:
            if index.get("dir") != _dir_key(self.paths.tasks):
                return False
            for task_id in ids:
                try:
                    if files.get(task_id) != _file_key(self.paths.task_file(task_id)):
                        return False
                except OSError:
                    return False
            return True
        seen = 0
        try:
            entries = os.scandir(self.paths.tasks)
        except FileNotFoundError:
            return not files
        with entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".json") or name.startswith("."):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    return False
                if files.get(name[:-5]) != [st.st_ino, st.st_mtime_ns, st.st_size]:
                    return False
                seen += 1
        return seen == len(files)

    def index(self) -> dict[str, Any]:
        index = None if self.paths.index_stale_marker.exists() else self._read_index()
        if index is None:
            if not self.paths.state.is_dir():
                return {"version": INDEX_VERSION, "tasks": {}, "corrupt": {}, "files": {}}
            with self.locked():
                index = None if self.paths.index_stale_marker.exists() else self._read_index()
                if index is None:
                    index = self.rebuild_index()
        return index

    def rebuild_index(self) -> dict[str, Any]:
        self.require_lock()
        index: dict[str, Any] = {"version": INDEX_VERSION, "tasks": {}, "corrupt": {}, "files": {}}
        index["dir"] = _dir_key(self.paths.tasks)  # before the scan: a file added meanwhile changes it
        try:
            entries = list(os.scandir(self.paths.tasks))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            task_id = entry.name[: -len(".json")]
            try:
                key = _file_key(entry.path)
            except OSError:
                continue  # gone meanwhile
            index["files"][task_id] = key  # a corrupt file too: verify() notices when it is repaired
            try:
                task = self.load(task_id)
            except (CorruptTaskFile, InvalidInput) as exc:
                index["corrupt"][entry.path] = str(exc)
                continue
            except TaskNotFound:
                del index["files"][task_id]
                continue
            index["tasks"][task.id] = task.summary()
        try:
            self._write_index(index)
        except StorageError:
            return index  # a full disk must not stop anyone reading; the marker keeps it pending
        self.paths.index_stale_marker.unlink(missing_ok=True)
        return index

    def _read_index(self) -> dict[str, Any] | None:
        path = self.paths.index
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._index_cache and self._index_cache[0] == key:
            return self._index_cache[1]
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        if (
            not isinstance(data, dict)
            or data.get("version") != INDEX_VERSION
            or not isinstance(data.get("tasks"), dict)
            or not isinstance(data.get("corrupt"), dict)
        ):
            return None
        if not isinstance(data.get("files"), dict):
            data["files"] = {}  # written by an orchestra that kept no file keys: verify() rebuilds it
        self._index_cache = (key, data)
        return data

    def _load_index_for_write(self) -> dict[str, Any]:
        index = self._read_index()
        if index is None:
            index = self.rebuild_index()
        # A copy: other threads may be iterating over the cached dicts right now.
        return {
            **index,
            "tasks": dict(index["tasks"]),
            "corrupt": dict(index["corrupt"]),
            "files": dict(index.get("files") or {}),
        }

    def _write_index(self, index: dict[str, Any]) -> None:
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


def _file_key(path: object) -> list[int]:
    """What tells one version of a task file from another: inode (every save is a new file), mtime, size."""
    st = os.stat(path, follow_symlinks=False)  # type: ignore[arg-type]
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def _dir_key(path: object) -> int | None:
    """The task directory's mtime: any task file added, removed or replaced (every save) changes it."""
    try:
        return os.stat(path).st_mtime_ns  # type: ignore[arg-type]
    except OSError:
        return None

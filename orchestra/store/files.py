"""Crash-safe file writes: a reader sees the old content or the new, never a mix."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from orchestra.core.errors import StorageError

# Temp files are named `.<target>.<pid>.<random>.tmp`; doctor finds stale ones by this shape.
TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes, *, durable: bool = True, mode: int = 0o600) -> None:
    """Temp file in the same directory, fsync, rename over the target, fsync the directory.

    `durable=False` skips the fsyncs for caches that can be rebuilt from other files.
    """
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise _storage_error(path, exc) from exc
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise _storage_error(path, exc) from exc
        raise
    if durable:
        fsync_dir(path.parent)


def write_many_atomic(items: list[tuple[Path, bytes]], *, mode: int = 0o600) -> None:
    """write_atomic for a batch, with one sync instead of one per file.

    Every temp file is written first, then the filesystem is synced once (syncfs), then each is
    renamed over its target and the directories are synced: each file is still old or new, never
    a mix, and durable once this returns. Killed half way, some files are new and some old.
    """
    pending: list[tuple[Path, Path]] = []
    try:
        for path, data in items:
            tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            pending.append((tmp, path))
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        if len(pending) > 8:
            _sync_filesystem(pending[0][0].parent)
        else:
            for tmp, _ in pending:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        while pending:
            tmp, path = pending[0]
            os.replace(tmp, path)
            pending.pop(0)
    except OSError as exc:
        for tmp, _ in pending:
            unlink_quietly(tmp)
        raise _storage_error(pending[0][1] if pending else Path("."), exc) from exc
    for directory in {path.parent for path, _ in items}:
        fsync_dir(directory)


def _sync_filesystem(directory: Path) -> None:
    """syncfs(2) on the filesystem holding `directory`; os.sync() where that is not available."""
    import ctypes  # ctypes costs ~3 ms: only a write that met a full disk pays
    import ctypes.util  # with ctypes above

    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        if libc.syncfs(fd) == 0:
            return
    except (OSError, AttributeError):
        pass
    finally:
        os.close(fd)
    os.sync()


def _storage_error(path: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot write {path}: {exc.strerror or exc}; nothing was changed")


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def append_line(path: Path, line: str) -> None:
    """One write() with O_APPEND, so concurrent appenders never interleave inside a line."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot append to {path}: {exc.strerror or exc}") from exc


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def private_opener(path: str, flags: int) -> int:
    """For open(..., opener=): files orchestra creates are readable by their owner only."""
    return os.open(path, flags, 0o600)


def read_json(path: Path) -> object | None:
    """A small JSON file's content, or None when it is missing or unreadable (callers rebuild or default)."""
    try:
        data: object = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data

"""Crash-safe file writes: a reader sees the old content or the new, never a mix."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from orchestra.core.errors import StorageError

# Temp files are named `.<target>.<pid>.<random>.tmp`; doctor finds stale ones by this shape.
TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes, *, durable: bool = True, mode: int = 0o600) -> None:
    """Temp file in the same directory, fsync, rename over the target, fsync the directory.

    `durable=False` skips the fsyncs for caches that can be rebuilt from other files.
    """
    tmp = prepare_atomic(path, data, durable=durable, mode=mode)
    commit_atomic(tmp, path)
    if durable:
        fsync_dir(path.parent)


def prepare_atomic(path: Path, data: bytes, *, durable: bool = True, mode: int = 0o600) -> Path:
    """The first half of an atomic write: the new content in a temp file beside `path`."""
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise _storage_error(path, exc) from exc
    try:
        _write_all(fd, data)
        if durable:
            os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise _storage_error(path, exc) from exc
        raise
    os.close(fd)
    return tmp


def commit_atomic(tmp: Path, path: Path) -> None:
    """The second half: the temp file takes the target's name in one rename."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        unlink_quietly(tmp)
        raise _storage_error(path, exc) from exc


def temp_name(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{os.urandom(4).hex()}{TMP_SUFFIX}")


@contextmanager
def atomic_writer(path: Path, *, durable: bool = False, mode: int = 0o600) -> Iterator[BinaryIO]:
    """A file object whose content replaces `path` in one rename when the block ends without error.

    For content too big to hold in memory at once (a rebuilt history, an archive).
    """
    tmp = temp_name(path)
    try:
        fh = open(tmp, "xb", opener=lambda p, f: os.open(p, f, mode))  # noqa: SIM115 - closed below
    except OSError as exc:
        raise _storage_error(path, exc) from exc
    try:
        with fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise _storage_error(path, exc) from exc
        raise
    if durable:
        fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


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

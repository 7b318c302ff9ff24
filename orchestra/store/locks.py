"""Locks on state files: the store's write lock, and the one-holder locks for the scheduler and merges.

The store lock is an flock on `store.lock` plus a threading lock per process, so
threads of one process queue without polling and only other processes are polled.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from orchestra.core.errors import OrchestraError

if TYPE_CHECKING:
    from filelock import BaseFileLock

LOCK_TIMEOUT = 60.0
# How often a writer blocked by another process retries the file lock (50 ms, the
# filelock default used before, made every contended write in a submit burst wait).
LOCK_POLL_SECONDS = 0.005

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(path: Path) -> threading.Lock:
    """One threading lock per lock file, shared by every holder in this process."""
    key = os.path.abspath(path)
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.get(key)
        if lock is None:
            lock = _PROCESS_LOCKS[key] = threading.Lock()
        return lock


class ReentrantFileLock:
    """An exclusive lock on a file, re-entrant within one thread, shared fairly between threads."""

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._held = threading.local()

    @property
    def held(self) -> bool:
        return bool(getattr(self._held, "depth", 0))

    @contextmanager
    def __call__(self) -> Iterator[None]:
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        in_process = _process_lock(self.path)
        if not in_process.acquire(timeout=self.timeout):
            raise OrchestraError(f"timed out after {self.timeout:.0f}s waiting for {self.path}")
        try:
            fd = flock(self.path, self.timeout)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                os.close(fd)  # closing the descriptor releases the flock
        finally:
            in_process.release()


def flock(path: Path, timeout: float) -> int:
    """flock on the file, as filelock does, without its ~20 ms import in every submit; returns the fd."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OrchestraError(f"cannot lock {path}: {exc.strerror}") from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(LOCK_POLL_SECONDS)
                continue
            os.close(fd)
            raise OrchestraError(f"timed out after {timeout:.0f}s waiting for {path}") from None
        except OSError as exc:
            os.close(fd)
            raise OrchestraError(f"cannot lock {path}: {exc.strerror}") from None


def holder_alive(path: Path) -> bool:
    """True while some process holds the lock on `path` (probed without waiting)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class Held:
    """A lock held for as long as the object lives (the scheduler's, for its whole run)."""

    def __init__(self, path: Path, timeout: float = 0) -> None:
        from filelock import FileLock  # ~20 ms to import: schedulers and merges pay it, submit does not

        self._lock: BaseFileLock = FileLock(str(path), timeout=timeout, mode=0o600)

    def acquire(self) -> bool:
        from filelock import Timeout  # here, not at the top, for the same ~20 ms (see __init__)

        try:
            self._lock.acquire()
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


@contextmanager
def exclusive(path: Path, timeout: float, busy_message: str) -> Iterator[None]:
    lock = Held(path, timeout)
    if not lock.acquire():
        raise OrchestraError(busy_message)
    try:
        yield
    finally:
        lock.release()

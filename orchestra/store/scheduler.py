"""The record of a repository's one scheduler: its lock (the truth) and its info file (its pid)."""

from __future__ import annotations

import json
import os

from orchestra.core.task import now
from orchestra.store.files import write_atomic
from orchestra.store.locks import Held, holder_alive
from orchestra.store.paths import Paths


def scheduler_pid(paths: Paths) -> int | None:
    """The pid of the live scheduler, None when none runs, -1 when one runs but its pid is unknown."""
    if not holder_alive(paths.scheduler_lock):
        return None
    try:
        return int(json.loads(paths.scheduler_info.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def claim(paths: Paths, max_concurrent: int) -> Held | None:
    """Become the repository's scheduler; None when another one is."""
    paths.ensure()
    lock = Held(paths.scheduler_lock, 0)
    if not lock.acquire():
        return None
    info = {"pid": os.getpid(), "started_at": now(), "max_concurrent": max_concurrent}
    write_atomic(paths.scheduler_info, json.dumps(info).encode())
    return lock


def release(paths: Paths, lock: Held) -> None:
    try:
        paths.scheduler_info.unlink(missing_ok=True)
    finally:
        lock.release()

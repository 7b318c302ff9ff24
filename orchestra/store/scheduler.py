"""The record of a repository's one scheduler: its lock (the truth) and its info file (its pid)."""

from __future__ import annotations

import json
import os

from orchestra.core.task import now
from orchestra.store.files import write_atomic
from orchestra.store.locks import Held, holder_alive
from orchestra.store.paths import Paths

# How long a would-be scheduler keeps trying for the lock. `holder_alive` (status, wait, and
# `start_background` polling every 20 ms for the scheduler it just started) probes it by taking
# it for a few microseconds: a single try that met a probe gave up, and no scheduler ran.
CLAIM_WAIT = 0.5


def scheduler_pid(paths: Paths) -> int | None:
    """The pid of the live scheduler, None when none runs, -1 when one runs but its pid is unknown."""
    if not holder_alive(paths.scheduler_lock):
        return None
    try:
        return int(json.loads(paths.scheduler_info.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def max_concurrent_flag(paths: Paths) -> int | None:
    """The live scheduler's `worker -j N`, when it was started with one."""
    try:
        info = json.loads(paths.scheduler_info.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(info, dict) and info.get("from_flag") and isinstance(info.get("max_concurrent"), int):
        return int(info["max_concurrent"])
    return None


def note_no_starts(paths: Paths, why: str | None) -> None:
    """What the live scheduler says stops every new start (a cluster that refuses it), for status to show."""
    try:
        info = json.loads(paths.scheduler_info.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(info, dict) or info.get("pid") != os.getpid():
        return  # only the scheduler that wrote the record speaks in it
    info["no_starts"] = why
    write_atomic(paths.scheduler_info, json.dumps(info).encode())


def no_starts(paths: Paths) -> str | None:
    """Why the live scheduler starts nothing, in its own words; None when it does, or none runs."""
    if not holder_alive(paths.scheduler_lock):
        return None
    try:
        info = json.loads(paths.scheduler_info.read_text())
    except (OSError, ValueError):
        return None
    why = info.get("no_starts") if isinstance(info, dict) else None
    return why if isinstance(why, str) and why else None


def claim(paths: Paths, max_concurrent: int, from_flag: bool = False) -> Held | None:
    """Become the repository's scheduler; None when another one is.

    `from_flag`: max_concurrent came from `worker -j` and not from the settings, so
    readers (why a task waits) must take it from here.
    """
    paths.ensure()
    lock = Held(paths.scheduler_lock, CLAIM_WAIT)
    if not lock.acquire():
        return None
    info = {"pid": os.getpid(), "started_at": now(), "max_concurrent": max_concurrent, "from_flag": from_flag}
    write_atomic(paths.scheduler_info, json.dumps(info).encode())
    return lock


def release(paths: Paths, lock: Held) -> None:
    try:
        paths.scheduler_info.unlink(missing_ok=True)
    finally:
        lock.release()

"""Temp files that writers killed mid-write leave behind.

Shared by `doctor` (which reports them) and the scheduler's start-up (which removes them), so both
judge "stale" the same way.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

from orchestra.agent import processes
from orchestra.store.files import TMP_PREFIX, TMP_SUFFIX
from orchestra.store.paths import Paths

_TMP_RE = re.compile(re.escape(TMP_PREFIX) + r".+\.(\d+)\.[0-9a-f]{8}" + re.escape(TMP_SUFFIX) + "$")

TEMP_FILE_MAX_AGE = 600.0  # no atomic write of orchestra's takes this long: older temp files are stale


def stale_temp_files(paths: Paths, *, history: bool = True) -> list[Path]:
    """Temp files (`.<target>.<pid>.<hex>.tmp`) whose writer is dead, or that are too old to be a write in progress.

    `history=False` leaves out the directories that grow with every task ever run (tasks, events,
    logs): a scheduler's start must cost the same whatever the history, and a temp file there is
    harmless (readers skip it, doctor names and removes it).
    """
    directories = [paths.state, paths.workflows]
    if history:
        directories += [paths.tasks, paths.events, paths.logs]
    try:
        directories += [paths.requests / name for name in sorted(os.listdir(paths.requests))]
    except OSError:
        pass
    found = []
    now = time.time()
    for directory in directories:
        for name in _names(directory):
            m = _TMP_RE.match(name)
            if not m:
                continue
            path = directory / name
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if processes.proc_start_time(int(m.group(1))) is not None and now - st.st_mtime < TEMP_FILE_MAX_AGE:
                continue  # its writer is alive: a write in progress
            found.append(path)
    return found


def remove_stale_temp_files(paths: Paths, *, history: bool = True) -> list[Path]:
    removed = []
    for path in stale_temp_files(paths, history=history):
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            continue
    return removed


def _names(directory: Path) -> list[str]:
    """Names in `directory` that could be a temp file (listdir: a third of scandir's cost at 100k entries)."""
    try:
        return sorted(n for n in os.listdir(directory) if n.startswith(TMP_PREFIX))
    except OSError:
        return []

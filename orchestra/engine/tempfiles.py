"""Temp files that writers killed mid-write leave behind.

Shared by `doctor` (which reports them) and the scheduler's start-up (which removes them), so both
judge "stale" the same way.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from orchestra.agent import processes
from orchestra.store.files import TMP_PREFIX, TMP_SUFFIX
from orchestra.store.paths import Paths

_TMP_RE = re.compile(re.escape(TMP_PREFIX) + r".+\.(\d+)\.[0-9a-f]{8}" + re.escape(TMP_SUFFIX) + "$")

TEMP_FILE_MAX_AGE = 600.0  # no atomic write of orchestra's takes this long: older temp files are stale


def stale_temp_files(paths: Paths) -> list[Path]:
    """Temp files (`.<target>.<pid>.<hex>.tmp`) whose writer is dead, or that are too old to be a write in progress."""
    directories = [paths.state, paths.tasks, paths.events, paths.logs, paths.workflows]
    directories += [Path(e.path) for e in _scan(paths.requests) if e.is_dir(follow_symlinks=False)]
    found = []
    now = time.time()
    for directory in directories:
        for entry in _scan(directory):
            m = _TMP_RE.match(entry.name)
            if not m or not entry.is_file(follow_symlinks=False):
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if processes.proc_start_time(int(m.group(1))) is not None and age < TEMP_FILE_MAX_AGE:
                continue  # its writer is alive: a write in progress
            found.append(Path(entry.path))
    return found


def remove_stale_temp_files(paths: Paths) -> list[Path]:
    removed = []
    for path in stale_temp_files(paths):
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            continue
    return removed


def _scan(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []

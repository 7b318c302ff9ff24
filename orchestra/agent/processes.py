"""Agent processes outlive the scheduler that started them, so they are found again
by pid plus the kernel's start time (pids are reused) and, as a last resort, by the
ORCHESTRA_TASK_ID marker in their environment.

The marker alone proves nothing: every process an agent starts inherits it, and Claude
Code runs each Bash command in a session of its own, so a tool's shell left behind by a
killed agent looks like an agent by its environment. A process counts as an agent only
when its executable is the configured claude (`runs_binary`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

TASK_ENV = "ORCHESTRA_TASK_ID"
REPO_ENV = "ORCHESTRA_REPO"


def proc_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        if rest[0] == b"Z":
            return None
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def is_alive(pid: int | None, start: int | None) -> bool:
    if not pid:
        return False
    current = proc_start_time(pid)
    return current is not None and (start is None or current == start)


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process remains in the group."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        try:
            if rest[0] != b"Z" and int(rest[2]) == pgid:
                return True
        except (IndexError, ValueError):
            continue
    return False


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_group(pgid: int, grace: float, reap: Callable[[], object] | None = None) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after `grace` seconds.

    `reap` lets the caller collect its own child meanwhile, so a zombie leader does
    not count as alive.
    """
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if reap:
            reap()
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    signal_group(pgid, signal.SIGKILL)
    for _ in range(100):
        if reap:
            reap()
        if not group_alive(pgid):
            return
        time.sleep(0.02)


def runs_binary(pid: int, binary: str | None) -> bool:
    """Whether process `pid` runs `binary` (a resolved path): its /proc/<pid>/exe is that file, or,
    for a `#!` script, the script is the first argument its interpreter was started with."""
    if not binary:
        return True
    try:
        target = os.path.realpath(binary)
        target_stat = os.stat(target)
    except OSError:
        return False
    try:
        exe_stat = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return False
    if (exe_stat.st_dev, exe_stat.st_ino) == (target_stat.st_dev, target_stat.st_ino):
        return True
    if not _is_script(target):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return False
    # `#!/usr/bin/env python3` runs `python3 <script> ...`; `#!/bin/sh -e` runs `/bin/sh -e <script> ...`.
    return any(arg and os.path.realpath(os.fsdecode(arg)) == target for arg in args[1:3])


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


def find_agents(task_id: str, repo: object, binary: str | None = None) -> list[int]:
    """This repository's agent processes for a task, by the markers in their environment.

    Session leaders only; both markers must match, since another repository's task may
    carry the same id; and with `binary`, only processes running it (see runs_binary).
    """
    markers = (f"{TASK_ENV}={task_id}".encode(), f"{REPO_ENV}={repo}".encode())
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if all(m in env for m in markers):
            try:
                if os.getpgid(pid) == pid and proc_start_time(pid) is not None and runs_binary(pid, binary):
                    found.append(pid)
            except OSError:
                continue
    return found


def run_captured(
    argv: list[str], cwd: os.PathLike[str] | str, env: dict[str, str], timeout: float, stdin: bytes = b""
) -> tuple[int | None, str]:
    """Run a user-configured command in its own group; (exit code or None on timeout, output).

    The whole group is killed on timeout, so a grandchild holding the pipe cannot hang us.
    """
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out.decode("utf-8", "replace")
    return proc.returncode, out.decode("utf-8", "replace")


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, whatever session or group it moved to (setsid does not hide it)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        try:
            children.setdefault(int(rest[1]), []).append(int(name))
        except (IndexError, ValueError):
            continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.append(child)
                frontier.append(child)
    return found


def kill_descendants(pid: int) -> None:
    """SIGKILL a process's whole tree, including children that started their own session."""
    for child in descendants(pid):
        try:
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass


def with_marker(name: str, value: str) -> list[int]:
    """Processes whose environment carries NAME=value (a tree's members that left it still carry it)."""
    marker = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found

"""Running git as an argument list.

The hot paths (scheduler, status) call git through subprocess directly rather than
GitPython's object layer: it keeps `git cat-file` children and costs ~60 ms to
import, both of which show up in whole-process timings. Arguments are always a
list, never a shell string.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping

from orchestra.errors import GitError

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def git(
    cwd: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
) -> subprocess.CompletedProcess[str]:
    """Run git in `cwd`; on failure raise GitError carrying git's own first error line."""
    full_env = dict(os.environ)
    full_env.update(_GIT_ENV)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {first_line(proc.stderr or proc.stdout)}")
    return proc


def first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.removeprefix("fatal: ").removeprefix("error: ")
    return "(no output)"

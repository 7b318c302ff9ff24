"""Running git as an argument list, with everything an agent could plant switched off.

Every orchestra git call goes through here. An agent may have written git config,
hooks or attributes where git would act on them, so each call overrides, through
the environment (which reaches git's own child processes too): no hooks, no
fsmonitor, no pager, no prompts, no `ext::` transport, no replace objects, and diff-family commands get
`--no-ext-diff --no-textconv`. Filters and drivers come only from config the agent
cannot write (git.workspace keeps a task repository's own config to orchestra's
copy). Arguments are always a list, never a shell string.

The hot paths call git through subprocess rather than GitPython's object layer: it
keeps `git cat-file` children and costs ~60 ms to import.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from orchestra.core.errors import GitError

# Overrides applied to every git process orchestra starts (GIT_CONFIG_COUNT, git >= 2.31).
HARDENED_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.pager", "cat"),
    ("protocol.ext.allow", "never"),
    ("diff.external", ""),
    ("merge.renormalize", "false"),
    ("advice.detachedHead", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("submodule.recurse", "false"),  # never into a submodule a branch names (`git merge` has no flag for it)
)
# `git fetch` that moves no ref of its own (no FETCH_HEAD, no tags) and starts nothing else (submodules, gc).
QUIET_FETCH: tuple[str, ...] = (
    "fetch",
    "--quiet",
    "--no-tags",
    "--no-write-fetch-head",
    "--no-recurse-submodules",
    "--no-auto-gc",
    "--no-auto-maintenance",
)
_DIFF_FAMILY = frozenset({"diff", "log", "show", "format-patch", "diff-tree", "whatchanged"})


def hardened_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for key in [k for k in env if k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))]:
        del env[key]
    env.pop("GIT_CONFIG_PARAMETERS", None)
    for key in (
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_COMMON_DIR",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_EXTERNAL_DIFF",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_PROXY_COMMAND",
    ):
        env.pop(key, None)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "GIT_PAGER": "cat",
            "PAGER": "cat",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",  # an agent's refs/replace would rewrite history for every git here
        }
    )
    env["GIT_CONFIG_COUNT"] = str(len(HARDENED_CONFIG))
    for i, (key, value) in enumerate(HARDENED_CONFIG):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    if extra:
        env.update(extra)
    return env


_BASE_ENV: tuple[int, dict[str, str]] | None = None


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """The hardened environment, rebuilt only when this process's own environment changed."""
    global _BASE_ENV
    key = hash(frozenset(os.environ.items()))
    if _BASE_ENV is None or _BASE_ENV[0] != key:
        _BASE_ENV = (key, hardened_env())
    base = _BASE_ENV[1]
    if not extra:
        return base
    env = dict(base)
    env.update(extra)
    return env


def argv(*args: str) -> list[str]:
    """The full command line for `git args...`, with the diff-family safety flags."""
    if args and args[0] in _DIFF_FAMILY:
        return ["git", args[0], "--no-ext-diff", "--no-textconv", *args[1:]]
    return ["git", *args]


def git(
    cwd: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run git in `cwd`; on failure raise GitError carrying git's own first error line."""
    try:
        proc = subprocess.run(
            argv(*args),
            cwd=cwd,
            stdin=subprocess.DEVNULL if input is None else None,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            env=_env(env),
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        if not Path(cwd).is_dir():
            raise GitError(f"{cwd} does not exist") from exc
        raise GitError("git is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {first_line(proc.stderr or proc.stdout)}")
    return proc


def git_bytes(cwd: Path, *args: str, check: bool = True, timeout: float | None = 600) -> bytes:
    """Like git(), for output that is not text (bundles, raw file content)."""
    try:
        proc = subprocess.run(
            argv(*args), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, env=_env(None), timeout=timeout
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {first_line(proc.stderr.decode('utf-8', 'replace'))}")
    return proc.stdout


@contextmanager
def stream(cwd: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """git with its stdout as a pipe, for output read in chunks with fixed memory; killed on exit."""
    proc = subprocess.Popen(
        argv(*args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(None),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()
        proc.wait()


def first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.removeprefix("fatal: ").removeprefix("error: ")
    return "(no output)"

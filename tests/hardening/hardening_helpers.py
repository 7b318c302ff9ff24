"""Helpers shared by the hardening tests (a unique module name: test directories share one import path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from conftest import Orch, git  # noqa: E402

__all__ = ["Orch", "git", "merge_json", "plant_task", "run_json"]


def run_json(orch: Orch, *args: str) -> tuple[int, Any]:
    proc = orch.run(*args, "--json")
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"orchestra {' '.join(args)} --json: {proc.stdout}\n{proc.stderr}") from exc


def merge_json(orch: Orch, ref: str, *args: str) -> tuple[int, dict[str, Any]]:
    return run_json(orch, "merge", ref, *args)


def plant_task(repo: Path, task_id: str, **fields: Any) -> Path:
    """Write a task file by hand, as an older or another orchestra might have left it; the index is rebuilt."""
    head = git(repo, "rev-parse", "HEAD")
    data: dict[str, Any] = {
        "id": task_id,
        "prompt": "planted",
        "role": "generalist",
        "title": "planted",
        "base_ref": "HEAD",
        "base_sha": head,
        "branch": f"orchestra/{task_id}-planted",
        "worktree": str(repo / ".orchestra" / "worktrees" / task_id),
        "state": "queued",
        "schema_version": 2,
    }
    data.update(fields)
    state = repo / ".orchestra"
    (state / "tasks").mkdir(parents=True, exist_ok=True)
    path = state / "tasks" / f"{task_id}.json"
    path.write_text(json.dumps(data))
    (state / "index.stale").touch()  # the next reader rebuilds the index from the task files
    return path


def git_ok(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ))

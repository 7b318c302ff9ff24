"""Where a repository's orchestra state lives: every path under `.orchestra/`, named once.

State belongs to the repository, not to a worktree: commands run from inside a
task's worktree must see the same `.orchestra/` (git.repo finds the root).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from orchestra.core.errors import StorageError

STATE_DIR_NAME = ".orchestra"


@dataclass(frozen=True)
class Paths:
    root: Path  # the main worktree

    @cached_property
    def state(self) -> Path:
        return self.root / STATE_DIR_NAME

    @cached_property
    def tasks(self) -> Path:
        return self.state / "tasks"

    @cached_property
    def events(self) -> Path:
        return self.state / "events"

    @cached_property
    def logs(self) -> Path:
        return self.state / "logs"

    @cached_property
    def worktrees(self) -> Path:
        return self.state / "worktrees"

    @property
    def index(self) -> Path:
        return self.state / "index.json"

    @property
    def index_stale_marker(self) -> Path:
        """The journal of an index write in progress (see store.tasks); its presence means 'in doubt'."""
        return self.state / "index.stale"

    @property
    def history(self) -> Path:
        """Summaries of tasks that ended, one line each, appended as they end (a cache, like the index)."""
        return self.state / "history.jsonl"

    @property
    def archive(self) -> Path:
        """Where `orchestra prune` moves the records of old, merged tasks."""
        return self.state / "archive"

    @property
    def store_lock(self) -> Path:
        return self.state / "store.lock"

    @property
    def scheduler_lock(self) -> Path:
        return self.state / "scheduler.lock"

    @property
    def scheduler_info(self) -> Path:
        return self.state / "scheduler.json"

    @property
    def scheduler_log(self) -> Path:
        return self.state / "scheduler.log"

    @property
    def config(self) -> Path:
        return self.state / "config.toml"

    def task_file(self, task_id: str) -> Path:
        return self.tasks / f"{task_id}.json"

    def event_file(self, task_id: str) -> Path:
        return self.events / f"{task_id}.jsonl"

    def log_file(self, task_id: str) -> Path:
        return self.logs / f"{task_id}.jsonl"

    def stderr_file(self, task_id: str) -> Path:
        return self.logs / f"{task_id}.stderr"

    def worktree(self, task_id: str) -> Path:
        return self.worktrees / task_id

    def check_usable(self) -> None:
        """One clear line, before anything else fails half way, when `.orchestra/` cannot be used."""
        state = self.state
        if not os.path.lexists(state):
            return  # made on the first write
        if not state.is_dir():
            raise StorageError(f"{state} is not a directory; move it away so orchestra can keep its state there")
        if not os.access(state, os.R_OK | os.W_OK | os.X_OK):
            raise StorageError(f"cannot use {state}: permission denied (it must be readable and writable by you)")

    @property
    def workflows(self) -> Path:
        return self.state / "workflows"

    def workflow_file(self, workflow_id: str) -> Path:
        return self.workflows / f"{workflow_id}.json"

    @property
    def roles(self) -> Path:
        return self.state / "roles"

    @property
    def merges(self) -> Path:
        return self.state / "merges"

    @property
    def merge_lock(self) -> Path:
        return self.state / "merge.lock"

    @property
    def cleanup_lock(self) -> Path:
        """Held by cleanup while it removes things, and by doctor while it checks them."""
        return self.state / "cleanup.lock"

    @property
    def fingerprints(self) -> Path:
        """Salted hashes of the secret values agents ran with, so any reader can mask them."""
        return self.state / "secrets.fp"

    def gate_log(self, label: str) -> Path:
        return self.logs / f"{label}.gate.log"

    @property
    def requests(self) -> Path:
        return self.state / "requests"

    def request_dir(self, task_id: str) -> Path:
        return self.requests / task_id

    @property
    def guard(self) -> Path:
        return self.state / "guard"

    def guard_file(self, task_id: str) -> Path:
        """The main repository's refs as they were when the task's current run started."""
        return self.guard / f"{task_id}.json"

    @property
    def rate_limits(self) -> Path:
        return self.state / "ratelimit.json"

    def ensure(self) -> None:
        """Create the state tree, private to the user, and keep it out of `git status`."""
        for d in (self.state, self.tasks, self.events, self.logs, self.worktrees):
            if not d.is_dir():
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
        ignore = self.state / ".gitignore"
        if not ignore.exists():
            fd = os.open(ignore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"*\n")
            finally:
                os.close(fd)

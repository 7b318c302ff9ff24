"""What every use case is given: where the repository is, its settings, its store, where agents run.

Use cases take a Context, never the front ends' façade, so the engine cannot call
back up into the layer that calls it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orchestra.core.config import Config, load_config
from orchestra.core.errors import ConfigError
from orchestra.core.roles import Role, load_roles
from orchestra.git.repo import find_root, worktree_of
from orchestra.store.paths import Paths
from orchestra.store.tasks import Store

if TYPE_CHECKING:
    from orchestra.executors.base import Executor


def _stderr_log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


@dataclass
class Context:
    paths: Paths
    config: Config
    store: Store
    log: Callable[[str], None] = field(default=_stderr_log)
    _executor: Executor | None = None
    start: Path | None = None  # where the command was started (a linked worktree, say); None: the root
    _here: Path | None = None

    @classmethod
    def open(cls, repo: Path | str | None = None, *, repairing_config: bool = False) -> Context:
        """`repairing_config`: a config.toml that does not load gives the defaults instead of an error,
        so that `config set` and `config unset` can mend the very key that breaks it."""
        start = Path(repo) if repo else Path.cwd()
        paths = Paths(root=find_root(start))
        paths.check_usable()
        try:
            config = load_config(paths.config)
        except ConfigError:
            if not repairing_config:
                raise
            config = Config(source=paths.config)
        return cls(paths, config, Store(paths), start=start)

    def here(self) -> Path:
        """The working tree the command was started in (the root, or one of its linked worktrees)."""
        if self._here is None:
            self._here = worktree_of(self.start, self.paths.root) if self.start else self.paths.root
        return self._here

    @property
    def root(self) -> Path:
        return self.paths.root

    def roles(self) -> dict[str, Role]:
        return load_roles(self.paths.state)

    def reload_config(self) -> None:
        self.config = load_config(self.paths.config)
        if self._executor is not None and self._executor.name != self.config.executor_name:
            self._executor = None
        elif self._executor is not None:
            self._executor.config = self.config

    def close_executor(self) -> None:
        """Close the executor if this context made one (nothing to do for those that never ran a task)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def executor(self) -> Executor:
        """Where agents of this repository run (config `executor`); made once per context."""
        if self._executor is None:
            from orchestra.executors import make  # the executor seam: ~3 ms that status and list skip

            self._executor = make(self.config.executor_name, self.paths, self.config)
        return self._executor

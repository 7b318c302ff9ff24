"""Where agents run. `make` picks the executor a repository's config names."""

from __future__ import annotations

from orchestra.core.config import Config
from orchestra.core.errors import ConfigError
from orchestra.executors.base import Executor
from orchestra.executors.local import LocalExecutor
from orchestra.store.paths import Paths

EXECUTORS = ("local",)


def make(name: str, paths: Paths, config: Config) -> Executor:
    if name == "local":
        return LocalExecutor(paths, config)
    raise ConfigError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")

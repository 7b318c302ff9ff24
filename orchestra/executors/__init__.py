"""Where agents run. `make` picks the executor a repository's config names."""

from __future__ import annotations

from typing import Any

from orchestra.core.config import Config
from orchestra.core.errors import ConfigError
from orchestra.store.paths import Paths

EXECUTORS = ("local",)


def make(name: str, paths: Paths, config: Config) -> Any:
    if name == "local":
        from orchestra.executors.local import LocalExecutor

        return LocalExecutor(paths, config)
    raise ConfigError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")

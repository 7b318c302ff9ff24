"""Where agents run. `make` picks the executor a repository's config names."""

from __future__ import annotations

import importlib.util

from orchestra.core.config import Config
from orchestra.core.errors import ConfigError
from orchestra.executors.base import Executor, cluster_problem
from orchestra.store.paths import Paths

EXECUTORS = ("local", "ray")


def agents_run_here(config: Config) -> bool:
    """Whether this machine's claude and sandbox tools are the agents' (else each node's, which doctor surveys)."""
    return config.executor_name == "local"


def quick_problems(config: Config) -> list[str]:
    """Why runs cannot start, found without loading the executor (status must stay fast: Ray takes seconds to import)."""
    if config.executor_name != "ray":
        return []
    if importlib.util.find_spec("ray") is None:
        return ["executor = ray but Ray is not installed (pip install 'orchestra[ray]')"]
    why = cluster_problem(config)
    return [why] if why else []


def make(name: str, paths: Paths, config: Config) -> Executor:
    if name == "local":
        from orchestra.executors.local import LocalExecutor  # git and agent modules: ~8 ms that status skips

        return LocalExecutor(paths, config)
    if name == "ray":
        try:
            from orchestra.executors.ray import RayExecutor  # Ray costs ~1.5 s to import: only executor = ray pays
        except ImportError as exc:
            raise ConfigError(f"executor = ray needs Ray: pip install 'orchestra[ray]' ({exc})") from None
        return RayExecutor(paths, config)
    raise ConfigError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")

"""What a node sends back is data, never a name: the coordinator moves only the task's own branch, and only
to a commit id it was sent (no cluster needed: the executor's homecoming on a real repository)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray executor needs the [ray] extra: pip install 'orchestra[ray]'")

from orchestra.core.config import Config
from orchestra.core.errors import OrchestraError
from orchestra.core.task import Task
from orchestra.executors.ray import RayExecutor
from orchestra.store.paths import Paths


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **env}, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.parametrize("head", ["main", "HEAD", "-d", "refs/heads/main", "main\nx", "0" * 39, 5])
def test_a_head_that_is_not_a_commit_id_moves_nothing(tmp_path: Path, head: object) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "base")
    _git(repo, "branch", "orchestra/abc123-t")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "main moves on")
    before = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    task = Task(id="abc123", prompt="p", role="implementer", title="t", branch="orchestra/abc123-t")
    executor = RayExecutor(Paths(repo), Config())
    with pytest.raises(OrchestraError, match="not a commit id"):
        executor._bring_home(task, {"head": head, "base": None, "pack": b""})
    assert _git(repo, "for-each-ref", "--format=%(refname) %(objectname)") == before

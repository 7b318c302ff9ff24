"""Spare checkouts a node host makes ahead of its runs (orchestra/executors/spares.py), on real repositories.

No Ray here: the pool is plain files and git. That a host's runs use them is in test_ray_cluster.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import git, make_repo

from orchestra.executors import spares as spares_mod
from orchestra.executors.spares import Spares
from orchestra.git import transport


def _mirror(tmp_path: Path) -> tuple[Path, Path, str]:
    """A repository with a commit, and a node's mirror holding it (as `receive` leaves one)."""
    repo = make_repo(tmp_path / "repo")
    (repo / "a.txt").write_text("one\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "one")
    sha = git(repo, "rev-parse", "HEAD")
    mirror = tmp_path / "node" / "mirror.git"
    transport.init_mirror(mirror)
    transport.receive_pack(mirror, transport.make_pack(repo, sha, []), sha)
    transport.keep(mirror, "refs/orchestra/base/t1", sha)
    return repo, mirror, sha


def _wait_ready(pool: Spares, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(pool._ready()) < n or pool.making:
        assert time.monotonic() < deadline, f"{len(pool._ready())} spares, wanted {n}"
        time.sleep(0.05)


def test_a_run_takes_over_a_spare_made_ahead_even_of_an_older_commit(tmp_path: Path) -> None:
    repo, mirror, first = _mirror(tmp_path)
    pool = Spares(tmp_path / "node" / "spares", mirror)
    pool.refill(first, 2)
    _wait_ready(pool, 2)
    assert len(pool._ready()) == 2  # as many as the runs the host holds
    # main moved on: the spare of the older commit is brought to the new one, only what changed written.
    (repo / "a.txt").unlink()
    (repo / "b.txt").write_text("two\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "two")
    second = git(repo, "rev-parse", "HEAD")
    transport.receive_pack(mirror, transport.make_pack(repo, second, [first]), second)
    dest = tmp_path / "node" / "tasks" / "t2" / "checkout"
    dest.parent.mkdir(parents=True)
    assert pool.take(dest)
    transport.take_over(dest, "orchestra/t2-x", second)
    assert git(dest, "rev-parse", "HEAD") == second
    assert git(dest, "symbolic-ref", "HEAD") == "refs/heads/orchestra/t2-x"
    assert sorted(p.name for p in dest.iterdir() if p.name != ".git") == ["README.md", "b.txt"]
    assert git(dest, "status", "--porcelain") == ""
    assert len(pool._ready()) == 1
    pool.drop()  # the host ends: nothing is left on the node but the runs' own checkouts
    assert not pool.directory.exists() and dest.is_dir()


def test_old_spares_are_dropped_and_none_are_made_when_capped_at_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, mirror, sha = _mirror(tmp_path)
    pool = Spares(tmp_path / "node" / "spares", mirror)
    pool.refill(sha, 1)
    _wait_ready(pool, 1)
    (old,) = pool._ready()
    stale = time.time() - spares_mod.MAX_AGE - 60
    os.utime(old, (stale, stale))
    assert not pool.take(tmp_path / "dest")  # its objects may be gone from the mirror's gc: not used
    assert not old.exists() and not (tmp_path / "dest").exists()

    monkeypatch.setenv(spares_mod.SPARES_ENV, "0")
    none = Spares(tmp_path / "node" / "spares-off", mirror)
    none.refill(sha, 4)
    assert not none.making and not (tmp_path / "node" / "spares-off").exists()


def test_what_a_dead_host_left_half_made_is_removed(tmp_path: Path) -> None:
    _, mirror, _ = _mirror(tmp_path)
    directory = tmp_path / "node" / "spares"
    (directory / "making-dead").mkdir(parents=True)
    (directory / "making-dead" / "half.txt").write_text("x")
    Spares(directory, mirror)
    assert not (directory / "making-dead").exists()

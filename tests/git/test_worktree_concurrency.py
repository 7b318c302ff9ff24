"""Worktrees added by many runner threads at once all come out right.

git 2.39 fails a `worktree add` that runs while another is half done ("failed to
read .git/worktrees/<x>/commondir"); the scheduler's runner threads add worktrees
concurrently, so ensure_worktree must not let them collide.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from orchestra.core.errors import GitError
from orchestra.git import refs, worktrees


def test_concurrent_worktree_adds_all_succeed(repo: Path, tmp_path: Path) -> None:
    base = refs.resolve_commit(repo, "HEAD")
    errors: list[str] = []
    barrier = threading.Barrier(12)

    def add(i: int) -> None:
        barrier.wait()
        for k in range(3):
            try:
                worktrees.ensure_worktree(repo, tmp_path / "wts" / f"t{i}-{k}", f"orchestra/t{i}-{k}", base)
            except GitError as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(12):
        for k in range(3):
            assert (tmp_path / "wts" / f"t{i}-{k}" / "README.md").exists()
            assert refs.branch_head(repo, f"orchestra/t{i}-{k}") == base


def test_worktree_made_again_from_an_existing_branch_keeps_its_commits(repo: Path, tmp_path: Path) -> None:
    base = refs.resolve_commit(repo, "HEAD")
    wt = tmp_path / "wt"
    expected = worktrees.ensure_worktree(repo, wt, "orchestra/again", base)
    (wt / "work.txt").write_text("kept\n")
    sha = worktrees.collect(repo, wt, "orchestra/again", expected, "agent work", {}).commit
    assert sha and sha != base
    shutil.rmtree(wt)
    worktrees.ensure_worktree(repo, wt, "orchestra/again", base)
    assert (wt / "work.txt").read_text() == "kept\n"
    assert refs.branch_head(repo, "orchestra/again") == sha


@pytest.mark.crash
def test_many_tasks_starting_at_the_same_moment_all_get_their_worktree(orch):
    """Concurrent `git worktree add`s race in git itself (one reads another's empty `commondir`)."""
    ids = [orch.submit(f"parallel {i}\n@fake write p{i}.txt {i}") for i in range(16)]
    proc = orch.work("--max-concurrent", "16")
    assert proc.returncode == 0
    failed = {tid: orch.show(tid)["error"] for tid in ids if orch.state(tid) != "succeeded"}
    assert not failed

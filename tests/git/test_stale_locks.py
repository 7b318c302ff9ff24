"""Git lock files left behind: removed when nobody holds them, waited for while a live git still has one open.

A scheduler killed while it committed an agent's leftovers leaves its `git add -A` running, holding
the checkout's index.lock; the next scheduler must not take that lock from it (the old git would
then rename its own half-written index over the new one's).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from conftest import git, make_repo

from orchestra.git import refs, workspace

HOLDER = """
import os, sys, time
lock, gate, ready = sys.argv[1:4]
fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
open(ready, "w").close()
while not os.path.exists(gate):
    time.sleep(0.02)
os.close(fd)
os.unlink(lock)
"""


def _hold(lock: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    gate, ready = tmp_path / "gate", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(gate), str(ready)])
    while not ready.exists():
        assert proc.poll() is None, "the holder ended early"
    return proc, gate


def test_a_lock_a_live_git_holds_is_waited_for_not_taken(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    lock = repo / ".git" / "index.lock"
    proc, gate = _hold(lock, tmp_path)
    try:
        assert refs.remove_stale_lock(lock, wait=0.5) is False
        assert lock.exists()  # still the holder's
    finally:
        gate.touch()
        proc.wait(timeout=30)
    assert not lock.exists()


def test_leftovers_are_committed_once_the_git_that_held_the_index_lets_go(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "left.txt").write_text("left behind\n")
    lock = repo / ".git" / "index.lock"
    proc, gate = _hold(lock, tmp_path)
    done: list[str | None] = []

    def commit() -> None:
        identity = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@e",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@e",
        }
        sha, _ = workspace.commit_leftovers(repo, "leftovers", identity, [])
        done.append(sha)

    worker = threading.Thread(target=commit)
    worker.start()
    worker.join(timeout=1.0)
    assert worker.is_alive() and lock.exists()  # waiting for the holder, not removing its lock
    gate.touch()
    worker.join(timeout=60)
    proc.wait(timeout=30)
    assert done and done[0]
    assert git(repo, "log", "-1", "--format=%s") == "leftovers"
    assert git(repo, "show", "HEAD:left.txt") == "left behind"


def test_a_lock_nobody_holds_is_removed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    assert refs.remove_stale_lock(lock) is True and not lock.exists()
    assert refs.remove_stale_lock(lock) is False  # nothing there

"""orchestra.git.transport: a node's mirror is made once however many tasks open it, stays bounded, and never
loses a live task's objects."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from orchestra.git import transport


def _git(cwd: Path, *args: str, when: int | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@e"
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{when} +0000"
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _orchestra_refs(mirror: Path) -> set[str]:
    return set(_git(mirror, "for-each-ref", "--format=%(refname)", "refs/orchestra/").split())


def test_old_finished_tasks_refs_go_and_live_checkouts_keep_working(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _git(src, "init", "-q")
    mirror = tmp_path / "mirror.git"
    transport.init_mirror(mirror)
    shas = []
    for i in range(140):  # one commit per finished task, oldest first
        (src / "f.txt").write_text(f"{i}\n")
        _git(src, "add", "f.txt")
        _git(src, "commit", "-qm", f"c{i}", when=1_700_000_000 + i * 60)
        shas.append(_git(src, "rev-parse", "HEAD"))
    pack = transport.make_pack(src, shas[-1], [])
    transport.receive_pack(mirror, pack, shas[-1])
    for i, sha in enumerate(shas):
        transport.keep(mirror, f"refs/orchestra/done/t{i:03d}", sha)
    # The oldest task is still running: its checkout borrows the mirror's objects.
    live = mirror.parent / "live-checkout"
    transport.checkout(mirror, live, "orchestra/t000", shas[0])

    assert transport.prune_mirror(mirror, live={"t000"}, keep_newest=64) != []
    left = _orchestra_refs(mirror)
    assert left == {f"refs/orchestra/done/t{i:03d}" for i in [0, *range(76, 140)]}
    assert transport.tips(mirror)[0] == shas[-1]  # what the node offers senders is unchanged
    assert _git(live, "cat-file", "-p", "HEAD:f.txt") == "0"
    subprocess.run(["git", "fsck", "--no-dangling"], cwd=live, check=True, capture_output=True)
    # Below twice keep_newest nothing is touched: no gc after every task.
    assert transport.prune_mirror(mirror, live=set(), keep_newest=64) == []
    assert _orchestra_refs(mirror) == left


def test_tasks_opening_a_new_mirror_at_once_all_get_it(tmp_path: Path) -> None:
    """The first tasks on a node (threads of one host) create its mirror together: none fails on git's lock."""
    mirror = tmp_path / "ns" / "mirror.git"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def opener() -> None:
        start.wait()
        try:
            transport.init_mirror(mirror)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert _git(mirror, "rev-parse", "--is-bare-repository") == "true"
    assert [p.name for p in mirror.parent.iterdir()] == ["mirror.git"]  # no temporary left behind

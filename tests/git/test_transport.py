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


def test_a_shared_remote_carries_commits_under_orchestras_own_refs_only(tmp_path: Path) -> None:
    """push_ref / fetch_ref / delete_refs (ray_git_remote): only refs/orchestra/<kind>/<id> are written or deleted
    there, a fetch moves no local ref and checks it brought the very commit, and nothing else of the remote moves."""
    src = tmp_path / "src"
    src.mkdir()
    _git(src, "init", "-q")
    (src / "f.txt").write_text("one\n")
    _git(src, "add", "f.txt")
    _git(src, "commit", "-qm", "one")
    sha = _git(src, "rev-parse", "HEAD")
    remote = tmp_path / "shared.git"
    _git(tmp_path, "init", "-q", "--bare", str(remote))
    _git(src, "push", "-q", str(remote), "HEAD:refs/heads/main")  # someone else's branch: never touched
    url = remote.as_uri()
    transport.push_ref(src, url, sha, "refs/orchestra/base/abc1")
    assert _orchestra_refs(remote) == {"refs/orchestra/base/abc1"}
    mirror = tmp_path / "mirror.git"
    transport.init_mirror(mirror)
    transport.fetch_ref(mirror, url, "refs/orchestra/base/abc1", sha)
    assert _git(mirror, "cat-file", "-t", sha) == "commit" and _orchestra_refs(mirror) == set()
    other = "1" * 40
    try:
        transport.fetch_ref(mirror, url, "refs/orchestra/base/abc1", other)
        raise AssertionError("a ref holding another commit was accepted")
    except transport.GitError as exc:
        assert "incomplete" in str(exc)
    for bad_ref in ("refs/heads/main", "refs/orchestra/base/../x", "refs/orchestra/base/-x", "refs/tags/v1"):
        try:
            transport.push_ref(src, url, sha, bad_ref)
            raise AssertionError(f"{bad_ref} was pushed")
        except transport.GitError as exc:
            assert "not a ref of orchestra's own" in str(exc)
    for bad_url in ("--upload-pack=touch pwned", "file:///x\nfoo"):
        try:
            transport.push_ref(src, bad_url, sha, "refs/orchestra/base/abc1")
            raise AssertionError(f"{bad_url!r} was used")
        except transport.GitError as exc:
            assert "not a git URL" in str(exc)
    try:
        transport.fetch_ref(mirror, (tmp_path / "missing.git").as_uri(), "refs/orchestra/base/abc1", sha)
        raise AssertionError("a missing remote was fetched from")
    except transport.GitError as exc:
        assert str(exc).startswith("git fetch file://") and "\n" not in str(exc)
    # Deleting what is there and what is not: the rest of the remote stays as it was.
    assert transport.delete_refs(src, url, ["refs/orchestra/base/abc1", "refs/orchestra/done/abc1"]) in (True, False)
    assert _orchestra_refs(remote) == set()
    assert _git(remote, "rev-parse", "refs/heads/main") == sha
    assert not list(tmp_path.glob("pwned*")) and not list(Path.cwd().glob("pwned*"))


def test_a_remote_that_cannot_be_read_is_said_so_in_one_line_and_nothing_runs(tmp_path: Path) -> None:
    """What doctor asks of ray_git_remote on each machine: readable, or why not; a hostile URL is refused before git."""
    remote = tmp_path / "shared.git"
    _git(tmp_path, "init", "-q", "--bare", str(remote))
    assert transport.unreachable(remote.as_uri(), tmp_path) is None
    why = transport.unreachable((tmp_path / "missing.git").as_uri(), tmp_path)
    assert why and why.startswith("git ls-remote file://") and "\n" not in why
    why = transport.unreachable("--upload-pack=touch pwned", tmp_path)
    assert why and "not a git URL" in why
    assert not list(tmp_path.glob("pwned*"))

"""Moving commits between repositories that share no disk: packs of objects, then a ref.

The Ray executor sends a task's starting commit to a machine that has no access to
the repository, and brings the finished branch back. A pack (the body of a git
bundle, without its ref list) carries just the objects the other side lacks: the
sender leaves out everything reachable from commits the receiver says it has. The
receiver indexes the pack, checks the commit is complete, and only then moves a ref,
by compare-and-swap where the ref may already exist.

For repositories too big to send that way, a shared git remote (the `ray_git_remote`
setting) carries the commits instead: the sender pushes to a ref of orchestra's own
there (`refs/orchestra/...`), the receiver fetches it, and the sender deletes the ref
once the commit is home. Each side uses its own git credentials; only the URL and the
commit id travel between them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from orchestra.core.errors import GitError, InvalidInput
from orchestra.core.values import git_remote
from orchestra.git.runner import QUIET_FETCH, argv, first_line, git, hardened_env

_SHA = frozenset("0123456789abcdef")


def is_commit_id(text: str) -> bool:
    """A full commit id, not a name git would resolve (`main`, `HEAD`, `-d`)."""
    return len(text) == 40 and set(text) <= _SHA


# Remote helpers that run commands are off for these calls whatever the config says (ext:: is off for all).
_REMOTE_GUARD = ("-c", "protocol.fd.allow=never", "-c", "protocol.ext.allow=never")
_PUSH = ("push", "--quiet", "--no-verify", "--recurse-submodules=no")
REMOTE_TIMEOUT = 900.0


def _orchestra_ref(ref: str) -> str:
    """Only refs of orchestra's own on a shared remote are ever written or deleted there."""
    parts = ref.split("/")
    if len(parts) != 4 or parts[:2] != ["refs", "orchestra"] or not all(p.isalnum() and p.islower() for p in parts[2:]):
        raise GitError(f"not a ref of orchestra's own: {ref!r}")
    return ref


def _url(url: str) -> str:
    """The setting's own check again, at the last step before git: nothing else reaches the command line."""
    try:
        checked = git_remote(url, "remote")
    except InvalidInput as exc:
        raise GitError(f"not a git URL: {exc}") from None
    if not checked:
        raise GitError("not a git URL: ''")
    return checked


def _remote(
    repo: Path, url: str, command: tuple[str, ...], specs: list[str], timeout: float, check: bool = True
) -> bool:
    """git `command` (push or fetch) of `specs` against the shared remote; a failure names the command and the remote."""
    proc = git(repo, *_REMOTE_GUARD, *command, "--", _url(url), *specs, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise GitError(f"git {command[0]} {url} failed: {first_line(proc.stderr or proc.stdout)}")
    return proc.returncode == 0


def push_ref(repo: Path, url: str, sha: str, ref: str, timeout: float = REMOTE_TIMEOUT) -> None:
    """Point `ref` on the remote at the commit `sha` of `repo`, sending what the remote lacks.

    Forced: the ref is the task's own, and an earlier run of the task may have left it elsewhere."""
    if not is_commit_id(sha):
        raise GitError(f"not a commit id: {sha!r}")
    _remote(repo, url, _PUSH, [f"+{sha}:{_orchestra_ref(ref)}"], timeout)


def fetch_ref(repo: Path, url: str, ref: str, sha: str, timeout: float = REMOTE_TIMEOUT) -> None:
    """Fetch the remote's `ref` into `repo` (no local ref moves) and check it brought the complete commit `sha`.

    The ref holding some other commit (a later run of the task pushed over it) fails the check."""
    if not is_commit_id(sha):
        raise GitError(f"not a commit id: {sha!r}")
    _remote(repo, url, QUIET_FETCH, [_orchestra_ref(ref)], timeout)
    receive_pack(repo, b"", sha)


def unreachable(url: str, cwd: Path, timeout: float = 30.0) -> str | None:
    """Why `url` cannot be read from this machine with its own credentials, or None when it answers.

    Lists only orchestra's refs there, so a large remote costs nothing; writing is not tried, since
    a test write would be a write to someone's remote."""
    try:
        _remote(cwd, url, ("ls-remote", "--quiet"), ["refs/orchestra/"], timeout)
    except GitError as exc:
        return str(exc)
    return None


def delete_refs(repo: Path, url: str, refs_: list[str], timeout: float = 120.0) -> bool:
    """Delete orchestra's `refs_` on the remote; True when git reported no failure (a missing ref is one)."""
    if not refs_:
        return True
    return _remote(repo, url, _PUSH, [":" + _orchestra_ref(r) for r in refs_], timeout, check=False)


def _run(repo: Path, args: list[str], data: bytes, timeout: float = 600) -> bytes:
    try:
        proc = subprocess.run(
            argv(*args), cwd=repo, input=data, capture_output=True, env=hardened_env(), timeout=timeout
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout}s") from exc
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {first_line(proc.stderr.decode('utf-8', 'replace'))}")
    return proc.stdout


def known(repo: Path, shas: list[str]) -> list[str]:
    """The commits among `shas` that `repo` has (what a pack for it may leave out)."""
    wanted = [s for s in shas if is_commit_id(s)]
    if not wanted:
        return []
    out = _run(
        repo, ["cat-file", "--batch-check=%(objectname) %(objecttype)"], "".join(s + "\n" for s in wanted).encode()
    )
    return [parts[0] for parts in (line.split() for line in out.decode().splitlines()) if parts[1:] == ["commit"]]


def make_pack(repo: Path, tip: str, have: list[str]) -> bytes:
    """The objects of `tip` that a repository holding the commits `have` lacks (b"" when none)."""
    if not is_commit_id(tip):
        raise GitError(f"not a commit id: {tip!r}")
    have = known(repo, have)
    if tip in have:
        return b""
    spec = tip + "\n" + "".join(f"^{h}\n" for h in have)
    return _run(repo, ["pack-objects", "--stdout", "--revs", "--delta-base-offset", "-q"], spec.encode())


def receive_pack(repo: Path, pack: bytes, tip: str) -> None:
    """Store a pack's objects in `repo` and check that `tip` is now a complete commit there."""
    if not is_commit_id(tip):
        raise GitError(f"not a commit id: {tip!r}")
    if pack:
        _run(repo, ["index-pack", "--stdin", "--fix-thin"], pack)
    if git(repo, "rev-list", "--quiet", "--objects", tip, "--not", "--all", check=False).returncode != 0:
        raise GitError(f"commit {tip[:12]} is incomplete after receiving its objects")


def init_mirror(path: Path) -> None:
    """A bare repository that keeps what a machine received, so later tasks ship only what is new.

    Made beside its place and renamed into it: the first tasks on a node open it at the same
    moment, and two `git init` in one directory fail on each other's config lock.
    """
    if (path / "HEAD").exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        git(tmp, "init", "--quiet", "--bare")
        try:
            os.rename(tmp, path)  # replaces an empty directory, never a repository
        except OSError:
            if not (path / "HEAD").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tips(repo: Path, prefix: str = "refs/orchestra/", limit: int = 64) -> list[str]:
    """The newest commits under `prefix` (what this side can tell a sender it has)."""
    out = git(
        repo, "for-each-ref", "--sort=-committerdate", f"--count={limit}", "--format=%(objectname)", prefix, check=False
    ).stdout
    return list(dict.fromkeys(line.strip() for line in out.splitlines() if is_commit_id(line.strip())))


def keep(repo: Path, ref: str, sha: str) -> None:
    """Point `ref` at `sha` (a mirror's record of what it holds)."""
    git(repo, "update-ref", ref, sha)


def checkout(mirror: Path, path: Path, branch: str, sha: str) -> None:
    """A working checkout of `sha` on a new `branch`, sharing the mirror's objects."""
    git(mirror.parent, "clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(path))
    git(path, "checkout", "--quiet", "-B", branch, sha)


def spare_checkout(mirror: Path, path: Path, sha: str) -> None:
    """A pristine checkout of `sha`, detached, made before the run that will take it over."""
    git(mirror.parent, "clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(path))
    git(path, "checkout", "--quiet", "--detach", sha)


def take_over(path: Path, branch: str, sha: str) -> None:
    """A spare checkout becomes a run's: `sha` on a new `branch`; only files that differ are written."""
    git(path, "checkout", "--quiet", "-B", branch, sha)


def prune_mirror(repo: Path, live: set[str], keep_newest: int = 64, expire_days: int = 14) -> list[str]:
    """Keep a node's mirror bounded: forget what old finished tasks left, then let git collect it.

    Every task leaves `refs/orchestra/base/<id>` and `refs/orchestra/done/<id>`, so without this a
    node's mirror grows with every task it ever ran. The refs of `live` tasks (their checkouts
    borrow the mirror's objects through `clone --shared`) and the `keep_newest` newest commits
    (what `tips` offers senders, so later packs stay small) stay; once there are twice that many,
    the rest are deleted. Objects no longer reachable are removed by `git gc` only once older than
    `expire_days`, so a pack another task received a moment ago, before its ref was written, is
    never lost. Returns the deleted refs.
    """
    out = git(
        repo,
        "for-each-ref",
        "--sort=-committerdate",
        "--format=%(refname)",
        "refs/orchestra/base/",
        "refs/orchestra/done/",
        check=False,
    ).stdout
    refs_ = [line.strip() for line in out.splitlines() if line.strip()]
    if len(refs_) <= 2 * keep_newest:
        return []  # slack: one gc per `keep_newest` refs, not one per task
    doomed = [r for i, r in enumerate(refs_) if i >= keep_newest and r.rsplit("/", 1)[-1] not in live]
    if not doomed:
        return []
    _run(repo, ["update-ref", "--stdin"], "".join(f"delete {r}\n" for r in doomed).encode())
    git(repo, "-c", f"gc.pruneExpire={int(expire_days)}.days.ago", "gc", "--quiet", check=False, timeout=600)
    return doomed

"""A task's own repository: made, kept trustworthy for orchestra's git, and its branch brought home.

Each task works in `<main>/.orchestra/worktrees/<id>`, a repository of its own (docs/security.md).
It is what `git clone --shared --no-checkout` makes, written directly: a `.git` with the task
branch, HEAD on it, and `objects/info/alternates` naming the main repository's objects, so nothing
is copied and the main `.git` is never written by anything that runs there. The main repository
learns of the work only by fetching the task branch from it, with an explicit refspec into a
private ref, then a compare-and-swap of the branch: the user's refs, other tasks' branches and
anything checked out are never moved by it.

Everything inside the task's `.git` is the agent's to write (the sandbox protects the config and
hooks, and nothing at all without it), so orchestra trusts none of it. Before it runs git there,
`make_safe` puts back orchestra's own config, alternates and exclude list, and removes hooks and
anything that would send git elsewhere (`commondir`, `config.worktree`, a `.git` that is a file or
a link, any symlink inside `.git`, through which git's own writes would land outside). git.runner's environment then switches off hooks, fsmonitor, pagers and external diff
for the call, and commands that could walk into a nested repository the agent made (whose config
orchestra cannot vet) are told to ignore submodules. Orchestra never commits a gitlink it did not
find on the branch.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from orchestra.core.errors import GitError
from orchestra.git import refs
from orchestra.git.repo import git_common_dir
from orchestra.git.runner import QUIET_FETCH, git
from orchestra.store.files import write_atomic

# Mount placeholders Claude Code's sandbox binds over paths in the working directory (/dev/null,
# read-only), which `git add -A` cannot add and which a killed run leaves behind as empty files.
SANDBOX_PLACEHOLDERS = (
    ".bash_profile",
    ".bashrc",
    ".zshrc",
    ".zprofile",
    ".profile",
    ".gitconfig",
    ".gitmodules",
    ".ripgreprc",
    ".mcp.json",
    ".idea/",
    ".vscode/",
    ".claude/",
)
PARTIAL = ".partial-"  # `.<id>.partial-<pid>`: a checkout being made, renamed into place when complete
ZERO = "0" * 40
UNKNOWN = "unknown"  # bring_home's `expected` when orchestra never recorded where it left the branch
_LOCAL_KEYS = re.compile(
    r"^(core\.(filemode|symlinks|ignorecase|precomposeunicode|autocrlf|eol|safecrlf|checkstat|trustctime)"
    r"|extensions\.objectformat|user\.(name|email))$"
)


@dataclass(frozen=True)
class MainSettings:
    """What a task repository takes from the main one: filesystem probes, object format, identity."""

    core: tuple[tuple[str, str], ...]
    object_format: str | None
    user: tuple[tuple[str, str], ...]


_MAIN_CACHE: dict[str, tuple[object, MainSettings]] = {}


def main_settings(repo: Path) -> MainSettings:
    """The main repository's own local settings a new repository beside it needs (cached per config file)."""
    config = git_common_dir(repo) / "config"
    try:
        st = config.stat()
        key: object = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    cached = _MAIN_CACHE.get(str(repo))
    if cached is not None and cached[0] == key and key is not None:
        return cached[1]
    proc = git(repo, "config", "--local", "--null", "--get-regexp", _LOCAL_KEYS.pattern, check=False)
    core: list[tuple[str, str]] = []
    user: list[tuple[str, str]] = []
    object_format = None
    for record in proc.stdout.split("\0"):
        name, _, value = record.partition("\n")
        name = name.strip().lower()
        if not name or "\n" in value or "\0" in value:
            continue
        if name == "extensions.objectformat":
            object_format = value
        elif name.startswith("user."):
            user.append((name.split(".", 1)[1], value))
        else:
            core.append((name.split(".", 1)[1], value))
    settings = MainSettings(tuple(core), object_format, tuple(user))
    _MAIN_CACHE[str(repo)] = (key, settings)
    return settings


def _quote(value: str) -> str:
    if any(c in value for c in "\n\r\0"):
        raise GitError(f"cannot write {value!r} into a git config file")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(repo: Path, settings: MainSettings | None = None) -> str:
    """The whole `.git/config` of a task repository: orchestra's copy, put back before every git use."""
    s = settings or main_settings(repo)
    lines = ["[core]", f"\trepositoryformatversion = {1 if s.object_format else 0}", "\tbare = false"]
    lines += [f"\t{k} = {_quote(v)}" for k, v in s.core]
    lines.append("\tlogallrefupdates = true")
    if s.object_format:
        lines += ["[extensions]", f"\tobjectformat = {_quote(s.object_format)}"]
    lines += [
        '[remote "origin"]',
        f"\turl = {_quote(str(repo))}",
        "\tfetch = +refs/heads/*:refs/remotes/origin/*",
        "\ttagOpt = --no-tags",
    ]
    if s.user:
        lines.append("[user]")
        lines += [f"\t{k} = {_quote(v)}" for k, v in s.user]
    return "\n".join(lines) + "\n"


def _exclude_line(path: str) -> str:
    """A `.git/info/exclude` pattern that matches exactly this path from the top."""
    escaped = re.sub(r"([\\*?\[\]!#])", r"\\\1", path.strip("/"))
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped


def exclude_text(copied: list[str] | tuple[str, ...] = ()) -> str:
    lines = [
        "# Written by orchestra before each run; the agent cannot change it.",
        "# Claude Code's sandbox mount placeholders:",
        *("/" + p for p in SANDBOX_PLACEHOLDERS),
    ]
    if copied:
        lines += ["# Copied in (orchestra's 'copy' setting) or made by its 'setup' command, never committed:"]
        lines += [_exclude_line(p) for p in copied]
    return "\n".join(lines) + "\n"


def untracked(path: Path) -> list[str]:
    """New paths git does not ignore, a new directory as one entry (`build/`): what a setup command made."""
    proc = git(path, "status", "--porcelain", "-z", "--untracked-files=normal", "--ignore-submodules=all")
    return [entry[3:] for entry in proc.stdout.split("\0") if entry.startswith("?? ")]


# -- reading a task repository without git ----------------------------------------------------


def is_task_repo(path: Path) -> bool:
    """A task repository (a real `.git` directory), as opposed to a linked worktree or anything else."""
    try:
        st = os.lstat(path / ".git")
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and not path.is_symlink()


def head_branch(path: Path) -> str | None:
    """The branch HEAD names, read from the file (no git runs in the repository)."""
    try:
        text = _read_small(path / ".git" / "HEAD")
    except OSError:
        return None
    if text.startswith("ref: refs/heads/"):
        return text[len("ref: refs/heads/") :].strip() or None
    return None


def _read_small(path: Path, limit: int = 4096) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


# -- keeping it trustworthy ------------------------------------------------------------------


def _real_dir(path: Path) -> None:
    """Make `path` a real directory, replacing a symlink or file the agent put there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir(mode=0o755)
        return
    if stat.S_ISDIR(st.st_mode):
        return
    os.unlink(path)
    path.mkdir(mode=0o755)


def _remove(path: Path) -> None:
    """Remove a file, link or directory tree, never following a link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def make_safe(path: Path, repo: Path, copied: list[str] | tuple[str, ...] = ()) -> None:
    """Put orchestra's own git metadata back into a task repository before running git there.

    Raises GitError when `path` is not a task repository at all (its `.git` is a file or a link).
    """
    if path.is_symlink() or not path.is_dir():
        raise GitError(f"refusing to use {path}: not a directory")
    dot_git = path / ".git"
    if not is_task_repo(path):
        raise GitError(f"refusing to use {path}: its .git is not a directory")
    for name in (
        "commondir",
        "config.worktree",
        "hooks",
        "info/attributes",
        "info/grafts",
        "info/sparse-checkout",
        "objects/info/commit-graph",  # parents git would believe without reading the commits
        "objects/info/commit-graphs",
        "refs/replace",
    ):
        _remove(dot_git / name)
    _sweep_links(dot_git)
    write_atomic(dot_git / "config", config_text(repo).encode(), durable=False, mode=0o644)
    for sub in ("objects", "objects/info", "info", "refs", "refs/heads"):
        _real_dir(dot_git / sub)
    alternates = f"{(git_common_dir(repo) / 'objects').resolve()}\n"
    write_atomic(dot_git / "objects" / "info" / "alternates", alternates.encode(), durable=False, mode=0o644)
    write_excludes(path, copied)


def _sweep_links(dot_git: Path) -> None:
    """Remove every symlink and special file inside a task's `.git`.

    Git itself never makes them there, but it follows them: a `.git/logs/HEAD` linked to a file
    outside the checkout would have orchestra's own (unsandboxed) commit append its reflog line
    there, a linked `COMMIT_EDITMSG` would be overwritten, a linked directory under `refs/` or
    `objects/` would take ref and object writes elsewhere, and a FIFO would hang git.
    """
    for dirpath, dirnames, filenames in os.walk(dot_git, followlinks=False):
        keep = []
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            try:
                mode = os.lstat(full).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(mode):
                keep.append(name)
            elif not stat.S_ISREG(mode):
                os.unlink(full)
        dirnames[:] = [d for d in dirnames if d in keep]


def write_excludes(path: Path, copied: list[str] | tuple[str, ...] = ()) -> None:
    dot_git = path / ".git"
    _real_dir(dot_git / "info")
    write_atomic(dot_git / "info" / "exclude", exclude_text(copied).encode(), durable=False, mode=0o644)


# -- making one ---------------------------------------------------------------------------------


def create(repo: Path, path: Path, branch: str, tip: str, copied: list[str] | tuple[str, ...] = ()) -> None:
    """A new task repository at `path` on `branch` at `tip` (a commit of the main repository).

    Built in `.<name>.partial-<pid>` beside it and renamed into place once checked out, so a
    kill leaves either nothing at `path` or a complete checkout.
    """
    partial = path.parent / f".{path.name}{PARTIAL}{os.getpid()}"
    _remove(partial)
    dot_git = partial / ".git"
    try:
        for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "info"):
            (dot_git / sub).mkdir(parents=True, mode=0o755)
        ref = dot_git / "refs" / "heads" / branch
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(tip + "\n")
        (dot_git / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
        make_safe(partial, repo, copied)
        git(partial, "reset", "--quiet", "--hard", "--no-recurse-submodules", timeout=600)
        os.rename(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def partial_owner(name: str) -> int | None:
    """The pid that is making the checkout `name` (a `.<id>.partial-<pid>` directory), else None."""
    if not name.startswith(".") or PARTIAL not in name:
        return None
    tail = name.rsplit(PARTIAL, 1)[1]
    return int(tail) if tail.isdigit() else None


# -- leftovers -------------------------------------------------------------------------------------


def commit_leftovers(
    path: Path,
    message: str,
    identity: dict[str, str],
    exclude: list[str] | tuple[str, ...] = (),
    *,
    exclude_by_pathspec: bool = False,
) -> tuple[str | None, list[str]]:
    """Commit what the agent left uncommitted; returns (the new commit or None, gitlinks left out).

    Call make_safe first on a task repository: its exclude file keeps the paths in `exclude`
    (files copied in) out of `git add`, and any of them staged by hand are unstaged again here,
    as are new or changed nested repositories (gitlinks). A linked worktree, which has no exclude
    file of its own, passes `exclude_by_pathspec`.
    """
    spec = [f":(exclude,literal){p}" for p in exclude] if exclude_by_pathspec else []
    add = ("add", "--all", "--", ".", *spec)
    if git(path, *add, check=False).returncode != 0:
        _remove_crash_locks(path)
        git(path, *add)  # git's own words when it still fails
    skipped = _unstage(path, exclude)
    commit = ("-c", "core.abbrev=40", "commit", "--no-verify", "--no-status", "--no-edit", "-m", message)
    proc = git(path, *commit, check=False, env=identity)
    if proc.returncode != 0:
        if git(path, "diff", "--cached", "--quiet", "--ignore-submodules=all", check=False).returncode == 0:
            return None, skipped  # nothing to commit
        if _remove_crash_locks(path):
            proc = git(path, *commit, check=False, env=identity)
    if proc.returncode != 0:
        raise GitError(f"could not commit the agent's changes in {path}: {proc.stderr.strip() or proc.stdout.strip()}")
    # "[branch <sha>] message" names the commit; asking git again would cost a process per task.
    m = _COMMIT_LINE.match(proc.stdout)
    sha = m.group(1) if m else git(path, "rev-parse", "HEAD").stdout.strip()
    return sha, skipped


def _remove_crash_locks(path: Path) -> bool:
    """Remove the locks a git killed in a crash (its `add` or `commit` of the leftovers) leaves in a task
    repository: the index's, HEAD's and its branch's. The agent has ended, so nobody else holds them;
    True when one was removed."""
    dot_git = path / ".git"
    if not dot_git.is_dir() or dot_git.is_symlink():
        return False
    locks = [dot_git / "index.lock", dot_git / "HEAD.lock"]
    ref_lock = refs.branch_lock(dot_git, head_branch(path) or "")
    if ref_lock is not None:
        locks.append(ref_lock)
    removed = False
    for lock in locks:
        removed = refs.remove_stale_lock(lock) or removed
    return removed


_COMMIT_LINE = re.compile(r"^\[.*? (?:\(root-commit\) )?([0-9a-f]{40,64})\]")


def _unstage(path: Path, copied: list[str] | tuple[str, ...]) -> list[str]:
    """Put staged gitlinks (mode 160000) and newly staged copied files back to what HEAD has.

    Returns the gitlinks' paths. Reads only the index and HEAD: no nested repository is entered.
    """
    out = git(path, "diff", "--cached", "--raw", "-z", "--no-renames", "--ignore-submodules=none", "HEAD").stdout
    fields = out.split("\0")
    links: list[str] = []
    undo: list[str] = []
    prefixes = tuple(c.strip("/") + "/" for c in copied)
    i = 0
    while i + 1 < len(fields):
        meta, name = fields[i], fields[i + 1]
        i += 2
        parts = meta.lstrip(":").split()
        if len(parts) < 2 or not name:
            continue
        if "160000" in (parts[0], parts[1]):
            links.append(name)
            undo.append(name)
        elif parts[0] == "000000" and (name in copied or name.startswith(prefixes)):
            undo.append(name)
    if undo:
        git(path, "reset", "--quiet", "--no-recurse-submodules", "HEAD", "--", *(f":(literal){p}" for p in undo))
    return links


# -- keeping it in step with the main repository, and bringing its work home ------------------


def branch_tip(path: Path, branch: str) -> str | None:
    proc = git(path, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def is_ancestor(path: Path, older: str, newer: str) -> bool:
    return git(path, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0


def catch_up(path: Path, branch: str, main_tip: str | None) -> None:
    """Before a run: the checkout takes in commits the main repository's branch gained meanwhile.

    Raises GitError when the two have diverged; nothing is changed then.
    """
    if head_branch(path) != branch:
        raise GitError(f"the checkout {path} is not on branch {branch}")
    tip = branch_tip(path, branch)
    if tip is None:
        raise GitError(f"branch {branch} is missing in its checkout {path}")
    if main_tip is None or tip == main_tip or is_ancestor(path, main_tip, tip):
        return  # nothing new at home (the checkout may hold commits not yet brought home)
    if not is_ancestor(path, tip, main_tip):
        raise GitError(
            f"branch {branch} moved in the main repository to {main_tip[:12]} and its checkout {path} has "
            f"other commits ({tip[:12]}); nothing was changed. Merge one into the other by hand"
        )
    proc = git(path, "merge", "--quiet", "--ff-only", "--no-verify", main_tip, check=False)
    if proc.returncode != 0:
        why = ((proc.stderr or proc.stdout).strip().splitlines() or ["unknown error"])[0]
        raise GitError(f"could not bring the checkout {path} up to {branch} at {main_tip[:12]}: {why}")


@dataclass
class Homecoming:
    tip: str | None  # where the main repository's branch now is
    moved: bool  # whether bringing the work home moved it
    error: str | None = None  # why it was not moved although the checkout has other commits


def bring_home(repo: Path, path: Path, branch: str, expected: str | None, label: str) -> Homecoming:
    """Fetch the task branch from its repository and move the main repository's branch to it.

    Only `refs/heads/<branch>` is read from the task repository. The main branch moves forward,
    or anywhere when it is still at `expected` (where orchestra left it; UNKNOWN: not recorded),
    and never while it is checked out in a worktree of the main repository. When it cannot move,
    the task's commits are kept under `refs/orchestra/incoming/<label>`, out of gc's reach.
    """
    new = read_ref(path, branch) or branch_tip(path, branch)
    if new is None:
        return Homecoming(None if expected == UNKNOWN else expected, False, f"branch {branch} is gone from {path}")
    if new == expected:
        return Homecoming(new, False)  # nothing new: nothing to fetch
    fetch = git(
        repo,
        *QUIET_FETCH,
        str(path),
        f"refs/heads/{branch}",
        check=False,
        timeout=600,
    )
    if fetch.returncode != 0:
        return Homecoming(
            refs.branch_head(repo, branch),
            False,
            f"could not fetch {branch} from {path}: {(fetch.stderr or fetch.stdout).strip()}",
        )
    holder = checked_out(repo, branch)
    if holder is not None:
        why = f"branch {branch} is checked out in {holder}, so its new commits ({new[:12]}) stay in {path}"
        return _keep(repo, branch, label, new, why)
    message = f"orchestra: task {label} brought home"
    if expected not in (None, UNKNOWN) and refs.update_task_branch(repo, branch, new, expected, message):
        _forget_kept(repo, label)
        return Homecoming(new, True)  # where orchestra left it: the usual case, one compare-and-swap
    current = refs.branch_head(repo, branch)
    if new == current:
        return Homecoming(current, False)
    # Asked of the main repository (the commits are here now), never of the task's: replace refs or a
    # commit-graph the agent wrote there could make its commit look as if it built on `current`.
    if current is not None and current != expected and not refs.is_ancestor(repo, current, new):
        moved = "while the task ran" if expected != UNKNOWN else "since an older orchestra started the task"
        return _keep(
            repo,
            branch,
            label,
            new,
            f"branch {branch} moved in the main repository {moved} (to {current[:12]}) and the task's "
            f"commits ({new[:12]}) do not build on it; they stay in {path}",
        )
    if not refs.update_task_branch(repo, branch, new, current or ZERO, message):
        return _keep(repo, branch, label, new, f"branch {branch} moved while it was brought home; they stay in {path}")
    _forget_kept(repo, label)
    return Homecoming(new, True)


def _forget_kept(repo: Path, label: str) -> None:
    """Once the work is home, the copy an earlier run kept under refs/orchestra/incoming goes."""
    name = f"refs/orchestra/incoming/{label}"
    common = git_common_dir(repo)
    try:
        kept = os.path.lexists(common / name) or name in _read_small(common / "packed-refs", 1 << 24)
    except OSError:
        kept = False
    if kept:
        git(repo, "update-ref", "-d", name, check=False)


def _keep(repo: Path, branch: str, label: str, new: str, why: str) -> Homecoming:
    """The commits did not come home: keep them referenced in the main repository too, for doctor to name."""
    git(repo, "update-ref", "-m", "orchestra: not brought home", f"refs/orchestra/incoming/{label}", new, check=False)
    return Homecoming(refs.branch_head(repo, branch), False, why)


def read_ref(path: Path, branch: str) -> str | None:
    """A branch's commit in a task repository, read from its files (loose ref, then packed-refs)."""
    try:
        sha = _read_small(path / ".git" / "refs" / "heads" / branch, 128).strip()
        return sha if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha) else None
    except OSError:
        pass
    try:
        packed = _read_small(path / ".git" / "packed-refs", 1 << 22)
    except OSError:
        return None
    for line in packed.splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2 and parts[1] == f"refs/heads/{branch}" and re.fullmatch(r"[0-9a-f]{40,64}", parts[0]):
            return parts[0]
    return None


def checked_out(repo: Path, branch: str) -> Path | None:
    """The worktree of the main repository that has `branch` checked out, read from HEAD files (no git)."""
    common = git_common_dir(repo)
    want = f"ref: refs/heads/{branch}"
    try:
        if _read_small(common / "HEAD", 512).strip() == want:
            return repo
    except OSError:
        pass
    try:
        admins = sorted(os.scandir(common / "worktrees"), key=lambda e: e.name)
    except OSError:
        return None
    for admin in admins:
        try:
            if _read_small(Path(admin.path) / "HEAD", 512).strip() == want:
                gitdir = _read_small(Path(admin.path) / "gitdir", 4096).strip()
                return Path(gitdir).parent
        except OSError:
            continue
    return None


def unsaved_commits(repo: Path, path: Path) -> list[str]:
    """Branches of a task repository with commits the main repository does not have (work not home)."""
    if not is_task_repo(path):
        return []
    tips: dict[str, str] = {}
    heads = path / ".git" / "refs" / "heads"
    for dirpath, dirnames, filenames in os.walk(heads):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            full = Path(dirpath) / name
            try:
                sha = _read_small(full, 128).strip()
            except OSError:
                continue
            if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
                tips[str(full.relative_to(heads))] = sha
    try:
        packed = _read_small(path / ".git" / "packed-refs", 1 << 22)
    except OSError:
        packed = ""
    for line in packed.splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2 and parts[1].startswith("refs/heads/") and re.fullmatch(r"[0-9a-f]{40,64}", parts[0]):
            tips.setdefault(parts[1][len("refs/heads/") :], parts[0])
    if not tips:
        return []
    shas = sorted(set(tips.values()))
    check = git(
        repo, "cat-file", "--batch-check=%(objectname) %(objecttype)", input="\n".join(shas) + "\n", check=False
    )
    present = {p[0] for p in (line.split() for line in check.stdout.splitlines()) if len(p) == 2 and p[1] == "commit"}
    unsaved = {sha for sha in shas if sha not in present}
    for sha in sorted(present):
        # In the main repository but on none of its branches or tags (refs/orchestra/incoming keeps
        # it from gc, not home): still unsaved.
        if git(
            repo, "rev-list", "--max-count=1", sha, "--not", "--exclude=refs/orchestra/*", "--all", check=False
        ).stdout.strip():
            unsaved.add(sha)
    return sorted(name for name, sha in tips.items() if sha in unsaved)


def unsaved_log(repo: Path, path: Path, branches: list[str], limit: int = 20) -> list[str]:
    """The commits (`%h %s`, newest first) that removing a task repository would lose: those on its
    `branches` (what unsaved_commits found) past where the main repository's same branch (else its HEAD) stands."""
    lines: list[str] = []
    for branch in branches:
        stops = [sha for sha in (refs.branch_head(repo, branch), refs.head_commit(repo)) if sha]
        known = [sha for sha in stops if git(path, "cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode == 0]
        args = ["log", "--format=%h %s", f"--max-count={limit}", f"refs/heads/{branch}"]
        lines += git(path, *args, *(["--not", known[0]] if known else []), "--", check=False).stdout.splitlines()
    return lines[:limit]

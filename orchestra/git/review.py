"""What a change is: its commits, diff stat and diff, read with fixed memory however large it is.

A reviewer's prompt carries the diff up to a budget; files that do not fit are named,
never cut silently. The diff is streamed from git and never held whole, so a 200 MB
diff costs the budget, not 200 MB (or five times that).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestra.core.errors import OrchestraError
from orchestra.git.runner import git, stream

DIFF_BUDGET = 40_000  # characters of diff a reviewer's prompt carries before files are summarised
MAX_COMMITS = 200
MAX_STAT_FILES = 500
_READ = 64 * 1024


@dataclass
class Stat:
    """What changed between two commits, file by file."""

    files: list[tuple[str, int | None, int | None]] = field(default_factory=list)  # path, added, removed (None: binary)
    more_files: int = 0

    @property
    def added(self) -> int:
        return sum(a or 0 for _, a, _ in self.files)

    @property
    def removed(self) -> int:
        return sum(r or 0 for _, _, r in self.files)

    @property
    def count(self) -> int:
        return len(self.files) + self.more_files

    def summary(self) -> str:
        """`+12 −3 · 2 files`, or `no changes`."""
        if not self.count:
            return "no changes"
        return f"+{self.added} −{self.removed} · {self.count} file{'s' if self.count != 1 else ''}"

    def to_dict(self) -> dict[str, object]:
        return {
            "files": [{"path": p, "added": a, "removed": r} for p, a, r in self.files],
            "more_files": self.more_files,
            "added": self.added,
            "removed": self.removed,
            "changed_files": self.count,
        }


def _check_range(repo: Path, base: str, head: str) -> None:
    for sha in (base, head):
        if not sha or sha.startswith("-"):
            raise OrchestraError(f"cannot read the changes {base[:12]}..{head[:12]}: invalid commit")


def diff_stat(repo: Path, base: str, head: str, limit: int = MAX_STAT_FILES) -> Stat:
    """Lines added and removed per file, streamed: a change to a million files costs `limit` entries."""
    _check_range(repo, base, head)
    out = Stat()
    with stream(repo, "diff", "--no-color", "--numstat", "-z", "--no-renames", base, head, "--") as proc:
        assert proc.stdout is not None
        pending = b""
        while True:
            block = proc.stdout.read(_READ)
            if not block:
                break
            pending += block
            *records, pending = pending.split(b"\0")
            for record in records:
                if not record:
                    continue
                parts = record.split(b"\t", 2)
                if len(parts) != 3:
                    continue
                if len(out.files) >= limit:
                    out.more_files += 1
                    continue
                added, removed, path = parts
                out.files.append(
                    (
                        path.decode("utf-8", "replace"),
                        int(added) if added.isdigit() else None,
                        int(removed) if removed.isdigit() else None,
                    )
                )
        code = proc.wait()
    if code != 0:
        raise OrchestraError(f"cannot read the changes {base[:12]}..{head[:12]}: git diff exited {code}")
    return out


def commits(repo: Path, base: str, head: str, limit: int = MAX_COMMITS) -> tuple[list[dict[str, str]], bool]:
    """The commits in base..head, oldest first, and whether there were more than `limit`."""
    _check_range(repo, base, head)
    proc = git(
        repo,
        "log",
        "--reverse",
        f"--max-count={limit + 1}",
        "--format=%H%x00%an%x00%s",
        f"{base}..{head}",
        "--",
        check=False,
    )
    if proc.returncode != 0:
        raise OrchestraError(f"cannot read the commits {base[:12]}..{head[:12]}: {proc.stderr.strip()}")
    rows = []
    for line in proc.stdout.splitlines():
        sha, _, rest = line.partition("\0")
        author, _, subject = rest.partition("\0")
        rows.append({"sha": sha, "author": author, "subject": subject})
    return rows[:limit], len(rows) > limit


def bounded_diff(repo: Path, base: str, head: str, budget: int) -> tuple[list[str], list[str], int]:
    """Whole-file diff chunks that fit in `budget` characters, the paths left out, and the diff's full size."""
    _check_range(repo, base, head)
    shown: list[str] = []
    left_out: list[str] = []
    used = 0
    total = 0
    current: list[bytes] = []
    current_size = 0
    current_path = ""
    over = False

    def close_chunk() -> None:
        nonlocal used
        if not current_path:
            return
        if over or used + current_size > budget:
            left_out.append(current_path)
        else:
            shown.append(b"".join(current).decode("utf-8", "replace"))
            used += current_size

    with stream(repo, "diff", "--no-color", base, head, "--") as proc:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline(_READ)
            if not line:
                break
            total += len(line)
            if line.startswith(b"diff --git "):
                close_chunk()
                header = line.decode("utf-8", "replace").rstrip("\n")
                current_path = header.split(" b/", 1)[-1] if " b/" in header else header
                current, current_size, over = [line], len(line), False
                continue
            if over:
                continue
            current_size += len(line)
            if used + current_size > budget:
                over = True  # this file cannot fit: stop keeping it, keep reading for the next one
                current = []
                continue
            current.append(line)
        close_chunk()
        code = proc.wait()
    if code != 0:
        raise OrchestraError(f"cannot read the changes {base[:12]}..{head[:12]}: git diff exited {code}")
    return shown, left_out, total


def stat_text(repo: Path, base: str, head: str, limit: int = MAX_STAT_FILES) -> str:
    """git's own `--stat` picture, at most `limit` file lines plus its summary line, streamed."""
    _check_range(repo, base, head)
    lines: list[str] = []
    skipped = 0
    last = ""
    with stream(repo, "diff", "--no-color", "--stat=100", base, head, "--") as proc:
        out = proc.stdout
        assert out is not None
        for raw in iter(lambda: out.readline(_READ), b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if last:
                if len(lines) < limit:
                    lines.append(last)
                else:
                    skipped += 1
            last = line
    if skipped:
        lines.append(f" ... and {skipped} more files")
    if last:
        lines.append(last)
    return "\n".join(lines)


def diff_lines(repo: Path, base: str, head: str) -> Iterator[str]:
    """The whole diff base..head, line by line as git writes it, streamed: `orchestra diff` pages through it.

    Read in fixed-size pieces so a 200 MB change never sits in memory; git's own
    external diff and textconv stay off (the runner's hardened flags).
    """
    _check_range(repo, base, head)
    with stream(repo, "diff", "--no-color", base, head, "--") as proc:
        out = proc.stdout
        assert out is not None
        for raw in iter(lambda: out.readline(_READ), b""):
            yield raw.decode("utf-8", "replace")
        code = proc.wait()
    if code != 0:
        raise OrchestraError(f"cannot read the changes {base[:12]}..{head[:12]}: git diff exited {code}")


def review_material(repo: Path, base: str, head: str, label: str, budget: int = DIFF_BUDGET) -> str:
    """The commit list, the diff stat and the diff, for a reviewer's prompt."""
    log, more = commits(repo, base, head)
    stat = diff_stat(repo, base, head)
    shown, left_out, total = bounded_diff(repo, base, head, budget)
    changed = {p: (f"+{a} -{r}" if a is not None else "binary") for p, a, r in stat.files}
    log_text = "\n".join(f"- {c['sha'][:7]} {c['subject']} ({c['author']})" for c in log)
    if more:
        log_text += f"\n- … and more (only the first {MAX_COMMITS} are listed)"
    stat_picture = stat_text(repo, base, head)
    out = [
        "## What to review",
        f"{label} at {head[:12]}, compared with its base {base[:12]}. Your working directory holds the "
        "code at that commit: read the changed files there for context.",
        f"### Commits\n{log_text or '(none)'}",
        f"### Diff stat\n{stat_picture or '(no changes)'}",
    ]
    if shown:
        out.append("### Diff\n```diff\n" + "".join(shown).rstrip("\n") + "\n```")
    if left_out:
        out.append(
            f"### Not shown\nThe diff is larger than this prompt can carry ({total} characters); "
            f"the changes to these {len(left_out)} file(s) are left out above, read them in full in your "
            "working directory:\n" + "\n".join(f"- {p} ({changed.get(p, 'changed')})" for p in left_out)
        )
    return "\n\n".join(out)

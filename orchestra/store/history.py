"""`history.jsonl`: one summary line per task that ended, appended as it ends, read newest first.

A task may have several lines (it was retried and ended again, or something about it changed after
it ended, such as being merged): its newest line is the one that counts, and a task that is live
again is described by the index instead. Reading goes backwards from the end in blocks, so a
listing that wants the 50 newest reads a few kilobytes whatever the length of the history.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any, BinaryIO

BLOCK = 64 * 1024


def encode(summary: dict[str, Any]) -> bytes:
    return json.dumps(summary, separators=(",", ":"), default=str).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any] | None:
    """A line's summary, or None for anything that is not one (a torn last line, garbage)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("state"), str):
        return None
    return data


def lines_backwards(fh: BinaryIO, end: int, block: int = BLOCK) -> Iterator[bytes]:
    """The lines of `fh` before byte `end`, last first, reading `block` bytes at a time."""
    pos = end
    carry = b""
    while pos > 0:
        size = min(block, pos)
        pos -= size
        fh.seek(pos)
        chunk = fh.read(size)
        if len(chunk) != size:  # the file shrank under us: stop rather than guess
            return
        parts = (chunk + carry).split(b"\n")
        carry = parts[0]
        for line in reversed(parts[1:]):
            if line:
                yield line
    if carry:
        yield carry


def newest_first(path: Path, end: int, ino: int | None, skip: Container[str] = ()) -> Iterator[dict[str, Any]]:
    """Each task of the history once, by its newest line, most recently ended first.

    Reads up to `end` bytes of the file with inode `ino`, the part the index that recorded them
    describes; if the file was replaced since (a compaction, a prune), the whole new file is read.
    Tasks in `skip` (the live ones) are left out.
    """
    if ino is None and end == 0:
        return  # the index this reading comes from knew of no ended task
    try:
        fh = open(path, "rb")  # noqa: SIM115 - a generator: closed by the with below
    except FileNotFoundError:
        return
    with fh:
        st = os.fstat(fh.fileno())
        if st.st_ino != ino or st.st_size < end:
            end = st.st_size
        seen: set[str] = set()
        for line in lines_backwards(fh, end):
            summary = decode(line)
            if summary is None:
                continue
            task_id = summary["id"]
            if task_id in seen or task_id in skip:
                continue
            seen.add(task_id)
            yield summary

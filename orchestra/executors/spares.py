"""Checkouts a node makes ahead of time, so that a run's start does not wait for one.

Every run on a node starts in a checkout of its own. Made at the start, that is the slowest
step of a dispatch: for a repository of 1,000 files and 50 MB, 1-2 s when several runs start
at once on a small machine. So while agents run, the node's host makes pristine checkouts of
the newest commit it was sent, up to as many as the runs it held at once, and a new run takes
one over: `git checkout -B` writes only the files its own commit changes.

A spare is orchestra's own (no agent ran in one, and the directory is private). One older than
MAX_AGE is dropped rather than used: the mirror's gc may have collected the objects a spare
borrows once they are two weeks unreferenced, and an hour keeps far from that.
`ORCHESTRA_NODE_SPARES` caps how many a node keeps per repository (0: none).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from pathlib import Path

from orchestra.core.errors import OrchestraError
from orchestra.git import transport

SPARES_ENV = "ORCHESTRA_NODE_SPARES"
MAX_SPARES = 4
MAX_AGE = 3600.0
_READY = "ready-"


def _cap() -> int:
    try:
        return max(0, min(int(os.environ.get(SPARES_ENV, MAX_SPARES)), 64))
    except ValueError:
        return MAX_SPARES


class Spares:
    """The spare checkouts of one repository on this node: taken by runs, refilled in the background."""

    def __init__(self, directory: Path, mirror: Path) -> None:
        self.directory = directory
        self.mirror = mirror
        self.cap = _cap()
        self.wanted = 0
        self.sha = ""
        self.making = False
        self.lock = threading.Lock()
        if directory.is_dir():  # what a host that died left half made or half taken
            for path in directory.iterdir():
                if not path.name.startswith(_READY):
                    shutil.rmtree(path, ignore_errors=True)

    def take(self, dest: Path) -> bool:
        """Move the newest fresh spare to `dest` (which must not exist); False when there is none."""
        with self.lock:
            for path in self._ready():
                if time.time() - path.stat().st_mtime > MAX_AGE:
                    shutil.rmtree(path, ignore_errors=True)
                    continue
                os.rename(path, dest)
                return True
        return False

    def drop(self) -> None:
        """Remove every spare: the host ends, and nothing here would use them."""
        with self.lock:
            self.wanted = 0
            shutil.rmtree(self.directory, ignore_errors=True)

    def refill(self, sha: str, runs: int, delay: float = 0.0) -> None:
        """Keep spares of `sha` for as many runs as the host holds (at most the cap), made in a thread
        that first waits `delay` seconds: runs starting together are not slowed by their own spares."""
        with self.lock:
            self.wanted = min(max(self.wanted, runs), self.cap)
            self.sha = sha
            if self.making or len(self._ready()) >= self.wanted:
                return
            self.making = True
        threading.Thread(target=self._fill, args=(delay,), name="spares", daemon=True).start()

    def _ready(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.name.startswith(_READY)]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def _fill(self, delay: float) -> None:
        try:
            time.sleep(delay)
            while True:
                with self.lock:
                    sha = self.sha
                    if len(self._ready()) >= self.wanted:
                        return
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                making = self.directory / f"making-{secrets.token_hex(4)}"
                try:
                    transport.spare_checkout(self.mirror, making, sha)
                except OrchestraError:
                    shutil.rmtree(making, ignore_errors=True)
                    return  # a run then makes its own checkout, as without spares
                os.rename(making, self.directory / f"{_READY}{secrets.token_hex(4)}")
        finally:
            with self.lock:
                self.making = False

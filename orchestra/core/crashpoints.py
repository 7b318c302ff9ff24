"""Test-only fault injection: the process SIGKILLs itself at a named point.

Inert unless ORCHESTRA_TEST_CRASH_AT (or ORCHESTRA_TEST_PAUSE_AT) is set. Crash tests use it to die exactly
where a random timer would rarely land (between two writes, between a commit and
the state change that records it). `point` kills on the first pass, `point:N` on
the N-th pass through that point in this process.
"""

from __future__ import annotations

import os
import signal
import threading
import time

ENV = "ORCHESTRA_TEST_CRASH_AT"

_passes: dict[str, int] = {}
_guard = threading.Lock()


PAUSE_ENV = "ORCHESTRA_TEST_PAUSE_AT"  # `point:seconds`: sleep there instead, to hold a window open


def crash_point(name: str) -> None:
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        point, _, seconds = pause.partition(":")
        if point == name:
            time.sleep(float(seconds or 1))
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    with _guard:
        _passes[name] = _passes.get(name, 0) + 1
        if _passes[name] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)

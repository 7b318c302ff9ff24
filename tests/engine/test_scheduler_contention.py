"""Two schedulers started at the same moment for one repository: one runs, the other says so.

Moved from test_concurrency.py (now store/test_store_contention.py).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from orchestra.store import scheduler as record
from orchestra.store.paths import Paths
from orchestra.store.scheduler import scheduler_pid

pytestmark = pytest.mark.crash


def test_two_schedulers_started_at_once_one_runs_the_other_says_so(orch):
    for round_ in range(3):
        tid = orch.submit(f"round {round_}\n@fake sleep 0.8")
        a, b = (orch.start_worker("--until-idle") for _ in range(2))
        outs = [(p.wait(timeout=60), p.stdout.read()) for p in (a, b)]
        codes = sorted(code for code, _ in outs)
        assert codes[0] == 0 and codes[1] != 0, outs
        loser = next(out for code, out in outs if code != 0)
        assert loser.strip().count("\n") == 0, loser  # one line
        # "(pid N)" follows once the winner has written scheduler.json, which may be a moment later.
        assert loser.startswith(f"orchestra: error: a scheduler is already running for {orch.repo}")
        assert orch.state(tid) == "succeeded"
    runs = [c["env"]["ORCHESTRA_TASK_ID"] for c in orch.invocations()]
    assert len(runs) == len(set(runs)) == 3  # no task ran twice


def test_a_task_submitted_while_the_scheduler_winds_down_is_run_not_stranded(orch):
    """`worker --until-idle` saw an empty queue and is about to exit when a task arrives.

    The pause holds open the moment between its last look at the queue and giving up its claim; a
    submit there (with autostart off, so nothing else would start it) must still be run.
    """
    orch.run("config", "set", "autostart", "false", check=True)
    worker = orch.start_worker("--until-idle", env={"ORCHESTRA_TEST_PAUSE_AT": "scheduler_idle:3"})
    info = orch.repo / ".orchestra" / "scheduler.json"
    orch.wait_for(info.exists, timeout=30, what="the worker's claim")
    time.sleep(0.5)  # past its first (empty) pass, inside the 3 s pause before it would exit
    late = orch.submit("late\n@fake write late.txt late")
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out
    assert orch.state(late) == "succeeded", out
    assert out.count("nothing left to do") == 1, out


def test_a_look_at_the_lock_as_a_scheduler_starts_does_not_turn_it_away(orch):
    """`holder_alive` (status, wait, and submit polling for the scheduler it started) looks by taking the
    lock for an instant. A scheduler whose one try met such a look gave up as if another one ran
    (a background one silently), and the queue waited for nobody."""
    paths = Paths(orch.repo)
    paths.ensure()
    fd = os.open(paths.scheduler_lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a look, caught in the act (held longer, to be seen)
    threading.Timer(0.1, os.close, (fd,)).start()
    held = record.claim(paths, 1)
    try:
        assert held is not None, "the scheduler gave up at a look at its lock"
        assert scheduler_pid(paths) == os.getpid()
    finally:
        if held is not None:
            record.release(paths, held)

"""Two schedulers started at the same moment for one repository: one runs, the other says so.

Moved from test_concurrency.py (now store/test_store_contention.py).
"""

from __future__ import annotations

import time

import pytest

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

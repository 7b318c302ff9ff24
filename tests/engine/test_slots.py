"""Slots: an agent waiting for a person holds no slot of max_concurrent, up to max_waiting of them,
and a queued task that cannot start says why. The real scheduler, the fake claude asking
orchestra's real permission server.
"""

from __future__ import annotations

import json
import time
from typing import Any


def _waiting(orch, task_id: str) -> dict[str, Any] | None:
    task = orch.show(task_id)
    return task if task["state"] == "awaiting_input" and task["pending_request"] else None


def _queue(orch) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in json.loads(orch.run("queue", "--json", check=True).stdout)}


def test_a_waiting_agent_frees_its_slot_and_the_next_task_starts(orch):
    orch.run("config", "set", "max_concurrent", "1", check=True)
    asker = orch.submit("asks first\n@fake ask bash touch asked.txt", "--priority", "5")
    other = orch.submit("runs meanwhile\n@fake write meanwhile.txt yes\n@fake commit Meanwhile")
    orch.start_worker()
    orch.wait_for(lambda: _waiting(orch, asker), what="the first agent to ask")
    # With the only slot's agent waiting for a person, the other task runs to its end.
    orch.wait_for(lambda: orch.state(other) == "succeeded", what="the other task to run")
    assert orch.state(asker) == "awaiting_input"
    orch.run("respond", asker, "--deny", check=True)
    orch.wait_for(lambda: orch.state(asker) in ("succeeded", "failed"), what="the first task to end")


def test_beyond_max_waiting_waiting_agents_hold_slots_and_the_queue_says_why(orch):
    orch.run("config", "set", "max_concurrent", "1", check=True)
    orch.run("config", "set", "max_waiting", "0", check=True)
    asker = orch.submit("asks\n@fake ask bash touch asked.txt", "--priority", "5")
    held = orch.submit("must wait for the slot")
    after = orch.submit("after the held one", "--after", held)
    orch.start_worker()
    orch.wait_for(lambda: _waiting(orch, asker), what="the agent to ask")
    time.sleep(1.0)  # several scheduler passes: the held task must still not start
    assert orch.state(held) == "queued"
    rows = _queue(orch)
    assert rows[held]["why"] == "all 1 slots busy"
    assert rows[after]["why"] == f"waiting on dependency {held} (queued)"
    queue_text = orch.run("queue", check=True).stdout
    assert "all 1 slots busy" in queue_text
    status = orch.run("status", check=True).stdout
    held_line = next(line for line in status.split("QUEUED", 1)[1].splitlines() if held in line)
    assert "all 1 slots busy" in held_line
    orch.run("respond", asker, "--deny", check=True)
    orch.wait_for(lambda: orch.state(after) == "succeeded", what="the queue to drain")


def test_queue_says_when_no_scheduler_runs_or_a_retry_waits(orch):
    orch.run("config", "set", "autostart", "false", check=True)
    task_id = orch.submit("nobody runs me")
    assert _queue(orch)[task_id]["why"] == "no scheduler running"
    assert "no scheduler running" in orch.run("status", check=True).stdout


def test_max_waiting_is_a_setting_with_a_check(orch):
    assert orch.run("config", "get", "max_waiting", check=True).stdout.strip() == "4"
    bad = orch.run("config", "set", "max_waiting", "many")
    assert bad.returncode == 1 and "max_waiting" in bad.stderr and "Traceback" not in bad.stderr

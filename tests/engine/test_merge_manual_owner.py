"""A person's merge (`orchestra merge`, from the CLI, MCP or the screen) runs in that person's process:
a scheduler that finds its record `running` must leave it to that process while it lives, and settle it
only once the process is gone. It used to re-queue it at once, and the merge, having moved the target,
then failed to record itself ("a queued task cannot become succeeded")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import ROOT

MERGER = """
import sys, time
sys.path.insert(0, {root!r})
from orchestra.app import Orchestra
from orchestra.engine import agentless
task = agentless.new_agentless_task(Orchestra({repo!r}).ctx, "merge", "merge it", "merge it", [], running=True, manual=True)
print(task.id, flush=True)
time.sleep(120)
"""


def test_a_scheduler_leaves_a_running_manual_merge_to_its_process(orch):
    merger = subprocess.Popen(
        [sys.executable, "-c", MERGER.format(root=str(ROOT), repo=str(orch.repo))],
        stdout=subprocess.PIPE,
        text=True,
        env=orch.env,
    )
    try:
        assert merger.stdout is not None
        tid = merger.stdout.readline().strip()
        assert orch.state(tid) == "running"
        assert orch.work().returncode == 0  # a scheduler passes by: the merge is not its to settle
        assert orch.state(tid) == "running" and orch.show(tid)["attempts"] == 1
    finally:
        os.kill(merger.pid, signal.SIGKILL)
        merger.wait()
    orch.work()  # the merging process is gone: now the record is settled
    assert orch.state(tid) != "running"

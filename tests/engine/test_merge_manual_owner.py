"""A person's merge (`orchestra merge`, from the CLI, MCP or the screen) runs in that person's process:
a scheduler that finds its record `running` must leave it to that process while it lives, and settle it
only once the process is gone. It used to re-queue it at once, and the merge, having moved the target,
then failed to record itself ("a queued task cannot become succeeded")."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys

from conftest import ROOT, git, processes_running

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


def test_ctrl_c_during_the_gate_cancels_the_merge_and_no_scheduler_finishes_it(orch):
    tid = orch.submit("work\n@fake write b.txt b\n@fake commit add b")
    orch.work()
    assert orch.state(tid) == "succeeded"
    main_before = git(orch.repo, "rev-parse", "main")
    gate = ["sleep", f"300.{secrets.randbelow(10**9)}"]
    orch.run("config", "set", "gate", " ".join(gate), check=True)
    merger = orch.popen("merge", tid)
    orch.wait_for(lambda: merger.poll() is not None or processes_running(gate), what="the gate to start")
    assert merger.poll() is None, merger.communicate()
    os.killpg(merger.pid, signal.SIGINT)  # what the terminal does on Ctrl-C; the gate has its own session
    out, err = merger.communicate(timeout=60)
    assert merger.returncode == 130, (out, err)
    assert out == "" and len(err.splitlines()) == 1 and "nothing was merged into main" in err, err
    assert processes_running(gate) == [], "the gate kept running after Ctrl-C"
    merges = json.loads(orch.run("list", "--merges", "--json", check=True).stdout)
    assert [m["state"] for m in merges] == ["cancelled"]
    orch.submit("something else")
    assert orch.work().returncode == 0  # a later scheduler leaves the cancelled merge alone
    assert git(orch.repo, "rev-parse", "main") == main_before
    assert orch.state(merges[0]["id"]) == "cancelled" and not orch.show(tid)["merged"]

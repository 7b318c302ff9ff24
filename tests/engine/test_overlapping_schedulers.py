"""A scheduler that stops gives up its claim while a merge step it started may still be running in its
process (a gate takes its time; the process ends after it, or lives on when orchestra is embedded). A
scheduler or `doctor --fix` taking the claim next used to find that merge `running` with no process
named, re-queue it as an agent that died, and the first run's end then failed with "internal error: a
queued task cannot become succeeded" (and the merge ran twice)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from conftest import git

from orchestra.app import Orchestra
from orchestra.core import redact
from orchestra.core.task import State
from orchestra.engine import agentless, recovery, runner

SHIP = (
    '[[step]]\nname = "implement"\nrole = "implementer"\n\n[[step]]\nname = "merge"\nrole = "merge"\non = "implement"\n'
)
WORK = "Ship f\n@fake if-role implementer write f.txt f\n@fake if-role implementer commit Add f"


def _merge_step_waiting_for_its_gate(orch, tmp_path: Path) -> tuple[str, Path, Path]:
    """A workflow whose implement step has succeeded and whose merge step is queued; its gate, once
    started, says so in `started` and waits until `go` exists."""
    started, go = tmp_path / "gate-started", tmp_path / "gate-go"
    state = orch.repo / ".orchestra"
    (state / "workflows").mkdir(parents=True, exist_ok=True)
    (state / "workflows" / "ship.toml").write_text(SHIP)
    (state / "config.toml").write_text(
        f'autostart = false\nsandbox = "off"\nmerge_approval = true\ngate = "touch {started}; until [ -e {go} ]; do sleep 0.05; done"\n'
    )
    wf_id = orch.run("workflow", "start", "ship", WORK, check=True).stdout.strip()
    assert orch.work().returncode == 0
    orch.run("merge", wf_id, check=True)  # a person approves: the merge step is queued for a scheduler
    return wf_id, started, go


def _merge_step(orch, wf_id: str) -> dict:
    wf = json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)
    (inst,) = [i for i in wf["instances"] if i["step"] == "merge"]
    return wf["tasks"][inst["task"]]


def test_a_merge_step_still_running_after_its_scheduler_stopped_is_left_to_it(orch, tmp_path: Path):
    wf_id, started, go = _merge_step_waiting_for_its_gate(orch, tmp_path)
    before = git(orch.repo, "rev-parse", "main")
    first = Orchestra(orch.repo).scheduler(log=lambda _msg: None)
    saved = redact.current()
    loop = threading.Thread(target=first.run)
    loop.start()
    try:
        orch.wait_for(started.exists, timeout=60, what="the merge step's gate")
        step = _merge_step(orch, wf_id)
        assert step["state"] == "running"
        runner = first.runners[step["id"]]
        first.stopping = True  # as on SIGTERM: the loop ends and the claim is given up
        first.wake.set()
        loop.join()
        assert runner.is_alive()  # the merge goes on in this process
        fixed = orch.run_process("doctor", "--fix", "--json")  # another process takes the claim
        assert json.loads(fixed.stdout)["scheduler_pid"] is None
        assert _merge_step(orch, wf_id)["state"] == "running", "re-queued while it was running"
    finally:
        go.touch()
        first.stopping = True
        first.wake.set()
        loop.join()
        for thread in list(first.runners.values()):
            thread.join()
        redact.install(saved)
    step = _merge_step(orch, wf_id)
    assert step["state"] == "succeeded", step["error"]
    assert step["attempts"] == 1
    assert len(git(orch.repo, "rev-list", "--merges", f"{before}..main").split()) == 1
    assert orch.work().returncode == 0
    wf = json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)
    assert wf["state"] == "succeeded", wf
    assert len(git(orch.repo, "rev-list", "--merges", f"{before}..main").split()) == 1


def _claimed(ctx, task_id: str):
    return ctx.store.update(task_id, lambda t: t.claim(0), "claimed")


def test_the_end_of_a_run_is_not_recorded_over_a_task_queued_or_claimed_again(orch):
    """What a stopped scheduler's runner meets when another scheduler took the task on: it leaves it to them."""
    ctx = Orchestra(orch.repo).ctx
    step = agentless.new_agentless_task(ctx, "merge", "merge it", "merge it", [], running=True)
    recovery.give_back(ctx, step.id, "settled by another scheduler")
    ended = agentless.finish_agentless(ctx, step.id, None, "merged")
    assert ended.state == "queued" and orch.state(step.id) == "queued"
    _claimed(ctx, step.id)  # attempt 2, by whoever took it
    ended = agentless.finish_agentless(ctx, step.id, None, "merged", attempt=1)
    assert ended.state == "running" and ended.attempts == 2
    assert "finished" not in [e["event"] for e in ctx.store.events(step.id)]

    agent_task = orch.submit("work")
    _claimed(ctx, agent_task)
    recovery.give_back(ctx, agent_task, "settled by another scheduler")
    ended = runner.finalize(ctx, agent_task, exit_code=0)
    assert ended.state == "queued" and orch.state(agent_task) == "queued"


def test_recovery_from_an_older_reading_leaves_a_task_that_has_moved_on(orch):
    """doctor --fix, or a scheduler's look at the live tasks, reads a task `running`; before it settles it, the
    run's own runner records its end. The task is not queued to run a second time."""
    ctx = Orchestra(orch.repo).ctx
    task_id = orch.submit("work")
    seen = _claimed(ctx, task_id)
    ctx.store.update(task_id, lambda t: t.finish(State.SUCCEEDED, None), "finished")
    sched = Orchestra(orch.repo).scheduler(log=lambda _msg: None)
    recovery.recover_one(ctx, seen, sched.start_runner)
    assert not sched.runners
    assert orch.state(task_id) == "succeeded"
    assert "requeued" not in [e["event"] for e in ctx.store.events(task_id)]

"""A workflow's next step is two writes: the step's task, then the workflow's record naming it. A process
killed between them (a scheduler moving the workflow on, `orchestra merge WF` approving its merge) left a
task the workflow did not know: the next advance made the step again, and both ran (two agents for one
step, the merge run twice). The next advance now takes the task that was made."""

from __future__ import annotations

import json

import pytest
from hardening_helpers import git

pytestmark = pytest.mark.crash

SHIP = (
    '[[step]]\nname = "implement"\nrole = "implementer"\n\n'
    '[[step]]\nname = "check"\nrole = "tester"\non = "implement"\n\n'
    '[[step]]\nname = "merge"\nrole = "merge"\non = "check"\n'
)
WORK = (
    "Ship f\n@fake if-role implementer write f.txt f\n@fake if-role implementer commit Add f\n"
    "@fake if-role tester write t.txt t\n@fake if-role tester commit Test f"
)


def _start(orch, config: str = "") -> str:
    state = orch.repo / ".orchestra"
    (state / "workflows").mkdir(parents=True, exist_ok=True)
    (state / "workflows" / "ship.toml").write_text(SHIP)
    (state / "config.toml").write_text(f'autostart = false\nsandbox = "off"\n{config}')
    return orch.run("workflow", "start", "ship", WORK, check=True).stdout.strip()


def _workflow(orch, wf_id: str) -> dict:
    return json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)


def _steps(orch, wf_id: str) -> list[tuple[str, str]]:
    """(step, state) of every task made for the workflow, whether its record names it or not."""
    tasks = json.loads(orch.run("list", "--json", "--limit", "1000", check=True).stdout)
    made = sorted((t for t in tasks if t["workflow"] == wf_id), key=lambda t: t["created_at"])
    return [(t["step"], t["state"]) for t in made]


def _assert_each_step_once(orch, wf_id: str, before: str) -> None:
    wf = _workflow(orch, wf_id)
    assert wf["state"] == "succeeded", wf
    assert _steps(orch, wf_id) == [("implement", "succeeded"), ("check", "succeeded"), ("merge", "succeeded")]
    assert [i["step"] for i in wf["instances"]] == ["implement", "check", "merge"]
    roles = [inv["env"].get("ORCHESTRA_ROLE") for inv in orch.invocations()]
    assert roles == ["implementer", "tester"]  # each agent ran once
    assert len(git(orch.repo, "rev-list", "--merges", f"{before}..main").split()) == 1


def test_a_scheduler_killed_as_it_makes_the_next_step_leaves_it_to_run_once(orch):
    wf_id = _start(orch)
    before = git(orch.repo, "rev-parse", "main")
    orch.crash_at("workflow_before_save", "worker", "--until-idle")  # the implement step ended: check is made
    assert _steps(orch, wf_id) == [("implement", "succeeded"), ("check", "queued")]
    assert [i["step"] for i in _workflow(orch, wf_id)["instances"]] == ["implement"]
    assert orch.work().returncode == 0
    _assert_each_step_once(orch, wf_id, before)


def test_a_merge_approval_killed_as_it_makes_the_merge_step_merges_once(orch):
    wf_id = _start(orch, "merge_approval = true\n")
    before = git(orch.repo, "rev-parse", "main")
    assert orch.work().returncode == 0
    assert _workflow(orch, wf_id)["state"] == "awaiting_merge"
    orch.crash_at("workflow_before_save", "merge", wf_id)
    assert _steps(orch, wf_id)[-1] == ("merge", "queued")
    assert orch.work().returncode == 0
    _assert_each_step_once(orch, wf_id, before)


def test_a_step_that_ran_before_its_workflow_knew_it_is_taken_when_it_ends(orch):
    """The task a killed advance made may run to its end before any advance sees it queued: its end moves
    the workflow on from it, and the step is not made again."""
    from orchestra.app import Orchestra
    from orchestra.engine import workflows

    wf_id = _start(orch, "merge_approval = true\n")
    before = git(orch.repo, "rev-parse", "main")
    assert orch.work().returncode == 0
    orch.crash_at("workflow_before_save", "merge", wf_id)
    ctx = Orchestra(orch.repo).ctx
    (step,) = [s for s in ctx.store.live().values() if s["workflow"] == wf_id]
    ctx.store.update(step["id"], lambda t: t.claim(0), "claimed")  # a scheduler takes it before any advance
    ended = workflows.run_agentless(ctx, step["id"])
    assert ended.state == "succeeded", ended.error
    workflows.task_finished(ctx, ended)
    _assert_each_step_once(orch, wf_id, before)

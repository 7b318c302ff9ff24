"""Crash trials for merges: the process doing a merge is SIGKILLed at each merge crash point, under every
strategy, both as a workflow's merge step (in the scheduler) and as a manual `orchestra merge` (of a task
and of a workflow). After a restart the target holds exactly one merge and the workflow ends succeeded."""

from __future__ import annotations

import json

import pytest
from hardening_helpers import git, run_json

pytestmark = pytest.mark.crash

STRATEGIES = ["merge", "squash", "ff-only"]
POINTS = ["merge_before_move", "merge_after_move", "merge_after_record"]
WORK = "@fake if-role implementer write f.txt f\n@fake if-role implementer commit Add f"
SHIP = (
    '[[step]]\nname = "implement"\nrole = "implementer"\n\n[[step]]\nname = "merge"\nrole = "merge"\non = "implement"\n'
)
GATE = 'gate = "test -f \\"$ORCHESTRA_REPO/.orchestra/gate-ok\\""\n'


def _setup(orch, strategy: str, extra: str = "") -> None:
    state = orch.repo / ".orchestra"
    (state / "workflows").mkdir(parents=True, exist_ok=True)
    (state / "workflows" / "ship.toml").write_text(SHIP)
    (state / "config.toml").write_text(f'merge_strategy = "{strategy}"\n{extra}')


def _killed_at(orch, point: str, *args: str) -> None:
    orch.crash_at(point, *args)


def _assert_landed_once(orch, strategy: str, before: str, source_sha: str) -> None:
    new = git(orch.repo, "rev-list", f"{before}..main").split()
    if strategy == "merge":
        assert len(new) == 2, new  # the source's commit and one merge commit
        assert git(orch.repo, "rev-list", "--merges", f"{before}..main").split() == [new[0]]
        assert git(orch.repo, "rev-parse", "main^1") == before and git(orch.repo, "rev-parse", "main^2") == source_sha
    elif strategy == "squash":
        assert len(new) == 1, new
        assert f"Orchestra-Squash-Of: {source_sha}" in git(orch.repo, "log", "-1", "--format=%B", "main")
    else:
        assert git(orch.repo, "rev-parse", "main") == source_sha
    assert git(orch.repo, "show", "main:f.txt") == "f"
    assert git(orch.repo, "status", "--porcelain") == ""
    assert ".orchestra/merges" not in git(orch.repo, "worktree", "list")


def _no_live_tasks(orch) -> None:
    code, tasks = run_json(orch, "list")
    assert code == 0
    live = [(t["id"], t["role"], t["state"]) for t in tasks if t["state"] in ("queued", "running", "awaiting_input")]
    assert not live, live


def _workflow(orch, wf_id: str) -> dict:
    return json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)


def _source(wf: dict) -> dict:
    (inst,) = [i for i in wf["instances"] if i["step"] == "implement"]
    return wf["tasks"][inst["task"]]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_workflow_merge_step_killed(orch, strategy: str, point: str):
    _setup(orch, strategy)
    wf_id = orch.run("workflow", "start", "--no-start", "ship", f"Ship f\n{WORK}", check=True).stdout.strip()
    before = git(orch.repo, "rev-parse", "main")
    _killed_at(orch, point, "worker", "--until-idle")
    assert orch.work().returncode == 0
    wf = _workflow(orch, wf_id)
    assert wf["state"] == "succeeded", wf
    source = _source(wf)
    _assert_landed_once(orch, strategy, before, git(orch.repo, "rev-parse", source["branch"]))
    assert source["merged"]["into"] == "main"
    _no_live_tasks(orch)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_manual_merge_of_a_task_killed(orch, strategy: str, point: str):
    tid = orch.submit(f"f\n{WORK.replace('if-role implementer ', '')}")
    assert orch.work().returncode == 0
    before = git(orch.repo, "rev-parse", "main")
    source_sha = git(orch.repo, "rev-parse", orch.show(tid)["branch"])
    _killed_at(orch, point, "merge", tid, "--strategy", strategy)
    # The person runs it again; a scheduler later settles the merge task the killed one left running.
    code, result = run_json(orch, "merge", tid, "--strategy", strategy)
    assert code == 0 and result["status"] == ("merged" if point == "merge_before_move" else "up_to_date"), result
    assert orch.work().returncode == 0
    _assert_landed_once(orch, strategy, before, source_sha)
    assert orch.show(tid)["merged"]["into"] == "main"
    _no_live_tasks(orch)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_manual_merge_of_a_workflow_killed(orch, strategy: str, point: str):
    _setup(orch, strategy, GATE)
    wf_id = orch.run("workflow", "start", "--no-start", "ship", f"Ship f\n{WORK}", check=True).stdout.strip()
    before = git(orch.repo, "rev-parse", "main")
    assert orch.work().returncode == 0
    wf = _workflow(orch, wf_id)
    assert wf["state"] == "failed" and "gate command failed" in wf["error"], wf  # the gate is not satisfied yet
    (orch.repo / ".orchestra" / "gate-ok").touch()
    _killed_at(orch, point, "merge", wf_id)
    assert orch.work().returncode == 0
    wf = _workflow(orch, wf_id)
    assert wf["state"] == "succeeded", wf
    source = _source(wf)
    _assert_landed_once(orch, strategy, before, git(orch.repo, "rev-parse", source["branch"]))
    _no_live_tasks(orch)

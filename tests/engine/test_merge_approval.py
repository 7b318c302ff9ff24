"""A person before the merge: `--approve-merge` or `merge_approval = true` stops a workflow at
awaiting_merge, `status` shows it under WAITING FOR YOU with its diffstat, `orchestra merge WF`
approves. Real repositories, the real scheduler and the fake claude.
"""

from __future__ import annotations

import json
import os
import secrets
import signal

from conftest import git, processes_running

APPROVE = '{"verdict": "approve", "comments": [], "summary": "Looks right."}'
REQUEST = (
    "Add a greeting\n"
    "@fake if-role implementer if-new write greeting.py hi\\n\n"
    "@fake if-role implementer if-new commit Add greeting\n"
    "@fake if-role tester write test_greeting.py ok\\nok\\n\n"
    "@fake if-role tester commit Test greeting\n"
    f"@fake if-role reviewer structured {APPROVE}\n"
)


def _wf(orch, wf_id: str) -> dict:
    return json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)


def _approval_then_merge(orch, *start_args: str) -> None:
    main_before = git(orch.repo, "rev-parse", "main")
    wf_id = orch.run("workflow", "start", "--no-start", *start_args, "feature", REQUEST, check=True).stdout.strip()
    assert orch.work().returncode == 0
    wf = _wf(orch, wf_id)
    assert wf["state"] == "awaiting_merge" and wf["approve_merge"] and not wf["merge_approved"]
    assert "merge" not in {i["step"] for i in wf["instances"]}  # no merge step was even queued
    assert git(orch.repo, "rev-parse", "main") == main_before

    status = orch.run("status", check=True).stdout
    waiting = status.split("WAITING FOR YOU (1): approve with 'orchestra merge WF'", 1)[1]
    assert f"{wf_id}  merge into main: +3 −0 · 2 files" in waiting
    assert f"approve: orchestra merge {wf_id}" in waiting
    data = json.loads(orch.run("status", "--json", check=True).stdout)
    assert data["awaiting_merge"][0]["id"] == wf_id and data["awaiting_merge"][0]["summary"] == "+3 −0 · 2 files"
    waited = orch.run("workflow", "wait", wf_id)
    assert waited.returncode == 3, waited  # it waits for you, as the man page says, not "failed"
    assert waited.stdout == f"{wf_id} awaiting_merge (its merge waits for your approval: 'orchestra merge {wf_id}')\n"

    approved = orch.run("merge", wf_id, "--no-start", check=True)
    assert approved.stdout.strip() == f"workflow {wf_id}: merge approved; its merge step runs now"
    assert orch.work().returncode == 0
    wf = _wf(orch, wf_id)
    assert wf["state"] == "succeeded" and wf["merge_approved"] and wf["merge"]["status"] == "merged"
    assert git(orch.repo, "rev-parse", "main") != main_before
    assert (orch.repo / "greeting.py").read_text() == "hi\n"
    assert "WAITING FOR YOU" not in orch.run("status", check=True).stdout
    merged_at, steps = git(orch.repo, "rev-parse", "main"), len(wf["instances"])
    again = orch.run("merge", wf_id, check=True)  # a second merge: says so, adds no step and no commit
    assert again.stdout.strip() == f"workflow {wf_id} is already merged into main; nothing was changed"
    assert len(_wf(orch, wf_id)["instances"]) == steps and git(orch.repo, "rev-parse", "main") == merged_at


def test_approve_merge_flag_stops_the_workflow_until_a_person_merges(orch):
    _approval_then_merge(orch, "--approve-merge")


def test_merge_approval_setting_does_the_same(orch):
    orch.run("config", "set", "merge_approval", "true", check=True)
    _approval_then_merge(orch)


def test_without_approval_the_workflow_merges_on_its_own(orch):
    main_before = git(orch.repo, "rev-parse", "main")
    wf_id = orch.run("workflow", "start", "--no-start", "feature", REQUEST, check=True).stdout.strip()
    assert orch.work().returncode == 0
    assert _wf(orch, wf_id)["state"] == "succeeded"
    assert git(orch.repo, "rev-parse", "main") != main_before


def test_the_unfinished_workflows_cache_is_rebuilt_and_checked_by_doctor(orch):
    """status reads only unfinished workflows' records, through a cache a person may delete.

    Deleted, it is rebuilt at the next read; missing an entry (damaged by hand), doctor names
    it and --fix rebuilds it, so a workflow waiting for its merge never drops out of status.
    """
    wf_id = orch.run("workflow", "start", "--no-start", "--approve-merge", "feature", REQUEST, check=True).stdout
    wf_id = wf_id.strip()
    assert orch.work().returncode == 0
    cache = orch.repo / ".orchestra" / "workflows" / "unfinished"
    assert sorted(p.name for p in cache.iterdir()) == [wf_id]

    def waiting() -> list[str]:
        return [w["id"] for w in json.loads(orch.run("status", "--json", check=True).stdout)["awaiting_merge"]]

    for p in cache.iterdir():
        p.unlink()
    cache.rmdir()
    assert waiting() == [wf_id]
    assert sorted(p.name for p in cache.iterdir()) == [wf_id]

    (cache / wf_id).unlink()
    assert waiting() == []  # what a damaged cache costs, until doctor
    report = json.loads(orch.run("doctor", "--json").stdout)
    assert [(f["kind"], f["fixed"]) for f in report["findings"]] == [("unfinished_workflows_cache", False)]
    assert wf_id in report["findings"][0]["detail"]
    orch.run("doctor", "--fix", check=True)
    assert waiting() == [wf_id]

    orch.run("merge", wf_id, "--no-start", check=True)
    assert orch.work().returncode == 0
    assert _wf(orch, wf_id)["state"] == "succeeded"
    assert list(cache.iterdir()) == []  # a finished workflow leaves the cache
    assert json.loads(orch.run("doctor", "--json").stdout)["findings"] == []


def test_ctrl_c_during_a_persons_merge_of_a_workflow_leaves_it_waiting_for_approval(orch):
    wf_id = orch.run("workflow", "start", "--no-start", "--approve-merge", "feature", REQUEST, check=True).stdout
    wf_id = wf_id.strip()
    assert orch.work().returncode == 0 and _wf(orch, wf_id)["state"] == "awaiting_merge"
    main_before = git(orch.repo, "rev-parse", "main")
    gate = ["sleep", f"300.{secrets.randbelow(10**9)}"]
    orch.run("config", "set", "gate", " ".join(gate), check=True)
    merger = orch.popen("merge", wf_id, "--strategy", "squash")  # a strategy of its own: merged here, now
    orch.wait_for(lambda: merger.poll() is not None or processes_running(gate), what="the gate to start")
    os.killpg(merger.pid, signal.SIGINT)
    out, err = merger.communicate(timeout=60)
    assert merger.returncode == 130 and "nothing was merged into main" in err, (out, err)
    assert not processes_running(gate)
    wf = _wf(orch, wf_id)
    assert wf["state"] == "awaiting_merge" and "merge" not in {i["step"] for i in wf["instances"]}
    assert orch.work().returncode == 0
    assert _wf(orch, wf_id)["state"] == "awaiting_merge" and git(orch.repo, "rev-parse", "main") == main_before

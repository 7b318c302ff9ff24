"""`orchestra cleanup` reads the tasks, then removes what the finished ones left, one worktree and one
branch at a time. A reply or a retry that queued one of them again in between (and a scheduler that
started its run) used to lose its checkout and its branch under it: the run's commits went nowhere and
the task still read "succeeded"."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from orchestra.app import Orchestra
from orchestra.engine import cleanup
from orchestra.engine import tasks as task_cases


def _merged_task(orch) -> str:
    (orch.repo / ".orchestra").mkdir(exist_ok=True)
    (orch.repo / ".orchestra" / "config.toml").write_text('autostart = false\nsandbox = "off"\n')
    done = orch.submit("done\n@fake write d.txt d\n@fake commit Add d")
    assert orch.work().returncode == 0
    assert orch.run("merge", done).returncode == 0  # merged: its checkout and branch are cleanup's to remove
    return done


@pytest.mark.parametrize("started", [False, True], ids=["queued", "running"])
def test_a_task_replied_to_while_cleanup_runs_keeps_its_checkout_and_branch(orch, monkeypatch, tmp_path: Path, started):
    done = _merged_task(orch)
    branch = orch.show(done)["branch"]
    first = git(orch.repo, "rev-parse", branch)
    ctx = Orchestra(orch.repo).ctx
    gate = tmp_path / "gate"
    read_tasks = ctx.store.all_tasks

    def a_reply_lands_meanwhile():
        seen = read_tasks()  # what cleanup goes by: the task has ended
        reply = f"More\n@fake wait-for {gate}\n@fake write more.txt m\n@fake commit Add more"
        task_cases.reply(ctx, done, reply)
        if started:
            orch.start_worker("--until-idle")
            orch.wait_for(lambda: orch.show(done)["pid"], what="the reply's run")
        return seen

    monkeypatch.setattr(ctx.store, "all_tasks", a_reply_lands_meanwhile)
    report = cleanup.cleanup(ctx).to_dict()
    assert not report["removed_worktrees"] and not report["deleted_branches"], report
    kept = {k["what"]: k["reason"] for k in report["kept"]}
    state = "running" if started else "queued"
    assert kept == {"worktree": f"task {done} is {state} again", "branch": f"task {done} is {state} again"}
    gate.touch()
    if started:
        assert orch.procs[0].wait(timeout=120) == 0
    assert orch.work().returncode == 0
    task = orch.show(done)
    assert task["state"] == "succeeded", task["error"]
    assert git(orch.repo, "show", f"{branch}:more.txt") == "m"  # the reply's work, on top of the first run's
    assert git(orch.repo, "rev-parse", f"{branch}~1") == first
    # Once it has ended again, cleanup takes what is merged, and keeps what is not.
    report = cleanup.cleanup(Orchestra(orch.repo).ctx).to_dict()
    assert [w["task"] for w in report["removed_worktrees"]] == [done]
    assert report["kept"][0]["reason"] == "not merged into main (use --force)"

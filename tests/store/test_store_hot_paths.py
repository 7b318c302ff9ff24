"""The hot paths read the live work only: never a finished task's file, never the whole history.

status, submit, list of live states, queue and the scheduler's pass must cost what the live work
costs. These tests take the finished tasks' files away (the history's truth) and check that none of
those commands notices, and, in-process, that they load no finished task at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from store_helpers import assert_caches_agree, populate

from orchestra.app import Orchestra
from orchestra.engine import status as status_cases
from orchestra.engine import tasks as task_cases
from orchestra.engine.scheduler import Scheduler
from orchestra.store import history
from orchestra.store.tasks import Store


def test_hot_paths_work_with_every_finished_task_file_gone(orch, tmp_path: Path):
    finished = populate(orch.repo, 300)
    queued = orch.submit("waits")
    blocked = orch.submit("waits for the other", "--after", queued)
    tasks = orch.repo / ".orchestra" / "tasks"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for tid in finished:
        shutil.move(tasks / f"{tid}.json", hidden / f"{tid}.json")
    report = json.loads(orch.run("status", "--json", check=True).stdout)
    assert sum(report["counts"].values()) == 302  # the running totals still count the history
    assert report["counts"]["queued"] == 2 and report["corrupt_task_files"] == {}
    # From the history's last lines, not from files: the five that ended last, then failures before them.
    assert 5 <= len(report["recent"]) <= 10
    ended = [r["finished_at"] for r in report["recent"][:5]]
    assert ended == sorted(ended, reverse=True)
    text = orch.run("status", check=True)
    assert "waits" in text.stdout and text.stderr == ""
    for state in ("queued", "running", "awaiting_input"):
        listed = json.loads(orch.run("list", "--state", state, "--json", check=True).stdout)
        assert [t["id"] for t in listed] == ([blocked, queued] if state == "queued" else [])
    rows = json.loads(orch.run("queue", "--json", check=True).stdout)
    assert [r["id"] for r in rows] == [queued, blocked]
    quick = orch.submit("runs\n@fake write r.txt r")
    orch.run("cancel", queued, check=True)  # so that `blocked` fails through its dependency
    work = orch.work()
    assert work.returncode == 0, work.stdout + work.stderr
    assert orch.state(quick) == "succeeded" and orch.state(blocked) == "failed"
    report = json.loads(orch.run("status", "--json", check=True).stdout)
    assert sum(report["counts"].values()) == 303 and report["counts"]["queued"] == 0
    # Nothing was rebuilt behind our back: the caches still describe the hidden tasks.
    for path in hidden.iterdir():
        shutil.move(path, tasks / path.name)
    assert_caches_agree(orch.repo)
    assert json.loads(orch.run("doctor", "--json").stdout)["findings"] == []


def test_hot_paths_load_no_finished_task(orch, monkeypatch):
    finished = set(populate(orch.repo, 200))
    core = Orchestra(orch.repo)
    running = core.submit("pretend running", start=False)
    core.submit("queued", start=False)
    core.submit("queued after", after=[running.id], start=False)

    def to_running(t):
        t.claim(0)

    core.store.update(running.id, to_running)
    loaded: list[str] = []
    real_load = Store.load

    def counting_load(self, task_id):
        loaded.append(task_id)
        return real_load(self, task_id)

    monkeypatch.setattr(Store, "load", counting_load)
    whole_history: list[int] = []
    real_newest_first = history.newest_first

    def counting_newest_first(*args, **kwargs):
        for n, row in enumerate(real_newest_first(*args, **kwargs)):
            whole_history.append(n)
            yield row

    monkeypatch.setattr(history, "newest_first", counting_newest_first)
    ctx = core.ctx
    report = status_cases.status(ctx)
    assert report.counts["succeeded"] == 140 and len(report.running) == 1 and len(report.queued) == 2
    # The live tasks' activity, and a fixed number of the history's last lines (recent results and failures).
    assert not finished & set(loaded) and len(whole_history) <= status_cases.RECENT_SCAN
    loaded.clear()
    whole_history.clear()
    for states in (["running"], ["queued"], ["awaiting_input"], ["queued", "running"]):
        list(task_cases.listing(ctx, states))
        task_cases.summaries(ctx, states)
    status_cases.queue(ctx)
    assert not finished & set(loaded) and whole_history == []
    loaded.clear()
    sched = Scheduler(ctx, max_concurrent=1)  # the slot is taken by the running task: nothing starts
    sched.runners[running.id] = None  # type: ignore[assignment]
    assert sched._pass() is True
    assert loaded == [] and whole_history == []
    core.submit("one more", start=False)
    assert not finished & set(loaded) and whole_history == []

"""The caches (live index, history, running totals) stay what the task files say, whatever happens.

A crash at any point of a write is repaired by the next command; deleting or damaging the caches
makes orchestra rebuild them; readers without the lock never crash and never count wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from store_helpers import assert_caches_agree, caches, populate

from orchestra.core.task import State
from orchestra.store import tasks as store_tasks
from orchestra.store.paths import Paths
from orchestra.store.tasks import Store

pytestmark = pytest.mark.crash


def _crash(orch, point: str, *args: str, input: str | None = None) -> None:
    orch.crash_at(point, *args, input=input, timeout=60)


def _status(orch) -> dict:
    return json.loads(orch.run("status", "--json", check=True).stdout)


@pytest.mark.parametrize("operation", ["submit", "cancel", "retry", "batch"])
def test_a_crash_between_task_file_and_index_is_repaired_by_the_next_command(orch, operation):
    state = orch.repo / ".orchestra"
    populate(orch.repo, 20)
    queued = orch.submit("stays queued")
    cancelled = orch.submit("will be cancelled")
    orch.run("cancel", cancelled, check=True)
    files_before = set((state / "tasks").iterdir())
    counts_before = _status(orch)["counts"]
    if operation == "submit":
        _crash(orch, "between_task_and_index", "submit", "--no-start", "cut short")
    elif operation == "cancel":
        _crash(orch, "between_task_and_index", "cancel", queued)
    elif operation == "retry":
        _crash(orch, "between_task_and_index", "retry", "--no-start", cancelled)
    else:
        lines = "".join(
            json.dumps({"prompt": f"batch {i}", "after": [f"#{i - 1}"] if i > 1 else []}) + "\n" for i in range(1, 6)
        )
        _crash(orch, "between_task_and_index", "submit", "--no-start", "--batch", "-", input=lines)
    assert (state / "index.stale").exists()  # the journal of the write that was cut short
    # The task files changed; the caches did not.
    new_files = set((state / "tasks").iterdir()) - files_before
    assert len(new_files) == {"submit": 1, "batch": 5}.get(operation, 0)
    # A reader without the lock (status) finds the journal and repairs before answering.
    report = _status(orch)
    assert not (state / "index.stale").exists()
    assert_caches_agree(orch.repo)
    change = {
        "submit": {"queued": 1, "cancelled": 0},
        "cancel": {"queued": -1, "cancelled": 1},
        "retry": {"queued": 1, "cancelled": -1},
        "batch": {"queued": 5, "cancelled": 0},
    }[operation]
    for name, n in change.items():
        assert report["counts"][name] == counts_before[name] + n, (report["counts"], counts_before)
    assert sum(report["counts"].values()) == 20 + 2 + len(new_files)
    assert _doctor_ok(orch)


def _doctor_ok(orch) -> bool:
    report = json.loads(orch.run("doctor", "--json").stdout)
    assert report["findings"] == [], report
    return bool(report["ok"])


def test_a_crash_while_compacting_the_history_is_repaired(orch, monkeypatch, tmp_path: Path):
    """The history is rewritten under a journal too; a crash just after its rename is finished by the next reader."""
    populate(orch.repo, 10)
    tid = orch.submit("retried again and again")
    for _ in range(3):
        orch.run("cancel", tid, check=True)
        orch.run("retry", "--no-start", tid, check=True)
    store = Store(Paths(root=orch.repo))
    index = json.loads((orch.repo / ".orchestra" / "index.json").read_text())
    with store.locked():
        # As a compaction that died between replacing the history and writing the index leaves it.
        (orch.repo / ".orchestra" / "index.stale").write_text(
            json.dumps({"gen": index["gen"], "old": {}, "rewrite": []})
        )
        history = orch.repo / ".orchestra" / "history.jsonl"
        data = history.read_bytes()
        history.unlink()
        history.write_bytes(data)  # a new inode, as a rename leaves it
    assert _status(orch)["counts"]["queued"] == 1
    assert_caches_agree(orch.repo)


def test_deleting_the_caches_rebuilds_them(orch):
    state = orch.repo / ".orchestra"
    populate(orch.repo, 60)
    live = [orch.submit(f"live {i}") for i in range(3)]
    orch.run("cancel", live[0], check=True)
    before = _status(orch)
    listed = [t["id"] for t in json.loads(orch.run("list", "--json", check=True).stdout)]
    assert len(listed) == 63 and listed[:2] == [live[2], live[1]]  # newest first: live, then the most recently ended
    for doomed in (["index.json"], ["history.jsonl"], ["index.json", "history.jsonl"]):
        for name in doomed:
            (state / name).unlink()
        after = _status(orch)
        assert after["counts"] == before["counts"] and after["spend"] == before["spend"], doomed
        assert_caches_agree(orch.repo)
        assert sorted(t["id"] for t in json.loads(orch.run("list", "--json", check=True).stdout)) == sorted(listed)


def test_a_history_cut_short_replaced_or_torn_is_handled(orch):
    state = orch.repo / ".orchestra"
    populate(orch.repo, 30)
    before = _status(orch)
    history = state / "history.jsonl"
    data = history.read_bytes()
    # Cut short (same file, fewer bytes than the index says): rebuilt.
    with open(history, "r+b") as fh:
        fh.truncate(len(data) // 2)
    assert _status(orch)["counts"] == before["counts"]
    assert history.read_bytes() == data
    # Replaced by another file: rebuilt.
    history.unlink()
    history.write_bytes(b'{"id":"zzzzzz","state":"succeeded"}\n')
    assert _status(orch)["counts"] == before["counts"]
    assert b"zzzzzz" not in history.read_bytes()
    # A torn line at the end (a crash in the middle of an append): skipped, and the next line is not glued to it.
    with open(history, "ab") as fh:
        fh.write(b'{"id":"torn","sta')
    tid = orch.submit("ends after the tear")
    orch.run("cancel", tid, check=True)
    assert _status(orch)["counts"]["cancelled"] == before["counts"]["cancelled"] + 1
    assert history.read_bytes().endswith(b"\n") and b'{"id":"torn","sta\n' in history.read_bytes()
    _, described = caches(orch.repo)
    assert described[tid]["state"] == "cancelled"


def test_superseded_history_lines_are_compacted(orch, monkeypatch):
    monkeypatch.setattr(store_tasks, "COMPACT_SLACK", 4)
    from orchestra.app import Orchestra

    core = Orchestra(orch.repo)
    populate(orch.repo, 5)
    tid = core.submit("again and again", start=False).id
    for _ in range(12):
        core.cancel(tid)
        core.retry(tid, start=False)
    core.cancel(tid)
    index, described = caches(orch.repo)
    lines = (orch.repo / ".orchestra" / "history.jsonl").read_bytes().count(b"\n")
    assert lines <= 2 * 6 + 4 and index["history"]["lines"] == lines
    assert described[tid]["state"] == "cancelled"
    assert_caches_agree(orch.repo)


def test_doctor_checks_the_running_totals_and_fix_rebuilds_them(orch):
    state = orch.repo / ".orchestra"
    populate(orch.repo, 12)
    spent = _status(orch)["spend"]
    index = json.loads((state / "index.json").read_text())
    index["finished"]["cost_micro"] += 5_000_000
    index["finished"]["states"]["succeeded"] += 1
    (state / "index.json").write_text(json.dumps(index))
    assert _status(orch)["spend"]["cost_usd"] == round(spent["cost_usd"] + 5, 6)  # status trusts the totals
    report = json.loads(orch.run("doctor", "--json").stdout)
    wrong = [f for f in report["findings"] if f["kind"] == "index_totals_wrong"]
    assert wrong and "cost_micro" in wrong[0]["detail"] and "succeeded" in wrong[0]["detail"]
    assert orch.run("doctor", "--fix").returncode == 0
    assert _status(orch)["spend"] == spent
    assert_caches_agree(orch.repo)


_WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from orchestra.app import Orchestra
    orch = Orchestra(sys.argv[1])
    ids = sys.argv[2:]
    end = time.monotonic() + 4
    while time.monotonic() < end:
        for tid in ids:
            orch.cancel(tid)
            orch.retry(tid, start=False)
    """
)


def test_readers_without_the_lock_never_crash_nor_count_wrong(orch, tmp_path: Path):
    """Tasks move between the live index and the history while readers read; every reading adds up."""
    from conftest import ROOT

    populate(orch.repo, 200)
    ids = [orch.submit(f"moves {i}") for i in range(4)]
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(root=str(ROOT)))
    writer = subprocess.Popen(
        [sys.executable, str(script), str(orch.repo), *ids], env=orch.env, stderr=subprocess.PIPE, text=True
    )
    readings = 0
    try:
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            store = Store(Paths(root=orch.repo))  # a fresh process's view each time: no cache carried over
            view = store.view()
            counts = view.counts()
            assert sum(counts.values()) == 204, counts
            seen = [s["id"] for s in view.finished()]
            assert len(seen) == len(set(seen))  # each task once
            assert not set(seen) & set(view.live)
            assert len(seen) + len(view.live) == 204
            readings += 1
    finally:
        _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert readings > 10
    assert_caches_agree(orch.repo)


def test_sixteen_concurrent_batches_lose_nothing(orch, tmp_path: Path):
    lines = [json.dumps({"prompt": f"step {i}", "key": f"s{i}", "after": [f"s{i - 1}"] if i else []}) for i in range(5)]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestra", "submit", "--no-start", "--batch", str(batch)],
            cwd=orch.repo,
            env=orch.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    printed = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        ids = out.split()
        assert len(ids) == 5
        chain = [orch.show(i)["depends_on"] for i in ids]
        assert chain == [[]] + [[ids[i - 1]] for i in range(1, 5)]  # each batch's own chain
        printed += ids
    assert len(set(printed)) == 80
    assert len(list((orch.repo / ".orchestra" / "tasks").glob("*.json"))) == 80
    index, described = caches(orch.repo)
    assert set(index["tasks"]) == set(printed) and all(s["state"] == State.QUEUED for s in described.values())
    assert_caches_agree(orch.repo)
    assert os.path.getsize(orch.repo / ".orchestra" / "history.jsonl") == 0

"""`orchestra doctor`: finds what disagrees between store, worktrees and branches; --fix loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import git, plant_half_made_worktree


def _doctor(orch, *args: str) -> tuple[int, dict]:
    proc = orch.run("doctor", "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _kinds(report: dict, fixed: bool | None = None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in report["findings"]:
        if fixed is None or f["fixed"] == fixed:
            out.setdefault(f["kind"], []).append(f["subject"])
    return out


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_healthy_repo(orch):
    tid = orch.submit("fine\n@fake write a.txt a")
    assert orch.work().returncode == 0
    code, report = _doctor(orch)
    assert code == 0 and report["ok"] and report["findings"] == []
    assert orch.run("doctor", check=True).stdout.strip() == f"{orch.repo}: no problems found"
    assert orch.state(tid) == "succeeded"


def test_finds_every_kind_of_problem_and_fixes_only_what_loses_nothing(orch, tmp_path: Path):
    state = orch.repo / ".orchestra"
    done = orch.submit("done\n@fake write a.txt a")
    gone_wt = orch.submit("its worktree is deleted\n@fake write b.txt b")
    gone_branch = orch.submit("its branch is deleted\n@fake write c.txt c")
    assert orch.work().returncode == 0
    # A run that ended while no scheduler watched: the scheduler died before recording it.
    unwatched = orch.submit("finished unobserved\n@fake write d.txt d")
    orch.crash_at("before_finalize", "worker", "--until-idle", timeout=60)
    # A running task whose agent is dead, with no scheduler.
    dead = orch.submit("agent died")
    from orchestra.app import Orchestra

    core = Orchestra(orch.repo)

    from orchestra.core.task import State

    def to_running(t):
        t.state, t.attempts, t.pid, t.proc_start, t.started_at = State.RUNNING, 1, _dead_pid(), 1, 1.0

    core.store.update(dead, to_running)
    corrupt = orch.submit("will be corrupt")
    (state / "tasks" / f"{corrupt}.json").write_text('{"id": "oops"')
    # The history forgets a finished task and the marker says a write was cut short.
    history = (state / "history.jsonl").read_text().splitlines(keepends=True)
    (state / "history.jsonl").write_text("".join(line for line in history if json.loads(line)["id"] != done))
    (state / "index.stale").touch()
    # Worktrees and branches. A task's checkout is a repository of its own; a linked worktree
    # (what older versions made) registered with git but gone from disk is still repaired.
    legacy = orch.show(gone_wt)["worktree"]
    shutil.rmtree(legacy)
    git(orch.repo, "worktree", "add", "-q", "-b", f"legacy-{gone_wt}", legacy, "main")
    shutil.rmtree(legacy)
    gb = orch.show(gone_branch)
    shutil.rmtree(gb["worktree"])
    git(orch.repo, "branch", "-D", gb["branch"])
    stray = state / "worktrees" / "strayzz"
    stray.mkdir()
    (stray / "notes.txt").write_text("someone's work")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("outside")
    (state / "worktrees" / "evilzz").symlink_to(outside)
    dirty = Path(orch.show(done)["worktree"]) / "uncommitted.txt"
    dirty.write_text("not committed")
    # Temp files: one from a dead writer, one from a live one (this test).
    stale_tmp = state / "tasks" / f".{done}.json.{_dead_pid()}.deadbeef.tmp"
    stale_tmp.write_text("partial")
    live_tmp = state / "tasks" / f".{done}.json.{os.getpid()}.cafebabe.tmp"
    live_tmp.write_text("in progress")

    code, report = _doctor(orch)
    assert code == 1 and not report["ok"]
    kinds = _kinds(report)
    assert kinds["stale_index_marker"] and kinds["index_missing_task"] == [done]
    assert kinds["corrupt_task_file"] == [str(state / "tasks" / f"{corrupt}.json")]
    assert sorted(kinds["orphan_running"]) == sorted([unwatched, dead])
    assert kinds["worktree_missing"] == [str(state / "worktrees" / gone_wt)]
    assert kinds["worktree_without_task"] == [str(stray)]
    assert kinds["symlinked_worktree"] == [str(state / "worktrees" / "evilzz")]
    assert kinds["branch_missing"] == [gone_branch]
    assert kinds["stale_temp_file"] == [str(stale_tmp)]
    assert kinds["stale_scheduler_info"]
    assert not any(f["fixed"] for f in report["findings"])
    text = orch.run("doctor").stdout
    assert "can be repaired with 'orchestra doctor --fix'" in text and "branch_missing" in text
    assert stale_tmp.exists() and (state / "index.stale").exists()  # a check changes nothing

    code, report = _doctor(orch, "--fix")
    assert code == 1  # the corrupt file, the stray directory, the symlink and the lost branch remain
    assert set(_kinds(report, fixed=False)) == {
        "corrupt_task_file",
        "worktree_without_task",
        "symlinked_worktree",
        "branch_missing",
    }
    assert orch.state(unwatched) == "succeeded"  # settled exactly as a restarted scheduler would
    assert git(orch.repo, "show", f"{orch.show(unwatched)['branch']}:d.txt") == "d"
    d = orch.show(dead)
    assert d["state"] == "queued" and d["pid"] is None
    assert not (state / "index.stale").exists() and not stale_tmp.exists() and live_tmp.exists()
    assert f'"id":"{done}"' in (state / "history.jsonl").read_text()
    assert str(state / "worktrees" / gone_wt) not in git(orch.repo, "worktree", "list")
    # Nothing that could hold work was touched.
    assert git(orch.repo, "rev-parse", "--verify", orch.show(gone_wt)["branch"])
    assert (stray / "notes.txt").read_text() == "someone's work"
    assert (outside / "keep.txt").read_text() == "outside" and (state / "worktrees" / "evilzz").is_symlink()
    assert dirty.read_text() == "not committed"
    assert (state / "tasks" / f"{corrupt}.json").read_text() == '{"id": "oops"'

    code, again = _doctor(orch)
    assert set(_kinds(again)) == {"corrupt_task_file", "worktree_without_task", "symlinked_worktree", "branch_missing"}


def test_fix_leaves_scheduler_owned_state_alone_while_one_runs(orch):
    tid = orch.submit("runs\n@fake write a.txt a")
    assert orch.work().returncode == 0
    orch.submit("keeps the scheduler busy\n@fake sleep 20")
    worker = orch.start_worker()
    orch.wait_for(
        lambda: orch.run("status", "--json", check=True).stdout.count('"state": "running"'), what="a running task"
    )
    # A checkout whose making was cut short (its maker is dead): the scheduler's to clear.
    (orch.repo / ".orchestra" / "worktrees" / f".{tid}.partial-{_dead_pid()}").mkdir()
    code, report = _doctor(orch, "--fix")
    missing = [f for f in report["findings"] if f["kind"] == "interrupted_worktree_add"]
    assert code == 1 and len(missing) == 1 and not missing[0]["fixed"]
    assert "while a scheduler runs" in missing[0]["note"]
    assert not [f for f in report["findings"] if f["kind"] == "orphan_running"]
    worker.kill()


def test_interrupted_worktree_add_is_reported_and_cleared(orch):
    tid = orch.submit("half made")
    wt = Path(orch.show(tid)["worktree"])
    admin = plant_half_made_worktree(orch.repo, tid, wt)
    code, report = _doctor(orch)
    assert _kinds(report) == {"interrupted_worktree_add": [str(wt)]}
    code, report = _doctor(orch, "--fix")
    assert code == 0 and report["ok"]
    assert not admin.exists() and not wt.exists()
    assert git(orch.repo, "worktree", "list").count("\n") == 0  # git works again


def _survey(**node: object) -> dict:
    """A `cluster_report` as a Ray cluster of one coordinator and one node with two slots would give it."""
    versions = {"ray": "2.60.0", "python": "3.11.7", "orchestra": "1.0.0"}
    row = {"node_id": "f" * 40, "node": "gpu1", "slots": 2, **versions, "claude": "2.0.0 (Claude Code)"}
    row.update(node)
    return {"address": "10.0.0.5:6379", "coordinator": versions, "nodes": [row], "slots": 2}


def test_a_node_without_the_sandbox_tools_is_a_problem_only_when_the_sandbox_is_required():
    from orchestra.engine.doctor import cluster_findings

    lacking = _survey(sandbox_tools={"bwrap": None, "socat": "/usr/bin/socat"}, sandbox_missing="bwrap is absent")
    (finding,) = cluster_findings(lacking, "required")
    assert (finding.kind, finding.subject) == ("cluster_sandbox", "gpu1")
    assert "bwrap is absent" in finding.detail and 'sandbox = "off"' in (finding.note or "")
    assert cluster_findings(lacking, "off") == []
    equipped = _survey(sandbox_tools={"bwrap": "/usr/bin/bwrap", "socat": "/usr/bin/socat"}, sandbox_missing=None)
    assert cluster_findings(equipped, "required") == []
    # A node with no slots never runs an agent, so what it lacks does not matter.
    idle = {**_survey(slots=0, sandbox_missing="bwrap is absent"), "slots": 0}
    assert [f.kind for f in cluster_findings(idle, "required")] == ["cluster_no_slots"]


def test_a_shared_remote_that_a_node_or_the_coordinator_cannot_read_is_named_where():
    from orchestra.engine.doctor import cluster_findings

    assert cluster_findings(_survey(remote_error=None), "off") == []
    (finding,) = cluster_findings(_survey(remote_error="git ls-remote file:///x failed: not found"), "off")
    assert (finding.kind, finding.subject) == ("cluster_remote", "gpu1")
    assert "node's own credentials" in finding.detail and "not found" in finding.detail
    here = _survey()
    here["coordinator"] = {**here["coordinator"], "remote_error": "git ls-remote ssh://h/r failed: denied"}
    assert [(f.kind, f.subject) for f in cluster_findings(here, "off")] == [("cluster_remote", "coordinator")]


def _notes(report: dict, kind: str) -> list[str]:
    return [f["note"] for f in report["findings"] if f["kind"] == kind]


def test_commits_left_in_a_succeeded_tasks_checkout_come_home_as_doctor_advises(orch):
    tid = orch.submit("work\n@fake write a.txt a\n@fake commit Add a")
    assert orch.work().returncode == 0 and orch.state(tid) == "succeeded"
    task = orch.show(tid)
    checkout, branch = Path(task["worktree"]), task["branch"]
    git(checkout, "commit", "-q", "--allow-empty", "-m", "by hand")
    _, report = _doctor(orch)
    [note] = _notes(report, "work_not_home")
    advice = f"'orchestra respond {tid} TEXT' continues its session and brings them home when that run ends"
    assert note == advice
    # Its branch deleted too: the commits are not gone, the checkout still has them.
    git(orch.repo, "branch", "-D", branch)
    _, report = _doctor(orch)
    assert _notes(report, "branch_missing") == [f"its commits are still in its checkout {checkout}; {advice}"]
    # The advice works (a retry of a succeeded task is refused).
    assert "submit a new task" in orch.run("retry", tid).stderr
    orch.run("respond", "--no-start", tid, "go on", check=True)
    assert orch.work().returncode == 0 and orch.state(tid) == "succeeded"
    assert "by hand" in git(orch.repo, "log", "--format=%s", branch).splitlines()
    code, report = _doctor(orch)
    assert code == 0 and report["findings"] == [], report["findings"]

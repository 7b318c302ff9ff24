"""The smaller breaks (11): control sequences printed raw, corrupt task files unnoticed, a respond that
starts no scheduler, temp files of killed writers failing doctor, doctor alarmed by a concurrent
cleanup, a gate's setsid grandchild outliving it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

from hardening_helpers import git, merge_json, plant_task

ESC_TITLE = "evil \x1b]0;pwned\x07\x1b[2J title"


def test_control_sequences_in_titles_and_errors_are_never_printed_raw(orch):
    """Titles and errors come from prompts, agents and older task files; printed raw, they drive the terminal."""
    plant_task(orch.repo, "esc1", title=ESC_TITLE, state="failed", error="boom \x1b[31mred", finished_at=time.time())
    plant_task(orch.repo, "esc2", title="queued \x1b[2J", prompt="p \x1b]0;x\x07")
    for args in (("list",), ("status",), ("show", "esc1"), ("show", "esc2"), ("queue",), ("wait", "esc1")):
        proc = orch.run(*args)
        assert proc.returncode in (0, 1), (args, proc.stderr)
        assert "\x1b" not in proc.stdout + proc.stderr and "\x07" not in proc.stdout, (args, proc.stdout)
    shown = orch.run("show", "esc1").stdout
    assert "evil \\x1b]0;pwned\\x07\\x1b[2J title" in shown  # visible, escaped
    assert json.loads(orch.run("show", "esc1", "--json").stdout)["title"] == ESC_TITLE  # data stays data


def test_list_and_status_notice_a_task_file_corrupted_in_place(orch):
    good = orch.submit("fine")
    bad = orch.submit("about to be damaged")
    assert good in orch.run("list", check=True).stdout  # the index now lists both
    path = orch.repo / ".orchestra" / "tasks" / f"{bad}.json"
    with open(path, "r+") as fh:  # in place: same inode, the directory does not change
        fh.write('{"id": "' + bad + '", "state": ')
        fh.truncate()
    listing = orch.run("list", check=True)
    assert bad not in listing.stdout and good in listing.stdout
    assert f"corrupt task file {path}" in listing.stderr
    as_json = orch.run("list", "--json")
    assert as_json.returncode == 0 and [t["id"] for t in json.loads(as_json.stdout)] == [good]
    assert f"corrupt task file {path}" in as_json.stderr
    status = orch.run("status", check=True)
    assert f"corrupt task file {bad}.json" in status.stdout and str(path) in status.stderr
    assert "queued 1" in status.stdout


def test_respond_starts_a_scheduler_so_wait_after_a_crash_returns(orch):
    orch.run("config", "set", "idle_exit", "2", check=True)
    tid = orch.submit("guarded\n@fake ask bash printf allowed > effect.txt\n@fake text carried on")
    worker = orch.start_worker()
    orch.wait_for(lambda: orch.show(tid)["state"] == "awaiting_input", what="a permission request")
    os.killpg(worker.pid, signal.SIGKILL)  # the scheduler dies; the agent, in its own session, waits on
    worker.wait()
    try:
        orch.run("respond", tid, "--allow", check=True)
        waited = orch.run("wait", tid, "--timeout", "60")
        assert waited.returncode == 0, (waited.stdout, waited.stderr, orch.show(tid))
        task = orch.show(tid)
        assert git(orch.repo, "show", f"{task['branch']}:effect.txt") == "allowed"
    finally:
        info = orch.repo / ".orchestra" / "scheduler.json"
        if info.exists():
            pid = json.loads(info.read_text()).get("pid")
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temp_files_of_killed_writers_never_make_doctor_fail(orch):
    tid = orch.submit("fine")
    state = orch.repo / ".orchestra"
    leftovers = [
        state / "tasks" / f".{tid}.json.{_dead_pid()}.0123abcd.tmp",
        state / f".index.json.{_dead_pid()}.89abcdef.tmp",
    ]
    for path in leftovers:
        path.write_text("half a write")
    proc = orch.run("doctor", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], report
    assert {f["kind"] for f in report["findings"]} == {"stale_temp_file"}
    assert all(p.exists() for p in leftovers)  # a check changes nothing
    assert orch.run("doctor").returncode == 0
    assert json.loads(orch.run("doctor", "--json", "--fix").stdout)["ok"]
    assert not any(p.exists() for p in leftovers)
    # A scheduler start clears those outside the directories that grow with the history (its start must
    # not cost a listing of every task ever run); one in tasks/ stays a harmless note until doctor --fix.
    leftover = state / f".index.json.{_dead_pid()}.deadbeef.tmp"
    in_history = state / "tasks" / f".{tid}.json.{_dead_pid()}.deadbeef.tmp"
    leftover.write_text("half a write")
    in_history.write_text("half a write")
    assert orch.work().returncode == 0
    assert not leftover.exists()
    report = json.loads(orch.run("doctor", "--json").stdout)
    assert report["ok"] and [f["subject"] for f in report["findings"]] == [str(in_history)]
    assert json.loads(orch.run("doctor", "--json", "--fix").stdout)["ok"] and not in_history.exists()


def test_doctor_is_not_alarmed_by_a_concurrent_cleanup(orch, monkeypatch):
    """A cleanup removes a worktree (the directory first, then git's record of it) and deletes a branch
    (then records that it did): doctor, looking in between, saw a missing worktree and a lost branch."""
    from orchestra.engine import cleanup, doctor
    from orchestra.engine.context import Context
    from orchestra.git import refs, worktrees

    monkeypatch.setenv("ORCHESTRA_CLAUDE", orch.env["ORCHESTRA_CLAUDE"])  # doctor checks that claude runs

    tid = orch.submit("work\n@fake write w.txt w\n@fake commit Add w")
    assert orch.work().returncode == 0
    code, result = merge_json(orch, tid)
    assert code == 0, result
    ctx = Context.open(orch.repo)
    in_window = threading.Event()
    release = threading.Event()
    real_delete, real_remove = refs.delete_branch, worktrees.remove

    def slow_remove(repo, path, force=False):
        import shutil

        shutil.rmtree(path)  # what `git worktree remove` does first
        in_window.set()
        release.wait(10)
        return real_remove(repo, path, force=True)

    def slow_delete(repo, branch, expected):
        out = real_delete(repo, branch, expected)
        in_window.set()
        release.wait(10)
        return out

    refs.delete_branch, worktrees.remove = slow_delete, slow_remove
    reports: list = []
    try:
        cleaner = threading.Thread(target=lambda: cleanup.cleanup(ctx))
        cleaner.start()
        assert in_window.wait(30)
        checker = threading.Thread(target=lambda: reports.append(doctor.run(Context.open(orch.repo))))
        checker.start()
        checker.join(3)  # it either looked right now, in the window, or waits for the cleanup to end
        release.set()
        cleaner.join(30)
        checker.join(30)
    finally:
        refs.delete_branch, worktrees.remove = real_delete, real_remove
        release.set()
    (report,) = reports
    assert report.ok and not report.findings, [f.to_dict() for f in report.findings]
    assert not refs.branch_exists(orch.repo, orch.show(tid)["branch"])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_gates_setsid_grandchild_never_outlives_it(orch):
    # Unconfined (sandbox = off), where nothing but orchestra ends what the gate leaves behind; a
    # confined gate runs in a pid namespace that ends with it (security/test_confined_commands.py).
    orch.run("config", "set", "sandbox", "off", check=True)
    tid = orch.submit("work\n@fake write w.txt w\n@fake commit Add w")
    assert orch.work().returncode == 0
    pidfile = orch.repo / ".orchestra" / "grandchild.pid"
    daemon = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 120' </dev/null >/dev/null 2>&1 &"
    # A gate that hangs past gate_timeout, and one that exits at once leaving its daemon behind.
    for gate, expect in ((f"{daemon} sleep 120", "gate_failed"), (f"{daemon} sleep 0.5; exit 0", "merged")):
        pidfile.unlink(missing_ok=True)
        orch.run("config", "set", "gate_timeout", "3", check=True)
        orch.run("config", "set", "gate", gate, check=True)
        started = time.monotonic()
        _, result = merge_json(orch, tid)
        assert result["status"] == expect, result
        assert time.monotonic() - started < 60
        pid = int(pidfile.read_text())
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), f"the gate's grandchild {pid} outlived the gate ({gate})"
        if expect == "gate_failed":
            assert result["gate"]["timed_out"] is True

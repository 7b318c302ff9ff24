"""Timeouts, cancel, retry, restarts and adoption: the scheduler's promises about processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from conftest import FAKE_CLAUDE, git


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _child_pid(orch, task_id: str) -> int:
    for line in (orch.repo / ".orchestra" / "logs" / f"{task_id}.jsonl").read_text().splitlines():
        event = json.loads(line)
        result = event.get("tool_use_result")
        if isinstance(result, dict) and "pid" in result:
            return int(result["pid"])
    raise AssertionError("no child pid in the log")


def _configure(orch, **settings: object) -> None:
    for key, value in settings.items():
        orch.run("config", "set", key, str(value), check=True)


def test_timeout_kills_the_whole_process_group(orch):
    tid = orch.submit("slow\n@fake child-sleep 60\n@fake sleep 60", "--timeout", "1.5")
    proc = orch.work()
    assert proc.returncode == 0, proc.stderr
    task = orch.show(tid)
    assert task["state"] == "timed_out"
    assert "timed out after 2s" in task["error"] or "timed out after 1s" in task["error"]
    assert not _alive(_child_pid(orch, tid)), "the agent's child outlived the timeout"


def test_timeout_escalates_to_sigkill(orch):
    _configure(orch, kill_grace=0.5)
    tid = orch.submit("stubborn\n@fake ignore-sigterm\n@fake child-sleep 60\n@fake sleep 60", "--timeout", "1")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "timed_out"
    assert task["exit_code"] == -9
    assert not _alive(_child_pid(orch, tid))


def test_timeout_keeps_the_work_done_so_far(orch):
    tid = orch.submit("partial\n@fake write part.txt half done\n@fake sleep 60", "--timeout", "1")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "timed_out"
    assert git(orch.repo, "show", f"{task['branch']}:part.txt") == "half done"


def test_cancel_queued_and_running(orch):
    queued = orch.submit("never runs", "--after", orch.submit("blocker\n@fake sleep 60"))
    blocker = orch.show(queued)["depends_on"][0]
    assert orch.run("cancel", queued, check=True).stdout.strip() == f"{queued} cancelled"
    worker = orch.start_worker()
    orch.wait_for(lambda: orch.state(blocker) == "running", what="blocker running")
    orch.wait_for(lambda: orch.show(blocker)["pid"], what="agent pid")
    out = orch.run("cancel", blocker, check=True).stdout
    assert f"{blocker} cancelling" in out
    orch.wait_for(lambda: orch.state(blocker) == "cancelled", what="cancelled", timeout=30)
    assert orch.show(queued)["state"] == "cancelled"
    assert orch.show(queued)["attempts"] == 0
    # Cancelling again is refused with a reason; the branch of the cancelled run is kept.
    again = orch.run("cancel", blocker)
    assert again.returncode == 1 and "already ended (cancelled)" in again.stderr
    assert git(orch.repo, "rev-parse", "--verify", orch.show(blocker)["branch"])
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)


def test_retry_runs_a_failed_task_again_on_its_branch(orch):
    tid = orch.submit("flaky\n@fake write attempt.txt try\n@fake if-attempt 1 fail 400\n@fake text fine now")
    assert orch.work().returncode == 0
    first = orch.show(tid)
    assert first["state"] == "failed" and first["attempts"] == 1
    # The failed attempt's file was kept on the branch.
    assert git(orch.repo, "show", f"{first['branch']}:attempt.txt") == "try"
    assert orch.run("retry", tid, "--no-start", check=True).stdout.strip() == f"{tid} queued"
    assert orch.work().returncode == 0
    second = orch.show(tid)
    assert second["state"] == "succeeded" and second["attempts"] == 2 and second["error"] is None
    # Succeeded tasks are not run again.
    again = orch.run("retry", tid)
    assert again.returncode == 1 and "succeeded" in again.stderr
    assert len(orch.invocations()) == 2


def test_restart_adopts_a_live_agent(orch, tmp_path):
    gate = tmp_path / "gate"
    tid = orch.submit(f"long\n@fake wait-for {gate}\n@fake write done.txt finished")
    worker = orch.start_worker()
    pid = orch.wait_for(lambda: orch.show(tid)["pid"], what="agent start")
    os.killpg(worker.pid, signal.SIGKILL)  # the scheduler dies; the agent has its own session
    worker.wait()
    assert _alive(pid)
    assert orch.state(tid) == "running"
    again = orch.start_worker("--until-idle")
    events = orch.repo / ".orchestra" / "events" / f"{tid}.jsonl"
    orch.wait_for(lambda: '"adopted"' in events.read_text(), what="the agent adopted by the next scheduler")
    gate.touch()
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and "adopted" in out, out
    task = orch.show(tid)
    assert task["state"] == "succeeded", task
    assert git(orch.repo, "show", f"{task['branch']}:done.txt") == "finished"
    assert len(orch.invocations()) == 1, "an adopted agent must not be started again"


def test_restart_resumes_an_agent_that_died_meanwhile(orch):
    tid = orch.submit(
        "resumable\n@fake if-new write first.txt one\n@fake if-new commit first half\n"
        "@fake if-new sleep 2\n@fake if-new exit 1\n@fake if-resume write second.txt two"
    )
    worker = orch.start_worker()
    pid = orch.wait_for(lambda: orch.show(tid)["pid"], what="agent start")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    orch.wait_for(lambda: not _alive(pid), what="the agent to die while no scheduler watches")
    proc = orch.work()
    assert proc.returncode == 0, proc.stderr
    task = orch.show(tid)
    assert task["state"] == "succeeded", task
    assert task["attempts"] == 2
    _first, second = orch.invocations()
    assert second["resume"] == task["session_id"]
    assert "--resume" in second["argv"]
    log = git(orch.repo, "log", "--format=%s", task["branch"]).splitlines()
    assert "first half" in log
    assert git(orch.repo, "show", f"{task['branch']}:second.txt") == "two"


def test_restart_finishes_a_run_that_ended_unobserved(orch):
    tid = orch.submit("quick\n@fake sleep 1\n@fake write q.txt q")
    worker = orch.start_worker()
    pid = orch.wait_for(lambda: orch.show(tid)["pid"], what="agent start")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    orch.wait_for(lambda: not _alive(pid), what="the agent to end while no scheduler watches")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded" and task["attempts"] == 1
    assert git(orch.repo, "show", f"{task['branch']}:q.txt") == "q"
    assert len(orch.invocations()) == 1


def test_restart_attempts_are_bounded(orch):
    _configure(orch, max_attempts=1)
    tid = orch.submit("dies\n@fake sleep 1\n@fake exit 3")
    worker = orch.start_worker()
    pid = orch.wait_for(lambda: orch.show(tid)["pid"], what="agent start")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    orch.wait_for(lambda: not _alive(pid), what="the agent to end while no scheduler watches")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed"
    assert "attempts" in task["error"]
    assert len(orch.invocations()) == 1


def test_two_schedulers_one_runs(orch):
    orch.submit("keep it busy\n@fake sleep 2")
    first = orch.start_worker()
    orch.wait_for(lambda: (orch.repo / ".orchestra" / "scheduler.json").exists(), what="scheduler up")
    second = orch.run("worker", "--until-idle")
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"orchestra: error: a scheduler is already running for {orch.repo} (pid {first.pid})"
    ]
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=10)


def test_submit_autostarts_a_background_scheduler(orch):
    _configure(orch, idle_exit=1)
    tid = orch.run("submit", "autostarted\n@fake write auto.txt yes", check=True).stdout.strip()
    # submit returns once the scheduler it started holds the lock: a `wait` right after does not say
    # "no scheduler running; start one with 'orchestra worker'" (which would then refuse to start).
    waited = orch.run("wait", tid, timeout=60)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "no scheduler running" not in waited.stderr, waited.stderr
    task = orch.show(tid)
    assert git(orch.repo, "show", f"{task['branch']}:auto.txt") == "yes"
    # The autostarted scheduler leaves once idle, and a new one can start.
    orch.wait_for(
        lambda: json.loads(orch.run("status", "--json").stdout)["scheduler_pid"] is None,
        what="background scheduler exit",
        timeout=20,
    )


def test_status_without_a_scheduler_suggests_submit_only_when_submit_starts_one(orch):
    assert "start one with 'orchestra worker', or submit a task" in orch.run("status", check=True).stdout
    _configure(orch, autostart="false")
    line = next(l for l in orch.run("status", check=True).stdout.splitlines() if l.startswith("scheduler"))
    assert line == "scheduler  not running (start one with 'orchestra worker'; autostart is off)"


def test_missing_claude_binary_fails_the_task_and_the_scheduler_goes_on(orch, tmp_path: Path):
    orch.env["ORCHESTRA_CLAUDE"] = str(tmp_path / "no-such-claude")
    a = orch.submit("one")
    b = orch.submit("two")
    proc = orch.work()
    assert proc.returncode == 0
    for tid in (a, b):
        task = orch.show(tid)
        assert task["state"] == "failed"
        assert "claude binary not found" in task["error"] and "no-such-claude" in task["error"]


def test_a_claude_that_stops_before_any_output_fails_with_what_it_said(orch, tmp_path: Path):
    """The CLI refusing to start (an unknown option in claude_args, bypassPermissions as root) writes
    one line on stderr and no stream-json: the task's error carries that line, not only an exit code."""
    script = tmp_path / "claude-that-refuses"
    script.write_text("#!/bin/sh\necho 'Starting up' >&2\necho \"error: unknown option '--bogus'\" >&2\nexit 1\n")
    script.chmod(0o755)
    orch.env["ORCHESTRA_CLAUDE"] = str(script)
    tid = orch.submit("refused")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed"
    assert task["error"] == "claude exited with code 1 without a result (error: unknown option '--bogus')"


def test_a_claude_killed_mid_run_is_not_given_its_start_up_warning_as_the_reason(orch, tmp_path: Path):
    """The last stderr line explains a CLI that stopped before any stream-json; one that ran and was then
    killed (out of memory) only ever said a warning at start-up, which is not why it ended."""
    script = tmp_path / "claude-with-a-warning"
    script.write_text(f"#!/bin/sh\necho 'Warning: a note at start-up' >&2\nexec {FAKE_CLAUDE} \"$@\"\n")
    script.chmod(0o755)
    orch.env["ORCHESTRA_CLAUDE"] = str(script)
    _configure(orch, max_attempts=1)
    tid = orch.submit("work\n@fake write a.txt a\n@fake crash")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed"
    assert task["error"] == "claude exited with code -9 without a result", task["error"]


def test_corrupt_task_file_is_reported_and_others_still_run(orch):
    bad = orch.submit("will be corrupted")
    good = orch.submit("fine\n@fake write ok.txt ok")
    path = orch.repo / ".orchestra" / "tasks" / f"{bad}.json"
    path.write_text('{"id": "' + bad + '", "prompt": ')  # truncated
    (orch.repo / ".orchestra" / "index.json").unlink()  # force a rebuild from the files
    show = orch.run("show", bad)
    assert show.returncode == 1
    assert show.stderr.strip().splitlines() == [show.stderr.strip()]
    assert str(path) in show.stderr and "corrupt task file" in show.stderr
    assert orch.work().returncode == 0
    assert orch.state(good) == "succeeded"
    status = orch.run("status", check=True)
    assert f"corrupt task file {path.name}" in status.stdout
    assert f"orchestra: warning: corrupt task file {path}" in status.stderr
    assert path.read_text().startswith('{"id"'), "a corrupt file is never deleted or rewritten"


def test_logs_follow_tails_until_the_task_ends(orch):
    tid = orch.submit("chatty\n@fake text starting\n@fake sleep 1.5\n@fake write late.txt late\n@fake text finished")
    worker = orch.start_worker()
    orch.wait_for(lambda: orch.show(tid)["pid"], what="agent start")
    follow = orch.run("logs", tid, "--follow", timeout=60)
    assert follow.returncode == 0
    out = follow.stdout
    assert out.index("starting") < out.index("late.txt") < out.index("finished")
    assert "✓ success" in out
    assert orch.state(tid) == "succeeded"
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)


def test_a_running_scheduler_applies_config_changes(orch):
    worker = orch.start_worker()
    first = orch.submit("before\n@fake text one")
    assert orch.run("wait", first, timeout=60).returncode == 0
    orch.run("config", "set", "claude_args", '["--model", "changed-model"]', check=True)
    second = orch.submit("after\n@fake text two")
    assert orch.run("wait", second, timeout=60).returncode == 0
    by_prompt = {c["argv"][-1].split("\n")[0]: c["argv"] for c in orch.invocations()}
    assert "changed-model" not in by_prompt["before"]
    argv = by_prompt["after"]
    assert argv[argv.index("--model") + 1] == "changed-model"
    assert worker.poll() is None, "the same scheduler ran both tasks"
    worker.terminate()
    worker.wait(timeout=10)

"""Permission prompts that reach a person, replies to ended tasks, API retries, bootstrap, hooks.

The fake claude's `@fake ask ...` calls orchestra's real permission MCP server (started
from the `--mcp-config` orchestra passes) the way Claude Code does, so these tests run the
whole path: agent -> MCP server -> request file -> `orchestra respond` -> agent.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from conftest import git


def _config(orch, text: str) -> None:
    cfg = orch.repo / ".orchestra" / "config.toml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text(text)


def _set(orch, **settings: object) -> None:
    for key, value in settings.items():
        orch.run("config", "set", key, str(value), check=True)


def _events(orch, task_id: str) -> list[dict[str, Any]]:
    path = orch.repo / ".orchestra" / "events" / f"{task_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _log(orch, task_id: str) -> list[dict[str, Any]]:
    path = orch.repo / ".orchestra" / "logs" / f"{task_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tool_results(orch, task_id: str) -> list[dict[str, Any]]:
    out = []
    for event in _log(orch, task_id):
        if event.get("type") == "user":
            for block in event["message"]["content"]:
                if block.get("type") == "tool_result":
                    out.append(block)
    return out


def _waiting(orch, task_id: str) -> dict[str, Any] | None:
    task = orch.show(task_id)
    return task if task["state"] == "awaiting_input" and task["pending_request"] else None


# -- permission prompts ------------------------------------------------------------


def test_permission_request_is_answered_after_the_scheduler_restarted(orch):
    tid = orch.submit("guarded\n@fake ask bash printf allowed > effect.txt\n@fake text carried on")
    worker = orch.start_worker()
    task = orch.wait_for(lambda: _waiting(orch, tid), what="a permission request")
    request = task["pending_request"]
    assert request["tool_name"] == "Bash"
    assert request["input"]["command"] == "printf allowed > effect.txt"
    assert "printf allowed > effect.txt" in request["summary"]
    request_file = orch.repo / ".orchestra" / "requests" / tid / f"{request['id']}.json"
    answer_file = request_file.with_name(f"{request['id']}.answer.json")
    assert json.loads(request_file.read_text())["tool_name"] == "Bash" and not answer_file.exists()

    status = orch.run("status", check=True).stdout
    waiting_at = status.index("WAITING FOR YOU")
    assert tid in status[waiting_at:] and "printf allowed > effect.txt" in status
    shown = orch.run("show", tid, check=True).stdout
    assert "waiting for a person" in shown and "orchestra respond" in shown

    agent_pid = task["pid"]
    os.killpg(worker.pid, signal.SIGKILL)  # the scheduler dies; agent and its MCP server live on
    worker.wait()
    assert orch.state(tid) == "awaiting_input"
    worker = orch.start_worker()  # adopts the agent while it still waits
    orch.wait_for(lambda: any(e["event"] == "adopted" for e in _events(orch, tid)), what="adoption")

    answered = orch.run("respond", tid, "--allow", check=True)
    assert answered.stdout.strip() == f"{tid} allowed"
    orch.wait_for(lambda: orch.state(tid) == "succeeded", what="success", timeout=60)
    done = orch.show(tid)
    assert done["attempts"] == 1 and done["permission_denials"] == []
    assert git(orch.repo, "show", f"{done['branch']}:effect.txt") == "allowed"
    assert len(orch.invocations()) == 1 and orch.invocations()[0]["pid"] == agent_pid
    assert json.loads(answer_file.read_text())["state"] == "allowed"
    names = [e["event"] for e in _events(orch, tid)]
    assert names.index("awaiting_input") < names.index("adopted") < names.index("input_answered")
    assert names.index("input_answered") < names.index("finished")
    # The argv carried the policy: rules through --settings, the prompt tool through MCP.
    argv = orch.invocations()[0]["argv"]
    assert argv[argv.index("--permission-prompt-tool") + 1] == "mcp__orchestra_perm__approve"
    servers = json.loads(argv[argv.index("--mcp-config") + 1])["mcpServers"]
    assert servers["orchestra_perm"]["args"][:2] == ["-m", "orchestra.agent.permission_server"]
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)


def test_an_unanswered_request_is_denied_and_the_agent_carries_on(orch):
    _set(orch, permission_timeout=1)
    tid = orch.submit("impatient\n@fake ask bash touch never.txt\n@fake write after.txt went on")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task
    assert [d["tool_name"] for d in task["permission_denials"]] == ["Bash"]
    denial = [r for r in _tool_results(orch, tid) if r.get("is_error")]
    assert denial and "Nobody answered the request to use Bash" in denial[0]["content"]
    assert git(orch.repo, "show", f"{task['branch']}:after.txt") == "went on"
    assert "never.txt" not in git(orch.repo, "ls-tree", "--name-only", task["branch"])
    answers = list((orch.repo / ".orchestra" / "requests" / tid).glob("*.answer.json"))
    assert [json.loads(p.read_text())["state"] for p in answers] == ["timed_out"]


def test_always_allows_the_same_command_again_and_deny_tells_the_agent_why(orch):
    tid = orch.submit(
        "repeat\n@fake ask bash echo one >> log.txt\n@fake ask bash echo one >> log.txt\n"
        "@fake ask bash rm -f README.md\n@fake text finished"
    )
    worker = orch.start_worker()
    orch.wait_for(lambda: _waiting(orch, tid), what="first request")
    # Bad answers are refused and change nothing.
    bad = orch.run("respond", tid, "--deny", "--always")
    assert bad.returncode == 2 and "--always goes with --allow" in bad.stderr  # a usage error
    assert orch.run("respond", tid, "--allow", "--always", check=True).stdout.strip() == (
        f"{tid} allowed (always, for this task)"
    )
    second = orch.wait_for(
        lambda: (t := _waiting(orch, tid)) and "rm -f" in t["pending_request"]["summary"] and t,
        what="the request for a different command",
    )
    assert second["always_allow"] == ["Bash(echo one >> log.txt)"]
    orch.run("respond", tid, "--deny", "--message", "keep the README", check=True)
    orch.wait_for(lambda: orch.state(tid) == "succeeded", what="success", timeout=60)
    task = orch.show(tid)
    assert git(orch.repo, "show", f"{task['branch']}:log.txt") == "one\none"
    assert git(orch.repo, "show", f"{task['branch']}:README.md") == "# demo"
    assert [d["tool_name"] for d in task["permission_denials"]] == ["Bash"]
    assert any(r.get("is_error") and r["content"] == "keep the README" for r in _tool_results(orch, tid))
    names = [e["event"] for e in _events(orch, tid)]
    assert names.count("awaiting_input") == 2 and names.count("input_auto_allowed") == 1
    again = orch.run("respond", tid, "--allow")
    assert again.returncode == 1 and "no pending permission request" in again.stderr
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)


def test_always_is_refused_for_a_command_a_rule_would_read_as_a_prefix(orch):
    """The agent picks the command: `echo checking:*` allowed always would allow `echo checking $(...)`."""
    tid = orch.submit("prefix\n@fake ask bash echo checking:*\n@fake ask bash echo checking more\n@fake text done")
    worker = orch.start_worker()
    orch.wait_for(lambda: _waiting(orch, tid), what="the first request")
    refused = orch.run("respond", tid, "--allow", "--always")
    assert refused.returncode == 1 and "allow it once, without --always" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert orch.show(tid)["always_allow"] == [] and "checking:*" in orch.show(tid)["pending_request"]["summary"]
    orch.run("respond", tid, "--allow", check=True)
    second = orch.wait_for(
        lambda: (t := _waiting(orch, tid)) and "checking more" in t["pending_request"]["summary"] and t,
        what="the second command to be asked about, not allowed by the first answer",
    )
    assert second["always_allow"] == []
    orch.run("respond", tid, "--allow", check=True)
    orch.wait_for(lambda: orch.state(tid) == "succeeded", what="success", timeout=60)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)


def test_a_long_question_keeps_its_end_in_sight_and_show_prints_it_whole(orch):
    """A long harmless start must not hide what the command ends with from the person who answers."""
    command = "echo " + "checking " * 40 + "&& touch pwned.txt"
    tid = orch.submit(f"long\n@fake ask bash {command}")
    worker = orch.start_worker()
    orch.wait_for(lambda: _waiting(orch, tid), what="the request")
    status = orch.run("status", check=True).stdout
    assert "touch pwned.txt" in status and "…" in status
    shown = orch.run("show", tid, check=True).stdout
    assert f"  command      {command}" in shown.splitlines()
    orch.run("respond", tid, "--deny", check=True)
    orch.wait_for(lambda: orch.state(tid) == "succeeded", what="the end", timeout=60)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)


def test_policy_comes_from_config_per_repo_and_per_role(orch):
    _config(
        orch,
        'permission_prompts = true\n[permissions]\nallow = ["Bash(make check:*)"]\n'
        '[permissions.generalist]\nask = ["Bash"]\n[permissions.tester]\nmode = "bypassPermissions"\n'
        "[permissions.reviewer]\nprompts = false\n",
    )
    verdict = '@fake if-role reviewer structured {"verdict": "approve", "summary": "fine", "comments": []}'
    ids = {
        role: orch.submit(f"{role} task\n{verdict}", "--role", role) for role in ("generalist", "tester", "reviewer")
    }
    orch.env["IS_SANDBOX"] = "1"
    assert orch.work().returncode == 0
    argv = {inv["env"]["ORCHESTRA_ROLE"]: inv["argv"] for inv in orch.invocations()}
    settings = json.loads(argv["generalist"][argv["generalist"].index("--settings") + 1])["permissions"]
    assert settings["ask"] == ["Bash"]
    assert "Bash(make check:*)" in settings["allow"] and "Bash(git push:*)" in settings["deny"]
    assert "--permission-prompt-tool" in argv["generalist"]
    tester = argv["tester"]
    assert tester[tester.index("--permission-mode") + 1] == "bypassPermissions"
    assert "--permission-prompt-tool" not in tester  # bypass never asks
    assert "--permission-prompt-tool" not in argv["reviewer"] and "--mcp-config" not in argv["reviewer"]
    assert all(orch.state(t) == "succeeded" for t in ids.values())

    bad = orch.run("config", "set", "permission_mode", "yolo")
    assert bad.returncode == 1 and "permission_mode" in bad.stderr
    _config(orch, "[permissions]\ncolour = 'blue'\n")
    broken = orch.submit("x")
    orch.work()
    assert "unknown key permissions.colour" in orch.show(broken)["error"]


def test_bypass_as_root_without_is_sandbox_fails_with_the_fix(orch):
    if os.geteuid() != 0:
        return  # the rule only exists for root
    _set(orch, permission_mode="bypassPermissions")
    orch.env.pop("IS_SANDBOX", None)
    tid = orch.submit("anything")
    orch.work()
    task = orch.show(tid)
    assert task["state"] == "failed" and "IS_SANDBOX=1" in task["error"]
    assert orch.invocations() == []


# -- answering an ended task ---------------------------------------------------------


def test_a_reply_continues_on_top_of_a_commit_a_person_made_on_the_branch(orch):
    """The checkout takes in what its branch gained at home before the session goes on (a fast-forward)."""
    tid = orch.submit("work\n@fake if-new write a.txt a\n@fake if-new commit Add a")
    assert orch.work().returncode == 0
    branch = orch.show(tid)["branch"]
    theirs = git(
        orch.repo, "commit-tree", git(orch.repo, "rev-parse", f"{branch}^{{tree}}"), "-p", branch, "-m", "mine"
    )
    git(orch.repo, "update-ref", f"refs/heads/{branch}", theirs)
    orch.run("respond", tid, "--no-start", "Go on.\n@fake write b.txt b\n@fake commit Add b", check=True)
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert git(orch.repo, "log", "--format=%s", f"main..{branch}").splitlines()[:3] == ["Add b", "mine", "Add a"]


def test_respond_continues_the_session_on_the_same_branch(orch):
    tid = orch.submit("ask me\n@fake if-new write question.txt which colour?\n@fake if-new text Which colour?")
    assert orch.work().returncode == 0
    first = orch.show(tid)
    assert first["state"] == "succeeded" and first["result"] == "Which colour?"
    refused = orch.run("respond", tid, "--allow")
    assert refused.returncode == 1 and "no pending permission request" in refused.stderr

    out = orch.run(
        "respond", tid, "--no-start", "Blue.\n@fake write answer.txt blue\n@fake commit Use blue", check=True
    )
    assert out.stdout.strip() == f"{tid} queued (continuing session {first['session_id']})"
    assert orch.state(tid) == "queued"
    busy = orch.run("respond", tid, "more")
    assert busy.returncode == 1 and "is queued" in busy.stderr
    assert orch.work().returncode == 0
    second = orch.show(tid)
    assert second["state"] == "succeeded" and second["attempts"] == 2
    assert second["session_id"] == first["session_id"] and second["branch"] == first["branch"]
    inv = orch.invocations()
    assert inv[1]["resume"] == first["session_id"] and inv[1]["prompt"].startswith("Blue.")
    assert inv[1]["cwd"] == inv[0]["cwd"]
    # One log, two runs of the same session.
    inits = [e for e in _log(orch, tid) if e.get("subtype") == "init"]
    assert [e["session_id"] for e in inits] == [first["session_id"]] * 2
    history = git(orch.repo, "log", "--format=%s", f"main..{second['branch']}").splitlines()
    assert history[0] == "Use blue" and history[1] == first["title"]  # the auto-commit is titled like the task
    assert git(orch.repo, "show", f"{second['branch']}:question.txt") == "which colour?"
    assert git(orch.repo, "show", f"{second['branch']}:answer.txt") == "blue"


# -- transient API failures -----------------------------------------------------------


def test_a_529_storm_is_retried_with_backoff_resuming_the_session(orch):
    _set(orch, api_backoff=0.4, api_retries=3, rate_limit_burst=10)
    tid = orch.submit(
        "stormy\n@fake if-attempt 1 fail 529\n@fake if-attempt 2 fail 529\n@fake if-attempt 3+ write ok.txt recovered"
    )
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task
    assert task["attempts"] == 3 and task["api_retries"] == 2
    assert git(orch.repo, "show", f"{task['branch']}:ok.txt") == "recovered"
    events = _events(orch, tid)
    requeued = [e for e in events if e["event"] == "requeued"]
    claims = [e for e in events if e["event"] == "claimed"]
    assert [e["retry"] for e in requeued] == [1, 2] and len(claims) == 3
    # Exponential: the second wait is twice the first, and no run started before its time.
    first_wait = requeued[0]["not_before"] - requeued[0]["ts"]
    second_wait = requeued[1]["not_before"] - requeued[1]["ts"]
    assert 0.2 < first_wait <= 0.4 and 0.6 < second_wait <= 0.8
    assert claims[1]["ts"] >= requeued[0]["not_before"] and claims[2]["ts"] >= requeued[1]["not_before"]
    inv = orch.invocations()
    assert inv[0]["resume"] is None
    assert inv[1]["resume"] == inv[2]["resume"] == task["session_id"]
    assert "temporary API error" in inv[1]["prompt"] and "529" in inv[1]["prompt"]


def test_retries_are_bounded(orch):
    _set(orch, api_backoff=0.1, api_retries=2, rate_limit_burst=10)
    tid = orch.submit("always overloaded\n@fake fail 529")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed" and "API error 529" in task["error"]
    assert task["attempts"] == 3 and len(orch.invocations()) == 3


def test_api_error_retries_do_not_use_up_the_runs_a_dying_agent_gets(orch, tmp_path):
    """max_attempts counts runs whose agent died; the runs an API error cost do not eat into it."""
    _set(orch, api_backoff=0.1, api_retries=2, rate_limit_burst=10, max_attempts=2)
    gate = tmp_path / "gate"
    tid = orch.submit(
        "stormy, then dies unwatched\n@fake if-attempt 1 fail 529\n@fake if-attempt 2 fail 529\n"
        f"@fake if-attempt 3 wait-for {gate}\n@fake if-attempt 3 exit 1\n@fake if-attempt 4+ write ok.txt done"
    )
    worker = orch.start_worker()
    pid = orch.wait_for(lambda: len(orch.invocations()) == 3 and orch.show(tid)["pid"], what="the third run")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    gate.touch()  # the agent dies while no scheduler watches
    orch.wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the agent's end")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task
    assert task["attempts"] == 4 and len(orch.invocations()) == 4
    shown = orch.run("show", tid, check=True).stdout
    assert "attempts     4 of 4 (2 after API errors)" in shown, shown


def test_an_authentication_error_is_not_retried(orch):
    _set(orch, api_backoff=0.1)
    orch.env["CLAUDE_CODE_MAX_RETRIES"] = "0"
    tid = orch.submit("bad key\n@fake fail 401")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed" and "API error 401" in task["error"]
    assert task["attempts"] == 1 and len(orch.invocations()) == 1
    assert not any(e["event"] == "requeued" for e in _events(orch, tid))


def test_rate_limits_on_several_agents_pause_new_starts(orch):
    _set(orch, api_backoff=0.5, rate_limit_burst=3, rate_limit_pause=2)
    ids = [orch.submit(f"limited {i}\n@fake if-attempt 1 fail 429\n@fake write done.txt {i}") for i in range(3)]
    worker = orch.start_worker("--max-concurrent", "3")
    rl = orch.repo / ".orchestra" / "ratelimit.json"
    orch.wait_for(lambda: rl.exists() and json.loads(rl.read_text()).get("paused_until"), what="a pause")
    paused_until = json.loads(rl.read_text())["paused_until"]
    status = json.loads(orch.run("status", "--json", check=True).stdout)
    assert status["paused_until"] == paused_until
    assert "paused" in orch.run("status", check=True).stdout
    orch.wait_for(lambda: all(orch.state(t) == "succeeded" for t in ids), what="recovery", timeout=60)
    claims = [e["ts"] for tid in ids for e in _events(orch, tid) if e["event"] == "claimed"]
    assert len(claims) == 6
    # Nothing started while paused, and the runs held back started once the pause ended.
    assert not [ts for ts in claims if paused_until - 2 <= ts < paused_until]
    assert [ts for ts in claims if ts >= paused_until]
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)


# -- worktree bootstrap and notifications ------------------------------------------------


def test_copy_and_setup_prepare_each_new_worktree(orch):
    (orch.repo / ".env").write_text("SECRET=s3cr3t\n")
    (orch.repo / "conf").mkdir()
    (orch.repo / "conf" / "local.toml").write_text("x = 1\n")
    _config(
        orch,
        'copy = [".env", "conf", "missing.txt"]\n'
        'setup = "cp .env setup-saw-env && printf %s \\"$ORCHESTRA_TASK_ID\\" > setup-id"\n',
    )
    tid = orch.submit("uses env\n@fake bash cat .env conf/local.toml")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task
    branch = task["branch"]
    assert (Path(task["worktree"]) / "setup-id").read_text() == tid
    assert (Path(task["worktree"]) / "setup-saw-env").read_text() == "SECRET=s3cr3t\n"
    files = git(orch.repo, "ls-tree", "-r", "--name-only", branch).splitlines()
    assert ".env" not in files and "conf/local.toml" not in files  # copied files never reach the branch
    assert "setup-id" not in files and "setup-saw-env" not in files  # nor what setup made: not the agent's work
    assert (Path(task["worktree"]) / ".env").read_text() == "SECRET=s3cr3t\n"
    assert task["copied"] == [".env", "conf", "setup-id", "setup-saw-env"]
    assert "x = 1" in "\n".join(str(r["content"]) for r in _tool_results(orch, tid))


def test_setup_failure_fails_the_task_with_its_output(orch):
    _config(orch, 'setup = "echo installing; echo boom >&2; exit 3"\n')
    tid = orch.submit("never runs")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed"
    assert "setup command exited with code 3" in task["error"] and "boom" in task["error"]
    assert orch.invocations() == []


def test_copy_refuses_paths_leading_outside(orch, tmp_path: Path):
    bad = orch.run("config", "set", "copy", '["../secrets"]')
    assert bad.returncode == 1 and "inside it" in bad.stderr
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    (orch.repo / "link.txt").symlink_to(outside)
    _config(orch, 'copy = ["link.txt"]\n')
    tid = orch.submit("x")
    orch.work()
    task = orch.show(tid)
    assert task["state"] == "failed" and "leads outside the repository" in task["error"]
    assert not (Path(task["worktree"]) / "link.txt").exists()


def test_on_event_gets_data_in_env_and_stdin_never_in_the_command(orch, tmp_path: Path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    orch.env["HOOK_DIR"] = str(hooks)
    _config(
        orch,
        'permission_timeout = 1\non_event = "cat > \\"$HOOK_DIR/$ORCHESTRA_TASK_ID.$ORCHESTRA_EVENT.json\\"; '
        'printf %s \\"$ORCHESTRA_TASK_STATE\\" > \\"$HOOK_DIR/$ORCHESTRA_TASK_ID.$ORCHESTRA_EVENT.state\\""\n',
    )
    ok = orch.submit("ok $(touch pwned) `touch pwned2`\n@fake ask bash true")
    bad = orch.submit("bad\n@fake fail 400")
    slow = orch.submit("slow\n@fake sleep 30", "--timeout", "1")
    assert orch.work().returncode == 0
    seen = sorted(p.name for p in hooks.glob("*.json"))
    assert seen == sorted(
        [f"{ok}.needs_input.json", f"{ok}.succeeded.json", f"{bad}.failed.json", f"{slow}.timed_out.json"]
    )
    payload = json.loads((hooks / f"{ok}.succeeded.json").read_text())
    assert payload["event"] == "succeeded" and payload["task"]["id"] == ok
    assert payload["task"]["title"].startswith("ok $(touch pwned)")
    asked = json.loads((hooks / f"{ok}.needs_input.json").read_text())
    assert asked["request"]["tool_name"] == "Bash" and asked["task"]["state"] == "awaiting_input"
    assert (hooks / f"{bad}.failed.state").read_text() == "failed"
    assert not list(orch.repo.rglob("pwned*")) and not list(hooks.rglob("pwned*"))


def test_a_failing_hook_is_logged_and_changes_nothing(orch):
    _config(orch, 'on_event = "echo hook broke; exit 7"\n')
    tid = orch.submit("fine")
    assert orch.work().returncode == 0
    assert orch.state(tid) == "succeeded"
    failed = [e for e in _events(orch, tid) if e["event"] == "on_event_failed"]
    assert failed and failed[0]["error"].startswith("exit 7") and "hook broke" in failed[0]["error"]


def test_cancelling_a_waiting_task_ends_its_agent_and_its_question(orch):
    tid = orch.submit("waits\n@fake ask bash touch never.txt")
    worker = orch.start_worker()
    orch.wait_for(lambda: _waiting(orch, tid), what="a permission request")
    assert orch.run("cancel", tid, check=True).stdout.strip() == f"{tid} cancelling"
    orch.wait_for(lambda: orch.state(tid) == "cancelled", what="cancelled", timeout=30)
    task = orch.show(tid)
    assert task["pending_request"] is None
    late = orch.run("respond", tid, "--allow")
    assert late.returncode == 1 and "no pending permission request" in late.stderr
    assert "never.txt" not in git(orch.repo, "ls-tree", "--name-only", task["branch"])
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)

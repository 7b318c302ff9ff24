"""Submitting and running tasks end to end: real git repos, the real scheduler, a fake claude."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import git

TASK_FIELDS = {
    "id",
    "title",
    "prompt",
    "role",
    "priority",
    "depends_on",
    "base_ref",
    "base_sha",
    "branch",
    "worktree",
    "state",
    "attempts",
    "session_id",
    "created_at",
    "started_at",
    "finished_at",
    "exit_code",
    "error",
    "cost_usd",
    "num_turns",
    "result",
    "permission_denials",
    "schema_version",
}


def test_submit_prints_id_and_records_every_field(orch):
    tid = orch.submit("Add a --verbose flag to the CLI", "--role", "implementer", "--priority", "3")
    assert tid.isalnum() and tid.islower() and len(tid) == 6
    task = orch.show(tid)
    assert set(task) >= TASK_FIELDS
    assert task["state"] == "queued"
    assert task["role"] == "implementer"
    assert task["priority"] == 3
    assert task["title"] == "Add a --verbose flag to the CLI"
    assert task["branch"] == f"orchestra/{tid}-add-a-verbose-flag-to-the-cli"
    assert task["worktree"] == str(orch.repo / ".orchestra" / "worktrees" / tid)
    assert task["base_sha"] == git(orch.repo, "rev-parse", "HEAD")
    # State stays out of the user's git status.
    assert git(orch.repo, "status", "--porcelain") == ""
    listed = json.loads(orch.run("list", "--json", check=True).stdout)
    assert [t["id"] for t in listed] == [tid] and set(listed[0]) >= TASK_FIELDS


def test_task_runs_in_its_worktree_and_its_work_lands_on_its_branch(orch):
    tid = orch.submit(
        "Create the greeting\n"
        "@fake write greeting.txt hello\n"
        "@fake commit Add greeting\n"
        "@fake write notes.txt left uncommitted\n"
        "@fake text All done."
    )
    main_head = git(orch.repo, "rev-parse", "HEAD")
    proc = orch.work()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    task = orch.show(tid)
    assert task["state"] == "succeeded", task
    assert task["exit_code"] == 0
    assert task["session_id"]
    assert task["num_turns"] >= 1
    assert task["cost_usd"] > 0
    assert task["attempts"] == 1
    branch = task["branch"]
    log = git(orch.repo, "log", "--format=%s", branch).splitlines()
    # The agent's own commit stays; the leftover file is committed after it, titled like the task.
    assert log[1] == "Add greeting"
    assert log[0] == task["title"]
    assert f"Orchestra-Task: {tid}" in git(orch.repo, "log", "-1", "--format=%b", branch)
    assert git(orch.repo, "show", f"{branch}:greeting.txt") == "hello"
    assert git(orch.repo, "show", f"{branch}:notes.txt") == "left uncommitted"
    # The main worktree did not move and stays clean.
    assert git(orch.repo, "rev-parse", "HEAD") == main_head
    assert git(orch.repo, "status", "--porcelain") == ""
    assert not (orch.repo / "greeting.txt").exists()
    # The agent ran inside the task's worktree with stdin from /dev/null.
    (call,) = orch.invocations()
    assert call["cwd"] == task["worktree"]
    assert call["stdin_is_devnull"] is True
    argv = call["argv"]
    assert argv[1:5] == ["-p", "--output-format", "stream-json", "--verbose"]
    assert "--append-system-prompt" in argv
    assert argv[-2] == "--" and argv[-1].startswith("Create the greeting")


def test_prompt_from_file_and_stdin_and_leading_dash(orch, tmp_path: Path):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("From a file\n@fake write f.txt file\n")
    a = orch.run("submit", "--no-start", "-f", str(prompt_file), check=True).stdout.strip()
    b = orch.run("submit", "--no-start", input="From stdin\n@fake write s.txt stdin\n", check=True).stdout.strip()
    c = orch.run("submit", "--no-start", "--", "-x starts with a dash", check=True).stdout.strip()
    assert orch.show(a)["prompt"].startswith("From a file")
    assert orch.show(b)["prompt"].startswith("From stdin")
    assert orch.show(c)["prompt"] == "-x starts with a dash"
    assert orch.work().returncode == 0
    for tid in (a, b, c):
        assert orch.state(tid) == "succeeded"
    calls = {c["argv"][-1]: c for c in orch.invocations()}
    assert "-x starts with a dash" in calls
    assert calls["-x starts with a dash"]["argv"][-2] == "--"


def test_tasks_run_in_parallel_up_to_the_cap(orch, tmp_path):
    gate = tmp_path / "gate"  # every agent waits here: the four run at once, or this never opens
    ids = [orch.submit(f"sleeper {i}\n@fake wait-for {gate}") for i in range(4)]
    worker = orch.start_worker("--max-concurrent", "4", "--until-idle")
    orch.wait_for(lambda: len(orch.invocations()) == 4, what="four agents running at once")
    assert all(orch.state(t) == "running" for t in ids)
    gate.touch()
    assert worker.wait(timeout=60) == 0
    tasks = [orch.show(t) for t in ids]
    assert all(t["state"] == "succeeded" for t in tasks)
    assert max(t["started_at"] for t in tasks) < min(t["finished_at"] for t in tasks)


def test_concurrency_cap_is_respected(orch):
    ids = [orch.submit(f"sleeper {i}\n@fake sleep 0.5") for i in range(4)]
    assert orch.work("--max-concurrent", "2").returncode == 0
    spans = sorted((orch.show(t)["started_at"], orch.show(t)["finished_at"]) for t in ids)
    for _i, (start, _) in enumerate(spans):
        running = sum(1 for s, f in spans if s <= start < f)
        assert running <= 2, spans


def test_priority_then_age_decides_the_order(orch):
    low = orch.submit("low", "--priority", "1")
    high = orch.submit("high", "--priority", "9")
    mid_old = orch.submit("mid old", "--priority", "5")
    mid_new = orch.submit("mid new", "--priority", "5")
    assert orch.work("--max-concurrent", "1").returncode == 0
    order = sorted([low, high, mid_old, mid_new], key=lambda t: orch.show(t)["started_at"])
    assert order == [high, mid_old, mid_new, low]


def test_dependencies_wait_and_failure_propagates_with_the_reason(orch):
    first = orch.submit("first\n@fake write one.txt 1")
    second = orch.submit("second", "--after", first)
    broken = orch.submit("broken\n@fake fail 400")
    child = orch.submit("child of broken", "--after", broken)
    grandchild = orch.submit("grandchild", "--after", child)
    assert orch.work().returncode == 0
    assert orch.state(first) == "succeeded"
    assert orch.show(second)["started_at"] >= orch.show(first)["finished_at"]
    assert orch.state(second) == "succeeded"
    b = orch.show(broken)
    assert b["state"] == "failed" and "API error 400" in b["error"]
    c = orch.show(child)
    assert c["state"] == "failed" and broken in c["error"] and c["attempts"] == 0
    g = orch.show(grandchild)
    assert g["state"] == "failed" and child in g["error"]


def test_on_starts_from_the_other_tasks_branch(orch):
    impl = orch.submit("implement\n@fake write feature.py print('hi')", "--role", "implementer")
    test = orch.submit("test it\n@fake write test_feature.py assert True", "--role", "tester", "--on", impl)
    t = orch.show(test)
    assert t["depends_on"] == [impl] and t["base_sha"] is None
    assert orch.work().returncode == 0
    i, t = orch.show(impl), orch.show(test)
    assert i["state"] == t["state"] == "succeeded"
    impl_head = git(orch.repo, "rev-parse", i["branch"])
    assert t["base_sha"] == impl_head
    # The tester's branch holds the implementer's commit plus its own.
    assert git(orch.repo, "merge-base", "--is-ancestor", impl_head, t["branch"]) == ""
    assert git(orch.repo, "show", f"{t['branch']}:feature.py") == "print('hi')"
    assert git(orch.repo, "show", f"{t['branch']}:test_feature.py") == "assert True"


def test_base_ref_is_honoured(orch):
    first = git(orch.repo, "rev-parse", "HEAD")
    (orch.repo / "later.txt").write_text("later\n")
    git(orch.repo, "add", "later.txt")
    git(orch.repo, "commit", "-q", "-m", "later")
    tid = orch.submit("from the first commit", "--base", "HEAD~1")
    assert orch.show(tid)["base_sha"] == first
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert git(orch.repo, "rev-parse", f"{task['branch']}") == first  # nothing new to commit


def test_agent_failures_are_recorded(orch):
    api = orch.submit("api\n@fake fail 400")
    silent = orch.submit("silent\n@fake no-result")
    turns = orch.submit("turns\n@fake max-turns")
    denied = orch.submit("denied\n@fake deny Bash git push\n@fake text gave up")
    assert orch.work().returncode == 0
    a = orch.show(api)
    assert a["state"] == "failed" and a["exit_code"] == 1 and "API error 400" in a["error"]
    s = orch.show(silent)
    assert s["state"] == "failed" and s["exit_code"] == 0 and "without a result" in s["error"]
    t = orch.show(turns)
    assert t["state"] == "failed" and "error_max_turns" in t["error"]
    d = orch.show(denied)
    assert d["state"] == "succeeded"
    assert [x["tool_name"] for x in d["permission_denials"]] == ["Bash"]


def test_wait_exit_codes_and_logs(orch):
    good = orch.submit("good\n@fake write a.txt a\n@fake text finished well")
    bad = orch.submit("bad\n@fake fail 401")
    assert orch.work().returncode == 0
    ok = orch.run("wait", good)
    assert ok.returncode == 0 and f"{good} succeeded" in ok.stdout
    no = orch.run("wait", good, bad)
    assert no.returncode == 1 and "API error 401" in no.stdout
    rendered = orch.run("logs", good, check=True).stdout
    assert "→ Write" in rendered and "a.txt" in rendered and "finished well" in rendered
    raw = orch.run("logs", good, "--raw", check=True).stdout.splitlines()
    assert json.loads(raw[0])["type"] == "system" and json.loads(raw[-1])["type"] == "result"


def test_wait_timeout_exit_code(orch):
    tid = orch.submit("never started")
    proc = orch.run_process("wait", tid, "--timeout", "0.3")  # the real binary's exit status
    assert proc.returncode == 124
    assert f"{tid} queued" in proc.stdout
    assert (
        proc.stderr
        == f"orchestra: note: {tid} stays queued until you act: no scheduler running; start one with 'orchestra worker'\n"
    )


def test_commands_work_from_inside_a_task_worktree(orch):
    tid = orch.submit("make a worktree\n@fake write x.txt x")
    assert orch.work().returncode == 0
    wt = Path(orch.show(tid)["worktree"])
    proc = orch.run("show", tid, "--json", cwd=wt, check=True)
    assert json.loads(proc.stdout)["id"] == tid
    assert not (wt / ".orchestra").exists()


def test_id_prefixes_resolve(orch):
    tid = orch.submit("prefix me")
    assert orch.run("show", tid[:4], "--json", check=True).stdout.count(tid) >= 1


def test_status_summarises(orch):
    ok = orch.submit("ok\n@fake cost 0.25")
    bad = orch.submit("bad\n@fake fail 400")
    orch.submit("later", "--after", bad)
    assert orch.work().returncode == 0
    data = json.loads(orch.run("status", "--json", check=True).stdout)
    assert data["counts"]["succeeded"] == 1
    assert data["counts"]["failed"] == 2
    assert data["total_cost_usd"] >= 0.25
    assert data["scheduler_pid"] is None
    text = orch.run("status", check=True).stdout
    assert "succeeded 1" in text and "failed 2" in text and ok in text


def test_a_reviewer_on_a_task_reads_its_diff_and_returns_a_verdict(orch):
    impl = orch.submit(
        "implement\n@fake write feature.py print('hi')\n@fake commit Add feature", "--role", "implementer"
    )
    verdict = (
        '{"verdict": "approve", "summary": "looks right", '
        '"comments": [{"file": "feature.py", "line": 1, "comment": "fine greeting"}]}'
    )
    review = orch.submit(f"Review the feature.\n@fake structured {verdict}", "--role", "reviewer", "--on", impl)
    assert orch.work().returncode == 0
    r = orch.show(review)
    assert r["state"] == "succeeded", r
    assert r["structured_output"]["verdict"] == "approve"
    call = next(c for c in orch.invocations() if c["env"].get("ORCHESTRA_ROLE") == "reviewer")
    argv = call["argv"]
    assert argv[argv.index("--tools") + 1] == "Read,Grep,Glob" and "--json-schema" in argv
    prompt = argv[-1]
    assert "Add feature" in prompt and "feature.py" in prompt and "print('hi')" in prompt
    shown = orch.run("show", review, check=True).stdout
    assert "verdict      approve: looks right" in shown and "feature.py:1 fine greeting" in shown


def test_a_task_goes_back_to_the_branch_it_was_submitted_from(orch, tmp_path):
    """From a linked worktree a task starts at that worktree's HEAD; merged, it goes to the branch it came from,
    whatever is checked out by then."""
    linked = tmp_path / "linked"
    git(orch.repo, "worktree", "add", "-q", "-b", "feat", str(linked))
    (linked / "feat.txt").write_text("feat\n")
    git(linked, "add", "feat.txt")
    git(linked, "commit", "-q", "-m", "feat work")
    feat_tip = git(linked, "rev-parse", "HEAD")
    from_linked = orch.run("submit", "--no-start", "on feat\n@fake write f.txt f", cwd=linked, check=True).stdout
    from_main = orch.submit("on main\n@fake write m.txt m")
    linked_task = orch.show(from_linked.strip())
    assert (linked_task["base_ref"], linked_task["base_sha"]) == ("feat", feat_tip)
    batch = '{"prompt": "one"}\n{"prompt": "two"}\n'
    batched = orch.run("submit", "--no-start", "--batch", "-", input=batch, cwd=linked, check=True).stdout.split()
    for tid in batched:  # a batch from there starts there too
        assert (orch.show(tid)["base_ref"], orch.show(tid)["base_sha"]) == ("feat", feat_tip)
        orch.run("cancel", tid, check=True)
    assert orch.show(from_main)["base_ref"] == "main"
    assert orch.work().returncode == 0
    git(orch.repo, "checkout", "-q", "-b", "elsewhere")  # the person moved on meanwhile
    orch.run("merge", from_main, check=True)
    orch.run("merge", linked_task["id"], check=True)
    assert git(orch.repo, "show", "main:m.txt") == "m"
    assert git(orch.repo, "show", "feat:f.txt") == "f" and (linked / "f.txt").read_text() == "f"
    assert git(orch.repo, "rev-parse", "elsewhere") == git(orch.repo, "rev-parse", "main~1")

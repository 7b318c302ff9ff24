"""Reviewing what agents did: `diff`, the commits and stat in `show`, the change column of `list` and `status`.

Real repositories, the real scheduler, the fake claude making real commits; the
assertions are on what a person reads.
"""

from __future__ import annotations

import json

from conftest import git

APPROVE = '{"verdict": "approve", "comments": [], "summary": "Looks right."}'

TWO_FILES = """Add a greeting
@fake write greet.py def greet():\\n    return "hi"\\n
@fake write notes.txt one\\ntwo\\nthree\\n
@fake commit Add greeting and notes
"""


def finished(orch, prompt: str, *args: str) -> str:
    task_id = orch.submit(prompt, *args)
    proc = orch.work()
    assert proc.returncode == 0, proc.stderr
    assert orch.state(task_id) == "succeeded"
    return task_id


def test_diff_shows_the_task_branch_against_its_base(orch):
    git(orch.repo, "commit", "-q", "--allow-empty", "-m", "main moves on before the task starts")
    task_id = finished(orch, TWO_FILES)
    git(orch.repo, "commit", "-q", "--allow-empty", "-m", "main moves on after")  # not part of the task's change

    out = orch.run("diff", task_id, check=True).stdout
    assert out.startswith("diff --git a/greet.py b/greet.py")
    assert '+    return "hi"' in out and "+three" in out
    assert "README" not in out

    stat = orch.run("diff", task_id, "--stat", check=True).stdout
    assert f"task {task_id}: orchestra/{task_id}-add-a-greeting against" in stat
    assert "commits      1 on" in stat and "Add greeting and notes" in stat
    assert "changes      +5 −0 · 2 files" in stat
    assert "greet.py  | 2 ++" in stat and "notes.txt | 3 +++" in stat

    data = json.loads(orch.run("diff", task_id, "--json", check=True).stdout)
    assert data["kind"] == "task" and data["summary"] == "+5 −0 · 2 files"
    assert [c["subject"] for c in data["commits"]] == ["Add greeting and notes"]
    assert {f["path"]: f["added"] for f in data["stat"]["files"]} == {"greet.py": 2, "notes.txt": 3}
    assert data["diff"].startswith("diff --git")
    assert "diff" not in json.loads(orch.run("diff", task_id, "--json", "--stat", check=True).stdout)


def test_a_task_that_changed_nothing_says_so_everywhere(orch):
    task_id = finished(orch, "Look around, change nothing")
    out = orch.run("diff", task_id, check=True).stdout
    assert "changes      no changes against" in out and "diff --git" not in out
    listing = orch.run("list", check=True).stdout
    assert "  no changes  " in next(line for line in listing.splitlines() if line.startswith(task_id))
    recent = orch.run("status", check=True).stdout.split("RECENT", 1)[1]
    assert "no changes" in recent
    assert "commits      0 on" in orch.run("show", task_id, check=True).stdout


def test_show_lists_commits_and_the_diffstat(orch):
    task_id = finished(orch, TWO_FILES)
    out = orch.run("show", task_id, check=True).stdout
    assert "commits      1 on orchestra/" in out
    sha = git(orch.repo, "rev-parse", f"orchestra/{task_id}-add-a-greeting")
    assert f"  {sha[:8]} Add greeting and notes" in out
    assert "changes      +5 −0 · 2 files" in out and "notes.txt | 3 +++" in out
    # The worktree reads relative to the repository, not as an absolute path.
    assert f"worktree     .orchestra/worktrees/{task_id}" in out and str(orch.repo) not in out
    data = orch.show(task_id)
    assert data["changes"]["summary"] == "+5 −0 · 2 files" and data["diffstat"] == {
        "added": 5,
        "removed": 0,
        "files": 2,
    }


def test_list_is_newest_first_fits_the_width_and_takes_a_limit(orch):
    first = finished(orch, TWO_FILES)
    second = finished(orch, "A second task with a rather long title that cannot fit in eighty columns at all, surely")
    queued = orch.submit("still queued")
    out = orch.run("list", check=True).stdout.splitlines()
    assert [line.split()[0] for line in out[1:]] == [queued, second, first]
    assert "CHANGES" in out[0] and all(len(line) <= 80 for line in out)
    assert "+5 −0 · 2 files" in out[3] and "no changes" in out[2]
    assert "…" in out[2]  # the long title is cut, marked
    queued_line = out[1]
    assert "queued" in queued_line and "files" not in queued_line and "no changes" not in queued_line
    limited = orch.run("list", "--limit", "2", check=True).stdout.splitlines()
    assert [line.split()[0] for line in limited[1:]] == [queued, second]
    as_json = json.loads(orch.run("list", "--json", "-n", "1", check=True).stdout)
    assert [t["id"] for t in as_json] == [queued]
    everything = orch.run("list", "--limit", "0", check=True).stdout.splitlines()  # 0: no limit
    assert [line.split()[0] for line in everything[1:]] == [queued, second, first]
    bad = orch.run("list", "--limit", "-1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--limit" in bad.stderr


def test_status_recent_shows_each_change(orch):
    task_id = finished(orch, TWO_FILES)
    recent = orch.run("status", check=True).stdout.split("RECENT", 1)[1].splitlines()
    line = next(line for line in recent if task_id in line)
    assert "+5 −0 · 2 files" in line and len(line) <= 80
    data = json.loads(orch.run("status", "--json", check=True).stdout)
    assert data["recent"][0]["diffstat"] == {"added": 5, "removed": 0, "files": 2}


def test_diff_of_a_workflow_is_its_result_against_where_it_started(orch):
    request = (
        "Add a greeting\n"
        "@fake if-role implementer if-new write greeting.py hi\\n\n"
        "@fake if-role implementer if-new commit Add greeting\n"
        "@fake if-role tester write test_greeting.py ok\\n\n"
        "@fake if-role tester commit Test greeting\n"
        f"@fake if-role reviewer structured {APPROVE}\n"
    )
    wf_id = orch.run("workflow", "start", "--no-start", "feature", request, check=True).stdout.strip()
    assert orch.work().returncode == 0
    data = json.loads(orch.run("diff", wf_id, "--json", check=True).stdout)
    assert data["kind"] == "workflow" and data["into"] == "main"
    assert {f["path"] for f in data["stat"]["files"]} >= {"greeting.py", "test_greeting.py"}
    assert [c["subject"] for c in data["commits"]][-2:] == ["Add greeting", "Test greeting"]
    stat = orch.run("diff", wf_id, "--stat", check=True).stdout
    assert stat.startswith(f"workflow {wf_id} (task {data['task']}):") and "into main" in stat


def test_diff_refuses_bad_refs_in_one_line(orch):
    queued = orch.submit("not started")
    for ref, message in (
        ("../../etc", "invalid task id"),
        ("zzzzzz", "no task or workflow zzzzzz"),
        (queued, "has not started yet"),
    ):
        proc = orch.run("diff", ref)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

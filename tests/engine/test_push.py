"""`orchestra push` and pull requests: pushed to a real bare remote in a temporary directory.

A forge cannot be reached from here, so `gh` is a stand-in script on PATH that records the
exact argv it was given (and prints a made-up URL); the tests check that argv, which is all
orchestra controls, not what GitHub would do with it.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

from conftest import git

APPROVE = (
    '{"verdict": "approve", "comments": [{"file": "greeting.py", "line": 1, "comment": "fine name"}], '
    '"summary": "Looks right."}'
)
WORK = "Add a greeting\n@fake write greeting.py hi\\n\n@fake commit Add greeting\n@fake cost 0.25"

FAKE_GH = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["GH_ARGV_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv) + "\\n")
if os.environ.get("GH_FAIL"):
    print("GraphQL: Head sha can't be blank", file=sys.stderr)
    sys.exit(1)
print("Creating pull request for the branch")
print("https://github.example/acme/demo/pull/7")
"""


def remote(orch, tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git(orch.repo, "remote", "add", "origin", str(bare))
    return bare


def fake_gh(orch, tmp_path: Path) -> Path:
    bin_dir = tmp_path / "gh-bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(FAKE_GH)
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "gh-argv.jsonl"
    orch.env["PATH"] = f"{bin_dir}:{orch.env['PATH']}"
    orch.env["GH_ARGV_LOG"] = str(log)
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_push_sends_the_branch_to_a_bare_remote_without_running_hooks(orch, tmp_path):
    bare = remote(orch, tmp_path)
    hook = orch.repo / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\nexit 1\n")
    hook.chmod(0o755)
    task_id = orch.submit(WORK)
    assert orch.work().returncode == 0
    branch = orch.show(task_id)["branch"]
    out = orch.run("push", task_id, check=True).stdout.strip()
    head = git(orch.repo, "rev-parse", branch)
    assert out == f"pushed {branch} ({head[:12]}, +1 −0 · 1 file) to origin"
    assert git(bare, "rev-parse", f"refs/heads/{branch}") == head
    assert not (tmp_path / "hook-ran").exists()
    # Again, with nothing new: still fine. After someone else pushed to that branch: refused, said why.
    assert (
        orch.run("push", task_id, "--json", check=True).stdout and "sha" in orch.run("push", task_id, "--json").stdout
    )
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", "-b", branch, str(bare), str(other)], check=True)
    git(other, "-c", "user.name=x", "-c", "user.email=x@example.com", "commit", "-q", "--allow-empty", "-m", "theirs")
    git(other, "push", "-q", "origin", branch)
    refused = orch.run("push", task_id)
    assert refused.returncode == 1 and "holds commits this branch lacks" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_push_refuses_what_it_cannot_push_in_one_line(orch, tmp_path):
    remote(orch, tmp_path)
    nothing = orch.submit("change nothing")
    queued_later = None
    assert orch.work().returncode == 0
    queued_later = orch.submit("not yet run")
    for args, message in (
        (("push", nothing), "changed nothing"),
        (("push", queued_later), "is queued"),
        (("push", nothing, "--remote", "--upload-pack=touch /tmp/x"), "unknown remote"),
        (("push", nothing, "--remote", "upstream"), "unknown remote 'upstream'; this repository's remotes: origin"),
        (("push", "../x"), "invalid task id"),
    ):
        proc = orch.run(*args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_push_pr_runs_gh_with_title_and_a_body_built_from_the_task(orch, tmp_path):
    bare = remote(orch, tmp_path)
    log = fake_gh(orch, tmp_path)
    task_id = orch.submit(WORK)
    assert orch.work().returncode == 0
    branch = orch.show(task_id)["branch"]
    out = orch.run("push", task_id, "--pr", check=True).stdout.strip()
    assert out.endswith("to origin; pull request: https://github.example/acme/demo/pull/7")
    assert git(bare, "rev-parse", f"refs/heads/{branch}") == git(orch.repo, "rev-parse", branch)
    ((gh, *argv),) = calls(log)
    assert Path(gh).name == "gh"
    assert argv[:8] == ["pr", "create", "--head", branch, "--base", "main", "--title", "Add a greeting"]
    assert argv[8] == "--body" and len(argv) == 10
    body = argv[9]
    assert body.startswith("## Prompt\n\nAdd a greeting\n@fake write greeting.py")
    assert "## Tests run\n\nNo test step recorded." in body
    assert "## Cost\n\n$0.2500 over 1 task(s)" in body
    assert "+1 −0 · 1 file" in body and "greeting.py | 1 +" in body and "Add greeting" in body
    assert f"Opened by orchestra from task {task_id} (generalist)" in body
    orch.env["GH_FAIL"] = "1"
    failed = orch.run("push", task_id, "--pr")
    assert failed.returncode == 1 and failed.stderr.strip() == (
        "orchestra: error: gh pr create failed: GraphQL: Head sha can't be blank"
    )


def test_merge_strategy_pr_ends_a_workflow_with_a_pull_request(orch, tmp_path):
    bare = remote(orch, tmp_path)
    log = fake_gh(orch, tmp_path)
    orch.run("config", "set", "merge_strategy", "pr", check=True)
    request = (
        "Add a greeting\n"
        "@fake if-role implementer if-new write greeting.py hi\\n\n"
        "@fake if-role implementer if-new commit Add greeting\n"
        "@fake if-role tester write test_greeting.py ok\\n\n"
        "@fake if-role tester commit Test greeting\n"
        "@fake if-role tester result 3 passed in 0.01s\n"
        f"@fake if-role reviewer structured {APPROVE}\n"
    )
    main_before = git(orch.repo, "rev-parse", "main")
    wf_id = orch.run("workflow", "start", "--no-start", "feature", request, check=True).stdout.strip()
    assert orch.work().returncode == 0
    wf = json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)
    assert wf["state"] == "succeeded", wf
    assert wf["merge"]["status"] == "pull_request" and wf["merge"]["pr_url"].endswith("/pull/7")
    assert git(orch.repo, "rev-parse", "main") == main_before  # nothing merged locally
    tester = next(t for t in wf["tasks"].values() if t["role"] == "tester")
    assert git(bare, "rev-parse", f"refs/heads/{tester['branch']}") == git(orch.repo, "rev-parse", tester["branch"])
    ((_gh, *argv),) = calls(log)
    assert argv[:6] == ["pr", "create", "--head", tester["branch"], "--base", "main"]
    assert argv[6:8] == ["--title", "Add a greeting"]
    body = argv[9]
    assert body.startswith("## Request\n\nAdd a greeting")
    assert "**approve** (review, task" in body and "- greeting.py:1: fine name" in body
    assert "3 passed in 0.01s" in body
    assert f"Opened by orchestra from workflow {wf_id} (feature)" in body


def test_mcp_push_branch_pushes_like_the_cli_and_refuses_in_the_same_words(orch, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardening"))
    from hardening_helpers import mcp_call, mcp_error, mcp_run

    bare = remote(orch, tmp_path)
    orch.run("config", "set", "autostart", "false", check=True)
    task_id = orch.submit(WORK)
    assert orch.work().returncode == 0
    branch = orch.show(task_id)["branch"]

    async def scenario(session):
        data, text = await mcp_call(session, "push_branch", ref=task_id)
        assert data["push"]["branch"] == branch and text.startswith(f"pushed {branch}")
        refused = await mcp_error(session, "push_branch", ref=task_id, remote="--upload-pack=touch pwned")
        assert "remote" in refused

    mcp_run(orch, scenario)
    assert git(bare, "rev-parse", f"refs/heads/{branch}") == git(orch.repo, "rev-parse", branch)
    assert not (orch.repo / "pwned").exists()

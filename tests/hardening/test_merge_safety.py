"""A merge never touches `.orchestra/` or the user's ignored files, never carries conflict markers to a
target, and lands exactly once however often it is run (issue: "Contain the agent, and keep every promise
under attack", breaks 3, 4 and 8)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hardening_helpers import git, merge_json

FROM_TASK = (
    "@fake if-role generalist write README.md # demo\\nfrom the task\\n\n@fake if-role generalist commit Task readme"
)


def _state_snapshot(repo):
    state = repo / ".orchestra"
    return {
        "tasks": sorted(p.name for p in (state / "tasks").iterdir()),
        "config": (state / "config.toml").read_text(),
    }


@pytest.mark.parametrize("strategy", ["merge", "squash", "ff-only"])
def test_a_branch_with_a_file_named_orchestra_leaves_the_state_alone(orch, strategy):
    """Git overwrites ignored paths: a fast-forward to a tree with a *file* `.orchestra` deleted the whole state."""
    evil = orch.submit("state grab\n@fake bash printf pwn > .orchestra && git add -f .orchestra && git commit -qm x")
    bystander = orch.submit("bystander\n@fake write b.txt b\n@fake commit b")
    assert orch.work().returncode == 0
    assert orch.state(evil) == "succeeded"
    (orch.repo / ".orchestra" / "config.toml").write_text("max_concurrent = 2\n")
    main = git(orch.repo, "rev-parse", "main")
    before = _state_snapshot(orch.repo)

    code, result = merge_json(orch, evil, "--strategy", strategy)

    assert code == 1 and result["status"] == "refused", result
    assert ".orchestra" in result["message"] and result["files"] == [".orchestra"]
    assert git(orch.repo, "rev-parse", "main") == main
    assert (orch.repo / ".orchestra").is_dir()
    after = _state_snapshot(orch.repo)
    assert after["config"] == before["config"]
    assert set(before["tasks"]) <= set(after["tasks"])  # plus the refused merge's own task
    assert orch.state(bystander) == "succeeded"
    assert git(orch.repo, "status", "--porcelain") == ""


def test_a_tracked_config_on_a_branch_never_replaces_the_users_config(orch):
    evil = orch.submit(
        "config grab\n"
        "@fake bash mkdir -p .orchestra && printf 'on_event = \"touch pwned\"\\n' > .orchestra/config.toml"
        " && git add -f .orchestra/config.toml && git commit -qm cfg"
    )
    assert orch.work().returncode == 0
    config = orch.repo / ".orchestra" / "config.toml"
    config.write_text("max_concurrent = 2\n")
    main = git(orch.repo, "rev-parse", "main")
    # Into a branch nobody has checked out too: a later `git checkout` would overwrite the config then.
    git(orch.repo, "branch", "release")
    for into in ("main", "release"):
        code, result = merge_json(orch, evil, "--into", into)
        assert code == 1 and result["status"] == "refused", result
        assert result["files"] == [".orchestra/config.toml"]
    assert config.read_text() == "max_concurrent = 2\n"
    assert git(orch.repo, "rev-parse", "main") == main == git(orch.repo, "rev-parse", "release")
    assert not (orch.repo / "pwned").exists()


def test_ignored_files_in_the_users_checkout_are_never_overwritten(orch):
    (orch.repo / ".gitignore").write_text("*.log\n")
    git(orch.repo, "add", ".gitignore")
    git(orch.repo, "commit", "-qm", "ignore logs")
    tid = orch.submit("track a log\n@fake bash printf theirs > build.log && git add -f build.log && git commit -qm log")
    assert orch.work().returncode == 0
    (orch.repo / "build.log").write_text("mine\n")
    main = git(orch.repo, "rev-parse", "main")

    code, result = merge_json(orch, tid)

    assert code == 1 and result["status"] == "target_dirty", result
    assert "build.log" in result["message"]
    assert (orch.repo / "build.log").read_text() == "mine\n"
    assert git(orch.repo, "rev-parse", "main") == main
    # Moved away, the same merge goes through.
    (orch.repo / "build.log").unlink()
    code, result = merge_json(orch, tid)
    assert code == 0 and result["status"] == "merged", result
    assert (orch.repo / "build.log").read_text() == "theirs"


def _conflicted_task(orch, extra: str = "") -> tuple[str, str]:
    """A finished task whose README change conflicts with main's; returns (task id, main's sha)."""
    tid = orch.submit(f"change the readme\n{FROM_TASK}\n{extra}")
    assert orch.work().returncode == 0
    assert orch.state(tid) == "succeeded"
    (orch.repo / "README.md").write_text("# demo\nfrom main\n")
    git(orch.repo, "commit", "-qam", "main changes the readme")
    return tid, git(orch.repo, "rev-parse", "main")


def _assert_no_markers_on_main(orch, main: str) -> None:
    assert git(orch.repo, "rev-parse", "main") == main
    assert "<<<<<<<" not in git(orch.repo, "show", "main:README.md")
    assert "<<<<<<<" not in (orch.repo / "README.md").read_text()


def test_a_resolver_that_gives_up_fails_and_leaves_no_markers_to_merge(orch):
    tid, main = _conflicted_task(orch)
    code, result = merge_json(orch, tid, "--resolve", "--no-start")
    assert code == 0 and result["status"] == "conflict" and result["resolve_task"], result
    assert orch.work().returncode == 0

    resolver = orch.show(result["resolve_task"])
    assert resolver["state"] == "failed", resolver
    assert "conflict markers are left in README.md" in resolver["error"]
    assert orch.state(result["retry_task"]) == "failed"
    # The half-done merge was not committed: the branch is as the task left it.
    branch = orch.show(tid)["branch"]
    assert git(orch.repo, "show", f"{branch}:README.md") == "# demo\nfrom the task"
    # A later plain merge finds the conflict again instead of passing.
    code, again = merge_json(orch, tid)
    assert code == 1 and again["status"] == "conflict", again
    _assert_no_markers_on_main(orch, main)


def test_a_resolver_that_commits_the_markers_fails_and_nothing_merges_them(orch):
    tid, main = _conflicted_task(orch, "@fake if-role implementer commit Resolved (not really)")
    code, result = merge_json(orch, tid, "--resolve", "--no-start")
    assert code == 0 and result["resolve_task"], result
    assert orch.work().returncode == 0

    resolver = orch.show(result["resolve_task"])
    assert resolver["state"] == "failed", resolver
    assert "still has conflict markers in README.md" in resolver["error"]
    branch = orch.show(tid)["branch"]
    assert "<<<<<<<" in git(orch.repo, "show", f"{branch}:README.md")  # the agent's own commit
    for strategy in ("merge", "squash"):
        code, again = merge_json(orch, tid, "--strategy", strategy)
        assert code == 1 and again["status"] == "conflict", again
        assert "adds conflict markers" in again["message"] and again["files"] == ["README.md"]
    _assert_no_markers_on_main(orch, main)


def _squash_commits(orch, since: str) -> list[str]:
    return git(orch.repo, "log", "--format=%H", "--grep=Orchestra-Squash-Of: ", f"{since}..main").split()


def test_a_squash_merge_run_again_is_up_to_date(orch):
    tid = orch.submit("feature\n@fake write f.txt f\n@fake commit Add f")
    assert orch.work().returncode == 0
    main = git(orch.repo, "rev-parse", "main")
    code, first = merge_json(orch, tid, "--strategy", "squash")
    assert code == 0 and first["status"] == "merged", first
    code, second = merge_json(orch, tid, "--strategy", "squash")
    assert code == 0 and second["status"] == "up_to_date", second
    assert second["landed_in"] == first["new_sha"] == git(orch.repo, "rev-parse", "main")
    assert git(orch.repo, "rev-list", "--count", f"{main}..main") == "1"
    assert len(_squash_commits(orch, main)) == 1
    # Merged is merged, whatever strategy asks again.
    for strategy in ("merge", "ff-only"):
        code, again = merge_json(orch, tid, "--strategy", strategy)
        assert code == 0 and again["status"] == "up_to_date", again
    assert git(orch.repo, "rev-list", "--count", f"{main}..main") == "1"


def test_concurrent_squash_merges_land_once(orch):
    tid = orch.submit("feature\n@fake write f.txt f\n@fake commit Add f")
    assert orch.work().returncode == 0
    main = git(orch.repo, "rev-parse", "main")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestra", "merge", tid, "--strategy", "squash", "--json"],
            cwd=orch.repo,
            env=orch.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert git(orch.repo, "rev-list", "--count", f"{main}..main") == "1"
    assert len(_squash_commits(orch, main)) == 1
    assert git(orch.repo, "status", "--porcelain") == ""
    # The source is recorded as merged, so cleanup can delete its branch.
    assert orch.show(tid)["merged"]["strategy"] == "squash"
    cleaned = orch.run("cleanup", check=True).stdout
    assert "deleted branch" in cleaned


def test_a_merge_that_finds_the_work_landed_meanwhile_records_it_once(orch, monkeypatch):
    """Two merges of one task at once (a person's and a workflow's merge step, or one run again): the second
    read the task before the first recorded its merge, found the target up to date, and recorded the same
    merge again (a second 'merged' event for one merge commit)."""
    from contextlib import contextmanager

    from orchestra.app import Orchestra
    from orchestra.core.task import MergeSpec
    from orchestra.engine import agentless, merge

    tid = orch.submit("feature\n@fake write f.txt f\n@fake commit Add f")
    assert orch.work().returncode == 0
    ctx = Orchestra(orch.repo).ctx
    first, second = (
        agentless.new_agentless_task(
            ctx, "merge", "merge it", "merge it", [tid], running=True, merge=MergeSpec(tid, "main", "merge")
        )
        for _ in range(2)
    )
    real_lock = merge.merge_lock
    landed: list = []
    entered: list = []

    @contextmanager
    def the_first_lands_meanwhile(*args, **kwargs):
        if not entered:  # the second merge has read its source; the first one runs to its end now
            entered.append(True)
            landed.append(merge.run_merge_task(ctx, first))
        with real_lock(*args, **kwargs):
            yield

    monkeypatch.setattr(merge, "merge_lock", the_first_lands_meanwhile)
    again = merge.run_merge_task(ctx, second)
    assert landed[0].status == "merged" and again.status == "up_to_date"
    merged = [e for e in ctx.store.events(tid) if e["event"] == "merged"]
    assert len(merged) == 1, merged
    assert merged[0]["commit"] == landed[0].new_sha == orch.show(tid)["merged"]["commit"]

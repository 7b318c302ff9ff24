"""The box around an agent, with the fake claude: the sandbox setting, each task's own repository,
how its work comes home, and crash recovery that adopts only claude itself (docs/security.md).

The fake claude really runs what its script says, unconfined, so these tests play an agent that
already got past every other barrier: they check what orchestra itself does with what it left.
The escapes through the real Claude Code CLI are in test_escapes_real_claude.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git

HAVE_SANDBOX = all(shutil.which(b) for b in ("bwrap", "socat"))
needs_sandbox = pytest.mark.skipif(not HAVE_SANDBOX, reason="bubblewrap and socat are not installed here")


def _set(orch, **settings: object) -> None:
    for key, value in settings.items():
        orch.run("config", "set", key, json.dumps(value) if not isinstance(value, str) else value, check=True)


def _argv_settings(argv: list[str]) -> dict:
    return json.loads(argv[argv.index("--settings") + 1])


def _bin_without_sandbox(tmp_path: Path) -> str:
    """A PATH with what orchestra and the fake need, and no bwrap or socat."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("git", "sh", "env", "sleep", "setsid", "cat", "touch", "printf", "chmod", "mkdir"):
        found = shutil.which(name)
        if found:
            (bindir / name).symlink_to(found)
    (bindir / "python3").symlink_to(sys.executable)
    return str(bindir)


# -- the sandbox setting -------------------------------------------------------------------------


def test_without_bubblewrap_agents_do_not_start_and_status_and_doctor_say_why(orch, tmp_path: Path):
    from orchestra.core.roles import SANDBOX_ONLY_ALLOW

    orch.env["PATH"] = _bin_without_sandbox(tmp_path)
    tid = orch.submit("work\n@fake write a.txt a", "--role", "implementer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed"
    assert "bubblewrap (bwrap) and socat are not installed" in task["error"] and 'sandbox = "off"' in task["error"]
    assert orch.invocations() == []  # no agent ran at all
    status = orch.run("status", check=True).stdout
    assert "agents cannot start" in status and "bubblewrap" in status
    assert json.loads(orch.run("status", "--json", check=True).stdout)["sandbox"]["problem"]
    doctor = orch.run("doctor", "--json")
    assert doctor.returncode == 1
    kinds = [f["kind"] for f in json.loads(doctor.stdout)["findings"]]
    assert kinds == ["sandbox_unavailable"]

    # Choosing to run unconfined, on purpose: the agent runs, with the shorter allow list.
    _set(orch, sandbox="off")
    orch.run("retry", "--no-start", tid, check=True)
    assert orch.work().returncode == 0
    assert orch.state(tid) == "succeeded"
    (inv,) = orch.invocations()
    settings = _argv_settings(inv["argv"])
    assert "sandbox" not in settings
    assert not SANDBOX_ONLY_ALLOW & set(settings["permissions"]["allow"])
    assert "Bash(git commit:*)" in settings["permissions"]["allow"]
    assert "Edit(.git/hooks/**)" in settings["permissions"]["deny"]
    assert settings["permissions"]["blockWritesOutsideWorkingDirectories"] is True
    assert "sandbox    off: agents run unconfined" in orch.run("status", check=True).stdout
    doctor = orch.run("doctor")
    assert doctor.returncode == 0 and 'agents run unconfined: sandbox = "off"' in doctor.stdout


def test_a_ray_coordinator_needs_neither_the_sandbox_tools_nor_claude(orch, tmp_path: Path):
    """With executor = ray the agents run on the nodes, with the nodes' claude and sandbox (doctor checks each
    node): a coordinator without bubblewrap, socat or claude is no problem, and status does not say agents
    cannot start. What it does say is that the cluster does not answer (nothing listens at this address)."""
    orch.env["PATH"] = _bin_without_sandbox(tmp_path)
    orch.env["ORCHESTRA_CLAUDE"] = "no-such-claude-here"
    _set(orch, executor="ray", ray_address="127.0.0.1:9", autostart=False)
    orch.submit("work\n@fake write a.txt a", "--role", "implementer")
    status = orch.run("status", check=True).stdout
    assert "agents cannot start" not in status and "no new starts: cannot reach the Ray cluster" in status
    assert json.loads(orch.run("status", "--json", check=True).stdout)["sandbox"]["problem"] is None
    doctor = json.loads(orch.run("doctor", "--json").stdout)
    assert [f["kind"] for f in doctor["findings"]] == ["executor_unreachable"]
    # The same machine as a local executor: both are problems again.
    _set(orch, executor="local")
    doctor = json.loads(orch.run("doctor", "--json").stdout)
    assert sorted(f["kind"] for f in doctor["findings"]) == ["claude_does_not_run", "sandbox_unavailable"]


def test_the_allow_list_keeps_test_runners_and_git_output_only_in_the_sandbox():
    from orchestra.agent import permissions, sandbox
    from orchestra.core.config import Config
    from orchestra.core.roles import BUILTIN_ROLES, SANDBOX_ONLY_ALLOW

    implementer = BUILTIN_ROLES["implementer"]
    inside = permissions.policy_for(implementer, Config(), {}, sandboxed=True)
    outside = permissions.policy_for(implementer, Config(), {}, sandboxed=False)
    assert {"Bash(pytest:*)", "Bash(git log:*)", "Bash(make test:*)"} <= set(inside.allow)
    assert not SANDBOX_ONLY_ALLOW & set(outside.allow)
    # What the user adds on purpose stays, sandbox or not.
    widened = permissions.policy_for(implementer, Config(), {"allow": ["Bash(pytest:*)"]}, sandboxed=False)
    assert "Bash(pytest:*)" in widened.allow
    for policy in (inside, outside):
        assert set(sandbox.PROTECTED_DENY) <= set(policy.deny)


@needs_sandbox
def test_every_run_carries_the_sandbox_even_a_resumed_one_and_its_own_temp_dir(orch):
    from orchestra.agent import sandbox

    _set(orch, api_backoff="0.2", api_backoff_max="0.2")
    tid = orch.submit("flaky\n@fake if-attempt 1 fail 529\n@fake write a.txt a", "--role", "implementer")
    assert orch.work().returncode == 0
    assert orch.state(tid) == "succeeded"
    first, second = orch.invocations()
    assert second["resume"]  # the retry resumed the session
    for inv in (first, second):
        settings = _argv_settings(inv["argv"])
        assert settings["sandbox"] == sandbox.SETTINGS
        assert settings["permissions"]["blockWritesOutsideWorkingDirectories"] is True
        assert {"Bash(pytest:*)", "Bash(git log:*)"} <= set(settings["permissions"]["allow"])
        assert inv["argv"][inv["argv"].index("--setting-sources") + 1] == "user"
        tmp = inv["env"]["CLAUDE_CODE_TMPDIR"]
        assert tmp.startswith("/tmp/orch-") and tmp.endswith(f"-{tid}") and len(tmp) < 40
    assert not os.path.exists(tmp)  # removed when the run ended


@needs_sandbox
def test_a_cli_that_runs_without_its_sandbox_is_stopped(orch):
    orch.env["FAKE_CLAUDE_SANDBOX"] = "ignore"
    tid = orch.submit("unconfined\n@fake sleep 8\n@fake write late.txt too late", "--role", "implementer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed" and "without its sandbox" in task["error"]
    assert not (Path(task["worktree"]) / "late.txt").exists()  # stopped at its init line, not after its work
    assert "late.txt" not in git(orch.repo, "ls-tree", "--name-only", task["branch"]).split()


# -- each task its own repository -------------------------------------------------------------------


def test_a_task_works_in_a_repository_of_its_own_and_its_work_comes_home(orch):
    tid = orch.submit("work\n@fake write a.txt a\n@fake commit Add a\n@fake write b.txt b", "--role", "implementer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    wt = Path(task["worktree"])
    assert (wt / ".git").is_dir()  # its own repository, not a linked worktree of the main one
    alternates = (wt / ".git" / "objects" / "info" / "alternates").read_text().strip()
    assert Path(alternates) == (orch.repo / ".git" / "objects").resolve()
    assert git(orch.repo, "worktree", "list").count("\n") == 0
    log = git(orch.repo, "log", "--format=%s", task["branch"]).splitlines()
    assert log[0] == task["title"] and log[1] == "Add a"  # what the agent left, committed under the task's title
    assert f"Orchestra-Task: {tid}" in git(orch.repo, "log", "-1", "--format=%b", task["branch"])
    assert task["branch_sha"] == git(orch.repo, "rev-parse", task["branch"])
    assert not list((orch.repo / ".git" / "refs").rglob("incoming"))
    # Nothing is left in the main repository's refs but the branch.
    assert git(orch.repo, "for-each-ref", "--format=%(refname)", "refs/orchestra/") == ""


def test_leftovers_of_a_hostile_checkout_run_nothing_and_commit_only_the_work(orch, tmp_path: Path):
    """An unconfined agent plants everything git could run in its own repository; orchestra's
    closing commit, its fetch, cleanup, doctor and the user's git run none of it."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (orch.repo / ".env").write_text("SECRET=1\n")
    _set(orch, sandbox="off", copy=[".env"])
    hook = f"#!/bin/sh\\ntouch {marks}/hook-$(basename $0)\\n"
    script = "\n".join(
        [
            "Plant everything.",
            "@fake write feature.txt the work",
            "@fake bash git add -f .env",
            f"@fake bash git init -q sub && git -C sub -c user.name=a -c user.email=a@b commit -q --allow-empty -m s"
            f" && git -C sub config core.fsmonitor 'touch {marks}/fsmonitor-sub; false'",
            "@fake write .gitattributes * filter=evil diff=evil merge=evil\\n",
            *(f"@fake write .git/hooks/{h} {hook}" for h in ("pre-commit", "post-commit", "reference-transaction")),
            *(f"@fake write .githooks/{h} {hook}" for h in ("pre-commit", "post-commit")),
            f"@fake bash chmod +x .git/hooks/* .githooks/* && git config core.hooksPath .githooks"
            f" && git config filter.evil.clean 'touch {marks}/clean; cat'"
            f" && git config filter.evil.smudge 'touch {marks}/smudge; cat'"
            f" && git config diff.evil.textconv 'touch {marks}/textconv; cat'"
            f" && git config merge.evil.driver 'touch {marks}/merge; false'"
            f" && git config core.fsmonitor 'touch {marks}/fsmonitor; false'"
            f" && git config core.pager 'touch {marks}/pager; cat'"
            f" && git config diff.external 'touch {marks}/extdiff'",
            "@fake text Planted.",
        ]
    )
    tid = orch.submit(script, "--role", "implementer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert list(marks.iterdir()) == []
    files = git(orch.repo, "ls-tree", "-r", "--name-only", task["branch"]).split()
    assert "feature.txt" in files and ".env" not in files and "sub" not in files
    events = [json.loads(line) for line in (orch.repo / ".orchestra" / "events" / f"{tid}.jsonl").open()]
    assert any(e.get("event") == "gitlinks_left_out" and e.get("paths") == ["sub"] for e in events)
    wt = Path(task["worktree"])
    config = (wt / ".git" / "config").read_text()
    assert "fsmonitor" not in config and "evil" not in config and not (wt / ".git" / "hooks").exists()
    # What a person does next runs nothing the agent planted either.
    for args in (("cleanup", "--dry-run"), ("doctor",), ("show", tid), ("status",)):
        orch.run(*args, check=args[0] != "doctor")
    subprocess.run(["git", "status"], cwd=orch.repo, check=True, capture_output=True)
    subprocess.run(["git", "log", "-p", task["branch"]], cwd=orch.repo, check=True, capture_output=True)
    assert list(marks.iterdir()) == []


def test_links_planted_in_a_checkouts_git_dir_take_none_of_orchestras_writes_outside(orch, tmp_path: Path):
    """Git follows symlinks inside `.git`: a `logs/HEAD` linked to a file outside would get the
    reflog line of orchestra's own closing commit appended, a linked `COMMIT_EDITMSG` its
    message, a linked `logs/refs` directory new reflog files. A sandboxed agent can make such
    links (only writing through them is blocked); orchestra's git must never write through them."""
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    script = "\n".join(
        [
            "Plant links.",
            "@fake write feature.txt the work",
            f"@fake bash mkdir -p .git/logs && rm -rf .git/logs/HEAD .git/logs/refs && ln -s {victim} .git/logs/HEAD"
            f" && ln -s {victim} .git/COMMIT_EDITMSG && ln -s {outside} .git/logs/refs",
            "@fake text Planted.",
        ]
    )
    tid = orch.submit(script, "--role", "implementer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert victim.read_text() == "the user's file\n"
    assert list(outside.iterdir()) == []
    assert git(orch.repo, "show", f"{task['branch']}:feature.txt") == "the work"
    dot_git = Path(task["worktree"]) / ".git"
    assert not [p for p in dot_git.rglob("*") if p.is_symlink()]


def _gate(tmp_path: Path) -> tuple[Path, str]:
    """A file the test creates when the agent may go on, and the script line that waits for it."""
    go = tmp_path / "go"
    return go, f"@fake bash while [ ! -e {go} ]; do sleep 0.05; done"


# What an agent can write in its own repository to make its commit look as if it built on another one: a
# replace object naming the main repository's newer tip as a second parent of its HEAD.
_FORGE = (
    "@fake bash B=$(git symbolic-ref HEAD) && T=$(git -C {main} rev-parse $B) && "
    "N=$(git cat-file commit HEAD | awk -v t=$T '{{print}} /^tree /{{print \"parent \" t}}' "
    "| git hash-object -w -t commit --stdin) && git replace HEAD $N"
)


@pytest.mark.parametrize("forged", [False, True], ids=["plain", "forged history"])
def test_work_never_comes_home_over_commits_someone_else_made(orch, tmp_path: Path, forged: bool):
    go, wait = _gate(tmp_path)
    forge = "\n" + _FORGE.format(main=orch.repo) if forged else ""
    tid = orch.submit(f"slow\n@fake write a.txt a\n@fake commit Add a\n{wait}{forge}", "--role", "implementer")
    worker = orch.start_worker("--until-idle")
    orch.wait_for(lambda: orch.show(tid)["pid"], what="the agent")
    task = orch.show(tid)
    # Meanwhile someone moves the task's branch to a commit the task never saw.
    tree = git(orch.repo, "rev-parse", "HEAD^{tree}")
    theirs = git(orch.repo, "commit-tree", tree, "-p", "HEAD", "-m", "someone else's commit")
    git(orch.repo, "update-ref", f"refs/heads/{task['branch']}", theirs)
    go.touch()
    worker.wait(timeout=120)
    task = orch.show(tid)
    assert task["state"] == "failed" and "moved in the main repository" in task["error"]
    assert git(orch.repo, "rev-parse", task["branch"]) == theirs  # untouched
    ours = git(Path(task["worktree"]), "rev-parse", "HEAD")
    assert git(orch.repo, "rev-parse", f"refs/orchestra/incoming/{tid}") == ours  # kept, out of gc's reach
    report = json.loads(orch.run("doctor", "--json").stdout)
    assert [f["subject"] for f in report["findings"] if f["kind"] == "work_not_home"] == [tid]
    forced = json.loads(orch.run("cleanup", "--force", "--json", check=True).stdout)
    assert Path(task["worktree"]).is_dir()
    assert any("commits the main repository does not have" in k.get("reason", "") for k in forced["kept"])


def test_doctor_reports_a_task_branch_rewritten_outside_orchestra(orch):
    tid = orch.submit("work\n@fake write a.txt a", "--role", "implementer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert orch.run("doctor").returncode == 0
    git(orch.repo, "branch", "-f", task["branch"], "main")  # the work orchestra brought home is gone from it
    report = json.loads(orch.run("doctor", "--json").stdout)
    assert [f["subject"] for f in report["findings"] if f["kind"] == "branch_rewritten"] == [tid]


def test_refs_that_move_in_the_main_repository_during_a_run_are_recorded(orch, tmp_path: Path):
    go, wait = _gate(tmp_path)
    tid = orch.submit(f"slow\n{wait}\n@fake write a.txt a", "--role", "implementer")
    worker = orch.start_worker("--until-idle")
    orch.wait_for(lambda: orch.show(tid)["pid"], what="the agent")
    before = git(orch.repo, "rev-parse", "main")
    git(orch.repo, "commit", "-q", "--allow-empty", "-m", "the user's commit")
    git(orch.repo, "tag", "v1")
    report = json.loads(orch.run("doctor", "--json").stdout)
    assert any(tid in n and "refs/heads/main" in n for n in report["notices"])
    go.touch()
    assert worker.wait(timeout=120) == 0
    events = [json.loads(line) for line in (orch.repo / ".orchestra" / "events" / f"{tid}.jsonl").open()]
    (moved,) = [e["refs"] for e in events if e.get("event") == "main_refs_moved"]
    assert moved["refs/heads/main"] == [before, git(orch.repo, "rev-parse", "main")]
    assert moved["refs/tags/v1"][0] is None
    assert f"refs/heads/{orch.show(tid)['branch']}" not in moved
    assert not (orch.repo / ".orchestra" / "guard" / f"{tid}.json").exists()


# -- crash recovery adopts only claude ------------------------------------------------------------


def _processes_with(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if marker.encode() in fh.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                continue
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def test_a_tool_shell_that_outlived_its_agent_is_not_adopted_and_the_task_resumes(orch, tmp_path: Path):
    """Claude Code runs Bash tools in sessions of their own, carrying ORCHESTRA_TASK_ID; after a kill
    such a shell must not pass for the agent (it would be waited on, then fail "without a result")."""
    tid = orch.submit(
        "orphan\n"
        "@fake if-attempt 1 bash setsid sleep 40 </dev/null >/dev/null 2>&1 &\n"
        "@fake if-attempt 1 crash\n"
        "@fake write done.txt resumed",
        "--role",
        "implementer",
    )
    orch.crash_at("after_spawn", "worker", "--until-idle", timeout=60)
    assert orch.show(tid)["pid"] is None  # killed before it recorded its agent
    marker = f"ORCHESTRA_TASK_ID={tid}"
    orch.wait_for(
        lambda: (
            any(_comm(p) == "sleep" for p in _processes_with(marker))
            and not any(_comm(p) != "sleep" for p in _processes_with(marker))
        ),
        timeout=30,
        what="the agent dead and its tool shell alive",
    )
    started = time.monotonic()
    proc = orch.work()
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 35  # it did not wait for the orphan
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert task["attempts"] == 2
    events = [json.loads(line) for line in (orch.repo / ".orchestra" / "events" / f"{tid}.jsonl").open()]
    assert not any(e.get("event") == "adopted" for e in events)
    _, second = orch.invocations()
    assert second["resume"] and second["resume"] == task["session_id"]
    assert git(orch.repo, "show", f"{task['branch']}:done.txt") == "resumed"


def test_an_adopted_run_that_ends_without_a_result_is_resumed(orch, tmp_path: Path):
    go, wait = _gate(tmp_path)
    tid = orch.submit(
        f"dies later\n@fake if-attempt 1 {wait[len('@fake ') :]}\n@fake if-attempt 1 no-result\n"
        "@fake write done.txt second run",
        "--role",
        "implementer",
    )
    orch.crash_at("after_started", "worker", "--until-idle", timeout=60)
    assert orch.show(tid)["pid"]  # the agent lives on
    worker = orch.start_worker("--until-idle")
    events = orch.repo / ".orchestra" / "events" / f"{tid}.jsonl"
    orch.wait_for(lambda: '"adopted"' in events.read_text(), what="the agent adopted")
    go.touch()  # now it ends, without a result
    assert worker.wait(timeout=120) == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    kinds = [json.loads(line).get("event") for line in events.open()]
    assert kinds.index("adopted") < kinds.index("requeued")
    _, second = orch.invocations()
    assert second["resume"] == task["session_id"]
    assert git(orch.repo, "show", f"{task['branch']}:done.txt") == "second run"


def test_a_process_is_an_agent_only_when_it_runs_the_configured_claude(orch, tmp_path: Path):
    from orchestra.agent import processes

    fake = str((Path(__file__).resolve().parents[2] / "fixtures" / "fake_claude").resolve())
    env = dict(orch.env, ORCHESTRA_TASK_ID="zz9", ORCHESTRA_REPO=str(orch.repo))
    shell = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    agent = subprocess.Popen(
        [fake, "-p", "--output-format", "stream-json", "--verbose", "--", "@fake sleep 30"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(1.0)
        assert set(processes.find_agents("zz9", orch.repo)) == {shell.pid, agent.pid}  # the markers alone
        assert processes.find_agents("zz9", orch.repo, fake) == [agent.pid]
        assert not processes.runs_binary(shell.pid, fake)
    finally:
        for p in (shell, agent):
            p.kill()
            p.wait()

"""End to end: orchestra drives the REAL Claude Code CLI against a local stub of the
Anthropic Messages API (fixtures/messages_stub.py).

The CLI binary comes from ORCHESTRA_E2E_CLAUDE (CI sets it from `.ci/install-claude`);
ORCHESTRA_E2E_SKIP=<reason> skips with that reason; otherwise the test falls back to
/tmp/cc/node_modules/.bin/claude or `claude` on PATH, and skips saying what was missing.

Everything orchestra prints, its raw log and what the stub received are printed as the
test goes, so pytest shows them when an assertion fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from real_claude import claude_or_skip, messages_stub

ROOT = Path(__file__).resolve().parents[2]


ms = messages_stub()


@pytest.fixture(scope="module")
def claude_bin() -> str:
    binary = claude_or_skip()
    print(f"claude binary: {binary} ({ms.claude_version(binary)})")
    return binary


def _run(argv, *, cwd, env, timeout, check=True, label=None):
    """Run a command in its own process group; kill the group on timeout. Print all."""
    label = label or " ".join(str(a) for a in argv[:5])
    proc = subprocess.Popen(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = proc.communicate(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            out, err = "", ""
        print(f"--- {label}: TIMEOUT after {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
        pytest.fail(f"{label} did not finish within {timeout}s")
    print(f"--- {label}: exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}")
    if check and proc.returncode != 0:
        pytest.fail(f"{label} exited with {proc.returncode}: {err.strip()[-2000:]}")
    return proc.returncode, out, err


def _git(repo, *args, strip: bool = True) -> str:
    out = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout
    return out.strip() if strip else out


def _make_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A one-commit repository and a HOME for the CLI."""
    repo = tmp_path / "repo"
    home = tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "e2e@example.com")
    _git(repo, "config", "user.name", "e2e")
    (repo / "README.md").write_text("# e2e repo\n")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "initial commit")
    return repo, home


def _status_outside_orchestra(repo) -> list[str]:
    """`git status --porcelain` of the main worktree, ignoring orchestra's own state dir."""
    lines = _git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    return [l for l in lines if not l[3:].lstrip('"').startswith(".orchestra")]


@pytest.mark.e2e
def test_implementer_task_runs_real_claude_and_commits_on_its_branch(tmp_path, claude_bin):
    content = f"hello from the e2e stub {uuid.uuid4().hex[:8]}\n"
    prompt = "[[scenario:write-file]] Create hello.txt containing a greeting."

    repo, home = _make_repo(tmp_path)
    initial = _git(repo, "rev-parse", "HEAD")
    head_ref = _git(repo, "symbolic-ref", "HEAD")

    stub = ms.MessagesStub({"vars": {"file": "hello.txt", "content": content}})
    base_url = stub.start()
    try:
        env = _env(base_url, home, claude_bin)
        orchestra = [sys.executable, "-m", "orchestra"]

        _, out, _ = _run(
            [*orchestra, "submit", "--role", "implementer", "--no-start", prompt],
            cwd=repo,
            env=env,
            timeout=60,
            label="orchestra submit",
        )
        out_lines = [l.strip() for l in out.splitlines() if l.strip()]
        assert len(out_lines) == 1, f"submit should print exactly the task id, got {out!r}"
        task_id = out_lines[0]

        try:
            _run(
                [*orchestra, "worker", "--until-idle"],
                cwd=repo,
                env=env,
                timeout=180,
                label="orchestra worker --until-idle",
            )
        finally:
            # Diagnostics whatever happened: the raw log and what the stub saw.
            _run(
                [*orchestra, "logs", task_id, "--raw"],
                cwd=repo,
                env=env,
                timeout=60,
                check=False,
                label="orchestra logs --raw (diagnostics)",
            )
            print("stub requests:", [(r["method"], r["path"]) for r in stub.requests])
            # The agent's stderr and the task's events, wherever orchestra keeps them.
            for path in sorted((repo / ".orchestra").glob("*/*")):
                if path.is_file() and path.suffix in (".stderr", ".jsonl") and path.parent.name != "worktrees":
                    if path.parent.name == "logs" and path.suffix == ".jsonl":
                        continue  # printed above by `logs --raw`
                    print(f"--- {path.relative_to(repo)}:\n{path.read_text(errors='replace')[-4000:]}")

        _, show_out, _ = _run(
            [*orchestra, "show", task_id, "--json"], cwd=repo, env=env, timeout=60, label="orchestra show --json"
        )
        task = json.loads(show_out)
        _, raw_log, _ = _run(
            [*orchestra, "logs", task_id, "--raw"], cwd=repo, env=env, timeout=60, label="orchestra logs --raw"
        )
    finally:
        stub.stop()

    # -- the task ---------------------------------------------------------------------
    for key in (
        "id",
        "state",
        "branch",
        "worktree",
        "session_id",
        "cost_usd",
        "num_turns",
        "result",
        "error",
        "exit_code",
        "permission_denials",
        "attempts",
    ):
        assert key in task, f"show --json lacks {key!r}: {sorted(task)}"
    assert task["id"] == task_id
    assert task["state"] == "succeeded", f"state {task['state']!r}, error {task['error']!r}"
    assert task["exit_code"] == 0
    assert task["error"] in (None, "")
    assert task["permission_denials"] in ([], None)
    assert task["num_turns"] == 2
    assert task["cost_usd"] is not None and task["cost_usd"] > 0
    assert task["result"] == "Done: wrote hello.txt."

    # -- the raw log: real CLI stream-json, same session --------------------------------
    log_lines = [json.loads(l) for l in raw_log.splitlines() if l.strip()]
    init = [l for l in log_lines if l.get("type") == "system" and l.get("subtype") == "init"]
    assert init, "no system/init line in the raw log"
    assert task["session_id"] == init[0]["session_id"]
    results = [l for l in log_lines if l.get("type") == "result"]
    assert results and results[-1]["subtype"] == "success" and not results[-1]["is_error"]
    assert results[-1]["session_id"] == task["session_id"]
    assert init[0]["permissionMode"] == "acceptEdits"

    # -- the stub saw the prompt, from the worktree, in this session ---------------------
    bodies = stub.message_requests()
    assert len(bodies) == 2, f"expected 2 model calls, got {len(bodies)}"
    user_texts = ms.user_texts(bodies[0])
    assert any(prompt in t for t in user_texts), f"prompt not in first request's user text: {user_texts!r}"
    worktree = Path(task["worktree"])
    assert Path(ms.find_cwd(bodies[0]) or "").resolve() == worktree.resolve()
    assert worktree.resolve() != repo.resolve()
    sessions = {r["headers"].get("X-Claude-Code-Session-Id") for r in stub.requests if r["route"] == "/v1/messages"}
    assert sessions == {task["session_id"]}

    # -- the branch carries the work, on top of the initial commit -----------------------
    branch = task["branch"]
    assert branch.startswith(f"orchestra/{task_id}-"), branch
    tip = _git(repo, "rev-parse", f"refs/heads/{branch}")
    assert tip != initial
    _git(repo, "merge-base", "--is-ancestor", initial, tip)
    new_commits = _git(repo, "rev-list", f"{initial}..{tip}").split()
    assert new_commits, "no commit on the task branch"
    assert _git(repo, "show", f"{tip}:hello.txt", strip=False) == content
    print(_git(repo, "log", "--stat", "--format=%h %s", branch))

    # -- the main worktree is untouched ----------------------------------------------------
    assert _git(repo, "rev-parse", "HEAD") == initial
    assert _git(repo, "symbolic-ref", "HEAD") == head_ref
    assert _status_outside_orchestra(repo) == []
    assert not (repo / "hello.txt").exists()
    assert (repo / "README.md").read_text() == "# e2e repo\n"


def _env(base_url: str, home: Path, claude_bin: str) -> dict[str, str]:
    """orchestra's environment: the real CLI, all its model traffic to the stub, this checkout's package first."""
    env = ms.claude_env(base_url, home, ORCHESTRA_CLAUDE=claude_bin)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def _json_out(argv, *, cwd, env, label):
    _, out, _ = _run(argv, cwd=cwd, env=env, timeout=60, label=label)
    return json.loads(out)


@pytest.mark.e2e
def test_real_claude_bash_call_waits_for_a_person_and_runs_once_allowed(tmp_path, claude_bin):
    """Role policy: Bash asks. The real CLI calls orchestra's permission MCP server, the task
    waits in awaiting_input, `orchestra respond --allow` lets it through, and the command's
    effect lands on the task's branch."""
    import time

    marker = uuid.uuid4().hex[:8]
    command = f"printf 'approved {marker}' > bash-effect.txt"
    repo, home = _make_repo(tmp_path)
    (repo / ".orchestra").mkdir()
    (repo / ".orchestra" / "config.toml").write_text('[permissions.implementer]\nask = ["Bash"]\n')

    stub = ms.MessagesStub({"vars": {"command": command}})
    base_url = stub.start()
    worker = None
    try:
        env = _env(base_url, home, claude_bin)
        orchestra = [sys.executable, "-m", "orchestra"]
        _, out, _ = _run(
            [*orchestra, "submit", "--role", "implementer", "--no-start", "[[scenario:bash]] Run the command."],
            cwd=repo,
            env=env,
            timeout=60,
            label="orchestra submit",
        )
        task_id = out.strip()
        worker = subprocess.Popen(
            [*orchestra, "worker"],
            cwd=repo,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        task = {}
        while time.monotonic() < deadline:
            task = _json_out([*orchestra, "show", task_id, "--json"], cwd=repo, env=env, label="show")
            if (task["state"] == "awaiting_input" and task["pending_request"]) or task["state"] not in (
                "queued",
                "running",
            ):
                break
            time.sleep(0.3)
        assert task.get("state") == "awaiting_input", f"never waited for a person: {task}"
        request = task["pending_request"]
        assert request["tool_name"] == "Bash" and request["input"]["command"] == command
        assert not (Path(task["worktree"]) / "bash-effect.txt").exists(), "ran before anyone answered"
        _run([*orchestra, "status"], cwd=repo, env=env, timeout=60, label="orchestra status")

        _run(
            [*orchestra, "respond", task_id, "--allow"],
            cwd=repo,
            env=env,
            timeout=60,
            label="orchestra respond --allow",
        )
        _run([*orchestra, "wait", task_id, "--timeout", "120"], cwd=repo, env=env, timeout=150, label="orchestra wait")
        task = _json_out([*orchestra, "show", task_id, "--json"], cwd=repo, env=env, label="show")
        _run(
            [*orchestra, "logs", task_id, "--raw"],
            cwd=repo,
            env=env,
            timeout=60,
            check=False,
            label="orchestra logs --raw (diagnostics)",
        )
    finally:
        if worker is not None:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
            print("--- worker output:\n" + (worker.communicate(timeout=30)[0] or ""))
        for path in sorted((repo / ".orchestra" / "logs").glob("*.stderr")):
            print(f"--- {path.name}:\n{path.read_text(errors='replace')[-4000:]}")
        stub.stop()

    assert task["state"] == "succeeded", f"state {task['state']!r}, error {task['error']!r}"
    assert task["permission_denials"] in ([], None)
    assert _git(repo, "show", f"{task['branch']}:bash-effect.txt") == f"approved {marker}"
    # The model saw the command's success, not a refusal.
    bodies = stub.message_requests()
    results = [
        b
        for body in bodies
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for b in m["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]
    assert results and not any(r.get("is_error") for r in results), results
    assert not (repo / "bash-effect.txt").exists()


@pytest.mark.e2e
def test_a_feature_workflow_of_real_claude_runs_every_step_and_merges(tmp_path, claude_bin):
    """design → implement → test → review → merge, every agent the real CLI against the stub.

    One script serves every role (the marker is in the request each step's prompt carries): a Write, then the
    verdict through StructuredOutput (a tool only the reviewer has: the reviewer cannot Write, the others have
    no StructuredOutput), then a last text. The reviewer's structured verdict decides; the merge lands on main."""
    repo, home = _make_repo(tmp_path)
    initial = _git(repo, "rev-parse", "HEAD")
    verdict = {"verdict": "approve", "comments": [], "summary": "Looks right."}
    script = {
        "scenarios": {
            "wf": [
                {"tool_use": {"name": "Write", "input": {"file_path": "{{cwd}}/feature.txt", "content": "feature\n"}}},
                {"tool_use": {"name": "StructuredOutput", "input": verdict}},
                {"text": "Done."},
            ]
        }
    }
    stub = ms.MessagesStub(script)
    base_url = stub.start()
    try:
        env = _env(base_url, home, claude_bin)
        orchestra = [sys.executable, "-m", "orchestra"]
        _, out, _ = _run(
            [*orchestra, "workflow", "start", "feature", "--no-start", "[[scenario:wf]] Add feature.txt"],
            cwd=repo,
            env=env,
            timeout=60,
            label="orchestra workflow start",
        )
        wf_id = out.strip()
        _run([*orchestra, "worker", "--until-idle"], cwd=repo, env=env, timeout=300, label="orchestra worker")
        wf = _json_out([*orchestra, "workflow", "show", wf_id, "--json"], cwd=repo, env=env, label="workflow show")
    finally:
        stub.stop()
    assert wf["state"] == "succeeded", wf
    steps = {i["step"]: wf["tasks"][i["task"]] for i in wf["instances"]}
    assert set(steps) == {"design", "implement", "test", "review", "merge"}
    assert all(t["state"] == "succeeded" for t in steps.values()), {n: t["state"] for n, t in steps.items()}
    assert steps["review"]["structured_output"] == verdict  # what the reviewer handed StructuredOutput
    assert all(t["cost_usd"] > 0 for n, t in steps.items() if n != "merge")
    assert wf["merge"]["status"] == "merged" and wf["merge"]["into"] == "main"
    # The merge moved main (and its checkout) past where the workflow started, with the agents' file on it.
    assert _git(repo, "merge-base", "--is-ancestor", initial, "main") == ""
    assert _git(repo, "rev-parse", "main") != initial
    assert _git(repo, "show", "main:feature.txt", strip=False) == "feature\n"
    assert (repo / "feature.txt").read_text() == "feature\n"
    assert _status_outside_orchestra(repo) == []

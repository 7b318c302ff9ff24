"""Secrets are masked before anything is persisted or returned, whoever reads (break 5).

The scheduler (and any `orchestra merge` that runs a gate) has the secrets in its environment; every
reader here runs without them, as `orchestra logs` in another shell or an MCP server started before
the variable was exported would. The values are recognised from the fingerprints the scheduler
recorded when it started, never from the reader's own environment.
"""

from __future__ import annotations

import json
import subprocess
import sys

from hardening_helpers import git, mcp_call, mcp_read, mcp_run, merge_json

SECRETS = {
    "GITHUB_TOKEN": "ghp_" + "Qw7" * 12,
    "DB_PASSWORD": "p@ss!w0rd#Zq9Xy",  # characters a token pattern would stop at
    "SERVICE_KEY": "svc-" + "Mn3" * 8,
    "QUOTED_PASSWORD": 'Zq9"Xy!w0rd#Lm4',  # JSON writes it Zq9\"Xy..., and a quote used to end a run
    "SLASHED_TOKEN": "abc\\def123456789",
}

LEAKY = (
    "leak\n"
    "@fake env GITHUB_TOKEN\n"
    '@fake bash echo "url https://x-access-token:$GITHUB_TOKEN@github.com/o/r.git"\n'
    '@fake bash echo "pw [$DB_PASSWORD] and $SERVICE_KEY."\n'
    '@fake bash echo "q=$QUOTED_PASSWORD s=$SLASHED_TOKEN"\n'
    '@fake bash echo "token = $GITHUB_TOKEN" > settings.ini\n'
    "@fake commit add settings\n"
    "@fake bash printf 'first line\\n%s\\n' \"$GITHUB_TOKEN\"\n"
    "@fake text all done"
)


def leaks(text: str) -> list[str]:
    """The secrets in `text`, as they are or as JSON writes them."""
    return [name for name, value in SECRETS.items() if value in text or json.dumps(value)[1:-1] in text]


def _with_secrets(orch) -> dict[str, str]:
    return dict(orch.env, **SECRETS)


def test_readers_without_the_variables_never_see_them(orch):
    orch.run("config", "set", "autostart", "false", check=True)
    orch.run("config", "set", "on_event", "echo hook saw $GITHUB_TOKEN; exit 3", check=True)
    tid = orch.submit(LEAKY)
    worker = subprocess.run(
        [sys.executable, "-m", "orchestra", "worker", "--until-idle"],
        cwd=orch.repo,
        env=_with_secrets(orch),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    assert not leaks(worker.stdout + worker.stderr)
    state = orch.repo / ".orchestra"
    raw_log = (state / "logs" / f"{tid}.jsonl").read_text()
    assert leaks(raw_log) == list(SECRETS)  # the agent really printed all three
    events = (state / "events" / f"{tid}.jsonl").read_text()
    assert "on_event_failed" in events and "hook saw ***" in events

    # Nothing orchestra wrote holds them (the agent's own transcript and stderr are its raw output).
    for path in state.rglob("*"):
        if path.is_file() and "worktrees" not in path.parts and not path.name.startswith(tid + "."):
            assert not leaks(path.read_text(errors="replace")), path
    # Every reader, in a shell without the variables.
    for args in (
        ("logs", tid),
        ("logs", tid, "--raw"),
        ("logs", tid, "--follow"),
        ("show", tid),
        ("show", tid, "--json"),
        ("status",),
        ("status", "--json"),
        ("list", "--json"),
        ("diff", tid),
        ("diff", tid, "--json"),
    ):
        proc = orch.run(*args, check=True)
        assert not leaks(proc.stdout + proc.stderr), (args, leaks(proc.stdout))
    rendered = orch.run("logs", tid, check=True).stdout
    assert "GITHUB_TOKEN=***" in rendered and "x-access-token:***@github.com" in rendered
    assert "pw [***]" in rendered and "*** ." not in rendered and "and ***." in rendered
    assert "q=*** s=***" in rendered
    assert "+token = ***" in orch.run("diff", tid, check=True).stdout
    raw = orch.run("logs", tid, "--raw", check=True).stdout
    assert raw.count("\n") == raw_log.count("\n") and "x-access-token:***@github.com" in raw
    for line in raw.splitlines():
        json.loads(line)  # still stream-json, line for line

    async def scenario(session):
        data, text = await mcp_call(session, "process_details", task_id=tid, transcript_lines=200)
        assert not leaks(json.dumps(data) + text)
        assert any("x-access-token:***@" in line for line in data["transcript"])
        log = await mcp_read(session, f"orchestra://tasks/{tid}/log")
        assert "GITHUB_TOKEN=***" in log and not leaks(log)
        data, text = await mcp_call(session, "status_dashboard")
        assert not leaks(json.dumps(data) + text)

    mcp_run(orch, scenario)


def test_a_pending_permission_request_is_masked_in_files_show_and_status(orch):
    orch.run("config", "set", "autostart", "false", check=True)
    token = SECRETS["GITHUB_TOKEN"]
    tid = orch.submit(f"ask\n@fake ask bash curl -H 'Authorization: token {token}' https://api.github.com")
    worker = subprocess.Popen(
        [sys.executable, "-m", "orchestra", "worker"],
        cwd=orch.repo,
        env=_with_secrets(orch),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    orch.procs.append(worker)  # type: ignore[arg-type]
    task = orch.wait_for(lambda: (t := orch.show(tid))["state"] == "awaiting_input" and t, what="a request")
    request = task["pending_request"]
    assert request["tool_name"] == "Bash" and "token ***" in request["summary"]
    assert not leaks(json.dumps(request))
    for path in (orch.repo / ".orchestra" / "requests" / tid).iterdir():
        assert not leaks(path.read_text()), path
    for args in (("show", tid), ("status",), ("status", "--json")):
        assert not leaks(orch.run(*args, check=True).stdout), args
    orch.run("respond", tid, "--deny", "--no-start", check=True)


def test_gate_output_is_masked_when_the_person_merging_has_the_secret(orch):
    """A person runs `orchestra merge` with a token in their shell; no scheduler ever saw it."""
    tid = orch.submit("feature\n@fake write f.txt f\n@fake commit Add f")
    assert orch.work().returncode == 0
    orch.run("config", "set", "gate", "echo gate saw $GITHUB_TOKEN; exit 4", check=True)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestra", "merge", tid, "--json"],
        cwd=orch.repo,
        env=_with_secrets(orch),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "gate_failed" and result["gate"]["tail"] == ["gate saw ***"], result
    merge_task = orch.show(result["task"])
    assert not leaks(json.dumps(merge_task)), merge_task["merge_result"]
    # And a reader without the variable still has it masked.
    assert not leaks(orch.run("show", result["task"], "--json", check=True).stdout)
    assert git(orch.repo, "rev-list", "--count", "main") == "1"


def test_copied_files_never_block_a_merge(orch):
    """`copy = [".env"]` puts an untracked .env in each task checkout; the agent's own `git add -A`
    must not commit it, or the merge would have to overwrite the person's own .env."""
    (orch.repo / ".env").write_text(f"GITHUB_TOKEN={SECRETS['GITHUB_TOKEN']}\n")
    orch.run("config", "set", "copy", '[".env"]', check=True)
    tid = orch.submit("feature\n@fake write f.txt f\n@fake commit Add f")
    assert orch.work().returncode == 0
    branch = orch.show(tid)["branch"]
    assert ".env" not in git(orch.repo, "ls-tree", "-r", "--name-only", branch).split()
    code, result = merge_json(orch, tid)
    assert code == 0 and result["status"] == "merged", result
    assert (orch.repo / ".env").read_text() == f"GITHUB_TOKEN={SECRETS['GITHUB_TOKEN']}\n"
    assert ".env" not in git(orch.repo, "ls-tree", "-r", "--name-only", "main").split()

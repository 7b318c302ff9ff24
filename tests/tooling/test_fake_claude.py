"""Tests of fixtures/fake_claude, the scripted stand-in for the ``claude`` CLI.

The fake runs as a real subprocess (stdin=/dev/null) in a throwaway git repository
with HOME pointed at a temporary directory.  Line shapes are compared with the real
Claude Code transcripts in fixtures/transcripts/ (copies of shared/claude-code/transcripts/).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "fixtures" / "fake_claude"
TRANSCRIPTS = Path(__file__).resolve().parents[2] / "fixtures" / "transcripts"
BASE_ARGS = ["-p", "--output-format", "stream-json", "--verbose"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def transcript(name: str) -> list[dict]:
    if not TRANSCRIPTS.is_dir():
        pytest.skip(f"real transcripts not available at {TRANSCRIPTS}")
    with open(TRANSCRIPTS / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def find(lines: list[dict], type_: str, subtype: str | None = None) -> list[dict]:
    return [l for l in lines if l.get("type") == type_ and (subtype is None or l.get("subtype") == subtype)]


class Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.lines = [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]

    @property
    def init(self) -> dict:
        (line,) = find(self.lines, "system", "init")
        return line

    @property
    def result(self) -> dict:
        results = find(self.lines, "result")
        assert results, f"no result line in {self.stdout!r}"
        return results[-1]

    def tool_results(self) -> list[dict]:
        return [l for l in find(self.lines, "user") if l["message"]["content"][0].get("type") == "tool_result"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAKE_CLAUDE_", "ORCHESTRA_", "GIT_", "CLAUDE_"))
        and k not in ("XDG_CONFIG_HOME", "IS_SANDBOX", "ANTHROPIC_BASE_URL")
    }
    e["HOME"] = str(home)
    e["GIT_CONFIG_NOSYSTEM"] = "1"
    return e


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> Path:
    r = tmp_path / "my_repo.v2"
    r.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run(git + ["init", "-q"], cwd=r, env=env, check=True)
    (r / "README.md").write_text("readme\n")
    subprocess.run(git + ["add", "-A"], cwd=r, env=env, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "init"], cwd=r, env=env, check=True)
    return r


def run_fake(
    repo: Path,
    env: dict[str, str],
    prompt: str,
    *extra: str,
    base=BASE_ARGS,
    stdin=subprocess.DEVNULL,
    timeout: float = 10,
) -> Result:
    argv = [str(FAKE), *base, *extra, "--", prompt]
    return Result(subprocess.run(argv, cwd=repo, env=env, stdin=stdin, capture_output=True, text=True, timeout=timeout))


def script(*directives: str) -> str:
    return "Do the task.\n" + "".join(f"@fake {d}\n" for d in directives)


# ---------------------------------------------------------------------------------


def test_default_run_matches_real_shapes(repo, env):
    r = run_fake(repo, env, "just say something")
    assert r.rc == 0, r.stderr
    assert [l["type"] for l in r.lines] == ["system", "assistant", "result"]
    real = transcript("text.jsonl")
    assert set(r.init) == set(find(real, "system", "init")[0])
    assert set(r.result) == set(find(real, "result")[0])
    assert set(r.lines[1]) == set(real[1])
    assert set(r.lines[1]["message"]) == set(real[1]["message"])
    init = r.init
    sid = init["session_id"]
    assert init["cwd"] == str(repo)
    assert init["permissionMode"] == "default"
    assert init["mcp_servers"] == [] and "Bash" in init["tools"] and "Write" in init["tools"]
    assert init["claude_code_version"].startswith("2.1.")
    res = r.result
    assert res["subtype"] == "success" and res["is_error"] is False
    assert res["result"] == "Done." and res["num_turns"] == 1
    assert res["terminal_reason"] == "completed" and res["api_error_status"] is None
    assert res["permission_denials"] == [] and res["result_index"] == 0
    assert res["total_cost_usd"] > 0
    for line in r.lines[1:]:
        assert line["session_id"] == sid and line["uuid"]
    # session transcript: $HOME/.claude/projects/<slug>/<sid>.jsonl
    slug = "".join(c if c.isalnum() else "-" for c in str(repo))
    assert slug.endswith("-my-repo-v2")
    assert (Path(env["HOME"]) / ".claude" / "projects" / slug / f"{sid}.jsonl").is_file()


def test_text_and_result_and_cost(repo, env):
    r = run_fake(repo, env, script("text first", "text second", "cost 1.25", "result all good"))
    assert r.rc == 0
    texts = find(r.lines, "assistant")
    assert [t["message"]["content"][0]["text"] for t in texts] == ["first", "second"]
    assert texts[0]["message"]["id"] == texts[1]["message"]["id"]  # one API message
    assert r.result["result"] == "all good" and r.result["total_cost_usd"] == 1.25
    assert r.result["num_turns"] == 1


def test_write_and_commit(repo, env):
    r = run_fake(
        repo,
        env,
        script(
            "text I'll create the file.", "write sub/hello.txt hello\\nworld", "commit Add hello", "text Committed."
        ),
    )
    assert r.rc == 0, r.stderr
    assert (repo / "sub" / "hello.txt").read_text() == "hello\nworld"
    log = subprocess.run(
        ["git", "log", "--format=%s|%ae", "-1"], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert log == "Add hello|fake@example.com"
    assert (
        subprocess.run(["git", "status", "--porcelain"], cwd=repo, env=env, capture_output=True, text=True).stdout == ""
    )
    real = transcript("tool-write-bash.jsonl")
    assistants = find(r.lines, "assistant")
    # text + Write share one message, Bash is its own message, then the final text
    assert assistants[0]["message"]["id"] == assistants[1]["message"]["id"]
    write = assistants[1]["message"]["content"][0]
    assert write["name"] == "Write" and write["input"]["file_path"] == str(repo / "sub" / "hello.txt")
    bash = assistants[2]["message"]["content"][0]
    assert bash["name"] == "Bash" and " commit -m " in bash["input"]["command"]
    results = r.tool_results()
    real_results = [l for l in find(real, "user")]
    assert set(results[0]) == set(real_results[0])
    assert set(results[0]["tool_use_result"]) == set(real_results[0]["tool_use_result"])
    assert results[0]["tool_use_result"]["type"] == "create"
    assert set(results[1]["tool_use_result"]) == set(real_results[1]["tool_use_result"])
    assert results[1]["message"]["content"][0]["is_error"] is False
    assert r.result["num_turns"] == 3 and r.result["result"] == "Committed."


def test_commit_uses_repo_identity_when_configured(repo, env):
    subprocess.run(["git", "config", "user.email", "dev@example.com"], cwd=repo, check=True)
    subprocess.run(["git", "config", "user.name", "Dev"], cwd=repo, check=True)
    (repo / "x.txt").write_text("x\n")
    r = run_fake(repo, env, script("commit msg with 'quotes'"))
    assert r.rc == 0
    cmd = find(r.lines, "assistant")[0]["message"]["content"][0]["input"]["command"]
    assert "user.email" not in cmd
    log = subprocess.run(
        ["git", "log", "--format=%s|%ae", "-1"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert log == "msg with 'quotes'|dev@example.com"
    # a tool-use step without following text gets a closing text message
    assert r.result["result"] == "Done." and r.result["num_turns"] == 2


def test_append_and_bash(repo, env):
    r = run_fake(
        repo,
        env,
        script("append README.md more\\n", "bash echo out; echo err >&2; exit 3", "bash printf '%s' \"$PWD\""),
    )
    assert r.rc == 0
    assert (repo / "README.md").read_text() == "readme\nmore\n"
    res = r.tool_results()
    assert res[0]["tool_use_result"]["type"] == "update"
    assert res[0]["tool_use_result"]["originalFile"] == "readme\n"
    failed = res[1]["message"]["content"][0]
    assert failed["is_error"] is True and failed["content"].startswith("Exit code 3")
    assert res[2]["tool_use_result"]["stdout"] == str(repo)


def test_path_escape_is_refused(repo, env, tmp_path):
    r = run_fake(repo, env, script("write ../evil.txt x"))
    assert r.rc == 2 and "inside the working directory" in r.stderr
    assert not (tmp_path / "evil.txt").exists()


def test_fail_529(repo, env):
    r = run_fake(repo, env, script("fail 529"))
    assert r.rc == 1
    real = transcript("api-error-529.jsonl")
    retries = find(r.lines, "system", "api_retry")
    assert len(retries) == 2
    assert all(x["error"] == "overloaded" and x["error_status"] == 529 for x in retries)
    assert set(retries[0]) == set(find(real, "system", "api_retry")[0])
    (synth,) = find(r.lines, "assistant")
    real_synth = find(real, "assistant")[0]
    assert set(synth) == set(real_synth) and set(synth["message"]) == set(real_synth["message"])
    assert synth["message"]["model"] == "<synthetic>" and synth["is_api_error_message"] is True
    assert synth["api_error_status"] == 529
    res = r.result
    assert set(res) == set(find(real, "result")[0])
    assert res["subtype"] == "success" and res["is_error"] is True
    assert res["api_error_status"] == 529 and res["terminal_reason"] == "api_error"
    assert res["result"].startswith("API Error: Repeated 529 Overloaded errors.")


@pytest.mark.parametrize("status,error", [(401, "authentication_failed"), (429, "rate_limit"), (500, "server_error")])
def test_fail_other_statuses(repo, env, status, error):
    env["CLAUDE_CODE_MAX_RETRIES"] = "2"
    r = run_fake(repo, env, script("text partial", f"fail {status}"))
    assert r.rc == 1
    retries = find(r.lines, "system", "api_retry")
    assert len(retries) == 2 and all(x["error"] == error and x["max_retries"] == 2 for x in retries)
    synth = find(r.lines, "assistant")[-1]
    assert synth["error"] == error and synth["api_error_status"] == status
    assert r.result["api_error_status"] == status and r.result["is_error"] is True
    if status == 401:
        assert r.result["result"] == "Invalid API key · Fix external API key"
        assert set(r.result) == set(find(transcript("api-error-401.jsonl"), "result")[0])


def test_retry_then_success(repo, env):
    r = run_fake(repo, env, script("retry 529 2", "text recovered"))
    assert r.rc == 0
    assert len(find(r.lines, "system", "api_retry")) == 2
    assert r.result["is_error"] is False and r.result["result"] == "recovered"


def test_no_result_and_exit_and_crash(repo, env):
    r = run_fake(repo, env, script("text hi", "no-result", "text never"))
    assert r.rc == 0 and not find(r.lines, "result")
    assert [l["type"] for l in r.lines] == ["system", "assistant"]
    r = run_fake(repo, env, script("exit 7"))
    assert r.rc == 7 and not find(r.lines, "result")
    r = run_fake(repo, env, script("text bye", "crash"))
    assert r.rc == -signal.SIGKILL and not find(r.lines, "result")


def test_resume_unknown_session(repo, env):
    sid = "00000000-0000-0000-0000-000000000001"
    r = run_fake(repo, env, "hi", "--resume", sid)
    assert r.rc == 1
    assert len(r.lines) == 1
    res = r.result
    assert set(res) == set(transcript("resume-unknown-session.jsonl")[0])
    assert res["subtype"] == "error_during_execution" and res["is_error"] is True
    assert res["num_turns"] == 0
    assert res["errors"] == [f"No conversation found with session ID: {sid}"]
    assert f"No conversation found with session ID: {sid}" in r.stderr


def test_resume_known_session_and_conditionals(repo, env, tmp_path):
    prompt = script("if-new text fresh start", "if-resume text resumed!")
    first = run_fake(repo, env, prompt)
    assert first.rc == 0 and first.result["result"] == "fresh start"
    sid = first.init["session_id"]
    # resume works from a different cwd as long as HOME is the same
    other = tmp_path / "elsewhere"
    other.mkdir()
    second = run_fake(other, env, prompt, "--resume", sid)
    assert second.rc == 0, second.stderr
    assert second.init["session_id"] == sid and second.result["session_id"] == sid
    assert second.result["result"] == "resumed!"
    slug = "".join(c if c.isalnum() else "-" for c in str(repo))
    sess = Path(env["HOME"]) / ".claude" / "projects" / slug / f"{sid}.jsonl"
    assert len(sess.read_text().splitlines()) == 2
    forked = run_fake(repo, env, prompt, "--resume", sid, "--fork-session")
    assert forked.init["session_id"] != sid and forked.result["result"] == "resumed!"


def test_session_id_flag_and_config_dir(repo, env, tmp_path):
    sid = "00000000-0000-4000-8000-000000000abc"
    env["CLAUDE_CONFIG_DIR"] = str(tmp_path / "cfg")
    r = run_fake(repo, env, "hi", "--session-id", sid)
    assert r.rc == 0 and r.init["session_id"] == sid
    slug = "".join(c if c.isalnum() else "-" for c in str(repo))
    assert (tmp_path / "cfg" / "projects" / slug / f"{sid}.jsonl").is_file()
    assert not (Path(env["HOME"]) / ".claude").exists()
    again = run_fake(repo, env, "hi", "--session-id", sid)
    assert again.rc == 1 and "already in use" in again.stderr
    bad = run_fake(repo, env, "hi", "--session-id", "nope")
    assert bad.rc == 1 and "Invalid session ID" in bad.stderr


def test_deny(repo, env):
    r = run_fake(
        repo,
        env,
        script("text I'll create the file.", "deny Write hello.txt", "deny Bash git push origin main", "text gave up"),
    )
    assert r.rc == 0
    real = transcript("permission-denied.jsonl")
    denied = find(r.lines, "system", "permission_denied")
    assert [d["tool_name"] for d in denied] == ["Write", "Bash"]
    assert set(denied[0]) == set(find(real, "system", "permission_denied")[0])
    assert denied[0]["message"] == (
        f"Claude requested permissions to write to {repo / 'hello.txt'}, but you haven't granted it yet."
    )
    results = r.tool_results()
    assert set(results[0]) == set(find(real, "user")[0])
    assert all(x["message"]["content"][0]["is_error"] for x in results)
    res = r.result
    assert res["subtype"] == "success" and res["is_error"] is False
    pd = res["permission_denials"]
    assert [d["tool_name"] for d in pd] == ["Write", "Bash"]
    assert pd[0]["tool_use_id"] == denied[0]["tool_use_id"]
    assert pd[1]["tool_input"]["command"] == "git push origin main"
    assert set(pd[0]) == set(find(real, "result")[0]["permission_denials"][0])
    assert not (repo / "hello.txt").exists()


def test_deny_rules_from_settings_and_tools_whitelist(repo, env):
    settings = json.dumps({"permissions": {"deny": ["Bash(git push:*)"]}})
    r = run_fake(repo, env, script("bash echo ok && git push origin main", "bash echo fine"), "--settings", settings)
    assert [d["tool_input"]["command"] for d in r.result["permission_denials"]] == ["echo ok && git push origin main"]
    assert r.tool_results()[1]["tool_use_result"]["stdout"] == "fine"
    r = run_fake(
        repo, env, script("write evil.txt x", "bash touch bashed.txt", "text LGTM"), "--tools", "Read,Grep,Glob"
    )
    assert r.init["tools"] == ["Glob", "Grep", "Read"]
    errors = [x["message"]["content"][0]["content"] for x in r.tool_results()]
    assert all("No such tool available" in e for e in errors) and len(errors) == 2
    assert r.result["permission_denials"] == [] and r.result["result"] == "LGTM"
    assert not (repo / "evil.txt").exists() and not (repo / "bashed.txt").exists()


def test_max_turns(repo, env):
    r = run_fake(repo, env, script("bash echo one", "max-turns"))
    assert r.rc == 1
    res = r.result
    real = find(transcript("max-turns.jsonl"), "result")[0]
    assert set(res) == set(real)
    assert res["subtype"] == "error_max_turns" and res["is_error"] is True
    assert res["terminal_reason"] == "max_turns" and res["errors"]
    # the --max-turns flag is enforced like the CLI: stop after N tool-using turns
    r = run_fake(repo, env, script("bash echo one", "bash echo two", "bash echo three"), "--max-turns", "2")
    assert r.rc == 1
    assert r.result["errors"] == ["Reached maximum number of turns (2)"]
    assert r.result["num_turns"] == 3 and len(r.tool_results()) == 2


def test_structured_output(repo, env):
    schema = json.dumps({"type": "object"})
    r = run_fake(repo, env, script('structured {"verdict": "approve", "score": 7}'), "--json-schema", schema)
    assert r.rc == 0
    assert "StructuredOutput" in r.init["tools"]
    real = find(transcript("json-schema.jsonl"), "result")[0]
    assert set(r.result) == set(real)
    assert r.result["structured_output"] == {"verdict": "approve", "score": 7}
    assert json.loads(r.result["result"]) == {"verdict": "approve", "score": 7}
    r = run_fake(repo, env, "no structured directive", "--json-schema", schema)
    assert r.result["structured_output"] is None


def test_missing_verbose_and_bad_directive(repo, env):
    r = run_fake(repo, env, "hi", base=["-p", "--output-format", "stream-json"])
    assert r.rc == 1 and r.stdout == ""
    assert "Error: When using --print, --output-format=stream-json requires --verbose" in r.stderr
    r = run_fake(repo, env, script("frobnicate now"))
    assert r.rc == 2 and "frobnicate" in r.stderr and r.stdout == ""


def test_unknown_flags_and_prompt_without_dashdash(repo, env):
    argv = [
        str(FAKE),
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--append-system-prompt",
        "be nice",
        "--model",
        "claude-x",
        "--whatever",
        "v",
        "--include-partial-messages",
        "--allowedTools",
        "Bash(git add:*)",
        script("text positional"),
    ]
    p = subprocess.run(argv, cwd=repo, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    r = Result(p)
    assert r.rc == 0 and r.init["model"] == "claude-x" and r.result["result"] == "positional"


def test_stdin_pipe_warning(repo, env):
    p = subprocess.Popen(
        [str(FAKE), *BASE_ARGS, "--", "hi"],
        cwd=repo,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    _out, err = p.communicate(timeout=10)
    assert time.monotonic() - t0 < 2.5
    assert p.returncode == 0
    assert "Warning: no stdin data received in 3s, proceeding without it" in err


@pytest.mark.skipif(not IS_ROOT, reason="root-only check")
def test_root_bypass_needs_is_sandbox(repo, env):
    r = run_fake(repo, env, "hi", "--permission-mode", "bypassPermissions")
    assert r.rc == 1 and "cannot be used with root/sudo privileges" in r.stderr
    env["IS_SANDBOX"] = "1"
    r = run_fake(repo, env, "hi", "--permission-mode", "bypassPermissions")
    assert r.rc == 0 and r.init["permissionMode"] == "bypassPermissions"


def test_log_and_env(repo, env, tmp_path):
    log = tmp_path / "calls.jsonl"
    env["FAKE_CLAUDE_LOG"] = str(log)
    env["ORCHESTRA_TASK_ID"] = "t-1"
    env["IS_SANDBOX"] = "1"
    env["SUPER_SECRET_TOKEN"] = "hunter2"
    r = run_fake(repo, env, script("env ORCHESTRA_TASK_ID", "env NOT_SET_ANYWHERE"))
    assert r.rc == 0
    texts = [l["message"]["content"][0]["text"] for l in find(r.lines, "assistant")]
    assert texts == ["ORCHESTRA_TASK_ID=t-1", "NOT_SET_ANYWHERE=<unset>"]
    run_fake(repo, env, "again", "--resume", r.init["session_id"])
    recs = [json.loads(l) for l in log.read_text().splitlines()]
    assert len(recs) == 2
    assert recs[0]["argv"][1:5] == BASE_ARGS and recs[0]["cwd"] == str(repo)
    assert recs[0]["resume"] is None and recs[1]["resume"] == r.init["session_id"]
    assert recs[0]["stdin_is_devnull"] is True and isinstance(recs[0]["pid"], int)
    assert recs[0]["env"] == {"ORCHESTRA_TASK_ID": "t-1", "IS_SANDBOX": "1"}
    assert "hunter2" not in log.read_text()


def test_if_attempt_counts_per_cwd(repo, env, tmp_path):
    state = tmp_path / "state"
    env["FAKE_CLAUDE_STATE"] = str(state)
    prompt = script("if-attempt 1 fail 529", "if-attempt 2 text second", "if-attempt 3+ text later")
    env["CLAUDE_CODE_MAX_RETRIES"] = "0"
    assert run_fake(repo, env, prompt).rc == 1
    assert run_fake(repo, env, prompt).result["result"] == "second"
    assert run_fake(repo, env, prompt).result["result"] == "later"
    assert (state / ".fake_claude_runs").is_file()
    assert not (repo / ".fake_claude_runs").exists()
    # without FAKE_CLAUDE_STATE the counter lives next to the sessions, not in the repo
    del env["FAKE_CLAUDE_STATE"]
    assert run_fake(repo, env, script("if-attempt 1 text one")).result["result"] == "one"
    slug = "".join(c if c.isalnum() else "-" for c in str(repo))
    assert (Path(env["HOME"]) / ".claude" / "projects" / slug / ".fake_claude_runs").is_file()


def _start(repo, env, prompt):
    p = subprocess.Popen(
        [str(FAKE), *BASE_ARGS, "--", prompt],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return p


def _read_until(p, pred, timeout=5.0) -> list[dict]:
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = p.stdout.readline()
        if not raw:
            break
        lines.append(json.loads(raw))
        if pred(lines[-1]):
            return lines
    raise AssertionError(f"condition not met; got {lines}")


def test_sigterm_exits_143_without_result(repo, env):
    p = _start(repo, env, script("text waiting", "sleep 30"))
    try:
        _read_until(p, lambda l: l["type"] == "assistant")
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=5)  # its sleep was 30 s
        assert p.returncode == 143 and '"result"' not in out
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_wait_for_holds_the_run_until_its_file_appears(repo, env, tmp_path):
    gate = tmp_path / "gate"
    p = _start(repo, env, script("text waiting", f"wait-for {gate}", "text through"))
    try:
        _read_until(p, lambda l: l["type"] == "assistant")
        assert p.poll() is None and not gate.exists()
        gate.touch()
        lines = _read_until(p, lambda l: l["type"] == "result")
        assert [b["text"] for l in lines if l["type"] == "assistant" for b in l["message"]["content"]] == ["through"]
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_wait_for_needs_an_absolute_path(repo, env):
    r = run_fake(repo, env, script("wait-for gate"))
    assert r.rc == 2 and "wait-for <absolute path>" in r.stderr


def test_sigterm_during_bash_kills_tool(repo, env):
    p = _start(repo, env, script("bash sleep 30"))
    try:
        _read_until(p, lambda l: l["type"] == "assistant")
        time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=5)
        assert p.returncode == 143
        last = json.loads(out.splitlines()[-1])
        assert last["type"] == "user" and last["message"]["content"][0]["content"] == "Exit code 137"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_ignore_sigterm_and_child_sleep(repo, env):
    p = _start(repo, env, script("ignore-sigterm", "child-sleep 30", "sleep 30"))
    child = None
    try:
        lines = _read_until(p, lambda l: l["type"] == "user")
        child = int(lines[-1]["message"]["content"][0]["content"])
        assert child != p.pid and os.getpgid(child) == p.pid  # same process group
        p.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=0.3)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=5)
        assert p.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            # a zombie of a killed child may linger until its reaper runs
            try:
                with open(f"/proc/{child}/stat") as f:
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        break
            except OSError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("child survived the group kill")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_sigint_during_tool(repo, env):
    p = _start(repo, env, script("bash sleep 30"))
    try:
        _read_until(p, lambda l: l["type"] == "assistant")
        time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=5)
        assert p.returncode == 0
        res = json.loads(out.splitlines()[-1])
        assert res["subtype"] == "error_during_execution" and res["terminal_reason"] == "aborted_tools"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_output_format_json(repo, env):
    r = subprocess.run(
        [str(FAKE), "-p", "--output-format", "json", "--", script("text hi")],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert r.returncode == 0
    assert json.loads(r.stdout)["result"] == "hi"


# -- @fake ask: the permission-prompt tool over MCP ---------------------------------

RAW_PERM_SERVER = r"""
import json, sys
mode, log = sys.argv[1], sys.argv[2]
def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    with open(log, "a") as f:
        f.write(json.dumps(msg) + "\n")
    method, rid = msg.get("method"), msg.get("id")
    if method == "server/discover":
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})
    elif method == "initialize":
        send({"jsonrpc": "2.0", "id": rid, "result": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
              "serverInfo": {"name": "perm", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": [{"name": "approve", "inputSchema": {"type": "object"}}]}})
    elif method == "tools/call":
        args = msg["params"]["arguments"]
        answers = {
            "allow": {"behavior": "allow", "updatedInput": args["input"]},
            "deny": {"behavior": "deny", "message": "not today"},
            "interrupt": {"behavior": "deny", "message": "stop", "interrupt": True},
        }
        text = json.dumps(answers[mode]) if mode in answers else "yes please"
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}})
"""


def _perm_args(tmp_path: Path, mode: str) -> tuple[list[str], Path]:
    server = tmp_path / "perm_server.py"
    server.write_text(RAW_PERM_SERVER)
    log = tmp_path / f"perm-{mode}.jsonl"
    config = {
        "mcpServers": {"perm": {"type": "stdio", "command": sys.executable, "args": [str(server), mode, str(log)]}}
    }
    return ["--mcp-config", json.dumps(config), "--permission-prompt-tool", "mcp__perm__approve"], log


def test_ask_allowed_runs_the_tool_after_the_cli_handshake(repo, env, tmp_path):
    args, log = _perm_args(tmp_path, "allow")
    r = run_fake(repo, env, script("ask bash printf yes > asked.txt", "text after"), *args)
    assert r.rc == 0, r.stderr
    assert (repo / "asked.txt").read_text() == "yes"
    uses = [l for l in find(r.lines, "assistant") if l["message"]["content"][0]["type"] == "tool_use"]
    assert len(uses) == 1  # the approved tool use is not printed twice
    calls = [json.loads(l) for l in log.read_text().splitlines()]
    assert [c.get("method") for c in calls] == [
        "server/discover",
        "initialize",
        "notifications/initialized",
        "tools/list",
        "tools/call",
    ]
    arguments = calls[-1]["params"]["arguments"]
    assert arguments == {
        "tool_name": "Bash",
        "input": uses[0]["message"]["content"][0]["input"],
        "tool_use_id": uses[0]["message"]["content"][0]["id"],
    }
    assert r.result["permission_denials"] == []


def test_ask_denied_or_invalid_answers_refuse_the_tool_and_the_run_goes_on(repo, env, tmp_path):
    for mode, message in (("deny", "not today"), ("invalid", "returned an invalid permission result")):
        args, _ = _perm_args(tmp_path, mode)
        r = run_fake(repo, env, script("ask write nope.txt x", "text went on"), *args)
        assert r.rc == 0 and r.result["result"] == "went on"
        assert not (repo / "nope.txt").exists()
        (res,) = r.tool_results()
        block = res["message"]["content"][0]
        assert block["is_error"] and message in block["content"]
        assert [d["tool_name"] for d in r.result["permission_denials"]] == ["Write"]


def test_ask_interrupt_ends_the_run(repo, env, tmp_path):
    args, _ = _perm_args(tmp_path, "interrupt")
    r = run_fake(repo, env, script("ask bash true", "text never"), *args)
    assert r.rc == 1
    assert r.result["subtype"] == "error_during_execution" and r.result["terminal_reason"] == "aborted_tools"


def test_ask_without_a_prompt_tool_is_denied_silently_and_bypass_runs_it(repo, env):
    r = run_fake(repo, env, script("ask bash touch quiet.txt"))
    assert r.rc == 0 and not (repo / "quiet.txt").exists()
    assert find(r.lines, "system", "permission_denied")
    env["IS_SANDBOX"] = "1"
    r = run_fake(repo, env, script("ask bash touch bypass.txt"), "--permission-mode", "bypassPermissions")
    assert r.rc == 0 and (repo / "bypass.txt").exists()
    r = run_fake(repo, env, script("ask text hi"))
    assert r.rc == 2 and "usage: @fake ask" in r.stderr


def test_if_role_and_if_role_run(repo, env, tmp_path):
    env["FAKE_CLAUDE_STATE"] = str(tmp_path / "state")
    prompt = script(
        "if-role reviewer if-role-run 1 result first review",
        "if-role reviewer if-role-run 2+ result later review",
        "if-role tester result tester",
    )
    assert run_fake(repo, env, prompt).result["result"] == "Done."  # no role set
    env["ORCHESTRA_ROLE"] = "reviewer"
    assert run_fake(repo, env, prompt).result["result"] == "first review"
    assert run_fake(repo, env, prompt).result["result"] == "later review"
    assert run_fake(repo, env, prompt).result["result"] == "later review"
    env["ORCHESTRA_ROLE"] = "tester"
    assert run_fake(repo, env, prompt).result["result"] == "tester"
    counts = json.loads((tmp_path / "state" / ".fake_claude_runs").read_text())
    assert counts["role:reviewer"] == 3 and counts["role:tester"] == 1
    bad = run_fake(repo, env, script("if-role-run x text no"))
    assert bad.rc == 2 and "if-role-run" in bad.stderr

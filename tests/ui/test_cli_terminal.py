"""The CLI at a real terminal (a pty) and in a pipe: --watch, colour, wait's exit codes, completion."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_in_process

from orchestra.core.task import State


def _ctrl_c_interrupts() -> None:
    """SIGINT as a shell leaves it for the programs it starts.

    A test run started in the background by a non-interactive shell inherits SIGINT
    ignored; Python then never raises KeyboardInterrupt, and no Ctrl-C test could pass.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_in_pty(
    orch,
    args: list[str],
    env: dict[str, str] | None = None,
    until: str | None = None,
    interrupt: bool = False,
    limit: float = 60,
) -> tuple[int, str]:
    """Run orchestra on a pseudo-terminal; optionally Ctrl-C it once `until` was printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestra", *args],
        cwd=orch.repo,
        env={**orch.env, "TERM": "xterm", "COLUMNS": "80", "LINES": "40", **(env or {})},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_ctrl_c_interrupts,
    )
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if interrupt and not sent and until and until.encode() in out:
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
            sent = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    code = proc.wait(timeout=30)
    return code, out.decode("utf-8", "replace")


def test_status_watch_redraws_on_a_terminal_and_exits_0_on_ctrl_c(orch) -> None:
    orch.submit("a queued task")
    code, out = run_in_pty(orch, ["status", "--watch", "-n", "0.2"], until="QUEUED (1", interrupt=True)
    assert code == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert "Ctrl-C quits" in out and "a queued task" in out
    assert "\x1b[" in out  # rich drew it in place


def test_status_watch_in_a_pipe_prints_plain_frames_and_exits_0(orch) -> None:
    orch.submit("a queued task")
    proc = orch.popen("status", "--watch", "-n", "0.1")
    assert proc.stdout is not None
    frames = 0
    for line in proc.stdout:
        if line.startswith("--- "):
            frames += 1
            if frames == 2:
                break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err and err == ""
    assert "\x1b" not in rest


def test_status_on_a_terminal_is_coloured_unless_no_color(orch) -> None:
    orch.submit("a queued task")
    code, out = run_in_pty(orch, ["status"])
    assert code == 0 and "\x1b[1m" in out and "QUEUED (1" in out
    code, out = run_in_pty(orch, ["status"], env={"NO_COLOR": "1"})
    assert code == 0 and "\x1b" not in out and "QUEUED (1" in out
    piped = orch.run("status", check=True).stdout
    assert "\x1b" not in piped and "QUEUED (1, in run order)" in piped


def test_plain_status_does_not_import_rich(orch) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestra", "status"],
        cwd=orch.repo,
        env=orch.env,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "orchestra.ui.views" in modules
    assert not [m for m in modules if m.split(".")[0] == "rich"]
    # What status has no use for costs start-up time on every call (the 150 ms target).
    unneeded = {"orchestra.engine.workflows", "orchestra.engine.merge", "orchestra.executors.local", "socket"}
    unneeded |= {"hashlib", "secrets"}  # OpenSSL: only masking with stored fingerprints needs it
    if not (orch.repo / ".orchestra" / "config.toml").exists():
        unneeded.add("tomllib")
    assert sorted(unneeded & set(modules)) == []


def test_logs_are_coloured_on_a_terminal_only(orch) -> None:
    tid = orch.submit("work\n@fake text hello there\n@fake bash echo hi")
    orch.work()
    piped = orch.run("logs", tid, check=True).stdout
    assert "hello there" in piped and "→ Bash: echo hi" in piped and "\x1b" not in piped
    code, out = run_in_pty(orch, ["logs", tid])
    assert code == 0 and "\x1b[36m\x1b[1m→ Bash: echo hi" in out.replace("\x1b[1m\x1b[36m", "\x1b[36m\x1b[1m")
    assert "\x1b[32m" in out  # the success line is green
    code, out = run_in_pty(orch, ["logs", tid], env={"NO_COLOR": "1"})
    assert code == 0 and "\x1b" not in out and "→ Bash: echo hi" in out
    raw = orch.run("logs", "--raw", tid, check=True).stdout.splitlines()
    assert all(json.loads(line)["type"] for line in raw)


def test_logs_follow_exits_0_on_ctrl_c(orch) -> None:
    tid = orch.submit("slow\n@fake text started\n@fake sleep 30")
    orch.start_worker()
    orch.wait_for(lambda: orch.state(tid) == "running", what="task to start")
    code, out = run_in_pty(orch, ["logs", "--follow", tid], until="started", interrupt=True)
    assert code == 0 and "Traceback" not in out
    orch.run("cancel", tid, check=True)


def _make_awaiting(repo: Path, task_id: str) -> None:
    """Put a task where its run puts it when its agent asks a person: a request file, then the watcher's look."""
    import time

    from orchestra.engine import approvals
    from orchestra.engine.context import Context
    from orchestra.store import requests

    ctx = Context.open(repo)

    def run(task):
        task.state = State.RUNNING

    task = ctx.store.update(task_id, run)
    requests.write_request(
        ctx.paths.request_dir(task_id),
        {
            "id": requests.new_request_id(),
            "task_id": task_id,
            "attempt": task.attempts,
            "tool_name": "Bash",
            "input": {"command": "make deploy"},
            "tool_use_id": "toolu_1",
            "deadline": time.time() + 600,
        },
    )
    approvals.observe(ctx, task_id, set())


def test_wait_exits_3_when_a_task_awaits_input_and_status_puts_it_first(orch) -> None:
    asking = orch.submit("ask")
    other = orch.submit("other")
    _make_awaiting(orch.repo, asking)
    proc = orch.run_process("wait", asking, other, "--timeout", "30")  # the real binary's exit status
    assert proc.returncode == 3
    assert f"{asking} awaiting_input" in proc.stdout
    assert orch.run("wait", "--json", asking).returncode == 3
    status = orch.run("status", check=True).stdout
    assert status.index("WAITING FOR YOU (1)") < status.index("QUEUED (1")
    assert "asks: Bash: make deploy" in status
    assert orch.run("wait", other, "--timeout", "0.3").returncode == 124


def test_wait_json_and_exit_codes_for_final_tasks(orch) -> None:
    ok = orch.submit("ok")
    bad = orch.submit("bad\n@fake max-turns")
    orch.work()
    proc = orch.run("wait", "--json", ok)
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["state"] == "succeeded"
    assert orch.run("wait", "-q", ok, bad).returncode == 1


def complete(orch, words: str, cwd: Path | None = None, shell: str = "bash", process: bool = False) -> list[str]:
    """The candidates the shell gets for `words`: from the entry point in this process, or a real one."""
    parts = words.split(" ")
    env = {
        **orch.env,
        "_ORCHESTRA_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1),
    }
    if process:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestra"],
            cwd=cwd or orch.repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    else:
        proc = run_in_process((), env=env, cwd=cwd or orch.repo)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if "," in line]


def test_completion_candidates(orch, tmp_path: Path) -> None:
    first = orch.submit("first")
    second = orch.submit("second")
    assert set(complete(orch, "orchestra show ", process=True)) == {first, second}
    assert complete(orch, f"orchestra logs {first[:3]}") == [first] or first[:3] == second[:3]
    assert set(complete(orch, "orchestra wait x ")) == {first, second}
    assert set(complete(orch, "orchestra submit --after ")) == {first, second}
    assert set(complete(orch, "orchestra --repo . cancel ")) == {first, second}
    assert complete(orch, "orchestra submit --role imp") == ["implementer"]
    assert "reviewer" in complete(orch, "orchestra list --role ")
    assert complete(orch, "orchestra list --state awa") == ["awaiting_input"]
    assert "budget_usd" in complete(orch, "orchestra config get ")
    # outside a repository: nothing offered, nothing printed
    outside = tmp_path / "nowhere"
    outside.mkdir()
    assert complete(orch, "orchestra show ", cwd=outside) == []
    assert complete(orch, "orchestra show ", cwd=outside, process=True) == []


def test_completion_offers_only_ids_the_command_accepts(orch) -> None:
    done = orch.submit("ends well")
    failed = orch.submit("ends badly\n@fake max-turns")
    assert orch.work().returncode == 0
    queued = orch.submit("still queued")
    assert complete(orch, "orchestra retry ") == [failed]
    assert complete(orch, "orchestra priority ") == [queued]
    assert complete(orch, "orchestra queue remove ") == [queued]
    assert complete(orch, "orchestra cancel ") == [queued]
    assert complete(orch, "orchestra stop ") == []
    assert complete(orch, "orchestra merge ") == [done]
    assert set(complete(orch, "orchestra diff ")) == {done, failed}
    assert set(complete(orch, "orchestra show ")) == {done, failed, queued}  # reading takes any
    assert set(complete(orch, "orchestra submit --on ")) == {done, failed, queued}


def test_completion_scripts_for_each_shell(orch) -> None:
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")):
        env = {**orch.env, "_ORCHESTRA_COMPLETE": f"{shell}_source"}
        proc = subprocess.run([sys.executable, "-m", "orchestra"], env=env, capture_output=True, text=True)
        assert proc.returncode == 0 and marker in proc.stdout, (shell, proc.stdout[:200])


# A file the agent wrote: a title change (OSC), a screen clear and a colour (CSI), a bell, a carriage
# return that would print the next text over the line, and a C1 CSI.
HOSTILE = r"A\033]0;PWNED\007B\033[2J\033[31mC\rD\302\233E"


def test_what_an_agent_wrote_reaches_the_terminal_escaped_in_a_diff_and_its_logs(orch) -> None:
    subprocess.run(["git", "config", "core.quotePath", "false"], cwd=orch.repo, check=True)  # names as they are
    named = r"@fake bash printf x > \"$(printf 'a\302\2332Jb.txt')\""
    tid = orch.submit(f"work\n@fake bash printf '{HOSTILE}\\n' > evil.txt; cat evil.txt\n{named}\n@fake commit add")
    orch.work()
    for args in (("show", tid), ("diff", "--stat", tid)):
        shown = orch.run(*args, check=True).stdout
        assert "a\\x9b2Jb.txt" in shown and "\x9b" not in shown, shown
    escaped = "+A\\x1b]0;PWNED\\x07B\\x1b[2J\\x1b[31mC\\x0dD\\x9bE"
    piped = orch.run("diff", tid, check=True).stdout
    assert escaped in piped.splitlines()
    code, out = run_in_pty(orch, ["diff", tid])
    assert code == 0 and escaped in out
    assert "\x1b]" not in out and "\x07" not in out and "\x1b[2J" not in out and "\x9b" not in out
    assert "\x1b[32m" in out  # orchestra's own colour for an added line stays
    code, out = run_in_pty(orch, ["logs", tid])
    assert code == 0 and "→ Bash: printf" in out
    assert "\x1b]" not in out and "\x07" not in out and "\x1b[2J" not in out and "\x9b" not in out
    assert "← ABC (+1 lines)" in out  # the output itself, with its escapes (and the title they set) dropped

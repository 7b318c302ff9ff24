"""No task is ever left running without an agent (break 7): control characters are refused at the
door, a launch that cannot start ends the attempt, and a full disk while a run ends neither loses the
task nor lets `worker --until-idle` exit over a live `running` record."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import make_orch, make_repo
from hardening_helpers import mcp_error, mcp_run, plant_task

FINAL = {"succeeded", "failed", "cancelled", "timed_out"}


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "16m"):
    """A small tmpfs mounted over `path` (root only), so that the disk really fills."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as fh:
        while True:
            try:
                fh.write(chunk)
            except OSError:
                break
    # What is left is smaller than a page or two: fill that too.
    with open(filler, "ab", buffering=0) as fh:
        for _ in range(64):
            try:
                fh.write(b"\0" * 512)
            except OSError:
                break
    return filler


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_full_disk_when_a_run_ends_never_leaves_the_task_running(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    with tiny_disk(repo / ".orchestra"):
        orch = make_orch(repo, tmp_path)
        try:
            tid = orch.submit("fill\n@fake write a.txt a\n@fake sleep 1.5\n@fake text done")
            after = orch.submit("after\n@fake write b.txt b", "--after", tid)
            worker = orch.start_worker("--until-idle")
            task = orch.wait_for(lambda: (t := orch.show(tid))["pid"] and t, what="the agent to start")
            filler = fill(repo / ".orchestra")
            orch.wait_for(lambda: not _alive(task["pid"]), timeout=30, what="the agent to end")
            time.sleep(3)
            # Nothing can be recorded now; the worker must not give up over the live record.
            assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
            filler.unlink()
            out, _ = worker.communicate(timeout=90)
            assert worker.returncode == 0, out
            task = orch.show(tid)
            assert task["state"] in FINAL, (task["state"], out)
            assert task["pid"] is None
            assert "cannot record how" in out and "No space left on device" in out
            assert orch.state(after) in FINAL  # the queue went on once the disk had room
            report = json.loads(orch.run("doctor", "--json", "--fix").stdout)
            assert report["ok"], report
        finally:
            orch.close()


def test_control_characters_are_refused_by_the_cli_in_one_line(orch, tmp_path: Path):
    nul = tmp_path / "prompt.txt"
    nul.write_bytes(b"do this\x00 and that\n")
    for args in (
        ("submit", "--no-start", "-f", str(nul)),
        ("submit", "--no-start", "--title", "\x1b]0;owned\x07", "a fine prompt"),
        ("submit", "--no-start", "a prompt that clears \x1b[2J the screen"),
        ("workflow", "start", "--no-start", "feature", "-f", str(nul)),
    ):
        proc = orch.run(*args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "control character" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    assert json.loads(orch.run("list", "--json", check=True).stdout) == []


def test_control_characters_are_refused_over_mcp_in_one_line(orch):
    orch.run("config", "set", "autostart", "false", check=True)

    async def scenario(session):
        for tool, arguments in (
            ("submit_task", {"prompt": "do this\x00 and that"}),
            ("submit_task", {"prompt": "fine", "title": "\x1b]0;owned\x07"}),
            ("create_workflow", {"template": "feature", "request": "build\x00 it"}),
        ):
            message = await mcp_error(session, tool, **arguments)
            assert "control character" in message and "\n" not in message.strip(), message

    mcp_run(orch, scenario)
    assert json.loads(orch.run("list", "--json", check=True).stdout) == []


def test_a_nul_that_reached_a_task_file_ends_the_attempt_instead_of_hanging_it(orch):
    """An older orchestra accepted NUL bytes; Popen raises ValueError on them. The run fails with the reason."""
    plant_task(orch.repo, "nulprompt", prompt="do this\x00 and that")
    proc = orch.work(timeout=60)
    assert proc.returncode == 0, proc.stderr
    task = orch.show("nulprompt")
    assert task["state"] == "failed" and "null byte" in task["error"], task
    # Arguments from the settings are checked when they are set.
    refused = orch.run("config", "set", "claude_args", '["--model", "x\\u0000y"]')
    assert refused.returncode == 1 and "NUL" in refused.stderr, refused.stderr

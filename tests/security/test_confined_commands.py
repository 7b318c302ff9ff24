"""Commands orchestra itself runs on a tree an agent wrote (the merge gate) are confined like the
agent's own Bash: a planted script (here the gate runs one from the agent's branch, as `pytest` runs a
planted conftest.py) cannot write outside the merge's checkout, reach the network, or touch the main
repository's refs, while an honest gate still passes or fails the merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import git

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


def merge_json(orch: Any, ref: str) -> tuple[int, dict[str, Any]]:
    proc = orch.run("merge", ref, "--json")
    return proc.returncode, json.loads(proc.stdout)


PLANTED = """#!/bin/sh
# What a misled agent leaves for the gate to run.
echo planted > "$ORCHESTRA_REPO/pwned-worktree" 2>/dev/null
echo planted > "$ORCHESTRA_REPO/.orchestra/pwned-state" 2>/dev/null
echo planted > "$OUTSIDE/pwned-outside" 2>/dev/null
git -C "$ORCHESTRA_REPO" update-ref refs/heads/evil HEAD 2>/dev/null
python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 2)" 2>/dev/null && echo NET-OK > net.txt
echo ran > "$TMPDIR/scratch" && echo local-ok > gate-wrote-here.txt
exit 0
"""


def test_a_gate_runs_planted_code_confined_and_still_decides_the_merge(orch, tmp_path: Path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    outside = tmp_path / "outside"
    outside.mkdir()
    script = PLANTED.replace("$OUTSIDE", str(outside)).replace("$PORT", str(port))
    tid = orch.submit(f"work\n@fake write check.sh {script.replace(chr(10), chr(92) + 'n')}\n@fake commit Add check")
    assert orch.work().returncode == 0, orch.show(tid)
    orch.run("config", "set", "gate", "sh ./check.sh && test -f gate-wrote-here.txt && ! test -f net.txt", check=True)
    code, result = merge_json(orch, tid)
    listener.close()
    assert code == 0 and result["status"] == "merged", result  # confined, the honest part of the gate passed
    assert not (orch.repo / "pwned-worktree").exists()
    assert not (orch.repo / ".orchestra" / "pwned-state").exists()
    assert not (outside / "pwned-outside").exists()
    assert "evil" not in git(orch.repo, "branch", "--list", "evil")
    # A failing gate still stops the merge.
    tid2 = orch.submit("more\n@fake write b.txt b\n@fake commit Add b")
    assert orch.work().returncode == 0
    orch.run("config", "set", "gate", "exit 3", check=True)
    _, failed = merge_json(orch, tid2)
    assert failed["status"] == "gate_failed" and failed["gate"]["exit_code"] == 3, failed


def test_unconfined_by_choice_the_gate_runs_as_the_person(orch, tmp_path: Path):
    orch.run("config", "set", "sandbox", "off", check=True)
    marker = tmp_path / "gate-ran-unconfined"
    tid = orch.submit("work\n@fake write a.txt a\n@fake commit Add a")
    assert orch.work().returncode == 0
    orch.run("config", "set", "gate", f"touch {marker}", check=True)
    _, result = merge_json(orch, tid)
    assert result["status"] == "merged" and marker.exists(), result


def test_setup_runs_confined_to_the_tasks_checkout(orch, tmp_path: Path):
    """`setup` runs in a checkout that may hold an agent's branch (a chained tester's): its scripts
    may prepare that checkout, nothing else."""
    outside = tmp_path / "outside"
    outside.mkdir()
    setup = f"echo ok > prepared.txt; echo x > {outside}/pwned; echo x > $ORCHESTRA_MAIN_WORKTREE/pwned; true"
    orch.run("config", "set", "setup", setup, check=True)
    tid = orch.submit("work\n@fake bash cat prepared.txt > seen.txt\n@fake commit Saw it")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert git(orch.repo, "show", f"{task['branch']}:seen.txt") == "ok"
    assert not (outside / "pwned").exists() and not (orch.repo / "pwned").exists()

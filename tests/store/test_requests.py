"""orchestra.store.requests: permission requests as files, where the first decision wins."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from orchestra.core import redact
from orchestra.core.errors import InvalidInput
from orchestra.store import requests

TOKEN = "ghp_" + "Qw7xYz" * 6


def ask(directory: Path, rid: str, command: str = "make deploy", attempt: int = 1, created: float = 1.0) -> dict:
    return requests.write_request(
        directory,
        {
            "id": rid,
            "task_id": "abc123",
            "attempt": attempt,
            "tool_name": "Bash",
            "input": {"command": command},
            "created_at": created,
        },
    )


def test_a_request_is_pending_until_decided_and_then_shows_the_decision(tmp_path: Path) -> None:
    d = tmp_path / "requests" / "abc123"
    ask(d, "r1", created=2.0)
    ask(d, "r2", created=1.0, attempt=2)
    assert [r["id"] for r in requests.pending(d)] == ["r2", "r1"]  # oldest first
    assert [r["id"] for r in requests.pending(d, attempt=1)] == ["r1"]
    decision, ours = requests.answer(d, "r1", requests.DENIED, message="not now")
    assert ours and decision["state"] == "denied" and decision["message"] == "not now"
    listed = {r["id"]: r for r in requests.requests(d)}
    assert listed["r1"]["state"] == "denied" and listed["r1"]["answer"]["by"] == "person"
    assert listed["r2"]["state"] == requests.PENDING
    assert [r["id"] for r in requests.pending(d)] == ["r2"]
    assert requests.requests(tmp_path / "none") == []


def test_the_first_decision_wins_and_the_second_learns_it(tmp_path: Path) -> None:
    d = tmp_path / "req"
    ask(d, "r1")
    first, ours = requests.answer(d, "r1", requests.ALLOWED, always="Bash(make deploy)")
    assert ours
    late, ours = requests.answer(d, "r1", requests.TIMED_OUT, by="server")
    assert not ours
    assert late == first and late["state"] == "allowed" and late["always"] == "Bash(make deploy)"
    assert requests.read_answer(d, "r1")["state"] == "allowed"
    assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


_ANSWERER = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    from orchestra.store import requests
    directory, who, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    state = requests.ALLOWED if who == "person" else requests.TIMED_OUT
    from pathlib import Path
    while not os.path.exists(go):
        time.sleep(0.001)
    for i in range(n):
        decision, ours = requests.answer(Path(directory), f"r{{i}}", state, by=who)
        print(json.dumps([i, ours, decision["state"], decision["by"]]), flush=True)
    """
)


def test_two_processes_answering_at_once_agree_on_one_decision(tmp_path: Path) -> None:
    """A person's answer and the server's timeout race: exactly one takes effect, and both see it."""
    d = tmp_path / "req"
    n = 40
    for i in range(n):
        ask(d, f"r{i}")
    script = tmp_path / "answer.py"
    script.write_text(_ANSWERER.format(root=str(ROOT)))
    go = tmp_path / "go"
    procs = {
        who: subprocess.Popen(
            [sys.executable, str(script), str(d), who, str(n), str(go)], stdout=subprocess.PIPE, text=True
        )
        for who in ("person", "server")
    }
    go.touch()
    seen: dict[str, dict[int, list]] = {}
    for who, proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        seen[who] = {row[0]: row[1:] for row in map(json.loads, out.splitlines())}
    for i in range(n):
        person, server = seen["person"][i], seen["server"][i]
        assert person[0] != server[0], (i, person, server)  # exactly one of them won
        assert person[1:] == server[1:]  # and both report the decision that is in force
        on_disk = requests.read_answer(d, f"r{i}")
        assert [on_disk["state"], on_disk["by"]] == person[1:]


def test_stored_input_and_messages_are_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_default", redact.Redactor([TOKEN]))
    d = tmp_path / "req"
    stored = ask(d, "r1", command=f"curl -H 'Authorization: {TOKEN}' https://x")
    assert TOKEN not in (d / "r1.json").read_text() and TOKEN not in json.dumps(stored)
    requests.answer(d, "r1", requests.DENIED, message=f"never send {TOKEN}")
    assert TOKEN not in (d / "r1.answer.json").read_text()
    assert requests.describe(requests.read_request(d, "r1")) == "Bash: curl -H 'Authorization: ***' https://x"


def test_describe_is_one_bounded_line_that_hides_neither_a_second_command_nor_the_end() -> None:
    text = requests.describe({"tool_name": "Bash", "input": {"command": "echo one\n  two"}})
    assert text == "Bash: echo one ↵ two"  # two commands, not `echo one two`
    assert (
        requests.describe({"tool_name": "Write", "input": {"file_path": "/w/a.txt", "content": "x"}})
        == "Write: /w/a.txt"
    )
    long = requests.describe({"tool_name": "Bash", "input": {"command": "echo " + "x" * 500 + "; rm -rf ~"}}, width=50)
    assert len(long) == 50 and long.startswith("Bash: echo xxx") and " … " in long and long.endswith("; rm -rf ~")


def test_always_rules_are_kept_once_each(tmp_path: Path) -> None:
    d = tmp_path / "req"
    assert requests.always_rules(d) == []
    requests.set_always_rules(d, ["Bash(make)", "Write", "Bash(make)"])
    assert requests.always_rules(d) == ["Bash(make)", "Write"]


def test_bad_decisions_and_path_like_ids_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "req"
    with pytest.raises(ValueError, match="unknown decision 'maybe'"):
        requests.answer(d, "r1", "maybe")
    for evil in ("../r1", "r1/../../x", "R1"):
        with pytest.raises(InvalidInput):
            requests.answer(d, evil, requests.ALLOWED)
        with pytest.raises(InvalidInput):
            ask(d, evil)
    assert not (tmp_path / "r1.answer.json").exists()

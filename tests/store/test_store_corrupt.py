"""A corrupt task file is never hidden: list and status name it with its path, and the scheduler never
starts a queued task it cannot read."""

from __future__ import annotations

import json

from store_helpers import populate


def test_a_queued_task_with_a_corrupt_file_is_never_started_and_is_named(orch):
    good = orch.submit("fine\n@fake write ok.txt ok")
    bad = orch.submit("will be corrupt\n@fake write bad.txt bad")
    path = orch.repo / ".orchestra" / "tasks" / f"{bad}.json"
    original = path.read_text()
    path.write_text('{"id": "' + bad + '", "prompt": ')  # the index still says queued
    work = orch.work()
    assert work.returncode == 0, work.stdout + work.stderr
    assert orch.state(good) == "succeeded"
    assert not [c for c in orch.invocations() if c["env"].get("ORCHESTRA_TASK_ID") == bad]
    status = orch.run("status", check=True)
    assert f"orchestra: warning: corrupt task file {path}" in status.stderr
    report = json.loads(orch.run("status", "--json", check=True).stdout)
    assert str(path) in report["corrupt_task_files"] and report["counts"]["queued"] == 0
    listed = orch.run("list", check=True)
    assert bad not in listed.stdout and f"corrupt task file {path}" in listed.stderr
    streamed = orch.run("list", "--json", check=True)
    assert [t["id"] for t in json.loads(streamed.stdout)] == [good]
    assert f"corrupt task file {path}" in streamed.stderr
    assert path.read_text().endswith('"prompt": '), "a corrupt file is never rewritten"
    # Repaired by hand, it is picked up again by the next scheduler.
    path.write_text(original)
    assert orch.work().returncode == 0
    assert orch.state(bad) == "succeeded"
    assert json.loads(orch.run("status", "--json", check=True).stdout)["corrupt_task_files"] == {}


def test_a_corrupt_finished_task_file_is_named_when_listing_it(orch):
    ids = populate(orch.repo, 6)
    path = orch.repo / ".orchestra" / "tasks" / f"{ids[2]}.json"
    path.write_bytes(b"\x00 not json")
    streamed = orch.run("list", "--json", check=True)
    assert len(json.loads(streamed.stdout)) == 5
    assert f"corrupt task file {path}" in streamed.stderr
    kinds = {f["kind"]: f for f in json.loads(orch.run("doctor", "--json").stdout)["findings"]}
    assert kinds["corrupt_task_file"]["subject"] == str(path)
    assert orch.run("doctor", "--fix").returncode == 1  # the file itself stays for a person
    report = json.loads(orch.run("status", "--json", check=True).stdout)
    assert str(path) in report["corrupt_task_files"] and sum(report["counts"].values()) == 5
    assert f"corrupt task file {path}" in orch.run("status", check=True).stderr

"""Contention and bad state on disk: many writers, broken files, a full disk.

Two schedulers at once: engine/test_scheduler_contention.py; many worktrees at once:
git/test_worktree_concurrency.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, make_orch, make_repo

pytestmark = pytest.mark.crash

SUBMITTERS = 16
PER_SUBMITTER = 25  # 400 submits: the contention shows; bench_submit.py measures at scale

_SUBMITTER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    from orchestra.app import Orchestra
    repo, who, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    orch = Orchestra(repo)
    while not os.path.exists(go):  # start together, so all of them contend on the lock
        time.sleep(0.005)
    for i in range(n):
        print(orch.submit(f"submitter {{who}} task {{i}}", start=False).id, flush=True)
    """
)


def test_sixteen_processes_submitting_at_once_lose_nothing(orch, tmp_path: Path):
    script = tmp_path / "submitter.py"
    script.write_text(_SUBMITTER.format(root=str(ROOT)))
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(orch.repo), str(n), str(PER_SUBMITTER), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=orch.env,
        )
        for n in range(SUBMITTERS)
    ]
    go.touch()
    printed: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        printed += out.split()
    total = SUBMITTERS * PER_SUBMITTER
    assert len(printed) == total and len(set(printed)) == total
    state = orch.repo / ".orchestra"
    files = {p.stem: json.loads(p.read_bytes()) for p in (state / "tasks").glob("*.json")}
    assert set(files) == set(printed)
    # Each submission is there exactly once, every file is whole, and the index agrees with the files.
    prompts = sorted(t["prompt"] for t in files.values())
    assert prompts == sorted(f"submitter {n} task {i}" for n in range(SUBMITTERS) for i in range(PER_SUBMITTER))
    index = json.loads((state / "index.json").read_text())
    assert set(index["tasks"]) == set(files) and not index["corrupt"]
    assert all(index["tasks"][tid]["state"] == "queued" for tid in files)
    assert not (state / "index.stale").exists()
    assert not [p.name for p in (state / "tasks").iterdir() if p.name.startswith(".")]
    for tid in printed[:: total // 50]:
        events = [json.loads(line)["event"] for line in (state / "events" / f"{tid}.jsonl").read_text().splitlines()]
        assert events == ["submitted"]
    listed = json.loads(orch.run("list", "--json", check=True).stdout)
    assert len(listed) == total


def test_garbage_and_truncated_task_files_are_reported_not_fatal(orch):
    good = orch.submit("good\n@fake write ok.txt ok")
    truncated = orch.submit("will be truncated")
    garbage = orch.submit("will be garbage")
    tasks = orch.repo / ".orchestra" / "tasks"
    whole = (tasks / f"{truncated}.json").read_bytes()
    (tasks / f"{truncated}.json").write_bytes(whole[: len(whole) // 2])
    (tasks / f"{garbage}.json").write_bytes(b"\x00\xff not json at all")
    before = {p.name: p.read_bytes() for p in tasks.iterdir()}
    (orch.repo / ".orchestra" / "index.json").write_text("{ garbage")

    for bad in (truncated, garbage):
        for args in (("show", bad), ("cancel", bad), ("retry", bad), ("logs", bad)):
            proc = orch.run(*args)
            assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
            assert proc.stderr.startswith(f"orchestra: error: corrupt task file {tasks / bad}.json")
            assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    listed = orch.run("list", check=True)
    assert good in listed.stdout and truncated not in listed.stdout
    assert f"{truncated}.json" in listed.stderr and f"{garbage}.json" in listed.stderr
    assert f"corrupt task file {tasks / garbage}.json" in orch.run("status", check=True).stderr
    work = orch.work()
    assert work.returncode == 0, work.stderr
    assert orch.state(good) == "succeeded"
    assert orch.submit("still works")
    for name, data in before.items():
        if name.startswith((truncated, garbage)):
            assert (tasks / name).read_bytes() == data  # reported, never rewritten or deleted


def test_state_dir_that_is_a_file_is_a_clear_error(orch):
    (orch.repo / ".orchestra").write_text("not a directory")
    for args in (("status",), ("list",), ("submit", "--no-start", "x"), ("worker", "--until-idle")):
        proc = orch.run(*args)
        assert proc.returncode == 1
        assert (
            proc.stderr
            == f"orchestra: error: {orch.repo / '.orchestra'} is not a directory; move it away so orchestra can keep its state there\n"
        )
    assert (orch.repo / ".orchestra").read_text() == "not a directory"


def _without_dac_override() -> list[str]:
    """A prefix that makes permission bits bind, even for root (which ignores them)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root, where chmod 000 does not block reads, and setpriv is missing")
    probe = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE: {probe.stderr.decode().strip()}")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_unreadable_state_dir_is_a_clear_error_and_nothing_changes(orch):
    prefix = _without_dac_override()
    tid = orch.submit("before")
    state = orch.repo / ".orchestra"
    task_file = state / "tasks" / f"{tid}.json"
    before = task_file.read_bytes()
    state.chmod(0o000)
    try:
        for args in (
            ("status",),
            ("show", tid),
            ("list", "--json"),
            ("submit", "--no-start", "x"),
            ("cancel", tid),
            ("worker", "--until-idle"),
        ):
            proc = subprocess.run(
                [*prefix, sys.executable, "-m", "orchestra", *args],
                cwd=orch.repo,
                env=orch.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 1, (args, proc.stderr)
            assert (
                proc.stderr
                == f"orchestra: error: cannot use {state}: permission denied (it must be readable and writable by you)\n"
            )
    finally:
        state.chmod(0o700)
    assert task_file.read_bytes() == before
    assert orch.state(tid) == "queued"


def test_full_disk_during_writes_keeps_the_previous_state(orch, monkeypatch):
    """ENOSPC injected into every write: each command fails cleanly and leaves the files as they were."""
    from orchestra.app import Orchestra
    from orchestra.core.errors import StorageError
    from orchestra.store import files as fileio

    tid = orch.submit("precious")
    core = Orchestra(orch.repo)
    state = core.paths.state
    snapshot = {p: p.read_bytes() for p in state.rglob("*") if p.is_file() and p.suffix != ".lock"}

    real_write = os.write

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "write", full)
    for act in (lambda: core.cancel(tid), lambda: core.set_priority(tid, 5), lambda: core.submit("new", start=False)):
        with pytest.raises(StorageError) as info:
            act()
        assert "No space left on device" in str(info.value)
    monkeypatch.setattr(fileio.os, "write", real_write)
    after = {p: p.read_bytes() for p in state.rglob("*") if p.is_file() and p.suffix != ".lock"}
    assert after == snapshot  # no temp file left, no file changed, no stale-index marker
    assert core.get(tid).state == "queued" and core.get(tid).priority == 0
    assert core.cancel(tid).state == "cancelled"  # and once there is room again, it works


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A 2 MB tmpfs: a real full disk. Needs root (mount); skipped otherwise."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_really_full_disk_through_the_cli(tiny_fs: Path, tmp_path: Path):
    repo = make_repo(tiny_fs / "repo")
    o = make_orch(repo, tmp_path)
    try:
        tid = o.submit("precious")
        task_file = repo / ".orchestra" / "tasks" / f"{tid}.json"
        before = task_file.read_bytes()
        filler = tiny_fs / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # fill the disk to the last byte
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        for args in (("cancel", tid), ("priority", tid, "7"), ("submit", "--no-start", "long " * 2000)):
            proc = o.run(*args)
            assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
            assert proc.stderr.startswith("orchestra: error: ") and "No space left on device" in proc.stderr, (
                proc.stderr
            )
            assert proc.stderr.count("\n") == 1
        assert task_file.read_bytes() == before
        assert not [p for p in (repo / ".orchestra").rglob("*.tmp")]
        assert o.show(tid)["state"] == "queued"  # reading still works on a full disk
        filler.unlink()
        assert o.run("cancel", tid).returncode == 0
        assert o.show(tid)["state"] == "cancelled"
    finally:
        o.close()

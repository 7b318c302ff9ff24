"""Bounded work stays bounded (break 9): logs, the log resource and review material are read in
chunks or from the tail with fixed memory, and the dependents of a cancelled task fail in one batch
while an unrelated urgent task starts at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hardening_helpers import git, mcp_read, mcp_run, plant_task, plant_tasks

MB = 1024 * 1024
TOOL_OUTPUT = "x" * 60_000


def write_transcript(path: Path, megabytes: int) -> int:
    """A stream-json transcript of about `megabytes` MB: big tool results between small turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = 0
    with open(path, "w") as fh:
        fh.write(json.dumps({"type": "system", "subtype": "init", "session_id": "s1", "model": "m"}) + "\n")
        n = 0
        while fh.tell() < megabytes * MB:
            n += 1
            fh.write(
                json.dumps(
                    {
                        "type": "assistant",
                        "message": {
                            "id": f"m{n}",
                            "content": [
                                {"type": "tool_use", "id": f"t{n}", "name": "Bash", "input": {"command": f"step {n}"}}
                            ],
                        },
                    }
                )
                + "\n"
            )
            fh.write(
                json.dumps(
                    {
                        "type": "user",
                        "message": {
                            "content": [
                                {"type": "tool_result", "tool_use_id": f"t{n}", "content": f"output {n} " + TOOL_OUTPUT}
                            ]
                        },
                    }
                )
                + "\n"
            )
            lines += 2
        fh.write(
            json.dumps(
                {
                    "type": "assistant",
                    "message": {"id": "last", "content": [{"type": "text", "text": "THE VERY LAST WORDS"}]},
                }
            )
            + "\n"
        )
        fh.write(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": False,
                    "num_turns": n,
                    "result": "done",
                    "total_cost_usd": 0.5,
                    "session_id": "s1",
                }
            )
            + "\n"
        )
    return lines + 3


_PEAK_PROBE = """
import atexit, os, runpy, sys
def report():
    with open("/proc/self/status") as fh:
        peak = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_FILE"], "w") as out:
        out.write(peak)
atexit.register(report)
sys.argv = ["orchestra", *sys.argv[1:]]
runpy.run_module("orchestra", run_name="__main__")
"""


def run_measured(orch, *args: str) -> tuple[int, int, float]:
    """`orchestra args...` with stdout thrown away: (exit code, peak RSS in MB from VmHWM, seconds)."""
    peak_file = orch.repo.parent / "peak.txt"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, *args],
        cwd=orch.repo,
        env=dict(orch.env, PEAK_FILE=str(peak_file)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, int(peak_file.read_text()) // 1024, time.monotonic() - started


def test_logs_of_a_big_transcript_stream_with_fixed_memory(orch):
    plant_task(orch.repo, "small1", state="succeeded")
    plant_task(orch.repo, "big1", state="succeeded")
    write_transcript(orch.repo / ".orchestra" / "logs" / "small1.jsonl", 1)
    lines = write_transcript(orch.repo / ".orchestra" / "logs" / "big1.jsonl", 48)
    size = (orch.repo / ".orchestra" / "logs" / "big1.jsonl").stat().st_size
    _, small_rss, _ = run_measured(orch, "logs", "small1")
    for args in (("logs", "big1"), ("logs", "big1", "--raw"), ("logs", "big1", "--follow")):
        code, rss, took = run_measured(orch, *args)
        print(
            f"orchestra {' '.join(args)} on {size / MB:.0f} MB: {took:.1f}s, peak RSS {rss} MB ({small_rss} MB for 1 MB)"
        )
        assert code == 0
        assert rss - small_rss < 20, (args, rss, small_rss)  # a whole read costs the file's size, and more
    # All of it is shown, not the first chunk: the last turn and the result are there.
    out = orch.run("logs", "big1", check=True).stdout
    assert "THE VERY LAST WORDS" in out and "✓ success" in out
    assert out.count("→ Bash: step") == (lines - 3) // 2
    raw = orch.run("logs", "big1", "--raw", check=True).stdout
    assert len(raw.encode()) == size


def test_the_mcp_log_resource_reads_the_tail_with_fixed_memory(orch):
    orch.run("config", "set", "autostart", "false", check=True)
    plant_task(orch.repo, "big1", state="succeeded")
    write_transcript(orch.repo / ".orchestra" / "logs" / "big1.jsonl", 64)
    peaks: list[int] = []

    def serve_peak_mb() -> int:
        for pid in os.listdir("/proc"):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"serve" in cmd and os.readlink(f"/proc/{pid}/cwd") == str(orch.repo):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            return int(line.split()[1]) // 1024
            except (OSError, ValueError):
                continue
        raise AssertionError("no serve process")

    async def scenario(session):
        peaks.append(serve_peak_mb())
        started = time.monotonic()
        text = await mcp_read(session, "orchestra://tasks/big1/log")
        took = time.monotonic() - started
        peaks.append(serve_peak_mb())
        print(f"log resource of 64 MB: {took:.1f}s, serve peak RSS {peaks[0]} -> {peaks[1]} MB")
        assert "THE VERY LAST WORDS" in text and text.startswith("(earlier transcript omitted)")
        assert len(text) <= 200_100

    mcp_run(orch, scenario)
    assert peaks[1] - peaks[0] < 20, peaks


def test_review_material_of_a_big_diff_takes_fixed_memory(orch, tmp_path: Path):
    base = git(orch.repo, "rev-parse", "HEAD")
    big = orch.repo / "big.txt"
    with open(big, "w") as fh:
        for i in range(600_000):
            fh.write(f"line {i} of a very large generated file that a reviewer is asked to read\n")
    git(orch.repo, "add", "big.txt")
    git(orch.repo, "commit", "-qm", "a big change")
    head = git(orch.repo, "rev-parse", "HEAD")
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestra.git.review import review_material\n"
        "def peak():\n"
        "    return int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:'))) // 1024\n"
        "before = peak()\n"
        "text = review_material(Path(sys.argv[1]), sys.argv[2], sys.argv[3], 'branch x')\n"
        "print(len(text), before, peak())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(orch.repo), base, head],
        env=orch.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    chars, before, after = map(int, proc.stdout.split())
    size = big.stat().st_size // MB
    print(f"review material of a {size} MB diff: {chars} characters, peak RSS {before} -> {after} MB")
    assert chars < 60_000 and after - before < 20, (chars, before, after)


DEPENDENTS = 3_000  # benchmarks/bench_bounded.py does the 10,000


def _failed_count(repo: Path) -> int:
    try:
        index = json.loads((repo / ".orchestra" / "index.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(index["finished"]["states"].get("failed", 0))  # the running totals of ended tasks


def test_ten_thousand_dependents_of_a_cancelled_task_fail_in_batches_and_starve_nothing(orch):
    orch.run("config", "set", "autostart", "false", check=True)
    plant_tasks(
        orch.repo,
        [{"id": "blocker0"}]
        + [{"id": f"dep{i:05d}", "depends_on": ["blocker0"], "created_at": 2.0 + i} for i in range(DEPENDENTS)],
    )
    orch.run("cancel", "blocker0", check=True)
    urgent = orch.submit("urgent\n@fake write u.txt u", "--priority", "100")
    started = time.time()
    worker = orch.start_worker("--until-idle")
    # While the dependents are being failed, other writers still get the store lock.
    orch.wait_for(lambda: _failed_count(orch.repo) > 0, timeout=120, what="the first failed dependents")
    before = time.time()
    late = orch.submit("late\n@fake write l.txt l")
    submit_took = time.time() - before
    out, _ = worker.communicate(timeout=600)
    took = time.time() - started
    assert worker.returncode == 0, out[-2000:]
    (call,) = [c for c in orch.invocations() if c["env"].get("ORCHESTRA_TASK_ID") == urgent]
    waited = call["time"] - started
    print(
        f"urgent agent started {waited:.1f}s after the worker; a submit meanwhile took {submit_took:.1f}s; "
        f"{DEPENDENTS} dependents failed, the worker took {took:.1f}s"
    )
    # Nothing starves, judged by order, not by the clock: the urgent task was claimed before the first
    # dependent was failed (it was minutes behind them: 21 dependents failed per pass, one pass at a time).
    events = orch.repo / ".orchestra" / "events"

    def times(task_id: str, event: str) -> list[float]:
        lines = (events / f"{task_id}.jsonl").read_text().splitlines()
        return [e["ts"] for e in map(json.loads, lines) if e["event"] == event]

    first_failed = min(min(times(f"dep{i:05d}", "finished")) for i in range(0, DEPENDENTS, 97))
    assert min(times(urgent, "claimed")) <= first_failed  # claimed for a slot before any dependent failed
    assert orch.state(urgent) == "succeeded" and orch.state(late) == "succeeded"
    tasks = orch.repo / ".orchestra" / "tasks"
    failed = [json.loads(p.read_text()) for p in tasks.glob("dep*.json")]
    assert len(failed) == DEPENDENTS and {s["state"] for s in failed} == {"failed"}
    assert {s["error"] for s in failed} == {"dependency blocker0 cancelled: cancelled"}
    # The scheduler's log names a few and counts the rest.
    assert out.count(" failed: dependency blocker0") <= 20
    assert f"and {DEPENDENTS - 20} more queued tasks failed the same way" in out

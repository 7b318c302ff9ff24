#!/usr/bin/env python3
"""Bounded work at the sizes of the issue: peak memory and time of reading a huge transcript and a huge
diff, and of failing 10,000 dependents of a cancelled task while an urgent task waits.

    python benchmarks/bench_bounded.py                 # 500 MB transcript, 200 MB diff, 10,000 dependents
    python benchmarks/bench_bounded.py --quick         # 100 MB, 50 MB, 3,000
    python benchmarks/bench_bounded.py --only logs     # one part: logs, review or dependents

Peak memory is the process's own high-water mark (VmHWM in /proc/self/status, read at exit),
so nothing of the parent it was started from is counted. Not part of run_all.py: it writes
hundreds of megabytes and takes minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FAKE_CLAUDE, PYTHON, BenchError, bench_env, make_repo, run_git, workdir

MB = 1024 * 1024

_PEAK = """
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

_REVIEW = """
import sys
from pathlib import Path
from orchestra.git.review import review_material
def peak():
    return int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:'))) // 1024
before = peak()
text = review_material(Path(sys.argv[1]), sys.argv[2], sys.argv[3], 'branch big')
print(len(text), before, peak())
"""


def orchestra_peak(repo: Path, env: dict[str, str], *args: str) -> tuple[float, int]:
    """Seconds and peak RSS (MB) of `orchestra args...`, its output thrown away."""
    peak = repo.parent / "peak.txt"
    started = time.monotonic()
    proc = subprocess.run(
        [PYTHON, "-c", _PEAK, *args],
        cwd=repo,
        env=dict(env, PEAK_FILE=str(peak)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchError(f"orchestra {' '.join(args)} failed: {proc.stderr.strip()}")
    return time.monotonic() - started, int(peak.read_text()) // 1024


def plant(repo: Path, task_id: str, **fields: object) -> None:
    head = run_git(repo, "rev-parse", "HEAD")
    data = {
        "id": task_id,
        "prompt": "planted",
        "role": "generalist",
        "title": "planted",
        "base_ref": "HEAD",
        "base_sha": head,
        "branch": f"orchestra/{task_id}-planted",
        "state": "queued",
        "schema_version": 2,
        "created_at": 1.0,
    }
    data.update(fields)
    tasks = repo / ".orchestra" / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / f"{task_id}.json").write_text(json.dumps(data))
    (repo / ".orchestra" / "index.stale").touch()


def write_transcript(path: Path, megabytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    output = "x" * 60_000
    with open(path, "w") as fh:
        fh.write(json.dumps({"type": "system", "subtype": "init", "session_id": "s", "model": "m"}) + "\n")
        n = 0
        while fh.tell() < megabytes * MB:
            n += 1
            use = {"type": "tool_use", "id": f"t{n}", "name": "Bash", "input": {"command": f"step {n}"}}
            fh.write(json.dumps({"type": "assistant", "message": {"id": f"m{n}", "content": [use]}}) + "\n")
            res = {"type": "tool_result", "tool_use_id": f"t{n}", "content": f"output {n} {output}"}
            fh.write(json.dumps({"type": "user", "message": {"content": [res]}}) + "\n")
        fh.write(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "done"}) + "\n")


def bench_logs(tmp: Path, megabytes: int) -> None:
    repo = make_repo(tmp / "logs-repo", files=1)
    env = bench_env(tmp, FAKE_CLAUDE)
    plant(repo, "small1", state="succeeded")
    plant(repo, "big1", state="succeeded")
    write_transcript(repo / ".orchestra" / "logs" / "small1.jsonl", 1)
    write_transcript(repo / ".orchestra" / "logs" / "big1.jsonl", megabytes)
    size = (repo / ".orchestra" / "logs" / "big1.jsonl").stat().st_size / MB
    _, small = orchestra_peak(repo, env, "logs", "small1")
    print(f"== orchestra logs of a {size:.0f} MB transcript (1 MB transcript: peak {small} MB)")
    for args in (("logs", "big1"), ("logs", "big1", "--raw"), ("logs", "big1", "--follow")):
        took, peak = orchestra_peak(repo, env, *args)
        print(f"   orchestra {' '.join(args):<24} {took:7.1f} s   peak RSS {peak:4d} MB")


def bench_review(tmp: Path, megabytes: int) -> None:
    repo = make_repo(tmp / "review-repo", files=1)
    base = run_git(repo, "rev-parse", "HEAD")
    line = "a line of a very large generated file that a reviewer is asked to read, numbered {}\n"
    with open(repo / "big.txt", "w") as fh:
        i = 0
        while fh.tell() < megabytes * MB:
            fh.write(line.format(i))
            i += 1
    run_git(repo, "add", "big.txt")
    run_git(repo, "commit", "-q", "-m", "a big change")
    head = run_git(repo, "rev-parse", "HEAD")
    started = time.monotonic()
    proc = subprocess.run(
        [PYTHON, "-c", _REVIEW, str(repo), base, head],
        env=bench_env(tmp, FAKE_CLAUDE),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchError(f"review material failed: {proc.stderr.strip()}")
    chars, before, after = map(int, proc.stdout.split())
    print(f"== review material of a {megabytes} MB diff")
    print(
        f"   {time.monotonic() - started:7.1f} s   peak RSS {before} MB after imports -> {after} MB; "
        f"prompt part {chars} characters"
    )


def bench_dependents(tmp: Path, n: int) -> None:
    repo = make_repo(tmp / "deps-repo", files=1)
    env = bench_env(tmp, FAKE_CLAUDE)
    env["FAKE_CLAUDE_LOG"] = str(tmp / "fake.jsonl")
    for i in range(n):
        plant(repo, f"dep{i:05d}", depends_on=["blocker0"], created_at=2.0 + i)
    plant(repo, "blocker0")
    subprocess.run([PYTHON, "-m", "orchestra", "config", "set", "autostart", "false"], cwd=repo, env=env, check=True)
    subprocess.run([PYTHON, "-m", "orchestra", "cancel", "blocker0"], cwd=repo, env=env, check=True)
    urgent = subprocess.run(
        [PYTHON, "-m", "orchestra", "submit", "--no-start", "--priority", "100", "urgent\n@fake write u.txt u"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    started = time.time()
    proc = subprocess.run(
        [PYTHON, "-m", "orchestra", "worker", "--until-idle"], cwd=repo, env=env, capture_output=True, text=True
    )
    took = time.time() - started
    if proc.returncode != 0:
        raise BenchError(f"worker failed: {proc.stderr[-2000:]}")
    calls = [json.loads(line) for line in (tmp / "fake.jsonl").read_text().splitlines()]
    (call,) = [c for c in calls if c["env"].get("ORCHESTRA_TASK_ID") == urgent]
    print(f"== {n} queued dependents of a cancelled task, and one priority-100 task")
    print(f"   the urgent agent started {call['time'] - started:.1f} s after the worker; the worker took {took:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sizes.")
    parser.add_argument("--only", choices=["logs", "review", "dependents"], help="Run one part.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory.")
    args = parser.parse_args()
    with workdir(keep=args.keep, prefix="orchestra-bounded-") as tmp:
        if args.only in (None, "logs"):
            bench_logs(tmp, 100 if args.quick else 500)
        if args.only in (None, "review"):
            bench_review(tmp, 50 if args.quick else 200)
        if args.only in (None, "dependents"):
            bench_dependents(tmp, 3000 if args.quick else 10_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())

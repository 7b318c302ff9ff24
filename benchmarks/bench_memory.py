#!/usr/bin/env python3
"""Scheduler memory with 16 agents running: peak RSS of the scheduler process itself.

The scheduler (`orchestra worker -j 16`) runs 16 fake agents that sleep; the
benchmark samples /proc/<pid>/status (VmRSS, VmHWM) of the scheduler and counts
live agents (by their ORCHESTRA_TASK_ID marker) until every task has finished,
then reads the high-water mark before stopping the scheduler.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    FAKE_CLAUDE,
    PYTHON,
    BenchError,
    Result,
    agent_pids,
    base_parser,
    bench_env,
    expect_all_succeeded,
    make_repo,
    orchestra_argv,
    pick,
    run_main,
    status_counts,
    stop,
    submit,
    workdir,
)

TARGET_MB = 80.0


def vm_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def run(args: argparse.Namespace) -> list[Result]:
    n = args.n or pick(args, 16, 16, 2)
    seconds = args.seconds or pick(args, 6.0, 4.0, 1.0)
    with workdir(args.keep) as tmp:
        repo = make_repo(tmp / "repo")
        env = bench_env(tmp, FAKE_CLAUDE)
        for i in range(n):
            submit(repo, env, f"Agent {i}.\n@fake sleep {seconds}\n@fake write agent-{i}.txt done\n")
        worker = subprocess.Popen(
            orchestra_argv("worker", "-j", str(n)),
            cwd=repo,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        peak_agents = 0
        peak_rss = 0
        hwm = 0
        try:
            deadline = time.monotonic() + seconds * 4 + 60
            while True:
                if worker.poll() is not None:
                    raise BenchError(
                        f"the scheduler exited early ({worker.returncode}): {worker.stderr.read().decode()[-800:]}"
                    )
                vm = vm_kb(worker.pid)
                peak_rss = max(peak_rss, vm.get("VmRSS", 0))
                hwm = max(hwm, vm.get("VmHWM", 0))
                peak_agents = max(peak_agents, len(agent_pids(repo, live_only=True)))
                counts = status_counts(repo, env)
                if counts.get("succeeded", 0) + counts.get("failed", 0) >= n:
                    hwm = max(hwm, vm_kb(worker.pid).get("VmHWM", 0))
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"tasks did not finish in time: {counts}")
                time.sleep(0.1)
        finally:
            stop(worker)
        expect_all_succeeded(repo, env, n)
    baseline = subprocess.run(
        [PYTHON, "-c", "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if peak_agents < n:
        raise BenchError(f"only {peak_agents} of {n} agents ran at the same time; raise --seconds")
    mb = hwm / 1024
    details = [
        f"{n} agents at once (fixtures/fake_claude `@fake sleep {seconds:g}`), scheduler = `orchestra worker -j {n}`",
        f"scheduler VmHWM {mb:.1f} MB, highest VmRSS sampled {peak_rss / 1024:.1f} MB; "
        f"a bare `python -c` peaks at {int(baseline) / 1024:.1f} MB",
        f"agents seen alive at once: {peak_agents}",
    ]
    return [
        Result(
            f"scheduler memory, {n} agents running",
            f"{mb:.1f} MB",
            mb,
            TARGET_MB,
            " MB",
            details,
            judged=not args.check_only,
        )
    ]


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, help="Agents at once (default 16).")
    p.add_argument("--seconds", type=float, help="How long each agent sleeps (default 6; quick 4).")
    return p


if __name__ == "__main__":
    run_main(run, parser())

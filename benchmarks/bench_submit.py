#!/usr/bin/env python3
"""Submit throughput under 16 concurrent submitters, and the integrity of what they made.

16 submitters each run `orchestra submit --no-start` 25 times in a row (a fresh
process per submit, as people and scripts do), all at the same time. The figure
is tasks per second of wall time; then every id is checked to be unique, the
store to hold exactly those tasks, and every task file to load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    INSTANT_CLAUDE,
    PYTHON,
    BenchError,
    Result,
    base_parser,
    bench_env,
    children_cpu,
    make_repo,
    median,
    pick,
    run_main,
    submit,
    workdir,
)


def run(args: argparse.Namespace) -> list[Result]:
    submitters = args.submitters or pick(args, 16, 16, 4)
    each = args.n or pick(args, 25, 8, 2)
    total = submitters * each
    with workdir(args.keep) as tmp:
        repo = make_repo(tmp / "repo")
        env = bench_env(tmp, INSTANT_CLAUDE)
        ids: list[str] = []
        latencies: list[float] = []
        errors: list[str] = []
        guard = threading.Lock()
        start = threading.Barrier(submitters)

        def submitter(k: int) -> None:
            start.wait()
            for i in range(each):
                t0 = time.perf_counter()
                try:
                    task_id = submit(repo, env, f"Submitter {k}, task {i}.")
                except BenchError as exc:
                    with guard:
                        errors.append(str(exc))
                    return
                with guard:
                    latencies.append(time.perf_counter() - t0)
                    ids.append(task_id)

        threads = [threading.Thread(target=submitter, args=(k,)) for k in range(submitters)]
        cpu0 = children_cpu()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        cpu = children_cpu() - cpu0
        cpu0 = children_cpu()
        for _ in range(5):
            subprocess.run([PYTHON, "-c", "pass"], env=env, check=True)
        bare_cpu = (children_cpu() - cpu0) / 5
        if errors:
            raise BenchError(f"{len(errors)} submitter(s) failed; first: {errors[0]}")
        from orchestra.store.paths import Paths
        from orchestra.store.tasks import Store

        store = Store(Paths(root=repo))
        on_file = sorted(p.stem for p in (repo / ".orchestra" / "tasks").glob("*.json"))
        indexed = store.summaries()
        loaded = [store.load(i) for i in on_file]  # raises on any unreadable file
        problems = []
        if len(ids) != total or len(set(ids)) != total:
            problems.append(f"{len(ids)} ids printed, {len(set(ids))} unique, expected {total}")
        if sorted(ids) != on_file:
            problems.append(f"{len(on_file)} task files do not match the {len(ids)} printed ids")
        if sorted(indexed) != on_file:
            problems.append(f"the index lists {len(indexed)} tasks, {len(on_file)} files on disk")
        if any(t.state != "queued" for t in loaded):
            problems.append("some tasks are not queued")
        if problems:
            raise BenchError("; ".join(problems))
    rate = total / elapsed
    latencies.sort()
    details = [
        f"{submitters} submitters x {each} submits (one `orchestra submit --no-start` process each): "
        f"{total} tasks in {elapsed:.2f} s",
        f"latency per submit: median {median(latencies) * 1000:.0f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95) - 1] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms",
        f"CPU per submit: {cpu / total * 1000:.0f} ms (a bare `python -c pass`: {bare_cpu * 1000:.0f} ms); "
        f"{os.cpu_count()} CPUs can do at most {os.cpu_count() / (cpu / total):.0f} submits/s at that cost",
        f"integrity: {total} unique ids, {total} task files, index agrees, every file loads",
    ]
    return [
        Result(
            f"submit throughput, {submitters} concurrent submitters",
            f"{rate:.1f} tasks/s",
            rate,
            None,
            "",
            details,
            judged=not args.check_only,
        )
    ]


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--submitters", type=int, help="Concurrent submitters (default 16).")
    p.add_argument("--n", type=int, help="Submits per submitter (default 25; quick 8).")
    return p


if __name__ == "__main__":
    run_main(run, parser())

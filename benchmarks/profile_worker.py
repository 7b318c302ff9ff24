#!/usr/bin/env python3
"""Where the scheduler's time goes: a wall-clock sampling profile of every thread.

Runs the same work as bench_overhead's orchestra arm, but with the scheduler in
this process, and samples all threads' stacks every millisecond (py-spy is not
installed here; this is the same idea). For each sample it records the innermost
orchestra function and the innermost function of any kind, and prints the share
of runner-thread time spent in each. Not part of run_all: a tool for finding fixes.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import INSTANT_CLAUDE, ROOT, make_repo, workdir


def sample(stop: threading.Event, interval: float, out: dict[str, collections.Counter[str]]) -> None:
    me = threading.get_ident()
    names = {}
    while not stop.is_set():
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            if ident not in names:
                names[ident] = next((t.name for t in threading.enumerate() if t.ident == ident), "?")
            kind = "main" if names[ident] == "MainThread" else "runner"
            leaf = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
            own = None
            stack = []
            f = frame
            while f is not None:
                fn = f.f_code.co_filename
                if "/orchestra/" in fn and own is None:
                    own = f"{Path(fn).name}:{f.f_code.co_name}"
                if "/orchestra/" in fn:
                    stack.append(f.f_code.co_name)
                f = f.f_back
            out[kind + " leaf"][leaf] += 1
            out[kind + " orchestra"][own or "-"] += 1
            out[kind + " path"][" < ".join(stack[:3])] += 1
        time.sleep(interval)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("-j", "--jobs", type=int, default=4)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    with workdir() as tmp:
        repo = make_repo(tmp / "repo")
        os.environ["HOME"] = str(tmp)
        os.environ["ORCHESTRA_CLAUDE"] = str(INSTANT_CLAUDE)
        sys.path.insert(0, str(ROOT))
        from orchestra.app import Orchestra

        orch = Orchestra(repo)
        for i in range(args.n):
            orch.submit(f"Write the benchmark file.\nTask {i}.")
        sched = orch.scheduler(max_concurrent=args.jobs, until_idle=True, log=lambda m: None)
        counters: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(stop, 0.001, counters), daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        sched.run()
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
        done = sum(1 for s in orch.store.summaries().values() if s["state"] == "succeeded")
        print(f"{done}/{args.n} succeeded in {elapsed:.2f} s ({elapsed / args.n * 1000:.1f} ms/task)")
        for key in sorted(counters):
            total = sum(counters[key].values())
            print(f"\n-- {key} ({total} samples)")
            for name, count in counters[key].most_common(args.top):
                print(f"{count / total * 100:5.1f}%  {name}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Run every orchestra benchmark in one go and print (optionally write) the figures.

    python benchmarks/run_all.py                     # full sizes (a few minutes)
    python benchmarks/run_all.py --quick             # smaller sizes
    python benchmarks/run_all.py --check-only        # tiny sizes: do the scripts work?
    python benchmarks/run_all.py --results benchmarks/RESULTS.md

Exit status: 0 when every benchmark ran (a missed target is printed as MISSED,
not an error), 1 when any benchmark's own work failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_history
import bench_memory
import bench_overhead
import bench_parallel
import bench_status
import bench_submit
from common import ROOT, BenchError, Result

BENCHMARKS = {
    "overhead": bench_overhead,
    "status": bench_status,
    "parallel": bench_parallel,
    "memory": bench_memory,
    "submit": bench_submit,
    "history": bench_history,
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {git}, {platform.system()} {platform.release()}"


def load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def markdown(results: list[Result], header: str, mode: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Measured {header}.",
        f"Mode: {mode}. Command: `python benchmarks/run_all.py{'' if mode == 'full' else ' --' + mode}`.",
        "",
        "| benchmark | figure | target | verdict |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.figure} | {r.target_text()} | {r.verdict} |")
    lines.append("")
    for r in results:
        if r.details:
            lines.append(f"## {r.name}")
            lines.append("")
            lines.extend(f"    {d}" for d in r.details)
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description="Run all orchestra benchmarks.")
    p.add_argument("--quick", action="store_true", help="Smaller sizes.")
    p.add_argument("--check-only", action="store_true", help="Tiny sizes; targets are not judged.")
    p.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="Run only these (repeatable).")
    p.add_argument("--results", type=Path, help="Write the figures as Markdown to this file.")
    p.add_argument("--keep", action="store_true", help="Keep the temp directories.")
    args = p.parse_args()
    mode = "check-only" if args.check_only else "quick" if args.quick else "full"
    header = f"{datetime.date.today().isoformat()} on {machine()}"
    print(f"orchestra benchmarks ({mode}) from {ROOT}\n{header}\n")
    results: list[Result] = []
    failed = []
    for name in args.only or list(BENCHMARKS):
        module = BENCHMARKS[name]
        bench_args = module.parser().parse_args(
            (["--quick"] if args.quick else [])
            + (["--check-only"] if args.check_only else [])
            + (["--keep"] if args.keep else [])
        )
        before = load()
        print(f"-- {name} (load average before: {before})", flush=True)
        t0 = time.perf_counter()
        try:
            out = module.run(bench_args)
        except BenchError as exc:
            print(f"== {name}: ERROR: {exc}", flush=True)
            failed.append(name)
            continue
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        if out:
            out[0].details.append(
                f"(load average before: {before}, after: {load()}; took {time.perf_counter() - t0:.0f} s)"
            )
        for r in out:
            r.print()
        results.extend(out)
        print(flush=True)
    missed = [r.name for r in results if r.verdict == "MISSED"]
    print(
        f"{len(results)} figure(s); missed targets: {', '.join(missed) if missed else 'none'}"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    if args.results:
        args.results.write_text(markdown(results, header, mode) + "\n")
        print(f"wrote {args.results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`orchestra status` and `orchestra list --json` with a big history: median whole-process time.

The history is a real store: task files written with the store's own serialisation
under the store lock (one fsync-free write per task instead of one index rewrite
per task, which would take minutes at 10,000), an event log per task, then the
index rebuilt by the store itself, which loads and validates every file. Each
command is timed as a fresh process, interleaved with `python -c pass` as the
baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
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
    finished_task_file,
    make_repo,
    median,
    orchestra_argv,
    pick,
    run_git,
    run_main,
    timed,
    workdir,
)

STATUS_TARGET_MS = 150.0
# Imports that would make every command slow; they must stay out of `status`.
HEAVY = (
    *("git", "rich", "mcp", "pydantic", "anyio", "httpx", "filelock", "orchestra.agent.transcript"),
    *("orchestra.engine.workflows", "orchestra.executors.local", "tomllib", "hashlib", "socket"),
)


def populate(repo: Path, n: int) -> None:
    """n finished tasks, as a long-lived repository would have them."""
    from orchestra.core.task import new_task_id
    from orchestra.store.paths import Paths
    from orchestra.store.tasks import Store

    paths = Paths(root=repo)
    paths.ensure()
    store = Store(paths)
    base = run_git(repo, "rev-parse", "HEAD")
    t0 = 1_750_000_000.0
    ids: set[str] = set()
    with store.locked():
        for i in range(n):
            task_id = new_task_id()
            while task_id in ids:
                task_id = new_task_id()
            ids.add(task_id)
            finished_task_file(paths, task_id, i, base, t0 + i * 60)


def heavy_imports(repo: Path, env: dict[str, str]) -> tuple[list[str], list[tuple[int, str]]]:
    """Heavy modules `status` imports, and its slowest imports (cumulative µs)."""
    _, proc = timed([PYTHON, "-X", "importtime", "-m", "orchestra", "status"], cwd=repo, env=env)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), m.group(4), len(m.group(3))))
    loaded = [name for _, name, _ in rows]
    heavy = sorted({h for h in HEAVY for name in loaded if name == h or name.startswith(h + ".")})
    top = sorted(((cum, name) for cum, name, depth in rows if depth <= 1), reverse=True)[:6]
    return heavy, top


def run(args: argparse.Namespace) -> list[Result]:
    n = args.n or pick(args, 10_000, 10_000, 300)
    runs = args.runs or pick(args, 15, 7, 3)
    with workdir(args.keep) as tmp:
        repo = make_repo(tmp / "repo")
        env = bench_env(tmp, INSTANT_CLAUDE)
        import time

        t0 = time.perf_counter()
        populate(repo, n)
        gen = time.perf_counter() - t0
        commands = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "orchestra status": orchestra_argv("status"),
            "orchestra list --json": orchestra_argv("list", "--json"),
            "orchestra list": orchestra_argv("list"),
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        cpu: dict[str, list[float]] = {k: [] for k in commands}
        for argv in commands.values():  # warm the page cache once
            timed(argv, cwd=repo, env=env)
        for _ in range(runs):
            for name, argv in commands.items():
                cpu0 = children_cpu()
                elapsed, proc = timed(argv, cwd=repo, env=env)
                cpu[name].append((children_cpu() - cpu0) * 1000)
                if proc.returncode != 0:
                    raise BenchError(f"{name} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
                times[name].append(elapsed * 1000)
        _, proc = timed(orchestra_argv("list", "--json"), cwd=repo, env=env)
        listed = json.loads(proc.stdout)
        if len(listed) != n:
            raise BenchError(f"list --json printed {len(listed)} tasks, expected {n}")
        _, proc = timed(orchestra_argv("status", "--json"), cwd=repo, env=env)
        if sum(json.loads(proc.stdout)["counts"].values()) != n:
            raise BenchError("status counted the wrong number of tasks")
        heavy, top = heavy_imports(repo, env)
    med = {k: median(v) for k, v in times.items()}
    base = med["python -c pass"]
    details = [f"{n} finished tasks (generated in {gen:.1f} s), median of {runs} runs, whole process:"]
    for name, value in med.items():
        extra = "" if name == "python -c pass" else f"  (+{value - base:.0f} ms over python -c pass)"
        details.append(
            f"  {name:24s} {value:7.1f} ms  [min {min(times[name]):.0f}, max {max(times[name]):.0f}; "
            f"CPU {median(cpu[name]):.0f} ms]{extra}"
        )
    details.append("heavy imports in `status`: " + (", ".join(heavy) if heavy else "none"))
    details.append(
        "slowest top-level imports of `status` (cumulative): "
        + ", ".join(f"{name} {cum / 1000:.0f} ms" for cum, name in top)
    )
    judged = not args.check_only
    return [
        Result(
            f"orchestra status, {n} tasks",
            f"{med['orchestra status']:.0f} ms",
            med["orchestra status"],
            STATUS_TARGET_MS,
            " ms",
            details,
            judged=judged,
        ),
        Result(
            f"orchestra list --json, {n} tasks",
            f"{med['orchestra list --json']:.0f} ms",
            med["orchestra list --json"],
            None,
            " ms",
            [],
            judged=judged,
        ),
    ]


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, help="Finished tasks on file (default 10000).")
    p.add_argument("--runs", type=int, help="Timed runs of each command (default 15; quick 7).")
    return p


if __name__ == "__main__":
    run_main(run, parser())

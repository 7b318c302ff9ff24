#!/usr/bin/env python3
"""The history arm: what each command costs with 1,000, 10,000 and 100,000 finished tasks.

One repository grows through the sizes: finished task files are written directly (as months of use
leave them), then the caches are deleted and orchestra rebuilds them by itself (`status`, untimed).
At each size, every command runs as a fresh whole process, several times, interleaved with
`python -c pass`; the figure is the median CPU time (user + system, from wait4 of that one child),
and the peak RSS of `list --json` and `status`. A few live tasks are present (two recorded as
running, three queued behind them), so the hot paths have something to show.

Also measured: the scheduler's pass with nothing to start (in-process, the index re-read each pass,
and `worker --until-idle` as a whole process), the MCP server's RSS after `status_dashboard`, and
100 tasks by `submit --batch` against one `submit`. The target: from 1k to 100k, status, submit,
list --state running|queued|awaiting_input, queue and the pass grow by at most 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    INSTANT_CLAUDE,
    PYTHON,
    BenchError,
    Result,
    base_parser,
    bench_env,
    finished_task_file,
    make_repo,
    median,
    orchestra_argv,
    pick,
    run_git,
    run_main,
    workdir,
)

GROWTH_TARGET = 1.5
BATCH_TARGET = 3.0
LIST_JSON_RSS_MB = 200.0
STATUS_RSS_MB = 60.0
HOT = (
    "status",
    "submit",
    "list --state running",
    "list --state queued",
    "list --state awaiting_input",
    "queue",
)


# The measured process is forked from this small launcher, not from the benchmark: Linux keeps a
# process's peak RSS across fork and exec, so a child of the benchmark (100k tasks generated, ~100 MB)
# would report at least the benchmark's own size.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_utime + usage.ru_stime, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def measured(argv: list[str], cwd: Path, env: dict[str, str], stdin: Any = None) -> tuple[float, float, int]:
    """CPU seconds and peak RSS (MB) of one whole process, from its own rusage; and its exit status."""
    proc = subprocess.run(
        [PYTHON, "-c", _LAUNCHER, *argv],
        cwd=cwd,
        env=env,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    try:
        cpu, rss_kb, code = proc.stdout.split()
        return float(cpu), int(rss_kb) / 1024, int(code)
    except ValueError:
        raise BenchError(f"could not measure {' '.join(argv[2:])}: {proc.stderr.strip()[-400:]}") from None


def grow(repo: Path, start: int, stop: int, base: str) -> None:
    """Finished task files number `start` .. `stop - 1`, written directly (no caches touched)."""
    from orchestra.store.paths import Paths

    paths = Paths(root=repo)
    paths.ensure()
    t0 = 1_700_000_000.0
    for i in range(start, stop):
        task_id = f"h{i:07d}"  # eight characters: never one of the six-character ids orchestra makes
        finished_task_file(
            paths, task_id, i, base, t0 + i * 30, input_tokens=20_000 + i % 1000, output_tokens=500 + i % 100
        )


def add_live(repo: Path) -> list[str]:
    """Two tasks recorded as running (no agent: nothing is started) and three queued behind the first."""
    from orchestra.app import Orchestra

    core = Orchestra(repo)
    running = [core.submit(f"running {i}", start=False) for i in range(2)]
    for t in running:
        core.store.update(t.id, lambda task: task.claim(0))
    queued = [core.submit(f"queued {i}", after=[running[0].id], start=False) for i in range(3)]
    return [t.id for t in running + queued]


def end_live(repo: Path, ids: list[str]) -> None:
    """Finish the benchmark's own live tasks, so the next size starts with a quiet queue."""
    from orchestra.app import Orchestra
    from orchestra.core.task import State

    core = Orchestra(repo)
    with core.store.locked():
        for tid in ids:
            task = core.store.load(tid)
            if not task.state.final:
                task.finish(State.CANCELLED, "benchmark")
                core.store.save(task)


PASS_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from orchestra.engine.context import Context
    from orchestra.engine.scheduler import Scheduler
    ctx = Context.open(sys.argv[1])
    sched = Scheduler(ctx, max_concurrent=4, log=lambda m: None)
    for task_id, s in ctx.store.live().items():
        if s["state"] == "running":
            sched.runners[task_id] = None  # recorded as running: the pass leaves them be
    sched._pass()
    n = int(sys.argv[2])
    t0 = time.process_time()
    for _ in range(n):
        ctx.store._index_cache = None  # re-read the index each time, as after a change
        sched._pass()
    print((time.process_time() - t0) / n)
    """
)


def pass_cpu(repo: Path, env: dict[str, str], n: int = 200) -> float:
    proc = subprocess.run(
        [PYTHON, "-c", PASS_SCRIPT, str(repo), str(n)], cwd=repo, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BenchError(f"scheduler pass failed: {proc.stderr[-800:]}")
    return float(proc.stdout.strip())


MCP_SCRIPT = textwrap.dedent(
    """
    import os, sys, anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    tag = sys.argv[2]

    def server_pid():
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if f"BENCH_SERVE_TAG={tag}".encode() in fh.read().split(b"\\0"):
                        return int(name)
            except OSError:
                continue

    def hwm(pid):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    async def main():
        env = dict(os.environ, BENCH_SERVE_TAG=tag)
        params = StdioServerParameters(command=sys.executable, args=["-m", "orchestra", "serve"], env=env, cwd=sys.argv[1])
        with open(os.devnull, "w") as err:
            async with stdio_client(params, errlog=err) as (r, w), ClientSession(r, w) as session:
                await session.initialize()
                pid = server_pid()
                before = hwm(pid)
                result = await session.call_tool("status_dashboard", {})
                assert not result.is_error, result.content
                print(before, hwm(pid))

    anyio.run(main)
    """
)


def mcp_rss(repo: Path, env: dict[str, str]) -> tuple[float, float]:
    proc = subprocess.run(
        [PYTHON, "-c", MCP_SCRIPT, str(repo), uuid.uuid4().hex], cwd=repo, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BenchError(f"MCP status_dashboard failed: {proc.stderr[-800:]}")
    before, after = proc.stdout.split()
    return float(before), float(after)


def batch_file(tmp: Path, n: int = 100) -> Path:
    lines = []
    for i in range(n):
        line: dict[str, Any] = {"prompt": f"Batch task {i}: do part {i}", "key": f"t{i}"}
        if i % 10:
            line["after"] = [f"t{i - 1}"]
        if i % 4 == 1:
            line["role"] = "tester"
        lines.append(json.dumps(line))
    path = tmp / "batch.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def measure_size(
    repo: Path, env: dict[str, str], tmp: Path, n: int, runs: int, json_runs: int, warm: bool = True
) -> dict[str, dict[str, float]]:
    """Every figure at one size; the caches are rebuilt by orchestra from the task files first.

    `warm=False` (check-only) skips the untimed first run of each command: nothing is judged then.
    """
    state = repo / ".orchestra"
    for name in ("index.json", "history.jsonl"):
        (state / name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    cpu, _, code = measured(orchestra_argv("status"), repo, env)
    if code != 0:
        raise BenchError("status failed while rebuilding the caches")
    rebuild = time.perf_counter() - t0
    out: dict[str, dict[str, float]] = {"rebuild": {"cpu": cpu, "wall": rebuild}}
    # The scheduler with nothing at all to do, as a whole process (start, recover, one pass, exit).
    idle = [measured(orchestra_argv("worker", "--until-idle"), repo, env)[0] for _ in range(runs)]
    out["worker --until-idle (nothing to do)"] = {"cpu": median(idle)}
    live = add_live(repo)
    commands = {
        "python -c pass": [PYTHON, "-c", "pass"],
        "status": orchestra_argv("status"),
        "list --state running": orchestra_argv("list", "--state", "running"),
        "list --state queued": orchestra_argv("list", "--state", "queued"),
        "list --state awaiting_input": orchestra_argv("list", "--state", "awaiting_input"),
        "queue": orchestra_argv("queue"),
        "list": orchestra_argv("list"),
    }
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    submits: list[tuple[float, float]] = []
    for argv in commands.values() if warm else ():
        measured(argv, repo, env)  # warm
    for i in range(runs):
        for name, argv in commands.items():
            cpu, rss, code = measured(argv, repo, env)
            if code != 0:
                raise BenchError(f"{name} exited {code} at {n} tasks")
            samples[name].append((cpu, rss))
        cpu, rss, code = measured(orchestra_argv("submit", "--no-start", f"Bench submit {i} at {n}"), repo, env)
        if code != 0:
            raise BenchError(f"submit exited {code} at {n} tasks")
        submits.append((cpu, rss))
    samples["submit"] = submits
    for name, values in samples.items():
        out[name] = {"cpu": median([c for c, _ in values]), "rss": max(r for _, r in values)}
    out["scheduler pass (nothing to start)"] = {"cpu": pass_cpu(repo, env)}
    before, after = mcp_rss(repo, env)
    out["MCP status_dashboard"] = {"rss": after, "rss_idle": before}
    batch = batch_file(tmp)
    batch_cpu = []
    for _ in range(max(2 if warm else 1, runs // 2)):
        with open(batch) as fh:
            cpu, rss, code = measured(orchestra_argv("submit", "--no-start", "--batch", "-"), repo, env, stdin=fh)
        if code != 0:
            raise BenchError(f"submit --batch exited {code} at {n} tasks")
        batch_cpu.append(cpu)
    out["submit --batch (100 tasks)"] = {"cpu": median(batch_cpu)}
    json_samples = []
    for _ in range(json_runs):
        cpu, rss, code = measured(orchestra_argv("list", "--json"), repo, env)
        if code != 0:
            raise BenchError(f"list --json exited {code} at {n} tasks")
        json_samples.append((cpu, rss))
    out["list --json"] = {"cpu": median([c for c, _ in json_samples]), "rss": max(r for _, r in json_samples)}
    # Integrity: the streamed listing is whole JSON with every task, status counts every task.
    listing = tmp / "listing.json"
    with open(listing, "wb") as fh:
        subprocess.run(orchestra_argv("list", "--json"), cwd=repo, env=env, stdout=fh, check=True)
    with open(listing, "rb") as fh:
        listed = len(json.load(fh))
    counts = json.loads(
        subprocess.run(orchestra_argv("status", "--json"), cwd=repo, env=env, capture_output=True, check=True).stdout
    )["counts"]
    total = sum(counts.values())
    # Task files as every reader counts them: not the temp file of an atomic write (the MCP server just
    # asked may still be rewriting a task it found dead, or have been stopped in the middle of it).
    files = sum(1 for e in os.scandir(state / "tasks") if e.name.endswith(".json") and not e.name.startswith("."))
    if not (listed == total == files):
        raise BenchError(f"at {n}: list --json printed {listed}, status counts {total}, {files} task files")
    listing.unlink()
    # Leave a quiet queue for the next size: the benchmark's own live tasks end.
    queued = json.loads(
        subprocess.run(
            orchestra_argv("list", "--state", "queued", "--state", "running", "--json"),
            cwd=repo,
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    )
    end_live(repo, [t["id"] for t in queued] + live)
    return out


def run(args: argparse.Namespace) -> list[Result]:
    sizes = args.sizes or pick(args, [1_000, 10_000, 100_000], [1_000, 10_000], [50, 200])
    runs = args.runs or pick(args, 7, 5, 1)
    results: dict[int, dict[str, dict[str, float]]] = {}
    with workdir(args.keep) as tmp:
        repo = make_repo(tmp / "repo")
        env = bench_env(tmp, INSTANT_CLAUDE)
        subprocess.run(
            orchestra_argv("config", "set", "autostart", "false"), cwd=repo, env=env, check=True, capture_output=True
        )
        base = run_git(repo, "rev-parse", "HEAD")
        have = 0
        gen_notes = []
        for n in sizes:
            t0 = time.perf_counter()
            grow(repo, have, n, base)
            gen_notes.append(f"{n}: {time.perf_counter() - t0:.0f} s to write")
            have = n
            json_runs = 1 if n >= 100_000 or args.check_only else 3
            results[n] = measure_size(repo, env, tmp, n, runs, json_runs, warm=not args.check_only)
            print(f"   ... {n} done", flush=True)
    return report(results, sizes, runs, gen_notes, judged=not args.check_only)


def report(
    results: dict[int, dict[str, dict[str, float]]], sizes: list[int], runs: int, notes: list[str], judged: bool
) -> list[Result]:
    first, last = sizes[0], sizes[-1]
    names = [
        "python -c pass",
        *HOT,
        "list",
        "list --json",
        "scheduler pass (nothing to start)",
        "worker --until-idle (nothing to do)",
        "submit --batch (100 tasks)",
    ]
    head = "  " + f"{'CPU, median (ms)':36s}" + "".join(f"{n:>12,}" for n in sizes) + f"   ratio {last:,}/{first:,}"
    details = [
        f"median of {runs} whole processes per figure (list --json: 1 at 100k, else 3); CPU = user + system",
        head,
    ]
    ratios: dict[str, float] = {}
    for name in names:
        row = [results[n][name]["cpu"] * 1000 for n in sizes]
        unit = 1000 if name == "scheduler pass (nothing to start)" else 1
        cells = "".join(f"{v * unit:12.{2 if unit > 1 else 0}f}" for v in row)
        ratio = row[-1] / row[0] if row[0] else float("nan")
        ratios[name] = ratio
        label = name + (" (µs)" if unit > 1 else "")
        details.append(f"  {label:36s}{cells}   {ratio:.2f}x")
    details.append("  " + f"{'peak RSS (MB)':36s}" + "".join(f"{n:>12,}" for n in sizes))
    for name in ("status", "list --json", "MCP status_dashboard"):
        details.append(f"  {name:36s}" + "".join(f"{results[n][name]['rss']:12.1f}" for n in sizes))
    details.append(
        "  (MCP server before the call: "
        + ", ".join(f"{results[n]['MCP status_dashboard']['rss_idle']:.1f}" for n in sizes)
        + " MB)"
    )
    details.append(
        "  caches rebuilt by `status` from the task files: "
        + ", ".join(f"{n:,}: {results[n]['rebuild']['cpu']:.1f} s CPU" for n in sizes)
        + "; task files "
        + "; ".join(notes)
    )
    hot = [*HOT, "scheduler pass (nothing to start)", "worker --until-idle (nothing to do)"]
    worst = max(hot, key=lambda k: ratios[k])
    batch = {n: results[n]["submit --batch (100 tasks)"]["cpu"] / results[n]["submit"]["cpu"] for n in sizes}
    details.append(
        "  100 tasks by submit --batch vs one submit: " + ", ".join(f"{n:,}: {b:.2f}x" for n, b in batch.items())
    )
    mid = 10_000 if 10_000 in results else last
    out = [
        Result(
            f"hot paths from {first:,} to {last:,} finished tasks (worst: {worst})",
            f"{ratios[worst]:.2f}x",
            ratios[worst],
            GROWTH_TARGET,
            "x",
            details,
            judged=judged,
        ),
        Result(
            f"100 tasks by submit --batch vs one submit, {mid:,} tasks",
            f"{batch[mid]:.2f}x",
            batch[mid],
            BATCH_TARGET,
            "x",
            [],
            judged=judged,
        ),
        Result(
            f"list --json peak RSS, {last:,} tasks",
            f"{results[last]['list --json']['rss']:.0f} MB",
            results[last]["list --json"]["rss"],
            LIST_JSON_RSS_MB,
            " MB",
            [],
            judged=judged,
        ),
        Result(
            f"status / MCP status_dashboard peak RSS, {last:,} tasks",
            f"{results[last]['status']['rss']:.0f} / {results[last]['MCP status_dashboard']['rss']:.0f} MB",
            max(results[last]["status"]["rss"], results[last]["MCP status_dashboard"]["rss"]),
            STATUS_RSS_MB,
            " MB",
            [],
            judged=judged,
        ),
    ]
    return out


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], help="Comma-separated (default 1000,10000,100000)."
    )
    p.add_argument("--runs", type=int, help="Whole processes per figure (default 7; quick 5).")
    return p


if __name__ == "__main__":
    run_main(run, parser())

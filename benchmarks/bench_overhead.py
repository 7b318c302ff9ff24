#!/usr/bin/env python3
"""Orchestration overhead: N instant tasks through orchestra vs a shell loop doing the same git work.

Both arms run the same fake claude executable, at the same concurrency, in
identical fresh repositories. Per task the shell arm does exactly what a person
would script: `git worktree add -b <branch> <path> HEAD`, the fake claude in the
worktree (stdin /dev/null, stdout to a log file), `git add -A && git commit`.
The orchestra arm submits N tasks (`submit --no-start`, timed separately) and
times `orchestra worker --until-idle -j J`. The figure is worker time / shell time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    FAKE_CLAUDE,
    INSTANT_CLAUDE,
    BenchError,
    Result,
    base_parser,
    bench_env,
    children_cpu,
    expect_all_succeeded,
    make_repo,
    median,
    orchestra_argv,
    pick,
    run_git,
    run_main,
    submit,
    timed,
    workdir,
)

TARGET = 1.15

# The shell arm, one task: run by `xargs -P J`. Its inputs arrive as environment
# variables and $1; nothing is interpolated into the script text.
SHELL_TASK = r"""
set -u
i=$1
wt="$WTS/$i"
# git (2.39) races when worktrees are added concurrently ("failed to read
# .git/worktrees/<x>/commondir"), so a careful script serialises the add.
flock "$REPO/.git/bench-worktree.lock" git -C "$REPO" worktree add --quiet -b "bench/task-$i" "$wt" HEAD || exit 1
cd "$wt" || exit 1
"$CLAUDE" -p --output-format stream-json --verbose -- "$PROMPT" </dev/null >"$LOGS/$i.jsonl" 2>"$LOGS/$i.stderr" || exit 1
git add -A && git commit --quiet --no-verify -m "task $i" || exit 1
"""


def prompt_for(fake: str) -> str:
    # fixtures/fake_claude needs a directive to write its one file; instant_claude always writes one.
    return (
        "Write the benchmark file.\n@fake write bench-output.txt done\n"
        if fake == "fixtures"
        else "Write the benchmark file."
    )


def shell_arm(tmp: Path, claude: Path, prompt: str, n: int, jobs: int) -> tuple[float, float]:
    repo = make_repo(tmp / "shell-repo")
    wts, logs = tmp / "shell-wts", tmp / "shell-logs"
    wts.mkdir()
    logs.mkdir()
    env = bench_env(tmp, claude)
    env.update(
        {"REPO": str(repo), "WTS": str(wts), "LOGS": str(logs), "CLAUDE": str(claude), "PROMPT": prompt, "LC_ALL": "C"}
    )
    argv = ["xargs", "-P", str(jobs), "-n", "1", "bash", "-c", SHELL_TASK, "task"]
    cpu0 = children_cpu()
    elapsed, proc = timed(argv, cwd=repo, env=env, input="\n".join(str(i) for i in range(1, n + 1)) + "\n")
    cpu = children_cpu() - cpu0
    if proc.returncode != 0:
        raise BenchError(f"shell loop failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
    check_branches(repo, "refs/heads/bench/", n)
    return elapsed, cpu


def orchestra_arm(tmp: Path, claude: Path, prompt: str, n: int, jobs: int) -> tuple[float, float, float]:
    """(worker seconds, worker CPU seconds with its children, submit seconds)"""
    repo = make_repo(tmp / "orch-repo")
    env = bench_env(tmp, claude)
    t0 = time.perf_counter()
    for i in range(n):
        submit(repo, env, f"{prompt}\nTask {i}.")
    t_submit = time.perf_counter() - t0
    cpu0 = children_cpu()
    elapsed, proc = timed(orchestra_argv("worker", "--until-idle", "-j", str(jobs)), cwd=repo, env=env)
    cpu = children_cpu() - cpu0
    if proc.returncode != 0:
        raise BenchError(f"orchestra worker failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
    expect_all_succeeded(repo, env, n)
    check_branches(repo, "refs/heads/orchestra/", n)
    return elapsed, cpu, t_submit


def check_branches(repo: Path, prefix: str, n: int) -> None:
    """Every task left one new commit on its own branch, holding the fake's file."""
    base = run_git(repo, "rev-parse", "main")
    heads = run_git(repo, "for-each-ref", "--format=%(objectname)", prefix).split()
    if len(heads) != n or len(set(heads)) != n or base in heads:
        raise BenchError(f"expected {n} distinct task commits under {prefix}, got {len(set(heads))}")
    files = run_git(repo, "show", "--name-only", "--format=", heads[0]).split()
    if "bench-output.txt" not in files:
        raise BenchError(f"the task commit {heads[0][:12]} does not hold bench-output.txt: {files}")


def run(args: argparse.Namespace) -> list[Result]:
    n = args.n or pick(args, 100, 30, 4)
    jobs = args.jobs or pick(args, 4, 4, 2)
    repeat = args.repeat or pick(args, 3, 1, 1)
    claude = INSTANT_CLAUDE if args.fake == "instant" else FAKE_CLAUDE
    prompt = prompt_for(args.fake)
    shell_times: list[float] = []
    orch_times: list[float] = []
    shell_cpu: list[float] = []
    orch_cpu: list[float] = []
    submit_times: list[float] = []
    for r in range(repeat):
        # Alternate which arm goes first so drift on a busy machine does not favour one.
        with workdir(args.keep) as tmp:
            arms = ["shell", "orchestra"] if r % 2 == 0 else ["orchestra", "shell"]
            for arm in arms:
                if arm == "shell":
                    t, c = shell_arm(tmp, claude, prompt, n, jobs)
                    shell_times.append(t)
                    shell_cpu.append(c)
                else:
                    t, c, s = orchestra_arm(tmp, claude, prompt, n, jobs)
                    orch_times.append(t)
                    orch_cpu.append(c)
                    submit_times.append(s)
    shell_t, orch_t, sub_t = median(shell_times), median(orch_times), median(submit_times)
    ratio = orch_t / shell_t
    details = [
        f"N={n} tasks, concurrency {jobs}, fake claude: {claude.name}, {repeat} run(s) per arm, {os.cpu_count()} CPUs",
        f"shell loop:       {shell_t:6.2f} s  ({shell_t / n * 1000:.1f} ms/task)  runs: "
        + ", ".join(f"{t:.2f}" for t in shell_times),
        f"orchestra worker: {orch_t:6.2f} s  ({orch_t / n * 1000:.1f} ms/task)  runs: "
        + ", ".join(f"{t:.2f}" for t in orch_times),
        f"orchestra submit: {sub_t:6.2f} s for {n} sequential `submit --no-start` ({sub_t / n * 1000:.1f} ms each; not in the ratio)",
        f"ratio including submits: {(orch_t + sub_t) / shell_t:.2f}x",
        f"CPU (user+sys, with children): shell {median(shell_cpu):.2f} s, orchestra worker {median(orch_cpu):.2f} s "
        f"({median(orch_cpu) / median(shell_cpu):.2f}x)",
    ]
    return [
        Result(
            "orchestration overhead (worker / shell loop)",
            f"{ratio:.2f}x",
            ratio,
            TARGET,
            "x",
            details,
            judged=not args.check_only,
        )
    ]


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, help="Tasks per arm (default 100; quick 30).")
    p.add_argument("--jobs", "-j", type=int, help="Concurrency of both arms (default 4).")
    p.add_argument("--repeat", type=int, help="Runs per arm; the median is reported (default 3; quick 1).")
    p.add_argument(
        "--fake",
        choices=("instant", "fixtures"),
        default="instant",
        help="instant: benchmarks/instant_claude (sh); fixtures: fixtures/fake_claude (Python).",
    )
    return p


if __name__ == "__main__":
    run_main(run, parser())

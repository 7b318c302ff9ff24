"""The benchmark scripts work: every one runs at tiny sizes and checks its own results.

No timing is asserted here (speed is judged by `benchmarks/run_all.py` at full size);
this only proves the scripts run orchestra end to end and report every figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# Each benchmark run on its own (run_all.py --only NAME), so the suite's workers share them out:
# the figures each must report, and how many of them have a target (not judged at check-only sizes).
EXPECTED = {
    "overhead": (["orchestration overhead"], 1),
    "status": (["orchestra status", "orchestra list --json"], 1),
    "parallel": (["parallelism"], 1),
    "memory": (["scheduler memory"], 1),
    "submit": (["submit throughput"], 0),
    "history": (["hot paths from", "100 tasks by submit --batch"], 4),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_run_all_check_only(tmp_path: Path, name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "FAKE_CLAUDE_"))}
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run_all.py"),
            "--check-only",
            "--only",
            name,
            "--results",
            str(results),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout and "FAILED" not in proc.stdout
    figures, judged = EXPECTED[name]
    for figure in figures:
        assert f"== {figure}" in proc.stdout, proc.stdout
    table = results.read_text()
    assert table.count("not judged (check only)") == judged, table
    if name == "submit":
        assert "integrity: 8 unique ids" in table


def test_every_benchmark_is_run_here() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run_all

    assert set(run_all.BENCHMARKS) == set(EXPECTED)


def test_benchmark_reports_its_own_failure(tmp_path: Path) -> None:
    """A broken run is an error (exit 1), not a figure: here the fake claude does not exist."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "FAKE_CLAUDE_"))}
    script = (
        "import sys; sys.argv = ['bench_parallel.py', '--check-only'];"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r});"
        "import common, bench_parallel;"
        f"bench_parallel.FAKE_CLAUDE = common.Path({str(tmp_path / 'no-such-claude')!r});"
        "common.run_main(bench_parallel.run, bench_parallel.parser())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "benchmark error: expected 2 succeeded tasks" in proc.stderr

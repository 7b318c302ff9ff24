"""The fixtures' own clean-up: it ends what a test left behind, and nothing else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import ROOT, make_repo

_HOLD_THEN_CLEAN_UP = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from pathlib import Path
    import conftest
    from orchestra.store import scheduler as record
    from orchestra.store.paths import Paths
    repo = Path(sys.argv[1])
    held = record.claim(Paths(repo), 1)  # as a test's scheduler, run in a thread of pytest, holds it
    conftest._kill_background_scheduler(repo)
    print("survived", flush=True)
    """
)


def test_the_clean_up_of_a_background_scheduler_never_kills_pytest_itself(tmp_path):
    """A test that failed while its in-process scheduler held the claim: the scheduler's pid is pytest's.
    Run as the leader of its process group (pytest from a shell, without xdist), killpg ended the run."""
    repo = make_repo(tmp_path / "repo")
    code = _HOLD_THEN_CLEAN_UP.format(root=str(ROOT), tests=str(ROOT / "tests"))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # its own process group's leader, as pytest is when run from a shell
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "survived", (proc.returncode, proc.stderr)

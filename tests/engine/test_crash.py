"""Crash recovery: the scheduler is SIGKILLed at named points and at random moments.

Each trial runs a small mix of tasks (agent commits, leftovers, a dependency, a
failure), kills the scheduler once, adds a task while nothing runs, restarts the
scheduler and checks that every task ended where it should: none lost, none run
again after it succeeded, every commit of the agents on its branch, no lock left
behind. The seed is printed; rerun one with ORCHESTRA_CRASH_SEED=<seed>.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Orch, git, make_orch, make_repo, plant_half_made_worktree

pytestmark = pytest.mark.crash

SEED = int(os.environ.get("ORCHESTRA_CRASH_SEED") or random.SystemRandom().randrange(2**32))
print(f"crash tests: ORCHESTRA_CRASH_SEED={SEED}", file=sys.stderr)

# Points in the life of a task where the scheduler kills itself (orchestra/crashpoints.py).
POINTS = [
    "after_claim",
    "before_worktree",
    "after_worktree",
    "after_spawn",
    "after_started",
    "before_finalize",
    "after_commit",
    "after_finalize",
    "between_task_and_index",
]
RANDOM_TRIALS = 12


def _prompts() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        "commits": (
            "commits\n@fake write a.txt A\n@fake commit Add a\n@fake sleep 0.3\n@fake write a2.txt left over",
            (),
        ),
        "sleeps": ("sleeps\n@fake sleep 0.2\n@fake write b.txt B", ()),
        "instant": ("instant\n@fake write c.txt C\n@fake commit Add c", ()),
        "fails": ("fails\n@fake fail 400", ()),  # 400 is not retried
    }


EXPECTED = {
    "commits": "succeeded",
    "sleeps": "succeeded",
    "instant": "succeeded",
    "fails": "failed",
    "after": "succeeded",
    "late": "succeeded",
}


class Trial:
    def __init__(self, tmp_path: Path, label: str) -> None:
        self.label = label
        self.orch: Orch = make_orch(make_repo(tmp_path / "repo"), tmp_path)
        self.ids: dict[str, str] = {}
        for name, (prompt, args) in _prompts().items():
            self.ids[name] = self.orch.submit(prompt, *args)
        self.ids["after"] = self.orch.submit("after\n@fake write d.txt D", "--after", self.ids["commits"])

    def why(self) -> str:
        return f"[{self.label}, ORCHESTRA_CRASH_SEED={SEED}]"

    def crash_at(self, point: str) -> None:
        self.orch.crash_at(point, "worker", "--until-idle", "-j", "2", why=f"{self.why()} ", timeout=60)

    def kill_after(self, delay: float) -> None:
        worker = self.orch.start_worker("--until-idle", "-j", "2")
        time.sleep(delay)
        try:
            os.killpg(worker.pid, signal.SIGKILL)  # the scheduler and any git it runs; agents have their own sessions
        except ProcessLookupError:
            pass
        worker.wait()

    def recover_and_check(self) -> None:
        o = self.orch
        # A submit and a new scheduler both work at once after the crash: no lock is left held.
        self.ids["late"] = o.submit("late\n@fake write e.txt E")
        proc = o.work("-j", "2", timeout=90)
        assert proc.returncode == 0, f"{self.why()} restart failed: {proc.stderr}"
        calls = o.invocations()
        base_files = {"README.md"}
        for name, tid in self.ids.items():
            task = o.show(tid)
            assert task["state"] == EXPECTED[name], (
                f"{self.why()} {name}: {task['state']} {task['error']}\n{proc.stderr}"
            )
            runs = [c for c in calls if c["env"].get("ORCHESTRA_TASK_ID") == tid]
            assert len(runs) <= task["attempts"], f"{self.why()} {name} ran {len(runs)}x in {task['attempts']} attempts"
            results = _results(o.repo / ".orchestra" / "logs" / f"{tid}.jsonl")
            if task["state"] == "succeeded":
                # Exactly one successful run, and nothing ran after it.
                assert [r["is_error"] for r in results].count(False) == 1, (
                    f"{self.why()} {name} ran again: {[r['is_error'] for r in results]}"
                )
                assert results[-1]["is_error"] is False
                files = set(git(o.repo, "ls-tree", "--name-only", task["branch"]).split())
                assert base_files <= files, f"{self.why()} {name}: base files lost on {task['branch']}: {files}"
        # Every commit and every leftover of the agents is on its branch.
        commits = o.show(self.ids["commits"])["branch"]
        assert "Add a" in git(o.repo, "log", "--format=%s", commits).splitlines()
        assert git(o.repo, "show", f"{commits}:a.txt") == "A"
        assert git(o.repo, "show", f"{commits}:a2.txt") == "left over"
        instant = o.show(self.ids["instant"])["branch"]
        assert git(o.repo, "log", "-1", "--format=%s", instant) == "Add c"
        # The index (live tasks) and the history (ended ones, newest line wins) agree with the task files.
        state = o.repo / ".orchestra"
        indexed = {}
        for line in (state / "history.jsonl").read_text().splitlines():
            indexed[json.loads(line)["id"]] = json.loads(line)["state"]
        index = json.loads((state / "index.json").read_text())
        indexed.update({tid: s["state"] for tid, s in index["tasks"].items()})
        on_disk = {p.stem: json.loads(p.read_text())["state"] for p in (state / "tasks").glob("*.json")}
        assert indexed == on_disk
        assert not (state / "index.stale").exists()
        assert git(o.repo, "status", "--porcelain") == ""
        # Doctor agrees: at most temp files of a killed writer, which --fix removes.
        report = json.loads(o.run("doctor", "--json", "--fix").stdout)
        assert {f["kind"] for f in report["findings"]} <= {"stale_temp_file", "stale_scheduler_info"}, report
        assert report["ok"], report


def _results(log: Path) -> list[dict]:
    out = []
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "result":
                out.append(event)
    return out


@pytest.fixture
def trial_factory(tmp_path: Path):
    made: list[Trial] = []

    def make(label: str) -> Trial:
        t = Trial(tmp_path, label)
        made.append(t)
        return t

    yield make
    for t in made:
        t.orch.close()


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_a_named_point(trial_factory, point: str):
    rng = random.Random(f"{SEED}-{point}")
    nth = rng.randint(1, 3 if point == "between_task_and_index" else 2)
    spec = f"{point}:{nth}"
    print(f"ORCHESTRA_CRASH_SEED={SEED} crash at {spec}")
    trial = trial_factory(spec)
    trial.crash_at(spec)
    trial.recover_and_check()


def test_sigkill_while_recovering(trial_factory):
    """A scheduler that dies while adopting agents a dead one left behind."""
    trial = trial_factory("after_started then recover")
    trial.crash_at("after_started:2")
    trial.crash_at("recover")
    trial.recover_and_check()


@pytest.mark.parametrize("n", range(RANDOM_TRIALS))
def test_sigkill_at_a_random_moment(trial_factory, n: int):
    delay = random.Random(f"{SEED}-random-{n}").uniform(0.05, 2.0)
    print(f"ORCHESTRA_CRASH_SEED={SEED} kill after {delay:.3f}s")
    trial = trial_factory(f"random kill after {delay:.3f}s")
    trial.kill_after(delay)
    trial.recover_and_check()


def test_worktree_add_killed_half_way_is_redone_not_committed_as_deletions(orch):
    """`git worktree add` killed before its checkout leaves a worktree where every file looks
    deleted; the next run must not commit that as the agent's work."""
    tid = orch.submit("after a broken add\n@fake write new.txt new")
    task = orch.show(tid)
    git(orch.repo, "worktree", "add", "--no-checkout", "-q", "-b", task["branch"], task["worktree"], task["base_sha"])
    admin = orch.repo / ".git" / "worktrees" / tid
    (admin / "locked").write_text("initializing")  # what git leaves when killed mid-add
    assert "D  README.md" in git(Path(task["worktree"]), "status", "--porcelain")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    files = git(orch.repo, "ls-tree", "--name-only", task["branch"]).split()
    assert files == ["README.md", "new.txt"]
    assert "locked" not in git(orch.repo, "worktree", "list", "--porcelain")


def test_a_git_killed_while_it_made_the_task_branch_does_not_fail_the_task(orch):
    """SIGKILL of the scheduler's process group can kill a `git update-ref` holding the new branch's lock;
    git never removes such a lock, and every later write of the branch failed ("could not create
    branch"). Found by the random-moment trials; here the lock is planted as git leaves it."""
    tid = orch.submit("after a killed update-ref\n@fake write new.txt new")
    branch = orch.show(tid)["branch"]
    lock = orch.repo / ".git" / "refs" / "heads" / f"{branch}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("0" * 40 + "\n")  # half written by the killed git
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert git(orch.repo, "show", f"{branch}:new.txt") == "new"
    assert not lock.exists()
    # The same when the lock was left as a run's commits came home: the next run's come home past it.
    lock.write_text("0" * 40 + "\n")
    orch.run("respond", tid, "--no-start", "more\n@fake write more.txt more", check=True)
    assert orch.work().returncode == 0
    assert orch.state(tid) == "succeeded"
    assert git(orch.repo, "show", f"{branch}:more.txt") == "more"
    assert not lock.exists()
    # A lock on the person's own branch is theirs to remove: orchestra leaves it, as git asks.
    theirs = orch.repo / ".git" / "refs" / "heads" / "feature.lock"
    theirs.write_text("")
    other = orch.submit("on main again\n@fake write b.txt b")
    assert orch.work().returncode == 0 and orch.state(other) == "succeeded"
    assert theirs.exists()


def test_a_git_killed_while_it_staged_the_agents_work_does_not_fail_the_task(orch):
    """A SIGKILL while orchestra's `git add` of the agent's leftovers ran leaves the checkout's index.lock;
    the restarted scheduler failed the task ("git add failed: Unable to create .../index.lock"). Found by the
    random-moment trials; here the lock is left where the killed git leaves it, as the run ends."""
    tid = orch.submit("leave work uncommitted\n@fake write notes.txt n\n@fake bash : > .git/index.lock")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert git(orch.repo, "show", f"{task['branch']}:notes.txt") == "n"


@pytest.mark.parametrize("lock", ['.git/refs/heads/"$ORCHESTRA_BRANCH".lock', ".git/HEAD.lock"])
def test_a_git_killed_while_it_committed_the_agents_work_does_not_fail_the_task(orch, lock: str):
    """A SIGKILL while orchestra's `git commit` of the agent's leftovers ran leaves a lock on the task
    checkout's branch or HEAD; the restarted scheduler failed the task ("cannot lock ref"), and the
    leftovers never reached the branch. Here the lock is left where the killed git leaves it."""
    tid = orch.submit(f"leave work uncommitted\n@fake write notes.txt n\n@fake bash : > {lock}")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert git(orch.repo, "show", f"{task['branch']}:notes.txt") == "n"


def test_worktree_add_killed_while_writing_metadata_does_not_break_later_adds(orch):
    """Killed mid-write, `git worktree add` can leave an empty `commondir` that makes every later
    `git worktree add` (and `git branch`) die; prune skips it because it stays locked."""
    first = orch.submit("first\n@fake write one.txt 1")
    second = orch.submit("second\n@fake write two.txt 2")
    wt = Path(orch.show(first)["worktree"])
    plant_half_made_worktree(orch.repo, first, wt)
    broken = subprocess.run(["git", "worktree", "list"], cwd=orch.repo, capture_output=True, text=True)
    assert broken.returncode != 0 and "commondir" in broken.stderr
    proc = orch.work()
    assert proc.returncode == 0
    assert "creation was interrupted" in proc.stderr
    for tid in (first, second):
        task = orch.show(tid)
        assert task["state"] == "succeeded", task["error"]
        assert git(orch.repo, "ls-tree", "--name-only", task["branch"]).split()[0] == "README.md"
    assert git(orch.repo, "worktree", "list").count(".orchestra/worktrees/") == 0  # each task has its own repository


@pytest.mark.parametrize("point", ["merge_before_move", "merge_after_move"])
def test_sigkill_during_a_merge(orch, point: str):
    """Killed while merging a workflow's result: after a restart it is merged exactly once."""
    from test_workflows import APPROVE, FEATURE

    wf_id = orch.run(
        "workflow",
        "start",
        "--no-start",
        "feature",
        FEATURE + f"@fake if-role reviewer structured {APPROVE}\n",
        check=True,
    ).stdout.strip()
    main_before = git(orch.repo, "rev-parse", "main")
    env = dict(orch.env, ORCHESTRA_TEST_CRASH_AT=point)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestra", "worker", "--until-idle"],
        cwd=orch.repo,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, f"never reached {point}: {proc.stderr}"
    moved = git(orch.repo, "rev-parse", "main") != main_before
    assert moved == (point == "merge_after_move")
    assert orch.work(timeout=120).returncode == 0
    wf = json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)
    assert wf["state"] == "succeeded", wf
    # Exactly one merge landed on main, on top of where it was; the checkout is clean.
    merges = git(orch.repo, "rev-list", "--merges", f"{main_before}..main").split()
    assert len(merges) == 1
    assert git(orch.repo, "rev-parse", "main^1") == main_before
    assert git(orch.repo, "status", "--porcelain") == ""
    # No temporary merge checkout is left registered, and doctor finds nothing.
    assert ".orchestra/merges" not in git(orch.repo, "worktree", "list")
    report = json.loads(orch.run("doctor", "--json").stdout)
    assert report["ok"], report


def test_a_reply_survives_a_scheduler_killed_before_its_run_started(orch):
    """A reply queues the ended task with the person's words for the next run. A scheduler killed between
    claiming it and starting its agent left it to recovery, which queued it again without those words:
    the run that followed resumed the session with a plain nudge, and the task succeeded without ever
    acting on the reply."""
    tid = orch.submit("first\n@fake write a.txt a\n@fake commit Add a")
    assert orch.work().returncode == 0
    orch.run("respond", "--no-start", tid, "More\n@fake write b.txt b\n@fake commit Add b", check=True)
    orch.crash_at("after_claim", "worker", "--until-idle")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "succeeded", task["error"]
    assert git(orch.repo, "show", f"{task['branch']}:b.txt") == "b"
    assert [inv["prompt"].splitlines()[0] for inv in orch.invocations()] == ["first", "More"]

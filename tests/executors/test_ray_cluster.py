"""The Ray executor on a real cluster: a head and two worker nodes with two agent slots each.

One cluster serves the whole module (starting one costs 10-20 s of CPU). The nodes
run in a private network namespace and cannot see the coordinator's repositories
(their directory is covered by an empty tmpfs in the nodes' mount namespace), so the
repository can only reach them through orchestra's packs. Agents are the fake claude
(fixtures/fake_claude), which the nodes find through their own ORCHESTRA_CLAUDE.
The coordinator (`orchestra worker`, and every command that talks to the cluster)
runs as a real process inside the namespace.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_CLAUDE, ROOT, make_orch, make_repo, run_in_process
from raycluster import Cluster, unavailable, up

WHY = unavailable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("ray-cluster"),  # one worker runs them all: one cluster, started once
    pytest.mark.skipif(WHY is not None, reason=f"Ray cluster tests: {WHY}"),
]


STUB_PORT = 18123  # the Messages-API stub, inside the cluster's own network namespace (nothing else there)


@pytest.fixture(scope="session")  # started once, whatever else its worker runs between the group's tests
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    coord = tmp_path_factory.mktemp("coordinator")  # every test repository lives here: masked on the nodes
    nodes = tmp_path_factory.mktemp("nodes")
    # The nodes' claude: the fake, or the real CLI for a run whose coordinator forwards (ray_env) where it is.
    claude = nodes / "claude"
    claude.write_text(
        '#!/bin/sh\nif [ -n "$ORCHESTRA_TEST_REAL_CLAUDE" ]; then exec "$ORCHESTRA_TEST_REAL_CLAUDE" "$@"; fi\n'
        f'exec "{FAKE_CLAUDE}" "$@"\n'
    )
    claude.chmod(0o755)
    c = up(
        mask=[coord],
        node_root=nodes,
        workers=[{"gpu_box": 1}, {"db_box": 1}],
        env={
            "PYTHONPATH": str(ROOT),
            "ORCHESTRA_CLAUDE": str(claude),
            # Each node's own model access (credentials stay on the nodes): the stub, for the real CLI.
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{STUB_PORT}",
            "ANTHROPIC_API_KEY": "sk-test-dummy",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "1",
            "FAKE_CLAUDE_LOG": str(nodes / "fake-invocations.jsonl"),
            "GIT_CONFIG_NOSYSTEM": "1",
            # A dead node is known in about 2.5 s instead of 15.
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            # Hosts idle this long end: the module's earlier repositories do not keep one on each node.
            "ORCHESTRA_HOST_IDLE": "15",
        },
    )
    try:
        yield c
    finally:
        c.down()


class Coord:
    """orchestra on a repository whose executor is the cluster, run as processes inside its namespace."""

    def __init__(self, cluster: Cluster, name: str, tmp_path: Path) -> None:
        self.cluster = cluster
        self.repo = make_repo(cluster.coord_root / name)
        self.orch = make_orch(self.repo, tmp_path)
        self.env = dict(self.orch.env)
        self.env["FAKE_CLAUDE_LOG"] = str(cluster.node_root / "fake-invocations.jsonl")
        self.env["RAY_AUTH_MODE"] = "disabled"
        self.procs: list[subprocess.Popen[str]] = []
        self.gates: list[Path] = []
        # Written directly: four `config set` processes cost seconds on a loaded machine.
        state = self.repo / ".orchestra"
        state.mkdir(exist_ok=True)
        (state / "config.toml").write_text(
            f'executor = "ray"\nray_address = "{cluster.address}"\nautostart = false\nkill_grace = 3.0\n'
        )

    def run(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.cluster.argv([sys.executable, "-m", "orchestra", *args]),
            cwd=self.repo,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"orchestra {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def here(self, *args: str) -> str:
        """`orchestra ARGS` in this process, for commands that only read or write the queue (no Ray): the
        tests run them often, and a Python start for each costs seconds of a loaded machine's CPU."""
        proc = run_in_process(args, env=self.env, cwd=self.repo)
        if proc.returncode != 0:
            raise AssertionError(f"orchestra {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def submit(self, prompt: str, *args: str) -> str:
        return self.here("submit", "--no-start", *args, prompt).strip()

    def show(self, task_id: str) -> dict[str, Any]:
        return dict(json.loads(self.here("show", task_id, "--json")))

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """`orchestra ARGS` left running (ended by close()); stdout a pipe, stderr merged into it."""
        proc = subprocess.Popen(
            self.cluster.argv([sys.executable, "-m", "orchestra", *args]),
            cwd=self.repo,
            env=self.env if env is None else env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def gate(self, name: str) -> Path:
        """A file the nodes see (outside the masked directory) that an agent's `@fake wait-for` holds on
        until the test opens it: the run lasts until the test has seen what it needs, however loaded the
        machine, instead of a sleep that a slow check can outlast."""
        path = self.cluster.node_root / f"gate-{name}-{os.urandom(4).hex()}"
        self.gates.append(path)
        return path

    def start_worker(self, *args: str) -> subprocess.Popen[str]:
        return self.start("worker", *args)

    def wait_for(self, predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}")

    def invocations(self, task_id: str | None = None) -> list[dict[str, Any]]:
        path = Path(self.env["FAKE_CLAUDE_LOG"])
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["env"].get("ORCHESTRA_REPO", "").find("/tasks/") >= 0]
        return [r for r in rows if task_id is None or r["env"].get("ORCHESTRA_TASK_ID") == task_id]

    def branch_file(self, branch: str, path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{branch}:{path}"], cwd=self.repo, capture_output=True, text=True, check=True
        ).stdout

    def close(self) -> None:
        for gate in self.gates:
            gate.touch()  # no agent of a failed test waits on in the shared cluster
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def coord(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    c = Coord(cluster, request.node.name.replace("[", "-").replace("]", ""), tmp_path)
    yield c
    c.close()


def write_commit(name: str, *extra: str) -> str:
    return "\n".join([f"task {name}", *extra, f"@fake write {name}.txt {name}\\n", f"@fake commit add {name}"])


def test_eight_tasks_on_two_nodes_bring_every_branch_home(coord: Coord) -> None:
    """8 tasks on 2 nodes x 2 slots: all succeed, each branch arrives here with its commit."""
    coord.run("config", "set", "max_concurrent", "8", check=True)
    ids = [coord.submit(write_commit(f"f{i}", "@fake sleep 1", f"@fake bash ls -A {coord.repo}")) for i in range(8)]
    t0 = time.monotonic()
    worker = coord.run("worker", "--until-idle", timeout=240)
    took = time.monotonic() - t0
    assert worker.returncode == 0, worker.stdout + worker.stderr
    nodes = set()
    for i, tid in enumerate(ids):
        task = coord.show(tid)
        assert task["state"] == "succeeded", task
        assert coord.branch_file(task["branch"], f"f{i}.txt") == f"f{i}\n"
        nodes.add(task["node"])
        # The transcript came home: the bash step's output shows the repository is hidden on the node.
        log = (coord.repo / ".orchestra" / "logs" / f"{tid}.jsonl").read_text()
        assert '"type":"result"' in log.replace(" ", "")
        assert "README.md" not in log
        runs = coord.invocations(tid)
        assert len(runs) == 1, runs
        assert not runs[0]["cwd"].startswith(str(coord.repo))
    assert nodes == {"worker1", "worker2"}
    listing = json.loads(coord.run("list", "--json", check=True).stdout)
    assert {row["node"] for row in listing} == {"worker1", "worker2"}
    print(f"8 tasks of 1 s on 2x2 slots: {took:.1f}s")


def events(coord: Coord, task_id: str) -> list[dict[str, Any]]:
    path = coord.repo / ".orchestra" / "events" / f"{task_id}.jsonl"
    if not path.exists():
        shown = coord.show(task_id)
        return list(shown.get("events") or [])
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def agents_of(task_id: str) -> list[int]:
    """Processes anywhere on the machine whose environment marks them as this task's agent (or its children)."""
    marker = f"ORCHESTRA_TASK_ID={task_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if marker in fh.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                pass
    return found


def test_chained_tester_lands_on_the_node_with_its_resource(coord: Coord) -> None:
    """A role's resources place its task; the tester's node gets the implementer's branch from here."""
    with open(coord.repo / ".orchestra" / "config.toml", "a") as fh:
        fh.write('\n[roles.dbtester]\nextends = "tester"\nresources = {db_box = 1}\n')
    impl = coord.submit(write_commit("impl"), "--role", "implementer", "--resources", '{"gpu_box": 1}')
    tester = coord.submit(write_commit("check"), "--role", "dbtester", "--on", impl)
    assert coord.run("submit", "--no-start", "x", "--resources", '{"orchestra_agent": 1}').returncode != 0
    worker = coord.run("worker", "--until-idle", timeout=180)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    i, t = coord.show(impl), coord.show(tester)
    assert (i["state"], t["state"]) == ("succeeded", "succeeded"), (i, t)
    assert (i["node"], t["node"]) == ("worker1", "worker2")
    assert (
        t["base_sha"]
        == subprocess.run(
            ["git", "rev-parse", i["branch"]], cwd=coord.repo, capture_output=True, text=True
        ).stdout.strip()
    )
    assert coord.branch_file(t["branch"], "impl.txt") == "impl\n"
    assert coord.branch_file(t["branch"], "check.txt") == "check\n"


def remote_refs(remote: Path) -> dict[str, str]:
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/orchestra/"],
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


def has_commit(repo: Path, sha: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=repo).returncode == 0


def test_git_remote_carries_the_repository_instead_of_ray(coord: Coord, tmp_path: Path) -> None:
    """With ray_git_remote, commits travel through a shared remote: the base there, fetched by the node; the
    finished branch pushed there by the node and fetched here; the remote's orchestra refs gone once home.

    The remote is outside the masked directory (the nodes reach it at the same file:// URL), and a chained
    tester on the other node gets the implementer's branch through it too."""
    remote = tmp_path / "shared.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    coord.run("config", "set", "ray_git_remote", remote.as_uri(), check=True)
    gate = coord.gate("carried")
    impl = coord.submit(write_commit("carried", f"@fake wait-for {gate}"), "--resources", '{"gpu_box": 1}')
    tester = coord.submit(write_commit("checked"), "--role", "tester", "--resources", '{"db_box": 1}', "--on", impl)
    coord.start_worker()
    # While the implementer runs, its starting commit waits on the remote under orchestra's own ref.
    base = coord.wait_for(lambda: remote_refs(remote).get(f"refs/orchestra/base/{impl}"), what="the base ref")
    assert base == coord.show(impl)["base_sha"]
    gate.touch()
    t = coord.wait_for(lambda: (t := coord.show(tester))["state"] in ("succeeded", "failed") and t, timeout=120)
    i = coord.show(impl)
    assert (i["state"], t["state"]) == ("succeeded", "succeeded"), (i, t)
    assert (i["node"], t["node"]) == ("worker1", "worker2")
    assert coord.branch_file(i["branch"], "carried.txt") == "carried\n"
    assert coord.branch_file(t["branch"], "carried.txt") == "carried\n"
    assert coord.branch_file(t["branch"], "checked.txt") == "checked\n"
    heads = {
        b: subprocess.run(["git", "rev-parse", b], cwd=coord.repo, capture_output=True, text=True).stdout.strip()
        for b in (i["branch"], t["branch"])
    }
    assert t["base_sha"] == heads[i["branch"]]
    # Both finished commits reached the remote (the nodes pushed them: no pack came through Ray) ...
    assert all(has_commit(remote, sha) for sha in heads.values()), heads
    # ... and once each branch was home, orchestra's refs there were deleted; nothing else was written.
    coord.wait_for(lambda: not remote_refs(remote), timeout=30, what="the remote's orchestra refs to go")
    listed = subprocess.run(["git", "for-each-ref"], cwd=remote, capture_output=True, text=True, check=True)
    assert listed.stdout == ""


def test_permission_prompt_is_answered_from_the_coordinator(coord: Coord) -> None:
    tid = coord.submit("guarded\n@fake ask bash printf allowed > effect.txt\n@fake text carried on")
    coord.start_worker()
    task = coord.wait_for(
        lambda: (t := coord.show(tid))["state"] == "awaiting_input" and t.get("pending_request") and t,
        what="the question to arrive here",
    )
    assert task["pending_request"]["input"]["command"] == "printf allowed > effect.txt"
    status = coord.run("status", check=True).stdout
    assert "WAITING FOR YOU" in status and "printf allowed > effect.txt" in status
    assert coord.run("respond", tid, "--allow", check=True).stdout.strip() == f"{tid} allowed"
    coord.wait_for(lambda: coord.show(tid)["state"] == "succeeded", what="success after the answer")
    assert coord.branch_file(coord.show(tid)["branch"], "effect.txt") == "allowed"
    assert len(coord.invocations(tid)) == 1


def fake_agents_of(task_id: str) -> list[int]:
    """The task's fake claude processes (its guard and host carry the same marker, so look at argv too)."""
    found = []
    for pid in agents_of(task_id):
        try:
            if str(FAKE_CLAUDE).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def test_logs_follow_streams_a_remote_transcript_while_it_runs(coord: Coord) -> None:
    """`orchestra logs --follow` here prints what the agent on its node said while it still runs, then the rest,
    and exits by itself (status 0) once the task ends."""
    gate = coord.gate("follow")
    tid = coord.submit(f"follow me\n@fake text early-bird-words\n@fake wait-for {gate}\n@fake text late-owl-words")
    follow = coord.start("logs", "--follow", tid)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert follow.stdout is not None
        for line in follow.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    coord.start_worker()
    seen: list[str] = []
    at_early: tuple[str, list[int]] | None = None
    deadline = time.monotonic() + 120
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            state = coord.show(tid)["state"]
            raise AssertionError(f"logs --follow still running 120 s on (task {state}): {seen}") from None
        if line is None:
            break
        seen.append(line)
        if "early-bird-words" in line and at_early is None:
            # The agent still waits at its gate: the line came while it ran, not copied home afterwards.
            at_early = (coord.show(tid)["state"], fake_agents_of(tid))
            diff = run_in_process(("diff", tid), env=coord.env, cwd=coord.repo)
            assert diff.returncode == 1, diff.stdout
            assert f"task {tid} runs on node " in diff.stderr, diff.stderr
            assert "its branch comes here when its run ends" in diff.stderr, diff.stderr
            attach = run_in_process(("attach", tid), env=coord.env, cwd=coord.repo)
            assert attach.returncode == 1 and "its Claude session is on that machine" in attach.stderr, attach.stderr
            gate.touch()
    assert follow.wait(timeout=30) == 0, seen
    assert at_early is not None, seen
    state, agents = at_early
    assert state == "running", (state, seen)
    assert agents, f"the agent had ended when its early text arrived: {seen}"
    early = next(i for i, line in enumerate(seen) if "early-bird-words" in line)
    late = next((i for i, line in enumerate(seen) if "late-owl-words" in line), None)
    assert late is not None and late > early, seen
    assert any("success" in line for line in seen[late:]), seen
    assert coord.show(tid)["state"] == "succeeded"


@pytest.mark.parametrize("started_by", ["this-version", "an-older-version"])
def test_scheduler_sigkill_then_the_next_one_adopts_the_remote_agent(
    coord: Coord, tmp_path: Path, started_by: str
) -> None:
    """The next scheduler adopts the run; also one started by an older orchestra (before an upgrade), whose
    node host has that version in its name (a host runs the code it started with)."""
    gate = coord.gate("late")
    tid = coord.submit(write_commit("late", f"@fake wait-for {gate}"))
    env = None
    if started_by == "an-older-version":
        shim = tmp_path / "older"
        shim.mkdir()
        (shim / "sitecustomize.py").write_text("import orchestra\norchestra.__version__ = '0.0.1'\n")
        env = dict(coord.env, PYTHONPATH=f"{shim}{os.pathsep}{coord.env.get('PYTHONPATH', str(ROOT))}")
    worker = coord.start("worker", env=env)
    running = coord.wait_for(lambda: (t := coord.show(tid))["state"] == "running" and t.get("node") and t, what="start")
    coord.wait_for(lambda: (coord.repo / ".orchestra" / "logs" / f"{tid}.jsonl").exists(), what="transcript")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    if started_by == "an-older-version":
        assert any(name.startswith("host-0.0.1-") for name in named_actors(coord)), "the older scheduler's host"
    time.sleep(1)
    assert coord.show(tid)["state"] == "running"
    assert agents_of(tid), "the agent on its node died with the scheduler"
    again = coord.start("worker", "--until-idle")
    events = coord.repo / ".orchestra" / "events" / f"{tid}.jsonl"
    coord.wait_for(lambda: '"adopted"' in events.read_text(), what="the agent adopted by the next scheduler")
    gate.touch()
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and "adopted" in out, out
    done = coord.show(tid)
    assert done["state"] == "succeeded" and done["attempts"] == 1 and done["node"] == running["node"]
    assert len(coord.invocations(tid)) == 1  # it ran once
    assert coord.branch_file(done["branch"], "late.txt") == "late\n"
    assert '"type":"result"' in (coord.repo / ".orchestra" / "logs" / f"{tid}.jsonl").read_text().replace(" ", "")


def named_actors(coord: Coord) -> list[str]:
    script = (
        "import sys, ray\n"
        "ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR')\n"
        "print('\\n'.join(a['name'] for a in ray.util.list_named_actors(all_namespaces=True)))\n"
    )
    proc = subprocess.run(
        coord.cluster.argv([sys.executable, "-c", script, coord.cluster.address]),
        env=coord.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_stop_and_cancel_end_the_remote_process_group(coord: Coord) -> None:
    stopped = coord.submit("stop me\n@fake child-sleep 120\n@fake sleep 120")
    cancelled = coord.submit("cancel me\n@fake child-sleep 120\n@fake sleep 120")
    coord.start_worker()
    for tid in (stopped, cancelled):
        coord.wait_for(lambda tid=tid: len(agents_of(tid)) >= 2, what=f"{tid}'s agent and its child")
    coord.run("stop", stopped, check=True)
    coord.run("cancel", cancelled, check=True)
    coord.wait_for(lambda: not agents_of(stopped) and not agents_of(cancelled), timeout=30, what="the groups to end")
    coord.wait_for(lambda: coord.show(cancelled)["state"] == "cancelled", what="cancelled")
    coord.wait_for(lambda: coord.show(stopped)["state"] not in ("running", "queued"), what="stopped")


def test_feature_workflow_runs_remotely_and_merges_here(coord: Coord) -> None:
    approve = '{"verdict": "approve", "comments": [], "summary": "Looks right."}'
    request = (
        "Add a greeting module\n"
        "@fake if-role architect write docs/design/greeting.md Use one function greet().\n"
        '@fake if-role implementer if-new write greeting.py def greet():\\n    return "hi"\\n\n'
        "@fake if-role implementer if-new commit Add greeting\n"
        "@fake if-role tester write test_greeting.py from greeting import greet\\n\n"
        "@fake if-role tester commit Test greeting\n"
        f"@fake if-role reviewer structured {approve}\n"
    )
    wf = coord.run("workflow", "start", "--no-start", "feature", request, check=True).stdout.strip()
    worker = coord.run("worker", "--until-idle", timeout=300)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    shown = json.loads(coord.run("workflow", "show", wf, "--json", check=True).stdout)
    assert shown["state"] == "succeeded", shown
    agents = [t for t in shown["tasks"].values() if t["produces"] != "merge"]
    assert all(t["node"] in ("worker1", "worker2") for t in agents), agents
    files = subprocess.run(
        ["git", "ls-tree", "--name-only", "-r", "main"], cwd=coord.repo, capture_output=True, text=True
    )
    assert {"greeting.py", "test_greeting.py", "docs/design/greeting.md"} <= set(files.stdout.split())


def test_unreachable_cluster_leaves_tasks_queued_and_says_why(cluster: Cluster, tmp_path: Path) -> None:
    c = Coord(cluster, "unreachable", tmp_path)
    try:
        assert c.run("config", "get", "executor", check=True).stdout.strip() == "ray"
        c.run("config", "set", "ray_address", "127.0.0.1:1", check=True)
        tid = c.submit("never runs yet")
        idle = c.run("worker", "--until-idle")
        assert idle.returncode == 0 and "nothing left to do" not in idle.stderr, idle.stderr
        assert "1 task(s) stay queued (cannot reach the Ray cluster at 127.0.0.1:1" in idle.stderr, idle.stderr
        c.start_worker()
        time.sleep(3)
        assert c.show(tid)["state"] == "queued"
        status = c.run("status", check=True).stdout
        assert "no new starts: cannot reach the Ray cluster at 127.0.0.1:1" in status
        doctor = c.run("doctor")
        assert doctor.returncode != 0 and "cannot reach the Ray cluster at 127.0.0.1:1" in doctor.stdout
    finally:
        c.close()


def guard_owner(task_id: str) -> int | None:
    """The process the task's guard watches (its argv: guard.py OWNER RUN_DIR -- ...): the host running the agent."""
    for pid in agents_of(task_id):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg.endswith(b"/guard.py"):
                return int(argv[i + 1])
    return None


def test_later_tasks_on_a_node_run_in_its_host(coord: Coord) -> None:
    """A node's host starts once: the next task there runs in the same process, paying no Ray worker start.

    Once idle for ORCHESTRA_HOST_IDLE (15 s here) the host ends, and the next task there starts a new one."""
    gates = [coord.gate("h1"), coord.gate("h2"), coord.gate("h3")]
    first = coord.submit(write_commit("h1", f"@fake wait-for {gates[0]}"), "--resources", '{"gpu_box": 1}')
    second = coord.submit(
        write_commit("h2", f"@fake wait-for {gates[1]}"), "--resources", '{"gpu_box": 1}', "--after", first
    )
    coord.start_worker()
    owners = []
    for tid, gate in zip((first, second), gates, strict=False):
        owners.append(coord.wait_for(lambda tid=tid: guard_owner(tid), what=f"{tid}'s agent"))
        gate.touch()
    title = Path(f"/proc/{owners[1]}/cmdline").read_bytes()
    coord.wait_for(lambda: coord.show(second)["state"] == "succeeded", what="the second task to succeed")
    assert owners[0] == owners[1], owners
    assert title.startswith(b"ray::NodeHost"), title
    assert [coord.show(t)["node"] for t in (first, second)] == ["worker1", "worker1"]
    assert coord.branch_file(coord.show(second)["branch"], "h2.txt") == "h2\n"
    coord.wait_for(lambda: not Path(f"/proc/{owners[0]}").exists(), timeout=90, what="the idle host to end")
    third = coord.submit(write_commit("h3", f"@fake wait-for {gates[2]}"), "--resources", '{"gpu_box": 1}')
    new_owner = coord.wait_for(lambda: guard_owner(third), what=f"{third}'s agent")
    gates[2].touch()
    coord.wait_for(lambda: coord.show(third)["state"] == "succeeded", what="the third task to succeed")
    assert new_owner != owners[0]


def test_a_dead_host_costs_its_runs_one_attempt(coord: Coord) -> None:
    """A host that dies takes its agents with it (their guard ends them); the run is lost, not adopted or judged,
    and the task runs again in a new host."""
    gate = coord.gate("rehosted")
    tid = coord.submit(write_commit("rehosted", f"@fake wait-for {gate}"))
    coord.start_worker()
    # Once the agent itself runs (its invocation is logged): earlier is the case of the test after setup below.
    owner = coord.wait_for(lambda: coord.invocations(tid) and guard_owner(tid), what="the agent")
    os.kill(owner, signal.SIGKILL)
    again = coord.wait_for(lambda: (o := guard_owner(tid)) and o != owner and o, timeout=90, what="a run in a new host")
    gate.touch()
    done = coord.wait_for(lambda: (t := coord.show(tid))["state"] in ("succeeded", "failed") and t, timeout=90)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert again != owner and len(coord.invocations(tid)) == 2
    assert coord.branch_file(done["branch"], "rehosted.txt") == "rehosted\n"


def test_respond_resumes_the_session_on_its_node(coord: Coord) -> None:
    """`respond "text"` reaches the node holding the session (the fake keeps sessions per node: elsewhere it fails)."""
    tid = coord.submit("ask me\n@fake if-new text Which colour?")
    worker = coord.run("worker", "--until-idle", timeout=120)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    first = coord.show(tid)
    assert first["state"] == "succeeded" and first["result"] == "Which colour?", first
    # Stepping in here points to the node and to respond, not to a checkout "removed by cleanup?".
    where = f"task {tid} ran on node {first['node']}: its"
    path = run_in_process(("path", tid), env=coord.env, cwd=coord.repo)
    assert path.returncode == 1, path.stdout
    assert f"{where} checkout is on that machine, not here; its branch {first['branch']} is here" in path.stderr
    attach = run_in_process(("attach", tid), env=coord.env, cwd=coord.repo)
    assert attach.returncode == 1 and f"{where} Claude session is on that machine" in attach.stderr, attach.stderr
    assert f"'orchestra respond {tid} TEXT' continues it there" in attach.stderr
    coord.run("respond", tid, "--no-start", "Blue.\n@fake write answer.txt blue\n@fake commit Use blue", check=True)
    worker = coord.run("worker", "--until-idle", timeout=120)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    second = coord.show(tid)
    assert second["state"] == "succeeded" and second["attempts"] == 2, second
    assert second["node"] == first["node"] and second["session_id"] == first["session_id"]
    runs = coord.invocations(tid)
    assert [r["resume"] for r in runs] == [None, first["session_id"]]
    assert coord.branch_file(second["branch"], "answer.txt") == "blue"


def test_copy_files_and_setup_reach_the_node(coord: Coord) -> None:
    """`copy` files travel with the task and `setup` runs in the node's checkout; the copies stay off the branch."""
    (coord.repo / ".env.local").write_text("TOKEN=from-the-coordinator\n")
    with open(coord.repo / ".orchestra" / "config.toml", "a") as fh:
        fh.write('copy = [".env.local"]\nsetup = "cp .env.local setup-saw.txt"\n')
    tid = coord.submit(
        "use the env\n@fake bash cat .env.local setup-saw.txt\n@fake write done.txt ok\n@fake commit done"
    )
    worker = coord.run("worker", "--until-idle", timeout=120)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    task = coord.show(tid)
    assert task["state"] == "succeeded" and task["copied"] == [".env.local", "setup-saw.txt"], task
    transcript = (coord.repo / ".orchestra" / "logs" / f"{tid}.jsonl").read_text()
    assert transcript.count("TOKEN=from-the-coordinator") >= 2  # the copy, and what setup made of it
    tracked = subprocess.run(
        ["git", "ls-tree", "--name-only", "-r", task["branch"]], cwd=coord.repo, capture_output=True, text=True
    ).stdout.split()
    assert ".env.local" not in tracked and "setup-saw.txt" not in tracked and "done.txt" in tracked


def test_cancel_reaches_a_task_waiting_for_a_slot(coord: Coord) -> None:
    """A task waiting for room (every slot it could use is taken) is cancelled at once, not once placed."""
    blocker = coord.submit("hold the gpu\n@fake sleep 120", "--resources", '{"gpu_box": 1}')
    coord.start_worker()
    coord.wait_for(lambda: agents_of(blocker), what="the blocker's agent")
    waiting = coord.submit("wait for the gpu\n@fake write never.txt x", "--resources", '{"gpu_box": 1}')
    coord.wait_for(lambda: coord.show(waiting)["state"] == "running", what="the second task to be claimed")
    coord.run("cancel", waiting, check=True)
    done = coord.wait_for(lambda: (t := coord.show(waiting))["state"] == "cancelled" and t, what="cancelled")
    assert not done.get("node") and coord.invocations(waiting) == []
    assert coord.show(blocker)["state"] == "running"
    coord.run("cancel", blocker, check=True)
    coord.wait_for(lambda: not agents_of(blocker), timeout=30, what="the blocker to end")


def test_doctor_reports_each_node(coord: Coord) -> None:
    """Versions, slots, claude and the sandbox per node; and a shared remote only the coordinator can read
    (it lies in the directory the nodes cannot see) is a problem on each node, not here."""
    hidden = coord.repo.parent / f"{coord.repo.name}-remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(hidden)], check=True)
    coord.run("config", "set", "ray_git_remote", hidden.as_uri(), check=True)
    report = json.loads(coord.run("doctor", "--json").stdout)
    remote = [(f["kind"], f["subject"]) for f in report["findings"] if f["kind"] == "cluster_remote"]
    assert sorted(remote) == [("cluster_remote", "worker1"), ("cluster_remote", "worker2")], report["findings"]
    nodes = {n.get("node"): n for n in report["cluster"]["nodes"] if n["slots"]}
    assert set(nodes) == {"worker1", "worker2"} and report["cluster"]["slots"] == 4
    assert all(n["ray"] == "2.60.0" and n["claude"] for n in nodes.values()), nodes
    # Each node looks for the sandbox's tools on its own PATH; these nodes have both.
    for n in nodes.values():
        assert n["sandbox_missing"] is None and all(n["sandbox_tools"][b] for b in ("bwrap", "socat")), n
    assert not [f for f in report["findings"] if f["kind"] == "cluster_sandbox"]
    text = coord.run("doctor").stdout
    node_lines = [line for line in text.splitlines() if line.lstrip().startswith(("worker1 ", "worker2 "))]
    assert len(node_lines) == 2 and all("sandbox ok" in line for line in node_lines), text
    assert all("remote unreachable" in line for line in node_lines), text


def test_the_coordinators_secrets_stay_home_unless_named_in_ray_env(coord: Coord) -> None:
    """An agent on a node has that node's own key, never the coordinator's; of the coordinator's variables it
    gets only those named in ray_env. The node's key, echoed bare, is masked here though it never came here."""
    coord.env.update(ANTHROPIC_API_KEY="sk-coordinator-secret", FORWARD_ME="forwarded", KEEP_ME="kept-home")
    with open(coord.repo / ".orchestra" / "config.toml", "a") as fh:
        fh.write('ray_env = ["FORWARD_ME"]\n')
    probe = "; ".join(
        f"printf '%s' \"${name}\" > {name}.txt" for name in ("ANTHROPIC_API_KEY", "FORWARD_ME", "KEEP_ME")
    )
    tid = coord.submit(
        f"task env\n@fake bash {probe}\n@fake bash echo node key: $ANTHROPIC_API_KEY\n@fake commit add env"
    )
    worker = coord.run("worker", "--until-idle", timeout=120)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    task = coord.show(tid)
    assert task["state"] == "succeeded", task
    seen = {
        name: coord.branch_file(task["branch"], f"{name}.txt")
        for name in ("ANTHROPIC_API_KEY", "FORWARD_ME", "KEEP_ME")
    }
    assert seen == {"ANTHROPIC_API_KEY": "sk-test-dummy", "FORWARD_ME": "forwarded", "KEEP_ME": ""}, seen
    for args in (("logs", tid), ("logs", "--raw", tid)):
        shown = coord.here(*args)
        assert "node key: ***" in shown and "sk-test-dummy" not in shown, shown


@pytest.mark.e2e
def test_the_real_claude_code_cli_on_a_node_asks_here_and_its_commit_comes_home(coord: Coord) -> None:
    """The real CLI as the agent on a node, against the Messages-API stub in the nodes' network: its permission
    question reaches status here, the answer reaches it there, and the commit it made comes home."""
    from real_claude import STUB_PATH, claude_or_skip

    claude = claude_or_skip()
    stub = subprocess.Popen(
        coord.cluster.argv([sys.executable, str(STUB_PATH), "--port", str(STUB_PORT)]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert stub.stdout is not None and stub.stdout.readline().startswith("http://127.0.0.1:")
        coord.env["ORCHESTRA_TEST_REAL_CLAUDE"] = claude
        with open(coord.repo / ".orchestra" / "config.toml", "a") as fh:
            fh.write('ray_env = ["ORCHESTRA_TEST_REAL_CLAUDE"]\n')
        tid = coord.submit("[[scenario:write-commit]] Add hello.txt and commit it.", "--role", "implementer")
        coord.start_worker()
        coord.wait_for(lambda: coord.show(tid)["state"] == "awaiting_input", timeout=120, what="the agent's question")
        status = coord.run("status", check=True).stdout
        assert f"{tid}" in status and "asks: Bash: git add hello.txt" in status, status
        coord.run("respond", tid, "--allow", check=True)
        done = coord.wait_for(lambda: (t := coord.show(tid))["state"] in ("succeeded", "failed") and t, timeout=120)
        assert done["state"] == "succeeded", done
        assert done["node"] in ("worker1", "worker2") and done["cost_usd"] > 0, done
        assert coord.branch_file(done["branch"], "hello.txt") == "hello from the stub\n"
        assert coord.invocations(tid) == []  # the fake never ran: the real CLI did
        log = coord.run("logs", tid, check=True).stdout  # the node's transcript, streamed here
        assert "→ Write" in log and "hello.txt" in log and "✓ success" in log, log
    finally:
        os.killpg(stub.pid, signal.SIGTERM)
        stub.wait(timeout=30)


# Last: it leaves the cluster one node short.
def test_node_killed_mid_run_runs_again_elsewhere(coord: Coord) -> None:
    """The killed node's run is lost and runs again elsewhere; a session left on that node cannot be resumed."""
    gate = coord.gate("survivor")
    tid = coord.submit(write_commit("survivor", f"@fake wait-for {gate}"))
    coord.start_worker()
    first = coord.wait_for(lambda: (t := coord.show(tid))["state"] == "running" and t.get("node") and t, what="start")
    coord.wait_for(lambda: agents_of(tid), what="the agent")
    box = {"worker1": "gpu_box", "worker2": "db_box"}[first["node"]]
    asker = coord.submit("ask on the doomed node\n@fake text Which colour?", "--resources", json.dumps({box: 1}))
    coord.wait_for(lambda: coord.show(asker)["state"] == "succeeded", what="a session on that node")
    assert coord.show(tid)["state"] == "running" and agents_of(tid), "the survivor ended before its node was killed"
    coord.cluster.kill_node(first["node"])
    coord.wait_for(lambda: len(coord.invocations(tid)) == 2, timeout=90, what="the run elsewhere")
    gate.touch()
    done = coord.wait_for(lambda: (t := coord.show(tid))["state"] in ("succeeded", "failed") and t, timeout=90)
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 2 and done["node"] != first["node"]
    assert coord.branch_file(done["branch"], "survivor.txt") == "survivor\n"
    coord.run("respond", asker, "Blue.", check=True)
    failed = coord.wait_for(lambda: (t := coord.show(asker))["state"] == "failed" and t, what="the resume to fail")
    assert f"on node {first['node']}, which has left the cluster" in failed["error"], failed


def host_of(pid: int) -> int | None:
    """The node host a process runs under: its nearest ancestor titled `ray::NodeHost`."""
    while pid > 1:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::NodeHost"):
                return pid
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return None


def test_a_host_that_dies_while_a_task_starts_costs_one_attempt(coord: Coord) -> None:
    """The host ends during the task's setup, before any agent ran: that attempt is lost, never a failure.

    The setup waits on its first run only (a gate file the nodes share), so the second attempt is quick.
    """
    gate = coord.cluster.node_root / f"gate-{coord.repo.name}"
    with open(coord.repo / ".orchestra" / "config.toml", "a") as fh:
        # Unconfined, so setup may write the gate outside its checkout; the sandbox is not this test's subject.
        fh.write(f'sandbox = "off"\nsetup = "test -e {gate} || {{ touch {gate}; exec sleep 60; }}"\n')
    tid = coord.submit(write_commit("late"))
    coord.start_worker()

    def setup_host() -> int | None:
        for pid in agents_of(tid):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"):
                    return host_of(pid)
            except OSError:
                continue
        return None

    os.kill(coord.wait_for(setup_host, what="the task's setup on a node"), signal.SIGKILL)
    done = coord.wait_for(lambda: (t := coord.show(tid))["state"] in ("succeeded", "failed") and t, timeout=120)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert len(coord.invocations(tid)) == 1  # the lost attempt never reached the agent
    events = [json.loads(line) for line in (coord.repo / ".orchestra" / "events" / f"{tid}.jsonl").open()]
    assert [e.get("reason") for e in events if e["event"] == "requeued"] == ["node lost"], events

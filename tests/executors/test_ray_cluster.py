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
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_CLAUDE, ROOT, make_orch, make_repo
from raycluster import Cluster, unavailable, up

WHY = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY is not None, reason=f"Ray cluster tests: {WHY}")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    coord = tmp_path_factory.mktemp("coordinator")  # every test repository lives here: masked on the nodes
    nodes = tmp_path_factory.mktemp("nodes")
    c = up(
        mask=[coord],
        node_root=nodes,
        workers=[{}, {"db_box": 1}],
        env={
            "PYTHONPATH": str(ROOT),
            "ORCHESTRA_CLAUDE": str(FAKE_CLAUDE),
            "FAKE_CLAUDE_LOG": str(nodes / "fake-invocations.jsonl"),
            "GIT_CONFIG_NOSYSTEM": "1",
            # A dead node is known in about 2.5 s instead of 15.
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        },
    )
    c.coord_root = coord  # type: ignore[attr-defined]
    c.node_root = nodes  # type: ignore[attr-defined]
    try:
        yield c
    finally:
        c.down()


class Coord:
    """orchestra on a repository whose executor is the cluster, run as processes inside its namespace."""

    def __init__(self, cluster: Cluster, name: str, tmp_path: Path) -> None:
        self.cluster = cluster
        self.repo = make_repo(cluster.coord_root / name)  # type: ignore[attr-defined]
        self.orch = make_orch(self.repo, tmp_path)
        self.env = dict(self.orch.env)
        self.env["FAKE_CLAUDE_LOG"] = str(cluster.node_root / "fake-invocations.jsonl")  # type: ignore[attr-defined]
        self.env["RAY_AUTH_MODE"] = "disabled"
        self.procs: list[subprocess.Popen[str]] = []
        self.run("config", "set", "executor", "ray", check=True)
        self.run("config", "set", "ray_address", cluster.address, check=True)
        self.run("config", "set", "autostart", "false", check=True)
        self.run("config", "set", "kill_grace", "3", check=True)

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

    def submit(self, prompt: str, *args: str) -> str:
        return self.run("submit", "--no-start", *args, prompt, check=True).stdout.strip()

    def show(self, task_id: str) -> dict[str, Any]:
        return json.loads(self.run("show", task_id, "--json", check=True).stdout)

    def start_worker(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.cluster.argv([sys.executable, "-m", "orchestra", "worker", *args]),
            cwd=self.repo,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

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

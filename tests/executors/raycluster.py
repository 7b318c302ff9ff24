"""A real multi-node Ray cluster on this machine, for the Ray executor's tests and benchmark.

Everything runs in a private network namespace (`unshare --net`, with `lo` up), so
Ray's traffic stays on loopback and no port of the host is used; several clusters can
run at once. Worker nodes run in their own mount namespace where the coordinator's
directory is covered by an empty tmpfs: a test that passes because node and
coordinator share a disk would prove nothing. Needs root (CI runs as root).

Stopping never uses `ray stop` (it ends every Ray process on the machine): the node
process groups are SIGKILLed, then every process left in the namespace.
(Adapted from the spike in research/ray/cluster.py; see its FINDINGS.md.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def unavailable() -> str | None:
    """Why a cluster cannot run here, or None."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install 'orchestra[ray]')"
    if os.geteuid() != 0:
        return "needs root for unshare --net / --mount (CI runs as root)"
    for tool in ("unshare", "nsenter", "ip", "ss"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not os.path.exists(RAY):
        return f"no ray command beside {sys.executable}"
    return None


def _netns(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def pids_in_netns(ns: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/ns/net") == ns:
                    out.append(int(d))
            except OSError:
                pass
    return out


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    resources: dict[str, float]
    node_dir: Path | None = None


@dataclass
class Cluster:
    holder: int
    netns: str
    port: int
    temp_root: Path
    nodes: list[Node] = field(default_factory=list)
    startup_seconds: float = 0.0
    coord_root: Path = Path("/nonexistent")  # what the nodes cannot see: where coordinators' repositories go
    node_root: Path = Path("/nonexistent")  # the nodes' own directories

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self, argv: list[str]) -> list[str]:
        """argv run inside the cluster's network namespace (nsenter execs: the pid is argv's)."""
        return ["nsenter", "-t", str(self.holder), "-n", *argv]

    def kill_node(self, name: str) -> None:
        """SIGKILL a worker node: its `ray start` group and every process of its mount namespace."""
        node = next(n for n in self.nodes if n.name == name)
        mnt = os.readlink(f"/proc/{node.proc.pid}/ns/mnt") if node.proc.poll() is None else None
        try:
            os.killpg(node.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.proc.wait()
        if mnt:  # raylet, workers, actors and agents of that node share its mount namespace
            for _ in range(20):
                left = [p for p in pids_in_netns(self.netns) if _mnt(p) == mnt]
                if not left:
                    break
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)

    def down(self) -> None:
        for node in reversed(self.nodes):
            try:
                os.killpg(node.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(50):
            pids = [p for p in pids_in_netns(self.netns) if p != self.holder]
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            os.kill(self.holder, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.wait(5)
        shutil.rmtree(self.temp_root, ignore_errors=True)


def _mnt(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _wait_for(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}:\n{path.read_text()[-3000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"no {needle!r} in {path} after {timeout}s")


def up(
    *,
    mask: list[Path],
    node_root: Path,
    workers: list[dict[str, float]],
    env: dict[str, str],
    port: int = 6379,
    timeout: float = 120,
    worker_cpus: int = 0,
    object_store_mb: int = 100,
    auth_token: str | None = None,
) -> Cluster:
    """Head (no slots) plus one worker node per entry of `workers` (its resources); `env` reaches every node."""
    t0 = time.monotonic()
    import tempfile

    temp_root = Path(tempfile.mkdtemp(prefix="orr", dir="/tmp"))  # short: AF_UNIX paths are at most 107 bytes
    base = dict(os.environ)
    base.update(env)
    base.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"})
    if auth_token:  # Ray's token authentication, on every node
        base.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": auth_token})
    my_ns = _netns("self")
    holder = subprocess.Popen(
        ["unshare", "--net", "sleep", "infinity"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(400):
        try:
            if _netns(holder.pid) != my_ns:
                break
        except OSError:
            pass
        time.sleep(0.005)
    subprocess.run(["nsenter", "-t", str(holder.pid), "-n", "ip", "link", "set", "lo", "up"], check=True)
    cluster = Cluster(holder.pid, _netns(holder.pid), port, temp_root, coord_root=mask[0], node_root=node_root)
    common = [
        "--block",
        "--disable-usage-stats",
        "--num-cpus",
        "0",
        "--object-store-memory",
        str(object_store_mb * 1024 * 1024),
        "--include-log-monitor",
        "false",
        "--node-ip-address",
        "127.0.0.1",
    ]
    try:
        head_log = temp_root / "head.log"
        with open(head_log, "wb") as out:
            head = subprocess.Popen(
                cluster.argv(
                    [
                        RAY,
                        "start",
                        "--head",
                        "--port",
                        str(port),
                        "--resources",
                        "{}",
                        "--include-dashboard",
                        "false",
                        "--no-monitor",
                        "--dashboard-agent-listen-port",
                        "52365",
                        "--temp-dir",
                        str(temp_root / "head"),
                        *common,
                    ]
                ),
                env=base,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        cluster.nodes.append(Node("head", head, head_log, {}))
        # Workers may start once the head says its runtime started (its GCS holds the session name by
        # then). Not a file of the Ray client server: a plain `pip install ray` does not start one.
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in head_log.read_bytes():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the head did not start:\n{head_log.read_text()[-3000:]}")
            time.sleep(0.05)
        mount = " && ".join(f'mount -t tmpfs -o size=1m,mode=0755 orchestra-mask "${i + 1}"' for i in range(len(mask)))
        for i, res in enumerate(workers):
            name = f"worker{i + 1}"
            node_dir = node_root / name
            (node_dir / "home").mkdir(parents=True, exist_ok=True)
            wenv = dict(
                base,
                ORCHESTRA_NODE_DIR=str(node_dir / "orchestra"),
                ORCHESTRA_NODE_NAME=name,
                HOME=str(node_dir / "home"),
                FAKE_CLAUDE_STATE=str(node_dir / "fake-state"),
            )
            log = temp_root / f"{name}.log"
            ray_argv = [
                RAY,
                "start",
                "--address",
                f"127.0.0.1:{port}",
                "--resources",
                json.dumps({"orchestra_agent": 2, **res} if "orchestra_agent" not in res else res),
                "--dashboard-agent-listen-port",
                str(52366 + i),
                "--temp-dir",
                str(temp_root / name),
                *common,
                # last wins: a node's CPUs also bound how many Ray workers it starts at once (at least 1)
                *(["--num-cpus", str(worker_cpus)] if worker_cpus else []),
            ]
            # cd after mounting: a cwd inside a masked directory would still show its files.
            script = f'{mount} && cd "$ORCHESTRA_NODE_DIR/.." && shift {len(mask)} && exec "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
            argv += [str(m) for m in mask] + ray_argv
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    cluster.argv(argv),
                    env=wenv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            cluster.nodes.append(Node(name, proc, log, res, node_dir))
        for node in cluster.nodes:
            _wait_for(node.log, "Ray runtime started", node.proc, max(deadline - time.monotonic(), 1))
    except BaseException:
        cluster.down()
        raise
    cluster.startup_seconds = round(time.monotonic() - t0, 2)
    return cluster

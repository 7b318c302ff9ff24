"""The Ray executor: each agent on a node of a Ray cluster, in that node's long-lived host.

Three Ray objects per repository (each in a namespace per repository, so two
repositories' task ids never meet):

- A *slot* is a detached named placement group, `task-<id>`, of one bundle
  `{"orchestra_agent": 1, **resources}`. Reserving it starts no process, so a task
  waiting for room costs nothing on any node; which node it got is in the group's
  table; a resumed session's slot is pinned to its node by the `ray.io/node-id` label.
- A *host* is one detached named actor per node, `host-<orchestra version>-<node id>`,
  a threaded process that runs every agent the repository has on that node. Why not
  an actor per task (as before): each actor is a new Python worker process (about a
  CPU-second, and Ray reuses no idle worker for an actor), so dispatch cost seconds;
  a host pays that once per node, is warmed on every node when a scheduler first
  places a task, and ends after `ORCHESTRA_HOST_IDLE` seconds without a run. Why not
  Ray Jobs: a job gives no calls into the running agent (stream the transcript, relay
  permission answers, stop its process group), and its driver would need the
  repository on the node.
- The task's run inside the host (`NodeAgent`), keyed by task id.

A scheduler that dies leaves all three; the next one finds the run again by name
(slot -> node -> host -> task) without any record of ours. A host knows only the
runs opened in it: one that replaced a dead host knows none (UnknownTask), so such a
run counts as lost, never as adopted. An agent runs under a guard that ends its
process group if its host dies.

What stays as it is locally: the queue, the logs and the request files live on the
coordinator. The node gets the task's starting commit as a pack through Ray's object
store (only what its mirror lacks), clones it under its own orchestra directory
(`ORCHESTRA_NODE_DIR`, else `~/.orchestra-node`), runs its own `claude` (its PATH or
`ORCHESTRA_CLAUDE`), and hands the finished branch back as a pack that becomes
`orchestra/<id>-<slug>` here. With `ray_git_remote` set, a shared git remote carries the
commits instead of Ray (for repositories too big for the object store): the coordinator
pushes the starting commit to `refs/orchestra/base/<id>` there and the node fetches it into
its mirror; the node pushes the finished branch to `refs/orchestra/done/<id>`, and the
coordinator fetches it and deletes both refs once the branch is home. Each machine uses its
own git credentials; only the URL and commit ids go through Ray.

Retries are orchestra's own: hosts have `max_restarts=0` and `max_task_retries=0`.
A node that dies takes its host with it (ActorDiedError); the run counts as an
attempt and the task is queued again to run wherever there is room. Nothing secret
goes into `runtime_env` (Ray shows and logs it): only the variables named in
`ray_env` travel, as arguments of the start call.

Only this module imports Ray (an import-linter contract keeps it so).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.exceptions as rex
from ray.util import list_named_actors
from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import orchestra
from orchestra.agent import bootstrap, claude, guard, permissions, processes, sandbox
from orchestra.core import redact
from orchestra.core.config import CLAUDE_ENV, Config
from orchestra.core.crashpoints import ENV as CRASH_ENV
from orchestra.core.errors import OrchestraError
from orchestra.core.task import Task, validate_id
from orchestra.executors.base import RUNNING, Collected, Handle, Launch, RunLost, Unreachable, cluster_problem
from orchestra.executors.spares import Spares
from orchestra.git import refs, repo, transport, workspace, worktrees
from orchestra.git.runner import git
from orchestra.store import fingerprints, requests
from orchestra.store.files import private_opener
from orchestra.store.paths import Paths
from orchestra.store.tasks import Store

RESOURCE = "orchestra_agent"
NODE_DIR_ENV = "ORCHESTRA_NODE_DIR"
NODE_NAME_ENV = "ORCHESTRA_NODE_NAME"
HOST_IDLE_ENV = "ORCHESTRA_HOST_IDLE"
HOST_IDLE = 1800.0  # a host that has held no run this long ends (ORCHESTRA_HOST_IDLE, seconds, on the node)
CALL_TIMEOUT = 60.0  # the longest one control call (pull, stop, start) may take
TRANSFER_TIMEOUT = 900.0  # packs in and out, clone, setup
UNAVAILABLE_LIMIT = 120.0  # a host unreachable this long (not known dead) counts as lost
HOST_THREADS = 512  # a run needs up to three calls at once (wait, pull, stop): room for ~170 agents a node
NODE_LABEL = "ray.io/node-id"  # every node carries this label (Ray >= 2.49): a bundle selector on it pins a slot
WAIT_MIN = 0.5  # the least a wait() blocks: a poll is a network round trip
LOG_CHUNK = 4 << 20
JOIN_TRIES = 5  # seconds Ray keeps asking a cluster that answers to let this machine join
JOIN_BACKOFF = 30.0  # after the cluster refused to let us join: no new run tries again for this long
FREE_WAIT = 0.5  # the longest a freed slot waits to show in Ray's resource view (it takes 20-100 ms)


def namespace_for(root: Path) -> str:
    """One Ray namespace per repository, so two repositories' task ids never meet."""
    return "orchestra-" + hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]


def slot_name(task_id: str) -> str:
    """The task's placement group: its slot, and how a new scheduler finds its node."""
    return f"task-{validate_id(task_id)}"


def base_ref(task_id: str) -> str:
    """The task's starting commit, on a node's mirror and on the shared remote."""
    return f"refs/orchestra/base/{validate_id(task_id)}"


def done_ref(task_id: str) -> str:
    """The task's finished branch, on a node's mirror and on the shared remote."""
    return f"refs/orchestra/done/{validate_id(task_id)}"


def host_name(node_id: str) -> str:
    """The node's host. The version is in the name: a host runs the code it started with."""
    if not re.fullmatch(r"[0-9a-f]{16,64}", node_id):
        raise OrchestraError(f"not a Ray node id: {node_id!r}")
    return f"host-{orchestra.__version__}-{node_id}"


# -- on the node ---------------------------------------------------------------------------


def node_root() -> Path:
    """orchestra's own directory on this node: mirrors, task checkouts, transcripts."""
    root = Path(os.environ.get(NODE_DIR_ENV) or Path.home() / ".orchestra-node")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def node_name() -> str:
    return os.environ.get(NODE_NAME_ENV) or socket.gethostname()


SPARE_DELAY = 2.0  # after an agent starts: the runs starting with it are not slowed by the spares


class NodeAgent:
    """One task's run on a node. Its methods are called by the coordinator; none of them trusts a path it is given."""

    def __init__(
        self, task_id: str, namespace: str, spares: Spares | None = None, runs: Callable[[], int] = lambda: 1
    ) -> None:
        self.task_id = validate_id(task_id)
        self.spares = spares
        self.runs = runs  # how many runs the host holds now: the spares it keeps ready
        base = node_root() / namespace
        self.mirror = base / "mirror.git"
        self.root = base / "tasks" / self.task_id
        self.checkout = self.root / "checkout"
        self.log_path = self.root / "transcript.jsonl"
        self.err_path = self.root / "stderr.log"
        self.request_dir = self.root / "requests"
        self.run_dir = self.root / "run"
        self.base: str | None = None
        self.branch = ""
        self.pgid: int | None = None
        self.guard_pid: int | None = None
        self.copied: list[str] = []
        self.err_home = 0  # how much of the coordinator's stderr file earlier runs wrote: where this run's starts
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "node_id": ctx.get_node_id(),
            "node": node_name(),
            "pid": os.getpid(),
            "ray": ray.__version__,
            "python": sys.version.split()[0],
            "orchestra": orchestra.__version__,
        }

    def have(self) -> list[str]:
        transport.init_mirror(self.mirror)
        return transport.tips(self.mirror)

    def receive(self, pack: bytes, tip: str) -> None:
        """Store `tip`'s objects in the node's mirror ahead of setup, kept under this task's base ref: the
        node's other new tasks then find it there and are sent nothing."""
        with self.lock:
            transport.init_mirror(self.mirror)
            transport.receive_pack(self.mirror, pack, tip)
            transport.keep(self.mirror, base_ref(self.task_id), tip)

    def setup(
        self, pack: bytes, tip: str, branch: str, copies: bytes, copied: list[str], config: Config, task: Task
    ) -> dict[str, Any]:
        """Make the checkout of `tip` on `branch`, put the copied files in, run `setup`.

        `tip` comes in `pack`, or, with `ray_git_remote` set, from that remote (the node's own
        credentials fetch it; the coordinator pushed it there). The copied paths (this run's and
        earlier runs') go into the checkout's exclude list before the agent runs, as locally:
        whatever it does, `git add -A` leaves them off the branch."""
        with self.lock:
            shutil.rmtree(self.root, ignore_errors=True)  # a task id reused on this node starts clean
            self.root.mkdir(mode=0o700, parents=True)
            self.request_dir.mkdir(mode=0o700)
            transport.init_mirror(self.mirror)
            if config.ray_git_remote:
                transport.fetch_ref(self.mirror, str(config.ray_git_remote), base_ref(self.task_id), tip)
            elif pack:  # else `tip` came ahead (receive, or an earlier task): checking it again costs a git per task
                transport.receive_pack(self.mirror, pack, tip)
            transport.keep(self.mirror, base_ref(self.task_id), tip)
            if not self._take_spare(branch, tip):
                transport.checkout(self.mirror, self.checkout, branch, tip)
            self.base, self.branch = tip, branch
            self.copied = _extract(copies, self.checkout)
            workspace.write_excludes(self.checkout, sorted({*task.copied, *copied}))
            if config.setup:
                made = bootstrap.setup_in(config, task, self.checkout, self.checkout)
                if made:
                    self.copied += made
                    workspace.write_excludes(self.checkout, sorted({*task.copied, *copied, *made}))
            return {"head": tip, "copied": self.copied}

    def _take_spare(self, branch: str, tip: str) -> bool:
        """The checkout from a spare made ahead (see spares.py); False when there is none to take."""
        if self.spares is None:
            return False
        try:
            if not self.spares.take(self.checkout):
                return False
            transport.take_over(self.checkout, branch, tip)
            return True
        except (OrchestraError, OSError):
            shutil.rmtree(self.checkout, ignore_errors=True)  # then made the usual way
            return False

    def start(self, run: dict[str, Any], env: dict[str, str], err_home: int = 0) -> int:
        """Start Claude Code under the guard; returns its process group."""
        with self.lock:
            if self.pgid is not None:
                raise OrchestraError("this task's agent was started already")
            self.err_home = err_home
            binary = claude.resolve_binary(os.environ.get(CLAUDE_ENV) or "claude")
            extra = list(run["claude_args"])
            if run["prompt_tool"]:
                extra += permissions.prompt_tool_args(
                    self.request_dir, self.task_id, run["attempt"], run["permission_timeout"]
                )
            argv = claude.build_argv(
                binary,
                run["role"],
                run["prompt"],
                system_prompt=run["system_prompt"],
                extra_args=extra,
                resume=run["resume"],
                max_budget_usd=run["max_budget_usd"],
                sandbox=run["sandbox"],
            )
            full_env = dict(os.environ)
            full_env.pop(CRASH_ENV, None)
            full_env.update(env)
            full_env.update({processes.TASK_ENV: self.task_id, processes.REPO_ENV: str(self.checkout)})
            self.run_dir.mkdir(mode=0o700, exist_ok=True)
            # -S -I: the guard needs only the standard library, and skipping site-packages' start-up
            # hooks (the editable install's finder, setuptools' shim) saves ~0.25 s of every dispatch.
            guard_argv = [sys.executable, "-S", "-I", guard.__file__, str(os.getpid()), str(self.run_dir), "--"]
            guard_argv += argv
            with (
                open(self.log_path, "ab", opener=private_opener) as out,
                open(self.err_path, "ab", opener=private_opener) as err,
            ):
                first = subprocess_run(guard_argv, self.checkout, out, err, full_env)
            if first != 0:
                raise OrchestraError(f"the guard could not start the agent (exit {first})")
            pids = self.run_dir / "pids.json"
            deadline = time.monotonic() + 30
            while not pids.exists():
                if (self.run_dir / "rc").exists():
                    raise OrchestraError(f"cannot start {binary}: {self.err_path.read_text(errors='replace')[-300:]}")
                if time.monotonic() > deadline:
                    raise OrchestraError("the guard did not start the agent within 30s")
                time.sleep(0.01)
            data = json.loads(pids.read_text())
            self.guard_pid, self.pgid = int(data["guard"]), int(data["pid"])
            if self.spares is not None and self.base:
                self.spares.refill(self.base, self.runs(), delay=SPARE_DELAY)  # for the runs that come next
            return self.pgid

    def rc(self) -> int | None:
        """The agent's exit status once it ended (-255: its guard vanished without saying)."""
        if self.pgid is None:
            return None
        f = self.run_dir / "rc"
        if f.exists():
            return int(json.loads(f.read_text())["rc"])
        if self.guard_pid is not None and not processes.is_alive(self.guard_pid, None):
            return int(json.loads(f.read_text())["rc"]) if f.exists() else -255  # raced with the guard's end
        return None

    def status(self) -> dict[str, Any]:
        return {
            **self.info(),
            "started": self.pgid is not None,
            "rc": self.rc(),
            "checkout": str(self.checkout),
            "err_home": self.err_home,
        }

    def pull(
        self,
        log_offset: int,
        err_offset: int,
        relayed: list[str],
        answers: dict[str, dict[str, Any]],
        always: list[str],
    ) -> dict[str, Any]:
        """Everything new since the last pull: exit status, transcript, stderr, questions, decisions made here."""
        for rid, a in answers.items():
            requests.answer(
                self.request_dir,
                rid,
                a["state"],
                message=a.get("message"),
                always=a.get("always"),
                by=a.get("by", "person"),
            )
        if always and sorted(always) != sorted(requests.always_rules(self.request_dir)):
            requests.set_always_rules(self.request_dir, always)
        rc = self.rc()  # before reading: the transcript read after it is complete when rc is set
        known = set(relayed)
        new, decided = [], {}
        for r in requests.requests(self.request_dir):
            if r["id"] not in known:
                new.append({k: v for k, v in r.items() if k not in ("state", "answer")})
            elif r.get("answer"):
                decided[r["id"]] = r["answer"]
        return {
            "rc": rc,
            "started": self.pgid is not None,
            "log": _read(self.log_path, log_offset),
            "err": _read(self.err_path, err_offset, 1 << 16),
            "requests": new,
            "decided": decided,
        }

    def wait(self, seconds: float) -> int | None:
        """Block up to `seconds`, returning early when the agent ends."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            code = self.rc()
            if code is not None:
                return code
            time.sleep(0.05)
        return self.rc()

    def stop(self, grace: float) -> int | None:
        """SIGTERM the agent's process group, SIGKILL after `grace`; returns its exit status."""
        if self.pgid is None or self.rc() is not None:
            return self.rc()
        _killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.rc() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        _killpg(self.pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.rc() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.rc()

    def finish(self, message: str, identity: dict[str, str], exclude: list[str], remote: str = "") -> dict[str, Any]:
        """Commit what the agent left; the branch's new commits as a pack, with its head.

        With a shared `remote`, the new commits go there instead (`pushed`), as the task's done
        ref. They are pushed from the mirror, not the checkout: the agent could have written the
        checkout's git config (an `insteadOf`, an ssh command), never the mirror's."""
        with self.lock:
            if self.base is None or not (self.checkout / ".git").exists():
                return {"head": None, "commit": None, "pack": b"", "base": self.base}
            commit = worktrees.commit_leftovers(self.checkout, message, identity, exclude=exclude)
            head = refs.branch_head(self.checkout, self.branch) or self.base
            pack = transport.make_pack(self.checkout, head, [self.base]) if head != self.base else b""
            if remote and pack:
                transport.receive_pack(self.mirror, pack, head)
                transport.keep(self.mirror, done_ref(self.task_id), head)
                transport.push_ref(self.mirror, remote, head, done_ref(self.task_id))
                return {"head": head, "commit": commit, "pack": b"", "base": self.base, "pushed": True}
            return {"head": head, "commit": commit, "pack": pack, "base": self.base}

    def cleanup(self) -> None:
        """Keep the branch's objects in the mirror (later tasks ship less), then remove the task's files."""
        with self.lock:
            head = refs.branch_head(self.checkout, self.branch) if (self.checkout / ".git").exists() else None
            if head and head != self.base:
                try:
                    if not transport.known(self.mirror, [head]):  # finish put it there when it pushed to a remote
                        transport.receive_pack(
                            self.mirror, transport.make_pack(self.checkout, head, [self.base or head]), head
                        )
                    transport.keep(self.mirror, done_ref(self.task_id), head)
                except OrchestraError:
                    pass
            shutil.rmtree(self.root, ignore_errors=True)
            try:  # what a node keeps stays bounded; a failure here costs disk, never a task
                tasks = self.root.parent
                live = {p.name for p in tasks.iterdir()} if tasks.is_dir() else set()
                transport.prune_mirror(self.mirror, live)
            except (OrchestraError, OSError):
                pass


def subprocess_run(argv: list[str], cwd: Path, out: Any, err: Any, env: dict[str, str]) -> int:
    return subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env).returncode


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read(path: Path, offset: int, limit: int = LOG_CHUNK) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(limit)
    except FileNotFoundError:
        return b""


def _extract(data: bytes, into: Path) -> list[str]:
    """Unpack the copied files, refusing anything that would land outside the checkout or replace a file."""
    if not data:
        return []
    copied: list[str] = []
    real = into.resolve()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            target = (into / member.name).resolve()
            if target != real and real not in target.parents:
                raise OrchestraError(f"copy: {member.name} would land outside the task checkout")
            if os.path.lexists(into / member.name):
                continue  # tracked on the branch: the branch's version wins
            tar.extract(member, into, filter="data")
            if "/" not in member.name.strip("/"):
                copied.append(member.name)
    return copied


class UnknownTask(OrchestraError):
    """The host does not hold this task's run: it was never opened there, or this host replaced a dead one."""


class HostRetired(OrchestraError):
    """The host is ending (idle too long): the caller starts a new one."""


_CALLS = frozenset({"have", "receive", "setup", "start", "status", "pull", "wait", "stop", "finish"})


class NodeHost:
    """Every agent of one repository on one node, in one long-lived process (see the module's docstring).

    Calls come from several coordinator threads at once (a threaded actor): the table of runs has
    its own lock, and each run serialises its own state changes with NodeAgent.lock.

    A host that has held no run for `ORCHESTRA_HOST_IDLE` seconds ends itself, so the hosts of a
    repository no longer used, or of an older orchestra, do not keep a process on every node.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.agents: dict[str, NodeAgent] = {}
        self.closing: dict[str, threading.Thread] = {}
        self.lock = threading.Lock()
        self.started = time.time()
        self.busy = time.monotonic()  # when it last held a run
        self.retired = False
        self.idle = float(os.environ.get(HOST_IDLE_ENV) or HOST_IDLE)
        base = node_root() / namespace
        self.spares = Spares(base / "spares", base / "mirror.git")
        threading.Thread(target=self._watch_idle, daemon=True).start()

    def _watch_idle(self) -> None:
        me = ray.get_runtime_context().current_actor
        while True:
            time.sleep(min(max(self.idle / 4, 0.5), 60.0))
            with self.lock:
                due = not self.agents and not self.closing and time.monotonic() - self.busy >= self.idle
            if due:
                me.retire.remote()  # an actor may end itself only from one of its own calls

    def retire(self) -> None:
        """End this host if it still holds no run (see _watch_idle)."""
        with self.lock:
            if self.agents or self.closing or time.monotonic() - self.busy < self.idle:
                return
            self.retired = True
        self.spares.drop()  # a host that ends leaves no checkouts behind on the node
        ray.actor.exit_actor()

    def info(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        with self.lock:
            held = len(self.agents)
        return {
            "node_id": ctx.get_node_id(),
            "node": node_name(),
            "pid": os.getpid(),
            "host_started": self.started,
            "runs": held,
            "ray": ray.__version__,
            "python": sys.version.split()[0],
            "orchestra": orchestra.__version__,
        }

    def open(self, task_id: str, salt: str = "") -> dict[str, Any]:
        """A new run of the task here, ending what an earlier run of it left; returns what the mirror holds,
        and the fingerprints (made with the coordinator's `salt`) of this node's secrets its agent runs with:
        the coordinator masks them in the transcript without ever learning them."""
        agent = NodeAgent(task_id, self.namespace, self.spares, self._runs)
        with self.lock:
            old = self.agents.pop(agent.task_id, None)
            closing = self.closing.get(agent.task_id)
        if old is not None:
            old.stop(10.0)
        if closing is not None:
            closing.join()  # its cleanup removes the directory this run is about to make
        with self.lock:
            if self.retired:
                raise HostRetired(f"the host on {node_name()} is ending (idle)")
            self.agents[agent.task_id] = agent
            self.busy = time.monotonic()
        secrets = redact.fingerprints(redact.secret_values(os.environ), salt) if salt else {}
        return {"info": self.info(), "have": agent.have(), "secrets": secrets}

    def _runs(self) -> int:
        with self.lock:
            return len(self.agents)

    def call(self, task_id: str, method: str, *args: Any) -> Any:
        """One of the run's own methods (only those in _CALLS)."""
        if method not in _CALLS:
            raise OrchestraError(f"no call {method!r} on a node")
        with self.lock:
            agent = self.agents.get(validate_id(task_id))
        if agent is None:
            raise UnknownTask(f"the host on {node_name()} holds no run of task {task_id}")
        return getattr(agent, method)(*args)

    def discard(self, task_id: str, grace: float) -> None:
        """End the run's agent and forget it; its files stay (the branch may be all that is left of the work)."""
        with self.lock:
            agent = self.agents.pop(validate_id(task_id), None)
            self.busy = time.monotonic()
        if agent is not None:
            agent.stop(grace)

    def close(self, task_id: str) -> None:
        """The branch is home: forget the run, and clean up after it in the background (no one waits for that)."""
        with self.lock:
            agent = self.agents.pop(validate_id(task_id), None)
            if agent is None:
                return
            thread = threading.Thread(target=self._cleanup, args=(agent,), daemon=True)
            self.closing[agent.task_id] = thread
            thread.start()

    def _cleanup(self, agent: NodeAgent) -> None:
        try:
            agent.cleanup()
        finally:
            with self.lock:
                if self.closing.get(agent.task_id) is threading.current_thread():
                    del self.closing[agent.task_id]
                self.busy = time.monotonic()


RemoteNodeHost: Any = ray.remote(NodeHost)


@ray.remote(num_cpus=0, max_retries=0)
def probe(claude_args: list[str], remote: str = "") -> dict[str, Any]:
    """What doctor checks on each node: versions, slots, that `claude` runs there, its sandbox, and that
    it can read `ray_git_remote` (when set) with the node's own credentials.

    The sandbox tools are looked up on this node's PATH (the one its agents get), because a node
    without them fails every task that changes files when `sandbox = "required"`, only once it runs.
    """
    out: dict[str, Any] = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node": node_name(),
        "ray": ray.__version__,
        "python": sys.version.split()[0],
        "orchestra": orchestra.__version__,
        "sandbox_tools": {name: shutil.which(name) for name in sandbox.BINARIES},
        "sandbox_missing": sandbox.unavailable(),
    }
    try:
        binary = claude.resolve_binary(os.environ.get(CLAUDE_ENV) or "claude")
        proc = subprocess.run([binary, *claude_args], capture_output=True, text=True, timeout=30)
        out["claude"] = (proc.stdout or proc.stderr).strip().splitlines()[0] if proc.returncode == 0 else None
        out["claude_error"] = None if proc.returncode == 0 else f"{binary} exited {proc.returncode}"
    except (OrchestraError, OSError, subprocess.TimeoutExpired) as exc:
        out["claude"], out["claude_error"] = None, str(exc)
    if remote:
        with tempfile.TemporaryDirectory(prefix="orchestra-probe-") as tmp:
            out["remote_error"] = transport.unreachable(remote, Path(tmp))
    return out


# -- on the coordinator --------------------------------------------------------------------


@dataclass
class _Run:
    """The coordinator's view of one remote run."""

    host: Any  # the node's host actor; None once it is known gone
    log_offset: int = 0  # bytes of the node's transcript already appended here
    err_offset: int = 0
    relayed: set[str] = field(default_factory=set)  # questions copied here
    sent: dict[str, str] = field(default_factory=dict)  # answers sent to the node (rid -> state)
    rc: int | None = None
    ended: bool = False
    lost: str | None = None
    unavailable_since: float | None = None
    last_pull: float = 0.0


_CONNECT_LOCK = threading.Lock()


class RayExecutor:
    name = "ray"

    def __init__(self, paths: Paths, config: Config) -> None:
        self.paths = paths
        self.config = config
        self.namespace = namespace_for(paths.root)
        self._prepared: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._problem_cache: tuple[float, list[str]] = (0.0, [])
        self._warmed = False
        self._connected = False  # this executor joined the cluster (a test process may have joined it itself)
        self._join_failed: tuple[float, str] = (0.0, "")  # when, and why, the cluster last refused to let us join
        self._shipping: dict[str, threading.Lock] = {}  # per node: one pack sent there at a time
        self._store = Store(paths)
        self._fp_salt = ""
        self._fp_lock = threading.Lock()

    # -- the cluster ---------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Nothing known before a run: each node's sandbox is checked by its run's init line (sandbox_enabled)."""
        return []

    def unreachable(self) -> list[str]:
        """Why no run can start now: no address, nothing answers there (checked at most every 2 s), or the
        cluster refused to let this machine join a moment ago (tried again after JOIN_BACKOFF)."""
        failed_at, refused = self._join_failed
        if refused and time.monotonic() - failed_at < JOIN_BACKOFF:
            return [refused]
        at, found = self._problem_cache
        if time.monotonic() - at < 2.0:
            return found
        why = cluster_problem(self.config)
        found = [why] if why else []
        self._problem_cache = (time.monotonic(), found)
        return found

    def close(self) -> None:
        """Leave the cluster now: Ray's own exit hook would first sleep half a second for its log printer.

        Detached hosts, slots and the agents in them are not this driver's and go on."""
        if self._connected and ray.is_initialized():
            try:
                ray.shutdown()
            except Exception:  # the runs are not this driver's; a failed goodbye must not end in a traceback
                pass
        self._connected = False

    def connect(self) -> None:
        """Join the cluster as a driver (once per process); Unreachable when it does not answer or let us in."""
        if ray.is_initialized():
            return
        with _CONNECT_LOCK:
            if ray.is_initialized():
                return
            self._problem_cache = (0.0, [])
            found = self.unreachable()
            if found:
                raise Unreachable(found[0])
            # Ray tries 20 times, a second apart, to be let in (read when joining; it also bounds a GCS this
            # process would start, and a driver starts none); the scheduler tries again later anyway.
            os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(JOIN_TRIES))
            # Leaving, a driver first waits to flush its tasks' events to the dashboard: 0.25 s of every
            # scheduler's (and doctor's) exit, for events about orchestra's own control calls nobody reads.
            os.environ.setdefault("RAY_task_events_shutdown_flush_timeout_ms", "0")
            try:
                with _without_ray_core_lines():
                    ray.init(
                        address=str(self.config.ray_address),
                        namespace=self.namespace,
                        log_to_driver=False,
                        logging_level=logging.ERROR,
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                why = f"cannot join the Ray cluster at {self.config.ray_address}: {_refusal(exc)}"
                self._join_failed = (time.monotonic(), why)
                raise Unreachable(why) from None
            self._join_failed = (0.0, "")
            self._connected = True

    def _slot(self, task_id: str) -> PlacementGroup | None:
        try:
            return get_placement_group(slot_name(task_id))
        except ValueError:
            return None

    @staticmethod
    def _slot_node(slot: PlacementGroup) -> str | None:
        """The node holding the slot, once it is placed (None while it waits, or moves off a dead node)."""
        table = placement_group_table(slot)
        if table.get("state") != "CREATED":
            return None
        node = str(table.get("bundles_to_node_id", {}).get(0) or "")
        return node if node.strip("f") else None  # a nil id is all f's

    def _host(self, node_id: str) -> Any:
        """The node's host, started there if it is not running (every caller gets the same one)."""
        return RemoteNodeHost.options(
            name=host_name(node_id),
            namespace=self.namespace,
            get_if_exists=True,
            lifetime="detached",
            max_restarts=0,
            max_task_retries=0,
            num_cpus=0,
            max_concurrency=HOST_THREADS,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(self.namespace)

    def _hosts_on(self, node_id: str) -> list[Any]:
        """The node's hosts, this version's first: a run started before an upgrade is in an older one."""
        mine = host_name(node_id)
        names = [mine] + sorted(
            n for n in list_named_actors() if n.startswith("host-") and n.endswith(f"-{node_id}") and n != mine
        )
        found = []
        for name in names:
            try:
                found.append(ray.get_actor(name, namespace=self.namespace))
            except ValueError:
                pass
        return found

    def _holder(self, task_id: str, slot: PlacementGroup | None = None) -> tuple[Any, dict[str, Any]] | None:
        """The host holding the task's run, found by its slot (how a scheduler that did not start the run finds
        it), with the run's status. UnknownTask from the others: a host never pretends to know a run."""
        slot = slot or self._slot(task_id)
        node = self._slot_node(slot) if slot is not None else None
        for host in self._hosts_on(node) if node else []:
            try:
                return host, dict(ray.get(host.call.remote(task_id, "status"), timeout=CALL_TIMEOUT))
            except Exception:
                continue
        return None

    def _locate(self, task_id: str) -> Any | None:
        held = self._holder(task_id)
        return held[0] if held else None

    def _warm(self) -> None:
        """Start a host on every node with slots, once: only the first task after a node joins pays for its host."""
        if self._warmed:
            return
        self._warmed = True
        try:
            for n in ray.nodes():
                if n["Alive"] and n["Resources"].get(RESOURCE, 0) > 0:
                    self._host(n["NodeID"]).info.remote()
        except Exception:  # warming is an optimisation: prepare starts a missing host itself
            pass

    def _discard(self, task_id: str, host: Any | None = None, slot: PlacementGroup | None = None) -> None:
        """End the task's agent (the guard would too), forget its run on the host, and free its slot."""
        slot = slot or self._slot(task_id)
        hosts = [host] if host is not None else []
        if not hosts and slot is not None:
            node = self._slot_node(slot)
            hosts = self._hosts_on(node) if node else []
        grace = float(self.config.kill_grace)
        for h in hosts:
            try:
                ray.get(h.discard.remote(task_id, grace), timeout=grace + 15)
            except Exception:
                pass
        self._free(task_id, slot)

    def _free(self, task_id: str, slot: PlacementGroup | None = None) -> None:
        """Give the task's slot back, and wait (briefly) until Ray's view of the cluster shows the room.

        Why wait: a slot asked for before that view catches up (tens of milliseconds) stays pending
        until Ray's next placement retry, about a second later; so the next task, claimed as soon as
        this one is finished, would start a second late. Others' slots changing meanwhile can hide
        the room, hence the bound."""
        slot = slot or self._slot(task_id)
        if slot is None:
            return
        try:
            held = placement_group_table(slot).get("state") == "CREATED"
            before = ray.available_resources().get(RESOURCE, 0.0)
            remove_placement_group(slot)
            deadline = time.monotonic() + FREE_WAIT
            while held and time.monotonic() < deadline and ray.available_resources().get(RESOURCE, 0.0) <= before:
                time.sleep(0.01)
        except Exception:
            pass

    def _cancelled(self, task_id: str) -> bool:
        try:
            return bool(self._store.load(task_id).cancel_requested)
        except OrchestraError:
            return False

    # -- starting ------------------------------------------------------------------------

    def prepare(self, launch: Launch, bootstrap_needed: bool) -> list[str]:
        """Reserve a slot on a node, open the run in that node's host, ship its starting commit, copy files, run setup."""
        self.connect()
        self._warm()
        task = launch.task
        self._discard(task.id)  # a previous attempt's slot and run (its branch is home or lost): not this run's
        bundle = {RESOURCE: 1.0, **launch.resources}
        pin, pin_name = self._session_node(task)
        if pin and not _alive(pin):
            raise OrchestraError(_left(pin_name))
        slot = placement_group(
            [bundle],
            name=slot_name(task.id),
            lifetime="detached",
            bundle_label_selector=[{NODE_LABEL: pin}] if pin else None,
        )
        host = None
        try:
            node_id = self._placed(slot, bundle, task, pin, pin_name)
            host, opened = self._open(node_id, task.id)
            info = opened["info"]
            tip = refs.branch_head(self.paths.root, task.branch) or launch.base_sha
            if self._remote:  # the node fetches it from there with its own credentials
                transport.push_ref(self.paths.root, self._remote, tip, base_ref(task.id))
                pack = b""
            else:
                self._ship(host, node_id, task.id, tip, opened["have"])
                pack = b""
            copies, copied = self._copies(task)
            ready = ray.get(
                host.call.remote(task.id, "setup", pack, tip, task.branch, copies, copied, self.config, task),
                timeout=TRANSFER_TIMEOUT,
            )
            copied = sorted({*copied, *(str(p) for p in ready.get("copied") or [])})
        except BaseException as exc:
            self._discard(task.id, host, slot)
            self._forget_remote(task.id)
            if isinstance(exc, rex.RayActorError):  # the host died (or its node): the attempt is lost, not failed
                raise RunLost(f"the node's host ended before the agent started: {_first_line(exc)}") from None
            if isinstance(exc, rex.RayTaskError):
                raise OrchestraError(_first_line(_cause(exc))) from None
            raise
        self._prepared[task.id] = (host, info)
        return copied

    def _ship(self, host: Any, node_id: str, task_id: str, tip: str, have: list[str]) -> None:
        """Put `tip` in the node's mirror, if it lacks it, one task at a time per node.

        Why one at a time: the first tasks sent to a new node all find its mirror empty, and each
        would otherwise be sent the whole repository at once (for a 50 MB repository and 4 slots,
        200 MB packed here, carried and indexed there). The one that waited asks again, and is
        usually sent nothing."""
        if tip in transport.known(self.paths.root, have):
            return
        with self._shipping.setdefault(node_id, threading.Lock()):
            have = list(ray.get(host.call.remote(task_id, "have"), timeout=CALL_TIMEOUT))
            pack = transport.make_pack(self.paths.root, tip, have)
            if pack:
                ray.get(host.call.remote(task_id, "receive", pack, tip), timeout=TRANSFER_TIMEOUT)

    @property
    def _remote(self) -> str:
        """The shared git remote the repository travels through, or "" for packs through Ray."""
        return str(self.config.ray_git_remote or "")

    def _forget_remote(self, task_id: str) -> None:
        """Delete the task's refs on the shared remote (its branch is home, or this run is over).

        A failure costs a stale ref there, never the task: the next run of the task overwrites it."""
        if not self._remote:
            return
        try:
            transport.delete_refs(self.paths.root, self._remote, [base_ref(task_id), done_ref(task_id)])
        except OrchestraError:
            pass

    def _session_node(self, task: Task) -> tuple[str | None, str]:
        """The node holding the Claude Code session this run resumes, if it resumes one: it must run there.

        Known from the task itself before `launch.resume` is set (prepare runs first): a reply or a
        crash resumes the task's own session, a workflow revision continues its earlier round's."""
        holder = task if task.resume_session else None
        if task.continue_session and task.revision_of and not holder:
            try:
                holder = self._store.load(task.revision_of)
            except OrchestraError:
                holder = None
        if holder is None or not holder.node_id:
            return None, ""
        return holder.node_id, holder.node or holder.node_id[:12]

    def _open(self, node_id: str, task_id: str) -> tuple[Any, dict[str, Any]]:
        """Open the run in the node's host; a host that is ending (idle) as we call it is replaced."""
        deadline = time.monotonic() + 30  # a loaded cluster can take that long to let a dead host's name go
        while True:
            host = self._host(node_id)
            try:
                opened = dict(ray.get(host.open.remote(task_id, self._salt), timeout=CALL_TIMEOUT))
                self._learn_secrets(opened.get("secrets"))
                return host, opened
            except (rex.RayActorError, rex.RayTaskError) as exc:
                retiring = isinstance(exc, rex.RayActorError) or isinstance(exc.cause, HostRetired)
                if not retiring or time.monotonic() > deadline or not _alive(node_id):
                    raise
                time.sleep(0.25)  # until Ray has let go of the ended host's name

    @property
    def _salt(self) -> str:
        if not self._fp_salt:
            self._fp_salt = fingerprints.salt(self.paths)
        return self._fp_salt

    def _learn_secrets(self, made: object) -> None:
        """Mask the node's secrets here too: in this process (results, errors) and for every reader (logs)."""
        hashes = made.get("hashes") if isinstance(made, dict) else None
        if not hashes or not isinstance(hashes, dict):
            return
        with self._fp_lock:
            masking = redact.current()  # what this process already masks: nothing to record again
            if all(
                set(hs) <= masking.hashes.get(int(length), frozenset())
                for length, hs in hashes.items()
                if isinstance(hs, list) and str(length).isdigit()
            ):
                return
            known = fingerprints.add_known(self.paths, made)
            redact.install(redact.Redactor(masking.values, known))

    def _placed(
        self, slot: PlacementGroup, bundle: dict[str, float], task: Task, pin: str | None, pin_name: str
    ) -> str:
        """Wait until the slot is reserved on a node, and return that node.

        Fails when no node could ever give it one (or the pinned node left), and when the task is
        cancelled meanwhile: a task can wait here for as long as every slot is taken."""
        ready = slot.ready()
        next_check = 0.0
        while True:
            done, _ = ray.wait([ready], timeout=0.5)
            if done:
                node = self._slot_node(slot)
                if node:
                    return node
                time.sleep(0.2)  # placed, then its node died: Ray places it again
            if self._cancelled(task.id):
                raise OrchestraError("cancelled while waiting for a free slot")
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 5
                if pin and not _alive(pin):
                    raise OrchestraError(_left(pin_name))
                if not _feasible(bundle, pin):
                    raise OrchestraError(f"no node of the Ray cluster offers {json.dumps(bundle, sort_keys=True)}")

    def _copies(self, task: Task) -> tuple[bytes, list[str]]:
        """The `copy` files as a tar: each run starts in a new checkout on whichever node it gets."""
        if not self.config.copy:
            return b"", []
        with tempfile.TemporaryDirectory(prefix="orchestra-copy-") as tmp:
            copied = bootstrap.copy_files(self.paths.root, Path(tmp), list(self.config.copy))
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for rel in copied:
                    tar.add(Path(tmp) / rel, arcname=rel)
            return buf.getvalue(), copied

    def spawn(self, launch: Launch) -> Handle:
        task = launch.task
        prepared = self._prepared.pop(task.id, None)
        if prepared is None:
            raise OrchestraError("the task's run was not prepared")
        host, info = prepared
        run = {
            "role": launch.role,
            "prompt": launch.prompt,
            "system_prompt": launch.system_prompt,
            "claude_args": list(launch.claude_args),
            "resume": launch.resume,
            "max_budget_usd": launch.max_budget_usd,
            "sandbox": launch.sandbox,
            "prompt_tool": launch.prompt_tool,
            "permission_timeout": launch.permission_timeout,
            "attempt": task.attempts,
        }
        env = dict(launch.env)
        for name in self.config.ray_env_names:  # only what the user named; never the coordinator's keys by default
            if name in os.environ:
                env[name] = os.environ[name]
        offset = _size(self.paths.log_file(task.id))
        err_home = _size(self.paths.stderr_file(task.id))
        try:
            pgid = int(ray.get(host.call.remote(task.id, "start", run, env, err_home), timeout=CALL_TIMEOUT))
        except Exception as exc:
            self._discard(task.id, host)
            if isinstance(exc, rex.RayActorError):  # the host died as it started the agent: lost, not failed
                raise RunLost(f"the host on {info['node']} ended as the agent started: {_first_line(exc)}") from None
            cause = _cause(exc)
            raise OrchestraError(f"cannot start the agent on {info['node']}: {_first_line(cause)}") from None
        return Handle(
            task.id,
            pgid,
            None,
            offset,
            "",
            node=str(info["node"]),
            node_id=str(info["node_id"]),
            native=_Run(host),
            sandboxed=launch.sandbox is not None,  # the node's init line must then say the sandbox is on
        )

    # -- watching --------------------------------------------------------------------------

    def poll(self, handle: Handle) -> Any:
        run = self._run(handle)
        if not run.ended:
            self._pull(handle, run)
        return run.rc if run.ended else RUNNING

    def wait(self, handle: Handle, seconds: float) -> None:
        run = self._run(handle)
        if run.ended:
            return
        seconds = max(seconds, WAIT_MIN)
        try:
            ray.get(run.host.call.remote(handle.task_id, "wait", seconds), timeout=seconds + CALL_TIMEOUT)
        except Exception:
            time.sleep(seconds)  # the next poll says what happened

    def sync(self, handle: Handle) -> None:
        run = self._run(handle)
        if not run.ended and time.monotonic() - run.last_pull > 0.3:
            self._pull(handle, run)

    def _run(self, handle: Handle) -> _Run:
        if not isinstance(handle.native, _Run):
            host = self._locate(handle.task_id)
            handle.native = _Run(host) if host is not None else _Run(None, ended=True, lost="its node's host is gone")
        return handle.native

    def _pull(self, handle: Handle, run: _Run) -> None:
        """One round trip: the transcript and stderr appended here, questions in, answers out."""
        local_dir = self.paths.request_dir(handle.task_id)
        answers: dict[str, dict[str, Any]] = {}
        for rid in run.relayed:
            if rid in run.sent:
                continue
            decided = requests.read_answer(local_dir, rid)
            if decided:
                answers[rid] = decided
        always = requests.always_rules(local_dir)
        run.last_pull = time.monotonic()
        while True:
            try:
                got = ray.get(
                    run.host.call.remote(
                        handle.task_id, "pull", run.log_offset, run.err_offset, sorted(run.relayed), answers, always
                    ),
                    timeout=CALL_TIMEOUT,
                )
            except rex.ActorUnavailableError:
                run.unavailable_since = run.unavailable_since or time.monotonic()
                if time.monotonic() - run.unavailable_since > UNAVAILABLE_LIMIT:
                    self._lose(run, f"node of task {handle.task_id} unreachable for {UNAVAILABLE_LIMIT:.0f}s")
                return
            except rex.RayActorError as exc:
                self._lose(run, f"the node running it died ({handle.node or 'unknown node'}): {_first_line(exc)}")
                return
            except rex.RayTaskError as exc:
                if not isinstance(exc.cause, UnknownTask):
                    raise
                self._lose(run, _first_line(exc.cause))
                return
            except rex.GetTimeoutError:
                return
            run.unavailable_since = None
            for rid, decision in answers.items():
                run.sent[rid] = decision["state"]
            answers = {}
            if got["log"]:
                with open(self.paths.log_file(handle.task_id), "ab", opener=private_opener) as fh:
                    fh.write(got["log"])
                run.log_offset += len(got["log"])
            if got["err"]:
                with open(self.paths.stderr_file(handle.task_id), "ab", opener=private_opener) as fh:
                    fh.write(got["err"])
                run.err_offset += len(got["err"])
            for request in got["requests"]:
                try:
                    validate_id(request["id"])
                except (KeyError, OrchestraError, ValueError, TypeError):
                    continue
                requests.write_request(local_dir, request)
                run.relayed.add(request["id"])
            for rid, decision in got["decided"].items():
                if rid in run.relayed and rid not in run.sent:
                    requests.answer(
                        local_dir,
                        rid,
                        decision["state"],
                        message=decision.get("message"),
                        always=decision.get("always"),
                        by=str(decision.get("by") or "node"),
                    )
                    run.sent[rid] = decision["state"]
            if len(got["log"]) < LOG_CHUNK:
                if got["rc"] is not None:
                    run.rc, run.ended = int(got["rc"]), True
                return

    @staticmethod
    def _lose(run: _Run, why: str) -> None:
        run.ended, run.rc, run.lost = True, None, why

    def stop(self, handle: Handle, grace: float) -> Any:
        run = self._run(handle)
        if run.ended:
            return run.rc
        try:
            ray.get(run.host.call.remote(handle.task_id, "stop", grace), timeout=grace + CALL_TIMEOUT)
        except rex.RayActorError as exc:
            self._lose(run, f"the node running it died: {_first_line(exc)}")
            return None
        except Exception:
            pass
        self._pull(handle, run)
        return run.rc

    def adopt(self, task: Task) -> Handle | None:
        """The task's run, if its node's host holds it and its agent was started (one that never started is ended)."""
        self.connect()
        slot = self._slot(task.id)
        if slot is None:
            return None
        held = self._holder(task.id, slot)
        if held is None or not held[1]["started"]:
            self._discard(task.id, held[0] if held else None, slot)  # gone, or never started: re-queued instead
            return None
        host, status = held
        local_dir = self.paths.request_dir(task.id)
        run = _Run(
            host,
            log_offset=max(_size(self.paths.log_file(task.id)) - task.log_offset, 0),
            err_offset=max(_size(self.paths.stderr_file(task.id)) - int(status.get("err_home") or 0), 0),
        )
        run.relayed = {r["id"] for r in requests.requests(local_dir) if r.get("attempt") == task.attempts}
        return Handle(
            task.id,
            task.pid or 0,
            None,
            task.log_offset,
            "",
            node=str(status["node"]),
            node_id=str(status["node_id"]),
            native=run,
            sandboxed=task.produces != "verdict" and self.config.sandbox == "required",
            adopted=True,
        )

    # -- finishing -------------------------------------------------------------------------

    def collect(self, task: Task, handle: Handle | None) -> Collected:
        """Commit the agent's leftovers on the node, bring the branch home as a pack, free the slot."""
        self._prepared.pop(task.id, None)
        run = handle.native if handle is not None and isinstance(handle.native, _Run) else None
        if run is not None and run.lost:
            self._discard(task.id, run.host)
            self._forget_remote(task.id)
            return Collected(lost=run.lost)
        try:
            self.connect()
        except OrchestraError as exc:
            return Collected(error=f"the branch stays on the node: {exc}")
        host = run.host if run is not None and run.host is not None else self._locate(task.id)
        if host is None:
            self._discard(task.id)
            self._forget_remote(task.id)
            return Collected()
        message = (
            f"orchestra: uncommitted work of task {task.id} ({task.role})\n\n{task.title}\n\n"
            f"Committed by orchestra when the agent's run ended.\nOrchestra-Task: {task.id}"
        )
        args = (message, self._identity(), list(task.copied))
        try:
            result = self._finish(host, task.id, args)
        except rex.RayActorError as exc:
            self._discard(task.id)
            return Collected(lost=f"the node running it died before its branch came home: {_first_line(exc)}")
        except Exception as exc:
            self._discard(task.id, host)
            cause = _cause(exc)
            if isinstance(cause, UnknownTask):
                return Collected(lost=_first_line(cause))
            return Collected(error=f"could not bring the branch home: {_first_line(cause)}")
        try:
            self._bring_home(task, result)
        except OrchestraError as exc:
            self._discard(task.id, host)
            return Collected(error=f"could not bring the branch home: {exc}")
        self._forget_remote(task.id)
        try:
            ray.get(host.close.remote(task.id), timeout=CALL_TIMEOUT)  # the node cleans up in the background
        except Exception:
            pass
        self._free(task.id)
        return Collected(commit=result.get("commit"))

    def _finish(self, host: Any, task_id: str, args: tuple[Any, ...]) -> dict[str, Any]:
        """The node's `finish`, told the shared remote when one is set.

        A run in an older orchestra's host (started before an upgrade, adopted since) knows no
        remote and takes three arguments: it sends its pack through Ray, as it always did."""
        if not self._remote:
            return dict(ray.get(host.call.remote(task_id, "finish", *args), timeout=TRANSFER_TIMEOUT))
        try:
            return dict(ray.get(host.call.remote(task_id, "finish", *args, self._remote), timeout=TRANSFER_TIMEOUT))
        except rex.RayTaskError as exc:
            if not isinstance(exc.cause, TypeError):
                raise
        return dict(ray.get(host.call.remote(task_id, "finish", *args), timeout=TRANSFER_TIMEOUT))

    def _bring_home(self, task: Task, result: dict[str, Any]) -> None:
        head, base = result.get("head"), result.get("base")
        if not head:
            return
        if not isinstance(head, str) or not transport.is_commit_id(head):  # a node is told nothing it can name
            raise OrchestraError(f"the node sent back {str(head)[:60]!r} as the branch's head, not a commit id")
        root = self.paths.root
        if result.get("pushed"):
            if not self._remote:
                raise OrchestraError("the node pushed the branch to ray_git_remote, which is no longer set")
            transport.fetch_ref(root, self._remote, done_ref(task.id), str(head))
        elif result.get("pack"):
            transport.receive_pack(root, result["pack"], head)
        old = refs.branch_head(root, task.branch)
        if old == head:
            return
        if old and not refs.is_ancestor(root, old, head):
            raise OrchestraError(f"{task.branch} moved here while the task ran on its node ({old[:12]}); not replaced")
        if not refs.update_task_branch(
            root, task.branch, head, old, f"orchestra: task {task.id} from node ({base or ''})"
        ):
            raise OrchestraError(f"{task.branch} changed while its commits arrived")

    def _identity(self) -> dict[str, str]:
        """The coordinator's git identity for orchestra's own commit on the node (none of the node's)."""
        env = repo.commit_identity_env(self.paths.root)
        if env:
            return env
        name = git(self.paths.root, "config", "user.name", check=False).stdout.strip()
        email = git(self.paths.root, "config", "user.email", check=False).stdout.strip()
        if not email:
            return {}
        out = {"GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_EMAIL": email}
        if name:
            out.update({"GIT_AUTHOR_NAME": name, "GIT_COMMITTER_NAME": name})
        return out

    def workspace(self, task: Task) -> Path | None:
        return None  # the checkout is on a node

    # -- doctor ------------------------------------------------------------------------------

    def cluster_report(self, timeout: float = 60.0) -> dict[str, Any]:
        """Reachability, then per alive node: versions, orchestra_agent slots, and `claude --version`."""
        self.connect()
        nodes = [n for n in ray.nodes() if n["Alive"]]
        refs_ = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                ["--version"], self._remote
            )
            for n in nodes
            if n["Resources"].get(RESOURCE, 0) > 0
        ]
        probes = {p["node_id"]: p for p in ray.get(refs_, timeout=timeout)} if refs_ else {}
        rows = []
        for n in nodes:
            row = {
                "node_id": n["NodeID"],
                "address": n.get("NodeManagerAddress"),
                "slots": n["Resources"].get(RESOURCE, 0),
            }
            row.update(probes.get(n["NodeID"], {}))
            rows.append(row)
        return {
            "address": self.config.ray_address,
            "coordinator": {
                "ray": ray.__version__,
                "python": sys.version.split()[0],
                "orchestra": orchestra.__version__,
                "remote_error": transport.unreachable(self._remote, self.paths.root) if self._remote else None,
            },
            "remote": self._remote or None,
            "nodes": rows,
            "slots": sum(r["slots"] for r in rows),
        }


_RAY_CORE_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] \S+\.(cc|h):\d+: ")


@contextlib.contextmanager
def _without_ray_core_lines() -> Iterator[None]:
    """Keep the log lines Ray's C++ core writes straight to fd 2 while it joins off the person's terminal.

    A refused join logs the same warning once a second for about 20 s before Ray gives up, and every join
    logs a warning about this machine's IP address; orchestra says what matters in one line instead.
    Anything else written to stderr meanwhile is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = b"".join(line for line in caught.read().splitlines(keepends=True) if not _RAY_CORE_LINE.match(line))
            if kept:
                os.write(2, kept)


def _refusal(exc: BaseException) -> str:
    """Why a cluster that answers did not let this machine join, in words that say what to do."""
    cause = str(exc.__cause__ or "")
    if "InvalidAuthToken" in cause or "Unauthenticated" in cause:
        where = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            return f"the cluster requires its token (set RAY_AUTH_MODE=token, and the token in {where})"
        return f"the cluster refused this machine's token (from {where})"
    return _first_line(exc)


def _feasible(resources: dict[str, float], node_id: str | None = None) -> bool:
    """Whether some alive node (`node_id`, when given) has at least `resources` in all: else the slot waits forever."""
    return any(
        n["Alive"]
        and (node_id is None or n["NodeID"] == node_id)
        and all(n["Resources"].get(k, 0) >= v for k, v in resources.items())
        for n in ray.nodes()
    )


def _alive(node_id: str) -> bool:
    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


def _left(node: str) -> str:
    return f"the session to resume is on node {node}, which has left the cluster; retry the task to start it afresh"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _cause(exc: BaseException) -> BaseException:
    """What a remote call raised on the node, rather than Ray's wrapper around it."""
    return exc.cause if isinstance(exc, rex.RayTaskError) and exc.cause else exc


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith("Traceback"):
            return line.strip()[:300]
    return type(exc).__name__

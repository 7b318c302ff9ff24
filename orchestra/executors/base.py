"""Where an agent runs, behind one small interface the scheduler uses.

The engine decides what a run is (prompt, role, permissions, budget) and keeps the
durable record; an executor only makes it happen somewhere: it prepares a checkout
of the task's branch, starts Claude Code there, reports whether it still runs,
streams its transcript into `.orchestra/logs/<id>.jsonl`, relays permission
questions into `.orchestra/requests/<id>/` and answers back, stops it, finds it again
after a scheduler restart, and brings the branch home when the run ends.

`local` runs agents as detached process groups on this machine. A second executor
(another machine, a cluster) is one more module beside it, not edits across the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestra.core.config import Config
from orchestra.core.errors import OrchestraError
from orchestra.core.roles import Role
from orchestra.core.task import Task


@dataclass
class Launch:
    """Everything one run needs, decided by the engine before the executor starts it."""

    task: Task
    role: Role  # the role as Claude Code should see it: mode, tools, rules applied
    prompt: str
    system_prompt: str
    base_sha: str  # the commit a new branch starts from
    resume: str | None = None
    max_budget_usd: float | None = None
    claude_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # variables for the agent, on top of the host's own
    prompt_tool: bool = False  # route undecided tool uses to orchestra's permission server
    permission_timeout: float = 1800.0
    sandbox: dict[str, Any] | None = None  # Claude Code sandbox settings, when the agent runs sandboxed
    branch_sha: str | None = None  # set by prepare: where the main repository's branch was when the run began
    resources: dict[str, float] = field(default_factory=dict)  # what the run needs of a machine (setting, role, task)


@dataclass
class Handle:
    """A run in progress, as the executor that started it knows it."""

    task_id: str
    pid: int
    proc_start: int | None = None
    log_offset: int = 0  # where this run's transcript starts in the local log
    worktree: str = ""
    node: str | None = None  # where it runs, when that is not this machine
    node_id: str | None = None  # the executor's own id of that machine
    native: Any = None  # the executor's own object (a Popen, an actor handle); not persisted
    sandboxed: bool = False  # launched with Claude Code's sandbox: its init line must say so
    adopted: bool = False  # found again after a scheduler restart, not started by this process
    err_offset: int | None = None  # where this run's stderr starts in the local file, when known


@dataclass
class Collected:
    """What finishing a run left on its branch."""

    commit: str | None = None  # the commit orchestra made of the agent's uncommitted work
    error: str | None = None  # why the work could not be brought home, if it could not
    branch_sha: str | None = None  # where the main repository's branch is after the work came home
    gitlinks: list[str] = field(default_factory=list)  # nested repositories left out of orchestra's commit
    # The machine the run was on is gone, and the run with it: the attempt is lost, not judged,
    # and the task runs again elsewhere (counted in attempts). The reason, for the record.
    lost: str | None = None


class RunLost(OrchestraError):
    """The machine a run was being started on went away before its agent ran.

    Like `Collected.lost`: the attempt counts, but nothing is judged, and the task runs again
    wherever there is room. A launch failure of any other kind fails the task.
    """


class Unreachable(OrchestraError):
    """Where runs start did not let this machine in (a Ray cluster that answers but refuses to let it join:
    a missing or wrong token, a version it cannot talk to). The run never began: the task goes back to the
    queue as it was, and `unreachable()` says why, so nothing more starts until it does let it in."""


RUNNING = object()


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of `HOST:PORT` or `ray://HOST:PORT`."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def cluster_problem(config: Config) -> str | None:
    """Why the configured Ray cluster cannot take runs now: no address, or nothing answers there."""
    address = str(config.ray_address or "")
    if not address:
        return "executor = ray but ray_address is not set (orchestra config set ray_address HOST:6379)"
    return reachable(address)


def reachable(address: str, timeout: float = 1.0) -> str | None:
    """None when a TCP connection to the address opens, else why not.

    `ray.init` to an address where nothing listens retries for about twelve minutes, so
    nothing calls it before this check passes.
    """
    try:
        host, port = parse_address(address)
    except ValueError:
        return f"bad ray_address {address!r}"
    import socket  # ~3 ms: only executor = ray reaches a cluster

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}"


class Executor(Protocol):
    name: str
    config: Config  # replaced when the repository's config is reloaded

    def prepare(self, launch: Launch, bootstrap_needed: bool) -> list[str]:
        """Make the task's checkout of its branch (copy files, run setup when new); returns the copied paths.

        Sets `launch.branch_sha` to where the main repository's branch was when the checkout was made
        ready: the work comes home only onto that (see collect)."""

    def spawn(self, launch: Launch) -> Handle:
        """Start the agent in the prepared checkout; raises OrchestraError with the reason when it cannot."""

    def poll(self, handle: Handle) -> Any:
        """The exit code when the run has ended (None when it is not known), else RUNNING."""

    def wait(self, handle: Handle, seconds: float) -> None:
        """Block up to `seconds`, returning early when the run may have ended."""

    def sync(self, handle: Handle) -> None:
        """Bring the transcript and permission questions home, and answers out (a no-op where they are shared)."""

    def stop(self, handle: Handle, grace: float) -> Any:
        """End the run's whole process group (TERM, then KILL after `grace`); returns poll() after."""

    def adopt(self, task: Task) -> Handle | None:
        """The live run of a task whose scheduler died, or None when none is alive."""

    def collect(self, task: Task, handle: Handle | None) -> Collected:
        """After the run: commit what the agent left, and make the task's branch the run's result.

        The branch moves in the main repository only from `task.branch_sha`; otherwise the work
        stays in the checkout and `error` says why."""

    def workspace(self, task: Task) -> Path | None:
        """The task's checkout on this machine, if it has one here."""

    def unreachable(self) -> list[str]:
        """Why no run can start for now (a cluster that does not answer): tasks stay queued until it
        does. Empty when runs can start; the local machine is always there."""
        return []

    def close(self) -> None:
        """Let go of what this process holds open to reach its runs (their runs go on).

        Called by a scheduler that ends with no runner left, so its exit is not kept waiting."""

    def problems(self) -> list[str]:
        """Why runs that need the sandbox cannot start here (for doctor and status): such tasks fail at
        once with the reason. Empty when they can."""

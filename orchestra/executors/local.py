"""The local executor: each agent a detached process group on this machine, in a checkout under `.orchestra/`.

Agents run in their own sessions and write straight to their log files, so the
scheduler can die at any moment without taking them along; a restarted scheduler
finds them again by pid and kernel start time, or by the markers in their environment
and the claude executable. Each task's checkout is a repository of its own
(git.workspace), in Claude Code's sandbox unless the `sandbox` setting is off.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path
from typing import Any

from orchestra.agent import bootstrap, claude, permissions, processes, sandbox
from orchestra.core.config import Config
from orchestra.core.crashpoints import ENV as CRASH_ENV
from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import OrchestraError
from orchestra.core.task import Task
from orchestra.executors.base import RUNNING, Collected, Handle, Launch
from orchestra.git import repo, workspace, worktrees
from orchestra.store.paths import Paths

POLL_SECONDS = 0.2


class LocalExecutor:
    name = "local"

    def __init__(self, paths: Paths, config: Config) -> None:
        self.paths = paths
        self.config = config
        self._identity: dict[str, str] | None = None

    # -- starting -------------------------------------------------------------------

    def prepare(self, launch: Launch, bootstrap_needed: bool) -> list[str]:
        """Make the task's checkout of its branch; copy files and run setup in a new one. Returns copied paths."""
        task = launch.task
        wt = self.paths.worktree(task.id)
        fresh = not (wt / ".git").exists()
        crash_point("before_worktree")
        try:
            launch.branch_sha = worktrees.ensure_worktree(
                self.paths.root, wt, task.branch, launch.base_sha, copied=task.copied
            )
        except OSError as exc:
            raise OrchestraError(f"cannot make the task's checkout {wt}: {exc.strerror or exc}") from None
        crash_point("after_worktree")
        if (self.config.copy or self.config.setup) and (fresh or bootstrap_needed):
            copied = bootstrap.prepare(self.config, task, self.paths.root, wt)
            if copied:
                # Before the agent runs: whatever it does, `git add -A` leaves copied files out.
                workspace.write_excludes(wt, sorted({*task.copied, *copied}))
            return copied
        return []

    def spawn(self, launch: Launch) -> Handle:
        task = launch.task
        binary = claude.resolve_binary(self.config.claude_binary_resolved)
        wt = self.paths.worktree(task.id)
        extra = list(launch.claude_args)
        if launch.prompt_tool:
            extra += permissions.prompt_tool_args(
                self.paths.request_dir(task.id), task.id, task.attempts, launch.permission_timeout
            )
        argv = claude.build_argv(
            binary,
            launch.role,
            launch.prompt,
            system_prompt=launch.system_prompt,
            extra_args=extra,
            resume=launch.resume,
            max_budget_usd=launch.max_budget_usd,
            sandbox=launch.sandbox,
        )
        log_path = self.paths.log_file(task.id)
        offset = log_path.stat().st_size if log_path.exists() else 0
        env = dict(os.environ)
        env.pop(CRASH_ENV, None)  # a test's fault injection is for the scheduler, not its agents
        env.update(launch.env)
        env.update({processes.TASK_ENV: task.id, processes.REPO_ENV: str(self.paths.root)})
        try:
            # Claude Code's own temp directory is shared by every session of the user, and so
            # writable from every task's sandbox; each task gets its own.
            env[sandbox.TMPDIR_ENV] = str(sandbox.make_tmpdir(self.paths.root, task.id))
        except OSError as exc:
            raise OrchestraError(f"cannot make the agent's temp directory: {exc}") from None
        err_path = self.paths.stderr_file(task.id)
        err_offset = err_path.stat().st_size if err_path.exists() else 0
        popen = claude.spawn(argv, wt, log_path, err_path, env)
        crash_point("after_spawn")
        return Handle(
            task.id,
            popen.pid,
            processes.proc_start_time(popen.pid),
            offset,
            str(wt),
            native=popen,
            sandboxed=launch.sandbox is not None,
            err_offset=err_offset,
        )

    # -- watching ---------------------------------------------------------------------

    def poll(self, handle: Handle) -> Any:
        popen = handle.native
        if popen is not None:
            code = popen.poll()
            return RUNNING if code is None else code
        if processes.is_alive(handle.pid, handle.proc_start):
            return RUNNING
        return None  # not our child: its exit code is not ours to read

    def wait(self, handle: Handle, seconds: float) -> None:
        fd = _pidfd(handle.pid)
        if fd is None:
            time.sleep(seconds)
            return
        try:
            select.select([fd], [], [], seconds)
        finally:
            os.close(fd)

    def sync(self, handle: Handle) -> None:
        """The transcript and the request directory are this machine's own files: nothing to carry."""

    def stop(self, handle: Handle, grace: float) -> Any:
        popen = handle.native

        def reap() -> bool:
            return popen is not None and popen.poll() is not None

        processes.terminate_group(handle.pid, grace, reap=reap)
        if popen is not None:
            return popen.wait()
        while processes.is_alive(handle.pid, None):
            time.sleep(0.05)
        return None

    def adopt(self, task: Task) -> Handle | None:
        """The task's live claude, found by its recorded pid or by the markers in its environment.

        Only a process running the configured claude counts: a Bash tool's shell that outlived
        its agent carries the same markers (and its own session), and is no agent.
        """
        try:
            binary: str | None = claude.resolve_binary(self.config.claude_binary_resolved)
        except OrchestraError:
            binary = None
        pid = task.pid if processes.is_alive(task.pid, task.proc_start) else None
        if pid is not None and not processes.runs_binary(pid, binary):
            pid = None
        start = task.proc_start
        if pid is None:
            # The scheduler may have died between starting the agent and recording its pid.
            found = processes.find_agents(task.id, self.paths.root, binary) if binary else []
            if not found:
                return None
            pid = found[0]
            start = processes.proc_start_time(pid)
        return Handle(
            task.id,
            pid,
            start,
            task.log_offset,
            str(self.paths.worktree(task.id)),
            sandboxed=task.produces != "verdict" and self.config.sandbox == sandbox.REQUIRED,
            adopted=True,
        )

    # -- finishing --------------------------------------------------------------------

    def collect(self, task: Task, handle: Handle | None) -> Collected:
        # Always the task's own directory, never followed through a symlink: whatever the task
        # file says, leftovers are committed nowhere else.
        sandbox.remove_tmpdir(self.paths.root, task.id)
        wt = self.paths.worktree(task.id)
        if not wt.is_dir() or wt.is_symlink():
            return Collected()
        try:
            if self._identity is None:
                self._identity = repo.commit_identity_env(self.paths.root)
            done = worktrees.collect(
                self.paths.root,
                wt,
                task.branch,
                task.branch_sha or workspace.UNKNOWN,
                autocommit_message(task),
                self._identity,
                copied=task.copied,
                label=task.id,
            )
        except OrchestraError as exc:
            return Collected(error=str(exc))
        except OSError as exc:
            return Collected(error=f"cannot bring the work home from {wt}: {exc.strerror or exc}")
        return Collected(commit=done.commit, error=done.error, branch_sha=done.tip, gitlinks=done.gitlinks or [])

    def workspace(self, task: Task) -> Path | None:
        wt = self.paths.worktree(task.id)
        return wt if wt.is_dir() and not wt.is_symlink() else None

    def unreachable(self) -> list[str]:
        return []  # this machine is always there

    def close(self) -> None:
        """Nothing is held open: each run is a process group of its own."""

    def problems(self) -> list[str]:
        why = sandbox.problem(self.config.sandbox)
        return [why] if why else []


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def autocommit_message(task: Task) -> str:
    """The task's title as the subject: `git log` then says what the work was, not which task id left it."""
    subject = " ".join(task.title.split()) or f"work of task {task.id}"
    if len(subject) > 72:
        subject = subject[:71].rstrip() + "…"
    return (
        f"{subject}\n\nWhat the agent left uncommitted when its run ended ({task.role}, task {task.id}),"
        f" committed by orchestra.\n\nOrchestra-Task: {task.id}"
    )

"""The scheduler: one per repository, it starts queued tasks and sees them to an end.

Agents run in their own sessions and write straight to their log files, so the
scheduler can die at any moment without taking them along. On start it adopts
agents that are still alive, finishes runs that ended while nobody watched, and
resumes (or re-runs) the ones that died half way.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from orchestra import approvals, backoff, bootstrap, claude, notify, permissions, processes, workflows, worktrees
from orchestra.crashpoints import ENV as CRASH_ENV, crash_point
from orchestra.config import Config
from orchestra.errors import CorruptTaskFile, OrchestraError, SchedulerBusy, TaskNotFound
from orchestra.fileio import private_opener, write_atomic
from orchestra.paths import Paths
from orchestra.roles import AGENTLESS_ROLES, output_error, role_for_task
from orchestra.store import Store
from orchestra.transcript import mask_data, mask_secrets
from orchestra.task import BLOCKING_STATES, State, Task, check_transition, now

POLL_SECONDS = 0.2
CANCEL_CHECK_SECONDS = 0.5


def scheduler_pid(paths: Paths) -> int | None:
    """The pid of the live scheduler, or None; the lock, not the info file, is the truth."""
    try:
        fd = os.open(paths.scheduler_lock, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(json.loads(paths.scheduler_info.read_text())["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                return -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def start_background(paths: Paths) -> bool:
    """Start a detached scheduler for the repository unless one is running."""
    if scheduler_pid(paths) is not None:
        return False
    paths.ensure()
    with open(paths.scheduler_log, "ab", opener=private_opener) as log:
        subprocess.Popen(
            [sys.executable, "-m", "orchestra", "--repo", str(paths.root), "worker", "--background"],
            cwd=paths.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    return True


@dataclass
class _Run:
    """What a runner thread knows about the process it watches."""

    pid: int
    pgid: int
    popen: subprocess.Popen[bytes] | None = None  # None when adopted from an earlier scheduler


class Scheduler:
    def __init__(
        self,
        paths: Paths,
        config: Config,
        store: Store,
        *,
        max_concurrent: int | None = None,
        until_idle: bool = False,
        idle_exit: float | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.paths = paths
        self.config = config
        self.store = store
        self._max_override = max_concurrent
        self.max_concurrent = max_concurrent or config.max_concurrent
        self.until_idle = until_idle
        self.idle_exit = idle_exit
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.runners: dict[str, threading.Thread] = {}
        self._finished: set[str] = set()  # runners that are done, added by their own thread
        self.wake = threading.Event()
        self.stopping = False
        self._bad: set[str] = set()
        self._identity: dict[str, str] | None = None
        self._lock_obj: Any = None
        self._config_key: object = _stat_key(paths.config)
        self._budget_said: str | None = None

    def log(self, msg: str) -> None:
        self._log(f"{time.strftime('%H:%M:%S')} {msg}")

    # -- lifecycle ---------------------------------------------------------------

    def acquire(self) -> None:
        from filelock import FileLock, Timeout

        self.paths.ensure()
        lock = FileLock(str(self.paths.scheduler_lock), timeout=0, mode=0o600)
        try:
            lock.acquire()
        except Timeout:
            pid = scheduler_pid(self.paths)
            raise SchedulerBusy(
                f"a scheduler is already running for {self.paths.root}"
                + (f" (pid {pid})" if pid and pid > 0 else "")
            ) from None
        self._lock_obj = lock
        info = {"pid": os.getpid(), "started_at": now(), "max_concurrent": self.max_concurrent}
        write_atomic(self.paths.scheduler_info, json.dumps(info).encode())

    def release(self) -> None:
        if self._lock_obj is not None:
            try:
                self.paths.scheduler_info.unlink(missing_ok=True)
            finally:
                self._lock_obj.release()
                self._lock_obj = None

    def run(self) -> int:
        self.acquire()
        try:
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, self._on_signal)
            self.log(f"scheduler started (pid {os.getpid()}, up to {self.max_concurrent} agents)")
            self.recover()
            self._loop()
        finally:
            alive = [tid for tid, t in self.runners.items() if t.is_alive()]
            if alive:
                self.log(f"scheduler stopping; {len(alive)} agent(s) keep running and will be adopted: {', '.join(alive)}")
            self.release()
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        self.wake.set()

    def _loop(self) -> None:
        idle_since: float | None = None
        pending = True
        last_index_key: object = None
        last_pass = 0.0
        while not self.stopping:
            freed = self._reap_runners()
            self._reload_config()
            key = _stat_key(self.paths.index)
            if freed or self.wake.is_set() or key != last_index_key or time.monotonic() - last_pass > 2.0:
                self.wake.clear()
                last_index_key = key
                last_pass = time.monotonic()
                pending = self._pass()
            if not self.runners and not pending:
                if self.until_idle:
                    self.log("nothing left to do; scheduler exits")
                    return
                idle_since = idle_since or time.monotonic()
                if self.idle_exit and time.monotonic() - idle_since >= self.idle_exit:
                    self.log(f"idle for {self.idle_exit:.0f}s; scheduler exits")
                    return
            else:
                idle_since = None
            self.wake.wait(POLL_SECONDS)

    def _reap_runners(self) -> int:
        """Free the slots of finished runners; a runner says it is done before its thread ends."""
        done = [tid for tid, t in self.runners.items() if tid in self._finished or not t.is_alive()]
        for tid in done:
            del self.runners[tid]
            self._finished.discard(tid)
        return len(done)

    # -- choosing work -----------------------------------------------------------

    def _pass(self) -> bool:
        """Fail what can never run, start what can; True while work remains."""
        summaries = self.store.summaries()
        queued = [s for s in summaries.values() if s["state"] == State.QUEUED and s["id"] not in self._bad]
        waiting = any(s["state"] == State.AWAITING_INPUT for s in summaries.values())
        runnable = []
        for s in queued:
            blocked = None
            ready = True
            for dep in s.get("depends_on") or []:
                d = summaries.get(dep)
                if d is None:
                    blocked = f"dependency {dep} no longer exists"
                    break
                if d["state"] in BLOCKING_STATES:
                    blocked = f"dependency {dep} {d['state']}" + (f": {d['error']}" if d.get("error") else "")
                    break
                if d["state"] != State.SUCCEEDED:
                    ready = False
            if blocked:
                self._fail_queued(s["id"], blocked)
                return True  # summaries changed; look again on the next pass
            if ready and s["id"] not in self.runners and (s.get("not_before") or 0) <= time.time():
                runnable.append(s)
        if queued and not runnable and not self.runners and self._fail_cycles(queued, summaries):
            return True
        if backoff.paused_until(self.paths):
            runnable = []  # rate limits hit several agents: no new starts until the pause ends
        runnable.sort(key=lambda s: (-int(s.get("priority") or 0), s.get("created_at") or 0, s["id"]))
        if runnable and self._over_budget(summaries, len(queued)):
            return waiting  # nothing can start; let --until-idle and idle_exit end the scheduler
        slots = self.max_concurrent - len(self.runners)
        for s in runnable[: max(slots, 0)]:
            self._claim_and_start(s["id"])
        return bool(queued) or waiting

    def _fail_cycles(self, queued: list[dict[str, Any]], summaries: dict[str, dict[str, Any]]) -> bool:
        """Tasks that wait on each other would hold the queue forever; end them instead."""
        from orchestra.service import find_cycle

        graph = {tid: list(s.get("depends_on") or []) for tid, s in summaries.items()}
        failed = False
        for s in queued:
            cycle = find_cycle(graph, s["id"])
            if cycle and s["id"] in cycle:
                self._fail_queued(s["id"], f"dependency cycle: {' -> '.join(cycle)}")
                failed = True
        return failed

    def _over_budget(self, summaries: dict[str, dict[str, Any]], queued: int) -> bool:
        """True when the repo budget is spent; logs the reason once per change of mind."""
        from orchestra import spend

        message = spend.budget_message(spend.totals(summaries.values())["cost_usd"], self.config.budget_usd, queued)
        if message != self._budget_said:
            self._budget_said = message
            self.log(message or "repo budget allows starting tasks again")
        return message is not None

    def _reload_config(self) -> None:
        """`orchestra config set` applies to a running scheduler: new runs, merges and budgets use it."""
        from orchestra.config import load_config

        key = _stat_key(self.paths.config)
        if key == self._config_key:
            return
        self._config_key = key
        try:
            self.config = load_config(self.paths.config)
        except OrchestraError as exc:
            self.log(f"keeping the previous settings: {exc}")
            return
        if not self._max_override:
            self.max_concurrent = self.config.max_concurrent

    def _fail_queued(self, task_id: str, reason: str) -> None:
        def mutate(task: Task) -> None:
            if task.state != State.QUEUED:
                return
            _set_state(task, State.FAILED)
            task.error = reason
            task.finished_at = now()

        try:
            self.store.update(task_id, mutate, "finished", state="failed", error=reason)
            self.log(f"{task_id} failed: {reason}")
        except (CorruptTaskFile, TaskNotFound) as exc:
            self._bad.add(task_id)
            self.log(f"skipping {task_id}: {exc}")
        self.wake.set()

    def _claim_and_start(self, task_id: str) -> None:
        claimed = False

        def mutate(task: Task) -> None:
            nonlocal claimed
            if task.state != State.QUEUED:
                return
            _set_state(task, State.RUNNING)
            task.attempts += 1
            task.started_at = now()
            task.finished_at = None
            task.exit_code = None
            task.error = None
            task.pid = None
            task.proc_start = None
            task.cancel_requested = False
            log_path = self.paths.log_file(task.id)
            task.log_offset = log_path.stat().st_size if log_path.exists() else 0
            claimed = True

        try:
            self.store.update(task_id, mutate, "claimed")
        except (CorruptTaskFile, TaskNotFound) as exc:
            self._bad.add(task_id)
            self.log(f"skipping {task_id}: {exc}")
            return
        if claimed:
            crash_point("after_claim")
            self._start_runner(task_id, None)

    def _start_runner(
        self, task_id: str, adopt: _Run | None, finish_only: bool = False, reason: str | None = None
    ) -> None:
        thread = threading.Thread(
            target=self._runner, args=(task_id, adopt, finish_only, reason), name=f"task-{task_id}", daemon=True
        )
        self.runners[task_id] = thread
        thread.start()

    # -- one task ----------------------------------------------------------------

    def _runner(self, task_id: str, adopt: _Run | None, finish_only: bool, reason: str | None) -> None:
        try:
            if finish_only:
                self._finalize(task_id, exit_code=None, launch_error=reason)
                return
            run = adopt
            if run is None and _agentless(self.store.load(task_id).role):
                workflows.run_agentless(self._core(), task_id, self.log)
                return
            if run is None:
                try:
                    run = self._launch(task_id)
                except OrchestraError as exc:
                    self._finalize(task_id, exit_code=None, launch_error=str(exc))
                    return
            exit_code, ended_by = self._watch(task_id, run)
            if ended_by == "abandoned":
                return
            self._finalize(task_id, exit_code=exit_code, timed_out=ended_by == "timeout")
        except Exception as exc:  # a bug must not take the scheduler or the task's work down
            self.log(f"internal error on {task_id}: {exc}\n{traceback.format_exc()}")
            try:
                self._finalize(task_id, exit_code=None, launch_error=f"internal error: {exc}")
            except Exception:
                pass
        finally:
            self._finished.add(task_id)
            self.wake.set()

    def _launch(self, task_id: str) -> _Run:
        task = self.store.load(task_id)
        role = role_for_task(self.paths, task)
        base_sha = task.base_sha
        if task.on:
            dep = self.store.load(task.on)
            base_sha = worktrees.branch_head(self.paths.root, dep.branch)
            if not base_sha:
                raise OrchestraError(f"branch {dep.branch} of task {task.on} no longer exists")
        if not base_sha:
            raise OrchestraError("task has no base commit")
        binary = claude.resolve_binary(self.config.claude_binary_resolved)
        wt = self.paths.worktree(task.id)
        fresh = not (wt / ".git").exists()
        crash_point("before_worktree")
        worktrees.ensure_worktree(self.paths.root, wt, task.branch, base_sha)
        crash_point("after_worktree")
        if (self.config.copy or self.config.setup) and (fresh or not task.extra.get("bootstrapped")):
            self._bootstrap(task, wt)
        policy = permissions.policy_for(role, self.config)
        role = permissions.apply(role, policy)
        permissions.check_environment(policy, dict(os.environ))
        # A crashed or answered run resumes its session with a nudge or the person's reply; a
        # workflow revision continues the implementer's session with the task's own prompt.
        resume = task.resume_session or task.extra.get("continue_session")
        if task.resume_session:
            prompt = task.extra.get("next_prompt") or claude.RESUME_PROMPT
        else:
            prompt = task.prompt
            if role.produces == "verdict" and task.on and not task.extra.get("workflow"):
                prompt += "\n\n" + self._review_material(task.on)
        system_prompt = (
            f"{role.full_system_prompt()}\n\nTask {task.id} on branch {task.branch}, "
            f"started from {base_sha[:12]}."
        )
        copied = self.store.load(task.id).extra.get("copied")
        if copied:
            system_prompt += f"\nCopied in for local setup, not part of the change (never commit them): {', '.join(copied)}."
        argv = claude.build_argv(
            binary,
            role,
            prompt,
            system_prompt=system_prompt,
            extra_args=[
                *self.config.claude_args,
                *(
                    permissions.prompt_tool_args(self.paths.root, task.id, self.config.permission_timeout)
                    if policy.uses_prompt_tool
                    else []
                ),
            ],
            resume=resume,
            max_budget_usd=_remaining_budget(task, role.budget_usd),
        )
        log_path = self.paths.log_file(task.id)
        offset = log_path.stat().st_size if log_path.exists() else 0
        env = dict(os.environ)
        env.pop(CRASH_ENV, None)  # a test's fault injection is for the scheduler, not its agents
        env.update(
            {
                processes.TASK_ENV: task.id,
                processes.REPO_ENV: str(self.paths.root),
                "ORCHESTRA_ROLE": task.role,
                "ORCHESTRA_BRANCH": task.branch,
            }
        )
        permissions.agent_env(policy, env)
        popen = claude.spawn(argv, wt, log_path, self.paths.stderr_file(task.id), env)
        start = processes.proc_start_time(popen.pid)
        crash_point("after_spawn")

        def mutate(t: Task) -> None:
            t.pid = popen.pid
            t.proc_start = start
            t.log_offset = offset
            t.base_sha = base_sha
            t.worktree = str(wt)
            t.resume_session = None
            t.extra.pop("next_prompt", None)
            t.extra.pop("not_before", None)

        self.store.update(task.id, mutate, "started", pid=popen.pid, resume=resume, attempt=task.attempts)
        crash_point("after_started")
        self.log(f"{task.id} started ({task.role}, attempt {task.attempts}{', resuming ' + resume if resume else ''})")
        return _Run(pid=popen.pid, pgid=popen.pid, popen=popen)

    def _review_material(self, on_id: str) -> str:
        """What a reviewer started `--on` a task reads: that branch's commits and diff against its base."""
        reviewed = self.store.load(on_id)
        head = worktrees.branch_head(self.paths.root, reviewed.branch)
        if not head or not reviewed.base_sha:
            raise OrchestraError(f"branch {reviewed.branch} of task {on_id} has nothing to review")
        return workflows.review_material(self.paths.root, reviewed.base_sha, head, f"branch {reviewed.branch}")

    def _watch(self, task_id: str, run: _Run) -> tuple[int | None, str]:
        """Wait for the agent; returns (exit code, "exit" | "timeout" | "cancel" | "abandoned")."""
        task = self.store.load(task_id)
        limit = task.timeout or self.config.timeout
        deadline = (task.started_at or now()) + limit + approvals.time_waited(task)
        pidfd = _pidfd(run.pid)
        next_cancel_check = 0.0
        try:
            while True:
                code = _poll_exit(run)
                if code is not _RUNNING:
                    return code, "exit"
                if self.stopping:
                    return None, "abandoned"  # the agent lives on; the next scheduler adopts it
                if time.time() >= deadline:
                    self.log(f"{task_id} timed out after {limit:.0f}s; stopping it")
                    self._terminate(run)
                    return _poll_exit(run, block=True), "timeout"
                if time.monotonic() >= next_cancel_check:
                    next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
                    try:
                        current = self.store.load(task_id)
                        deadline = (current.started_at or now()) + limit + approvals.time_waited(current)
                        if current.cancel_requested:
                            self.log(f"{task_id} cancelled; stopping it")
                            self._terminate(run)
                            return _poll_exit(run, block=True), "cancel"
                    except OrchestraError:
                        pass
                wait = min(POLL_SECONDS, max(deadline - time.time(), 0.01))
                if pidfd is not None:
                    select.select([pidfd], [], [], wait)
                else:
                    time.sleep(wait)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _terminate(self, run: _Run) -> None:
        def reap() -> bool:
            return run.popen is not None and run.popen.poll() is not None

        processes.terminate_group(run.pgid, self.config.kill_grace, reap=reap)

    def _finalize(
        self,
        task_id: str,
        *,
        exit_code: int | None,
        timed_out: bool = False,
        launch_error: str | None = None,
    ) -> None:
        crash_point("before_finalize")
        task = self.store.load(task_id)
        # Read the log even without a pid: the scheduler may have died after spawning the agent
        # but before recording it, and the agent may have finished since (log_offset is set at claim).
        outcome = claude.read_outcome(self.paths.log_file(task_id), task.log_offset)
        launch_error = launch_error or output_error(task, outcome)
        commit_error = None
        # Always the task's own directory, never followed through a symlink: whatever the task
        # file says, leftovers are committed nowhere else.
        wt = self.paths.worktree(task.id)
        if wt.is_dir() and not wt.is_symlink():
            try:
                if self._identity is None:
                    self._identity = worktrees.commit_identity_env(self.paths.root)
                sha = worktrees.commit_leftovers(
                    wt,
                    f"orchestra: uncommitted work of task {task.id} ({task.role})\n\n{task.title}\n\n"
                    f"Committed by orchestra when the agent's run ended.\nOrchestra-Task: {task.id}",
                    self._identity,
                    exclude=task.extra.get("copied") or [],
                )
                if sha:
                    self.store.append_event(task.id, "autocommit", commit=sha)
            except OrchestraError as exc:
                commit_error = str(exc)
        crash_point("after_commit")

        def mutate(t: Task) -> None:
            nonlocal retry, paused
            if t.state.final:
                return
            if t.cancel_requested:
                state, error = State.CANCELLED, "cancelled"
            elif timed_out:
                limit = t.timeout or self.config.timeout
                state, error = State.TIMED_OUT, f"timed out after {limit:.0f}s"
            elif launch_error:
                state, error = State.FAILED, launch_error
            elif outcome.succeeded:
                state, error = State.SUCCEEDED, None
            else:
                state, error = State.FAILED, outcome.failure_reason(exit_code)
            if commit_error:
                error = f"{error}; {commit_error}" if error else commit_error
                if state == State.SUCCEEDED:
                    state = State.FAILED
            if state == State.FAILED and not launch_error and not commit_error and not t.cancel_requested:
                retry = backoff.plan(self.config, t, outcome, error or "API error")
                if retry:
                    state = State.QUEUED
            _set_state(t, state)
            t.error = mask_secrets(error) if error else error  # agent text: it may echo a secret
            t.exit_code = exit_code
            t.finished_at = now()
            t.session_id = outcome.session_id or t.session_id
            if outcome.cost_usd is not None:
                t.cost_usd = round((t.cost_usd or 0.0) + outcome.cost_usd, 6)
            for name in claude.TOKEN_KEYS:
                if getattr(outcome, name) is not None:
                    setattr(t, name, (getattr(t, name) or 0) + getattr(outcome, name))
            if outcome.has_result:
                t.num_turns = outcome.num_turns
                t.result = mask_secrets(outcome.result) if outcome.result else outcome.result
                t.permission_denials = mask_data(outcome.permission_denials)
                if outcome.structured_output is not None:
                    t.extra["structured_output"] = mask_data(outcome.structured_output)
            elif outcome.assistant_messages:
                t.num_turns = outcome.assistant_messages
            t.pid = None
            t.proc_start = None
            if retry:
                retry.apply(t)
                if retry.kind == backoff.RATE_LIMIT:
                    paused = backoff.record_rate_limit(self.paths, self.config)

        retry: backoff.Retry | None = None
        paused: float | None = None
        task = self.store.update(task_id, mutate)
        crash_point("after_finalize")
        if retry:
            self._note_retry(task, retry, paused)
            return
        self.store.append_event(task_id, "finished", state=str(task.state), exit_code=exit_code, error=task.error)
        self.log(f"{task_id} {task.state}" + (f": {task.error}" if task.error else ""))
        self.wake.set()
        if task.state in (State.SUCCEEDED, State.FAILED, State.TIMED_OUT):
            notify.fire(self.paths, self.config, str(task.state), task, store=self.store)
        self._workflow_hook(task)

    def _note_retry(self, task: Task, retry: backoff.Retry, paused: float | None) -> None:
        self.store.append_event(
            task.id,
            "requeued",
            reason="transient API error",
            error=task.error,
            retry=retry.number,
            of=self.config.api_retries,
            not_before=retry.not_before,
            resume=retry.session,
        )
        wait = max(retry.not_before - time.time(), 0)
        self.log(f"{task.id} {task.error}; retry {retry.number} of {self.config.api_retries} in {wait:.0f}s")
        if paused:
            self.log(f"rate limits hit several agents; new starts pause until {time.strftime('%H:%M:%S', time.localtime(paused))}")
        self.wake.set()

    def _bootstrap(self, task: Task, wt: Path) -> None:
        """Copy configured files and run the setup command in a new worktree (once per worktree)."""
        copied = bootstrap.prepare(self.config, task, self.paths.root, wt)

        def mutate(t: Task) -> None:
            t.extra["bootstrapped"] = True
            if copied:
                t.extra["copied"] = sorted(set(t.extra.get("copied") or []) | set(copied))

        self.store.update(task.id, mutate, "bootstrapped", copied=copied, setup=bool(self.config.setup))

    def _core(self) -> Any:
        from orchestra.service import Orchestra

        return Orchestra.attach(self.paths, self.config, self.store)

    def _workflow_hook(self, task: Task) -> None:
        """A finished task may move its workflow on (next step, revision round, merge, end)."""
        if task.state.final and task.extra.get("workflow"):
            try:
                workflows.task_finished(self._core(), task, self.log)
            except Exception as exc:  # the task's own end is recorded; a workflow bug must not undo that
                self.log(f"workflow hook failed for {task.id}: {exc}\n{traceback.format_exc()}")
            self.wake.set()

    # -- restart -----------------------------------------------------------------

    def recover(self) -> None:
        """Adopt live agents, finish completed runs, resume or re-run the dead."""
        with self.store.locked():
            self.store.rebuild_index()
        with worktrees.WORKTREE_ADMIN_LOCK:
            for half in worktrees.interrupted_adds(self.paths.root, self.paths.worktrees):
                # No runner has started yet, so no add of ours is under way: this one was killed.
                self.log(f"removing a worktree whose creation was interrupted: {half.path}")
                worktrees.clear_interrupted_add(half)
        from orchestra.merge import remove_stale_merge_worktrees

        for path in remove_stale_merge_worktrees(self._core()):
            self.log(f"removed the checkout of a merge that was interrupted: {path}")
        for s in list(self.store.summaries().values()):
            if s["state"] not in (State.RUNNING, State.AWAITING_INPUT):
                continue
            task_id = s["id"]
            try:
                task = self.store.load(task_id)
            except OrchestraError as exc:
                self._bad.add(task_id)
                self.log(f"skipping {task_id}: {exc}")
                continue
            self._recover_one(task)
        workflows.advance_all(self._core(), self.log)

    def recover_one(self, task: Task) -> None:
        """Settle one running task after its scheduler died (used by `doctor --fix` too)."""
        self._recover_one(task)

    def _recover_one(self, task: Task) -> None:
        crash_point("recover")
        pid = task.pid if processes.is_alive(task.pid, task.proc_start) else None
        if pid is None:
            # The scheduler may have died between starting the agent and recording its pid.
            found = processes.find_agents(task.id, self.paths.root)
            if found:
                pid = found[0]
                start = processes.proc_start_time(pid)

                def mutate(t: Task) -> None:
                    t.pid = pid
                    t.proc_start = start
                    t.worktree = t.worktree or str(self.paths.worktree(t.id))

                self.store.update(task.id, mutate)
        if pid is not None:
            self.store.append_event(task.id, "adopted", pid=pid)
            self.log(f"{task.id} adopted (pid {pid})")
            self._start_runner(task.id, _Run(pid=pid, pgid=pid))
            return
        outcome = claude.read_outcome(self.paths.log_file(task.id), task.log_offset)
        if outcome.has_result or task.cancel_requested:
            self.log(f"{task.id} ended while no scheduler watched; finishing it")
            self._start_runner(task.id, None, finish_only=True)
            return
        if task.attempts >= task.max_attempts:
            reason = f"agent died and all {task.max_attempts} attempts are used"
            self._start_runner(task.id, None, finish_only=True, reason=reason)
            return
        session = outcome.session_id or task.session_id

        def requeue(t: Task) -> None:
            _set_state(t, State.QUEUED)
            t.resume_session = session
            t.session_id = session or t.session_id
            t.pid = None
            t.proc_start = None

        self.store.update(task.id, requeue, "requeued", reason="agent died", resume=session)
        self.log(f"{task.id} agent died; " + (f"will resume session {session}" if session else "will run again"))


_RUNNING = object()


def _poll_exit(run: _Run, block: bool = False) -> Any:
    if run.popen is not None:
        if block:
            return run.popen.wait()
        code = run.popen.poll()
        return _RUNNING if code is None else code
    if processes.is_alive(run.pid, None):
        if not block:
            return _RUNNING
        while processes.is_alive(run.pid, None):
            time.sleep(0.05)
    return None  # not our child: its exit code is not ours to read


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _stat_key(path: Path) -> object:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _remaining_budget(task: Task, role_default: float | None) -> float | None:
    """What this run may still spend (--max-budget-usd); the budget covers all attempts."""
    budget = task.budget_usd if task.budget_usd is not None else role_default
    if budget is None:
        return None
    remaining = round(budget - (task.cost_usd or 0.0), 6)
    if remaining <= 0:
        raise OrchestraError(
            f"budget exhausted: ${task.cost_usd or 0:.4f} spent of the ${budget:.2f} budget "
            "(raise it with 'orchestra retry --budget USD')"
        )
    return remaining


def _set_state(task: Task, new: State) -> None:
    check_transition(task.state, new)
    task.state = new


def _agentless(role: str) -> bool:
    return role in AGENTLESS_ROLES

"""The scheduler: one per repository, it starts queued tasks and sees them to an end.

The loop only decides what starts when: dependencies met, highest priority then
oldest, within the slots and the budget. Each started task gets a runner thread
(engine.runner) that launches it through the executor, watches it and records its
end. Agents outlive the scheduler; on start, engine.recovery settles what a dead
scheduler left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestra.core import redact
from orchestra.core.crashpoints import crash_point
from orchestra.core.errors import CorruptTaskFile, OrchestraError, SchedulerBusy, StorageError, TaskNotFound
from orchestra.core.graph import find_cycle
from orchestra.core.spend import budget_message
from orchestra.core.task import BLOCKING_STATES, State, Task, busy_slots
from orchestra.engine import agentless, recovery, runner, workflows
from orchestra.engine.context import Context
from orchestra.executors.base import Handle, RunLost, Unreachable
from orchestra.store import fingerprints, ratelimit
from orchestra.store import scheduler as record
from orchestra.store.files import private_opener
from orchestra.store.scheduler import scheduler_pid

POLL_SECONDS = 0.2
# How long `start_background` waits for the scheduler it started to hold the lock, and how often it looks.
STARTUP_WAIT = 10.0
STARTUP_POLL = 0.02
FAIL_BATCH = 1000  # queued tasks failed under one hold of the store lock
# The store lock left free this long (ten of its waiters' polls) before the scheduler takes it again.
YIELD_SECONDS = 0.05

__all__ = ["Scheduler", "scheduler_pid", "start_background"]


def start_background(ctx: Context) -> bool:
    """Start a detached scheduler for the repository unless one is running.

    Returns once it holds the scheduler lock (or has exited, or STARTUP_WAIT passed), so that a
    `wait`, `status` or `queue` run right after never reports that no scheduler runs.
    """
    if scheduler_pid(ctx.paths) is not None:
        return False
    ctx.paths.ensure()
    with open(ctx.paths.scheduler_log, "ab", opener=private_opener) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestra", "--repo", str(ctx.root), "worker", "--background"],
            cwd=ctx.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + STARTUP_WAIT
    while proc.poll() is None and scheduler_pid(ctx.paths) is None and time.monotonic() < deadline:
        time.sleep(STARTUP_POLL)
    return True


class Scheduler:
    def __init__(
        self,
        ctx: Context,
        *,
        max_concurrent: int | None = None,
        until_idle: bool = False,
        idle_exit: float | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.ctx = ctx
        if log is not None:
            ctx.log = lambda msg: log(f"{time.strftime('%H:%M:%S')} {msg}")
        self._max_override = max_concurrent
        self.max_concurrent = max_concurrent or ctx.config.max_concurrent
        self.until_idle = until_idle
        self.idle_exit = idle_exit
        self.runners: dict[str, threading.Thread] = {}
        self._finished: set[str] = set()  # runners that are done, added by their own thread
        self.wake = threading.Event()
        self.stopping = False
        self.bad: set[str] = set()
        self._lock: Any = None
        self._config_key: object = _stat_key(ctx.paths.config)
        self._budget_said: str | None = None
        # Live tasks whose end could not be recorded (a full disk): settled again at these times.
        self._retry_at: dict[str, float] = {}
        self._retry_delay: dict[str, float] = {}
        self._retry_lock = threading.Lock()  # runner threads add, the loop takes
        self._pass_failed: str | None = None
        self._executor_said: str | None = None

    def log(self, msg: str) -> None:
        self.ctx.log(msg)

    # -- lifecycle ---------------------------------------------------------------

    def acquire(self) -> None:
        lock = record.claim(self.ctx.paths, self.max_concurrent, from_flag=bool(self._max_override))
        if lock is None:
            pid = scheduler_pid(self.ctx.paths)
            raise SchedulerBusy(
                f"a scheduler is already running for {self.ctx.root}" + (f" (pid {pid})" if pid and pid > 0 else "")
            )
        self._lock = lock
        # The secrets agents run with are this process's: readers elsewhere mask them by fingerprint.
        values = redact.secret_values(os.environ)
        known = fingerprints.record(self.ctx.paths, values)
        redact.install(redact.Redactor(values, known))  # and the secrets of earlier runs, in their old logs

    def release(self) -> None:
        if self._lock is not None:
            record.release(self.ctx.paths, self._lock)
            self._lock = None

    def run(self) -> int:
        """Returns 0, or 1 when it stops over a task it could not settle (still recorded as live)."""
        self.acquire()
        previous: dict[signal.Signals, Any] = {}
        try:
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    previous[sig] = signal.signal(sig, self._on_signal)
            self.log(f"scheduler started (pid {os.getpid()}, up to {self.max_concurrent} agents)")
            recovery.recover(self.ctx, self.start_runner, self.bad)
            return self._loop()
        finally:
            alive = [tid for tid, t in self.runners.items() if t.is_alive()]
            if alive:
                self.log(
                    f"scheduler stopping; {len(alive)} agent(s) keep running and will be adopted: {', '.join(alive)}"
                )
            self.release()
            if not alive:  # a runner still talking to its executor keeps it open until the process ends
                self.ctx.close_executor()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        self.wake.set()

    def _loop(self) -> int:
        idle_since: float | None = None
        pending = True
        last_index_key: object = None
        last_pass = 0.0
        while not self.stopping:
            freed = self._reap_runners()
            self._reload_config()
            self._settle_due()
            key = _stat_key(self.ctx.paths.index)
            if freed or self.wake.is_set() or key != last_index_key or time.monotonic() - last_pass > 2.0:
                self.wake.clear()
                last_index_key = key
                last_pass = time.monotonic()
                pending = self._safe_pass()
            if self._retry_at:
                idle_since = None  # a live record waits to be settled: never idle, never exit over it
            elif not self.runners and not pending:
                unsettled = self._unsettled()
                if unsettled:
                    self.log(
                        f"tasks recorded as running with no agent: {', '.join(unsettled)}; "
                        "run 'orchestra doctor' to see why"
                    )
                idle_since = idle_since or time.monotonic()
                idle_for = time.monotonic() - idle_since
                if (self.until_idle or (self.idle_exit and idle_for >= self.idle_exit)) and self._quit_if_quiet(
                    last_index_key
                ):
                    self.log(self._exit_message())
                    return 1 if unsettled else 0
            else:
                idle_since = None
            self.wake.wait(POLL_SECONDS)
        return 0

    def _quit_if_quiet(self, seen: object) -> bool:
        """Give up the scheduler's claim, unless the queue changed since the last pass.

        Under the store lock, so a submit lands either before this look (and is run) or after the
        claim is gone (and its autostart starts a new scheduler): never stranded between the two.
        """
        crash_point("scheduler_idle")
        time.sleep(YIELD_SECONDS)  # a submit already waiting for the lock lands before this look, and is run
        with self.ctx.store.locked():
            if self.wake.is_set() or _stat_key(self.ctx.paths.index) != seen:
                return False
            self.release()
        return True

    def _exit_message(self) -> str:
        """Why the scheduler ends: tasks left queued are named with what holds them, never 'nothing left'."""
        held = self._executor_said or self._budget_said
        queued = sum(1 for s in self.ctx.store.live().values() if s["state"] == State.QUEUED) if held else 0
        if queued and self._executor_said:
            return f"{queued} task(s) stay queued ({self._executor_said}); scheduler exits"
        if queued and self._budget_said:
            return f"{self._budget_said}; scheduler exits"
        if self.until_idle:
            return "nothing left to do; scheduler exits"
        return f"idle for {self.idle_exit:.0f}s; scheduler exits"

    def _unsettled(self) -> list[str]:
        """Live records nobody runs: re-settled now when possible, else named."""
        left = []
        for s in list(self.ctx.store.live().values()):
            if s["state"] in (State.RUNNING, State.AWAITING_INPUT) and s["id"] not in self.runners:
                if s["id"] in self._retry_at:
                    continue
                if s["id"] not in self.bad:
                    try:
                        recovery.recover_one(self.ctx, self.ctx.store.load(s["id"]), self.start_runner)
                        continue
                    except StorageError as exc:
                        self._settle_later(s["id"], exc)
                        continue
                    except OrchestraError as exc:
                        self.log(f"cannot settle {s['id']}: {exc}")
                        self.bad.add(s["id"])
                left.append(s["id"])
        return left if not self.runners else []

    def _safe_pass(self) -> bool:
        """A pass that the file system refused (a full disk) is tried again; it never ends the scheduler."""
        try:
            pending = self._pass()
        except StorageError as exc:
            if str(exc) != self._pass_failed:
                self.log(f"cannot update the queue: {exc}; trying again")
            self._pass_failed = str(exc)
            time.sleep(1.0)
            return True
        if self._pass_failed:
            self.log("the queue can be updated again")
            self._pass_failed = None
        return pending

    def _settle_later(self, task_id: str, why: Exception) -> None:
        """The end of a run could not be written: keep the task live and try again, backing off to 30 s."""
        with self._retry_lock:
            delay = min(self._retry_delay.get(task_id, 0.5) * 2, 30.0)
            self._retry_delay[task_id] = delay
            self._retry_at[task_id] = time.monotonic() + delay
        self.log(f"cannot record how {task_id} ended ({why}); trying again in {delay:.0f}s")
        self.wake.set()

    def _settle_due(self) -> None:
        """Try again to record the end of runs whose record the file system refused."""
        now_ = time.monotonic()
        with self._retry_lock:
            due = [t for t, when in self._retry_at.items() if when <= now_ and t not in self.runners]
            for task_id in due:
                del self._retry_at[task_id]
        for task_id in due:
            try:
                task = self.ctx.store.load(task_id)
                if task.live:
                    recovery.recover_one(self.ctx, task, self.start_runner)
                    continue  # its runner records the end, or asks for another try (backing off further)
            except StorageError as exc:
                self._settle_later(task_id, exc)
                continue
            except OrchestraError as exc:
                self.log(f"cannot settle {task_id}: {exc}")
                self.bad.add(task_id)
            with self._retry_lock:
                self._retry_delay.pop(task_id, None)

    def _reap_runners(self) -> int:
        """Free the slots of finished runners; a runner says it is done before its thread ends."""
        done = [tid for tid, t in self.runners.items() if tid in self._finished or not t.is_alive()]
        for tid in done:
            del self.runners[tid]
            self._finished.discard(tid)
        return len(done)

    # -- choosing work -----------------------------------------------------------

    def _pass(self) -> bool:
        """Fail what can never run, start what can; True while work remains.

        Reads the live index only (and the files of finished dependencies of queued tasks), so a
        pass with nothing to do costs the same whatever the length of the history.
        """
        store = self.ctx.store
        view = store.view()
        live = view.live
        queued = [s for s in live.values() if s["state"] == State.QUEUED and s["id"] not in self.bad]
        waiting = any(s["state"] == State.AWAITING_INPUT for s in live.values())
        runnable = []
        blocked: list[tuple[str, str]] = []
        for s in queued:
            reason = None
            ready = True
            for dep in s.get("depends_on") or []:
                try:
                    d = store.summary_of(dep, view)
                except OrchestraError as exc:
                    reason = f"dependency {dep} cannot be read: {exc}"
                    break
                if d is None:
                    if s.get("attempts"):
                        # It ran before, so this one had succeeded; prune archived it since (its work
                        # is safe). A retry or a reply of this task runs on what it already built on.
                        continue
                    reason = f"dependency {dep} no longer exists"
                    break
                if d["state"] in BLOCKING_STATES:
                    reason = f"dependency {dep} {d['state']}" + (f": {d['error']}" if d.get("error") else "")
                    break
                if d["state"] != State.SUCCEEDED:
                    ready = False
            if reason:
                blocked.append((s["id"], reason))
            elif ready and s["id"] not in self.runners and (s.get("not_before") or 0) <= time.time():
                runnable.append(s)
        if queued and not runnable and not blocked and not self.runners and self._fail_cycles(queued, live):
            return True
        # What can run starts first: failing thousands of dependents must not hold up an unrelated task.
        over_budget = self._start(runnable, view.spend()["cost_usd"], len(queued), live)
        if blocked:
            self._fail_queued(blocked)
            return True  # summaries changed; look again on the next pass
        if over_budget:
            return waiting  # nothing can start; let --until-idle and idle_exit end the scheduler
        return bool(queued) or waiting

    def _start(
        self, runnable: list[dict[str, Any]], spent_usd: float, queued: int, live: dict[str, dict[str, Any]]
    ) -> bool:
        """Claim the best runnable tasks for the free slots; True when the budget stops every start."""
        if ratelimit.paused_until(self.ctx.paths):
            runnable = []  # rate limits hit several agents: no new starts until the pause ends
        if runnable and self._executor_down():
            return True  # where agents run is unreachable: everything stays queued until it answers
        runnable.sort(key=lambda s: (-int(s.get("priority") or 0), s.get("created_at") or 0, s["id"]))
        if runnable and self._over_budget(spent_usd, queued):
            return True
        states = [str((live.get(tid) or {}).get("state") or State.RUNNING) for tid in self.runners]
        slots = self.max_concurrent - busy_slots(states, self.ctx.config.max_waiting)
        for s in runnable[: max(slots, 0)]:
            self._claim_and_start(s["id"])
        return False

    def _executor_down(self) -> bool:
        """True while the executor cannot start runs (a Ray cluster that does not answer); logs each change."""
        try:
            found = self.ctx.executor().unreachable()
        except OrchestraError as exc:
            found = [str(exc)]
        said = "; ".join(found) or None
        if said != self._executor_said:
            self._executor_said = said
            self.log(f"no new starts: {said}" if said else "the executor can start runs again")
            record.note_no_starts(self.ctx.paths, said)
        return bool(found)

    def _fail_cycles(self, queued: list[dict[str, Any]], live: dict[str, dict[str, Any]]) -> bool:
        """Tasks that wait on each other would hold the queue forever; end them instead.

        Only unfinished tasks can be part of such a cycle, so the live index is the whole graph.
        """
        graph = {tid: list(s.get("depends_on") or []) for tid, s in live.items()}
        failing = []
        for s in queued:
            cycle = find_cycle(graph, s["id"])
            if cycle and s["id"] in cycle:
                failing.append((s["id"], f"dependency cycle: {' -> '.join(cycle)}"))
        if failing:
            self._fail_queued(failing)
        return bool(failing)

    def _over_budget(self, spent: float, queued: int) -> bool:
        """True when the repo budget is spent; logs the reason once per change of mind."""
        message = budget_message(spent, self.ctx.config.budget_usd, queued)
        if message != self._budget_said:
            self._budget_said = message
            self.log(message or "repo budget allows starting tasks again")
        return message is not None

    def _reload_config(self) -> None:
        """`orchestra config set` applies to a running scheduler: new runs, merges and budgets use it."""
        key = _stat_key(self.ctx.paths.config)
        if key == self._config_key:
            return
        self._config_key = key
        try:
            self.ctx.reload_config()
        except OrchestraError as exc:
            self.log(f"keeping the previous settings: {exc}")
            return
        if not self._max_override:
            self.max_concurrent = self.ctx.config.max_concurrent

    def _fail_queued(self, failing: list[tuple[str, str]]) -> None:
        """End queued tasks that can never run, in batches: each one hold of the lock, one sync, one index write."""
        store = self.ctx.store
        ended: list[Task] = []
        # Batches of FAIL_BATCH under one lock each: other writers (a submit, a starting agent) get in between.
        for i in range(0, len(failing), FAIL_BATCH):
            if i:
                time.sleep(YIELD_SECONDS)  # a writer waiting for the lock (it polls) gets it now, not after us
            batch: list[Task] = []
            with store.locked():
                for task_id, reason in failing[i : i + FAIL_BATCH]:
                    try:
                        task = store.load(task_id)
                    except (CorruptTaskFile, TaskNotFound) as exc:
                        self._skip(task_id, exc)
                        continue
                    if task.fail_queued(reason):
                        batch.append(task)
                store.save_many([(t, "finished", {"state": "failed", "error": t.error}) for t in batch])
            ended += batch
        for task in ended[:20]:
            self.log(f"{task.id} failed: {task.error}")
        if len(ended) > 20:
            self.log(f"... and {len(ended) - 20} more queued tasks failed the same way")
        for task in ended:
            if task.workflow:
                workflows.task_finished(self.ctx, task)
        self.wake.set()

    def _claim_and_start(self, task_id: str) -> None:
        log_path = self.ctx.paths.log_file(task_id)
        claimed = False

        def mutate(task: Task) -> None:
            nonlocal claimed
            if task.state != State.QUEUED:
                return
            if task.agentless:  # named, so no later scheduler takes it for dead while this process runs it
                task.start_agentless(*agentless.this_process())
            else:
                task.claim(log_path.stat().st_size if log_path.exists() else 0)
            claimed = True

        try:
            self.ctx.store.update(task_id, mutate, "claimed")
        except (CorruptTaskFile, TaskNotFound) as exc:
            self._skip(task_id, exc)
            return
        if claimed:
            crash_point("after_claim")
            self.start_runner(task_id, None)

    def _skip(self, task_id: str, exc: OrchestraError) -> None:
        """A queued task whose file cannot be read is never started; status and list name its file."""
        self.bad.add(task_id)
        self.log(f"skipping {task_id}: {exc}")
        if isinstance(exc, CorruptTaskFile):
            try:
                self.ctx.store.note_corrupt(exc)
            except OrchestraError as again:
                self.log(f"could not record {exc.path} as corrupt: {again}")

    def start_runner(
        self, task_id: str, adopt: Handle | None, finish_only: bool = False, reason: str | None = None
    ) -> None:
        thread = threading.Thread(
            target=self._runner, args=(task_id, adopt, finish_only, reason), name=f"task-{task_id}", daemon=True
        )
        self.runners[task_id] = thread
        thread.start()

    # -- one task ----------------------------------------------------------------

    def _runner(self, task_id: str, adopt: Handle | None, finish_only: bool, reason: str | None) -> None:
        ctx = self.ctx
        task: Task | None
        try:
            if finish_only:
                task = runner.finalize(ctx, task_id, exit_code=None, launch_error=reason)
            elif adopt is None and ctx.store.load(task_id).agentless:
                task = workflows.run_agentless(ctx, task_id)
            else:
                task = self._run_agent(task_id, adopt)
                if task is None:
                    return  # left running: the next scheduler adopts it
            self._workflow_hook(task)
            with self._retry_lock:
                self._retry_delay.pop(task_id, None)
        except Exception as exc:  # a bug must not take the scheduler or the task's work down
            if not isinstance(exc, StorageError):
                self.log(f"internal error on {task_id}: {exc}\n{traceback.format_exc()}")
            self._end_after_internal_error(task_id, exc)
        finally:
            self._finished.add(task_id)
            self.wake.set()

    def _end_after_internal_error(self, task_id: str, exc: Exception) -> None:
        """No task is left running without an agent: end it as failed, or re-queue it when even that fails.

        When the file system refuses the write (a full disk), nothing can be recorded now: the task
        stays live and its end is recorded, as it really was, once a write goes through again.
        """
        if isinstance(exc, StorageError):
            self._settle_later(task_id, exc)
            return
        try:
            runner.finalize(self.ctx, task_id, exit_code=None, launch_error=f"internal error: {exc}")
            return
        except Exception as again:
            self.log(f"could not record the end of {task_id}: {again}")
            if isinstance(again, StorageError):
                self._settle_later(task_id, again)
                return
        try:
            recovery.give_back(self.ctx, task_id, f"internal error: {exc}")
        except Exception as again:
            if isinstance(again, StorageError):
                self._settle_later(task_id, again)
                return
            # Not the disk: a bug that would fail again. Named when the scheduler stops (exit 1).
            self.log(f"could not re-queue {task_id} either ({again}); it stays as it is until the next start")
            self.bad.add(task_id)

    def _run_agent(self, task_id: str, handle: Handle | None) -> Task | None:
        """Launch the task's agent (or adopt a running one), watch it and record its end.

        None when the agent was left running (the scheduler is stopping; the next one adopts it).
        """
        ctx = self.ctx
        if handle is None:
            try:
                handle = runner.launch(ctx, task_id)
            except Unreachable as exc:
                self.wake.set()  # the pass that follows sees unreachable() and starts nothing more
                return runner.unclaim(ctx, task_id, str(exc))
            except RunLost as exc:
                return runner.finalize(ctx, task_id, exit_code=None, lost_at_launch=str(exc))
            except OrchestraError as exc:
                return runner.finalize(ctx, task_id, exit_code=None, launch_error=str(exc))
        exit_code, ended_by = runner.watch(ctx, task_id, handle, lambda: self.stopping)
        if ended_by == "abandoned":
            return None
        return runner.finalize(ctx, task_id, exit_code=exit_code, handle=handle, timed_out=ended_by == "timeout")

    def _workflow_hook(self, task: Task) -> None:
        """A finished task may move its workflow on (next step, revision round, merge, end)."""
        if task.state.final and task.workflow:
            try:
                workflows.task_finished(self.ctx, task)
            except Exception as exc:  # the task's own end is recorded; a workflow bug must not undo that
                self.log(f"workflow hook failed for {task.id}: {exc}\n{traceback.format_exc()}")
            self.wake.set()


def _stat_key(path: Path) -> object:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)

"""The one façade the front ends call: every operation of orchestra, with its defaults and the autostart policy.

The CLI, the MCP server and the interactive screen parse and render; they call these
methods and nothing below them. Every rule about input is checked in the engine, so
every front end refuses the same things with the same words; what lives here is what
a front end would otherwise have to repeat: resolving ids, defaults, and when a
background scheduler is started so that queued work runs.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra.core.config import Config
from orchestra.core.errors import BadUsage, InvalidInput
from orchestra.core.roles import Role
from orchestra.core.task import Task
from orchestra.core.templates import Template, load_templates
from orchestra.core.values import did_you_mean
from orchestra.core.workflow import Workflow
from orchestra.engine import approvals, changes, settings
from orchestra.engine import status as status_cases
from orchestra.engine import tasks as task_cases
from orchestra.engine.changes import Change
from orchestra.engine.context import Context
from orchestra.engine.status import StatusReport
from orchestra.store.fingerprints import install_for_reading
from orchestra.store.paths import Paths
from orchestra.store.tasks import Store

if TYPE_CHECKING:
    from orchestra.engine.cleanup import CleanupReport
    from orchestra.engine.doctor import DoctorReport
    from orchestra.engine.manual import Attach
    from orchestra.engine.prune import PruneReport
    from orchestra.engine.push import PushResult
    from orchestra.engine.scheduler import Scheduler
    from orchestra.git.merging import MergeResult


class Orchestra:
    def __init__(self, repo: Path | str | None = None, *, repairing_config: bool = False) -> None:
        """`repairing_config`: open even when config.toml does not load, for config_set and config_unset only."""
        self.ctx = Context.open(repo, repairing_config=repairing_config)
        install_for_reading(self.ctx.paths)

    @property
    def paths(self) -> Paths:
        return self.ctx.paths

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def store(self) -> Store:
        return self.ctx.store

    # -- the autostart policy -------------------------------------------------------------

    def autostart(self, start: bool | None = None) -> bool:
        """Start a background scheduler when work may now run and none is running.

        `start` is the front end's explicit choice (--start/--no-start); None follows
        the `autostart` setting. Returns whether one was started.
        """
        from orchestra.engine.scheduler import start_background  # the scheduler's modules: ~15 ms, only autostart pays

        wanted = self.ctx.config.autostart if start is None else start
        return bool(wanted) and start_background(self.ctx)

    # -- tasks ----------------------------------------------------------------------------

    def submit(
        self,
        prompt: str,
        *,
        role: str = "generalist",
        priority: object = 0,
        after: Iterable[str] = (),
        on: str | None = None,
        base: str | None = None,
        title: str | None = None,
        timeout: object = None,
        budget: object = None,
        resources: object = None,
        start: bool | None = None,
    ) -> Task:
        task = task_cases.submit(
            self.ctx,
            task_cases.Submission(
                prompt,
                role=role,
                priority=priority,
                after=list(after),
                on=on,
                base=base,
                title=title,
                timeout=timeout,
                budget=budget,
                resources=resources,
            ),
        )
        self.autostart(start)
        return task

    def submit_batch(self, batch: str | list[object], *, start: bool | None = None) -> list[Task]:
        """Many tasks at once, all or nothing (engine.batch): JSON lines as text (numbered by line),
        or a list of objects (numbered by position)."""
        from orchestra.engine import batch as batch_cases  # only batches pay for its import

        if isinstance(batch, str):
            tasks = batch_cases.submit_batch(self.ctx, batch_cases.from_lines(batch), "line")
        else:
            tasks = batch_cases.submit_batch(self.ctx, batch_cases.from_list(batch), "task")
        self.autostart(start)
        return tasks

    def unseen_changes(self, task: Task) -> builtins.list[str]:
        """Uncommitted paths of the main worktree the new task's agent will not see."""
        return task_cases.unseen_changes(self.ctx, task)

    def get(self, ref: str) -> Task:
        return task_cases.get(self.ctx, ref)

    def summaries(
        self,
        states: Iterable[str] = (),
        roles: Iterable[str] = (),
        limit: int | None = None,
        *,
        manual: bool | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Task summaries, newest first (live tasks, then the most recently ended); `manual` as in list()."""
        return task_cases.summaries(self.ctx, states, roles, limit, manual=manual)

    def manual_merge_attempts(self) -> int:
        """How many `orchestra merge` attempts a person made (listed apart from agents' tasks)."""
        return sum(self.ctx.store.view().manual_counts().values())

    def list(
        self,
        states: Iterable[str] = (),
        roles: Iterable[str] = (),
        limit: int | None = None,
        corrupt: dict[str, str] | None = None,
        *,
        manual: bool | None = None,
    ) -> Iterator[Task]:
        """Whole tasks, newest first, read one at a time (stream them); unreadable files go into `corrupt`.

        `manual` picks agents' tasks (False), a person's merge attempts (True) or both (None).
        """
        return task_cases.listing(self.ctx, states, roles, limit, corrupt, manual=manual)

    def events(self, task_id: str) -> builtins.list[dict[str, Any]]:
        return self.ctx.store.events(task_id)

    def corrupt_files(self) -> dict[str, str]:
        return dict(self.ctx.store.corrupt_files())

    def wait(self, refs: Iterable[str], timeout: float | None = None, poll: float = 0.2) -> builtins.list[Task]:
        return task_cases.wait(self.ctx, refs, timeout=timeout, poll=poll)

    def cancel(self, ref: str) -> Task:
        return task_cases.cancel(self.ctx, ref)

    def cancel_each(self, refs: Iterable[str]) -> builtins.list[Task]:
        """All or none: every id is checked before the first task is cancelled."""
        return task_cases.cancel_each(self.ctx, refs)

    def stop(self, ref: str) -> Task:
        return task_cases.stop(self.ctx, ref)

    def stop_each(self, refs: Iterable[str]) -> builtins.list[Task]:
        """All or none: every id is checked before the first agent is stopped."""
        return task_cases.stop_each(self.ctx, refs)

    def stop_all(self) -> builtins.list[Task]:
        return task_cases.stop_all(self.ctx)

    def retry(self, ref: str, *, budget: object = None, start: bool | None = None) -> Task:
        if budget is not None:
            task_cases.set_budget(self.ctx, ref, budget)
        task = task_cases.retry(self.ctx, ref)
        self.autostart(start)
        return task

    def retry_each(
        self, refs: Iterable[str], *, budget: object = None, start: bool | None = None
    ) -> builtins.list[Task]:
        """All or none: every id (and the budget) is checked before the first task is queued again."""
        tasks = task_cases.retry_each(self.ctx, refs, budget)
        self.autostart(start)
        return tasks

    def set_priority(self, ref: str, priority: object) -> Task:
        return task_cases.set_priority(self.ctx, ref, priority)

    def set_budget(self, ref: str, budget: object) -> Task:
        return task_cases.set_budget(self.ctx, ref, budget)

    def assign_role(self, ref: str, role: str) -> Task:
        return task_cases.assign_role(self.ctx, ref, role)

    def remove_from_queue(self, ref: str) -> Task:
        return task_cases.remove_from_queue(self.ctx, ref)

    def remove_each_from_queue(self, refs: Iterable[str]) -> builtins.list[Task]:
        """All or none: every id is checked before the first task leaves the queue."""
        return task_cases.remove_each_from_queue(self.ctx, refs)

    def queue(self) -> builtins.list[dict[str, Any]]:
        return status_cases.queue(self.ctx)

    def stuck(self, refs: Iterable[str]) -> dict[str, str]:
        """Why each of these queued tasks cannot start until a person acts (see engine.status.stuck)."""
        return status_cases.stuck(self.ctx, [self.ctx.store.resolve(r) for r in refs])

    # -- review -----------------------------------------------------------------------------

    def change(self, ref: str, *, commits: bool = True) -> Change:
        """What a task's branch changed against its base, or a workflow's result against its start."""
        return changes.of_ref(self.ctx, ref, with_commits=commits)

    def task_change(self, task: Task) -> Change | None:
        """The change of a task for `show`; None when it has none to show (not started, no branch)."""
        try:
            return changes.of_task(self.ctx, task)
        except InvalidInput:
            return None

    def diff_lines(self, change: Change) -> Iterator[str]:
        return changes.diff_lines(self.ctx, change)

    def stat_text(self, change: Change) -> str:
        return changes.stat_text(self.ctx, change)

    # -- answering agents -----------------------------------------------------------------

    def pending_request(self, ref: str) -> dict[str, Any] | None:
        return approvals.pending_request(self.ctx, self.get(ref))

    def respond(
        self,
        ref: str,
        *,
        allow: bool | None = None,
        message: str | None = None,
        always: bool = False,
        text: str | None = None,
        start: bool | None = None,
    ) -> Task:
        """Answer a pending permission request (allow/deny) or continue an ended task (text)."""
        if text is not None and (allow is not None or message is not None or always):
            raise BadUsage("give either a reply text or a permission answer (--allow/--deny), not both")
        if text is not None:
            task_cases.check_text(text, "reply")
        else:
            if allow is None:
                raise BadUsage("nothing to answer: allow or deny its question, or give a reply text")
            if message is not None and not isinstance(message, str):
                raise InvalidInput("the message must be text")
            if allow and message:
                raise BadUsage("--message goes with --deny: it tells the agent why")
            if always and not allow:
                raise BadUsage("--always goes with --allow")
            if message is not None:
                task_cases.check_text(message, "message")
        task_id = self.ctx.store.resolve(ref)
        if text is not None:
            task = task_cases.reply(self.ctx, task_id, text)
        else:
            task = approvals.answer(self.ctx, task_id, allow=bool(allow), message=message, always=always)
        # A waiting agent whose scheduler died still needs one to record its end.
        self.autostart(start)
        return task

    # -- stepping in -----------------------------------------------------------------------

    def worktree(self, ref: str) -> Path:
        """The task's checkout (`orchestra path`, `open`, the screen's `o`)."""
        from orchestra.engine import manual  # only attach, open, path and the screen's diff pay

        return manual.worktree(self.ctx, ref)

    def diff(self, ref: str) -> str:
        """The task branch's diff against the commit it started from, as text."""
        from orchestra.engine import manual  # only attach, open, path and the screen's diff pay

        return manual.diff(self.ctx, ref)

    def begin_attach(self, ref: str, *, stop: bool = False) -> Attach:
        """Get a task ready for an interactive Claude session; the front end runs `argv` in `cwd`."""
        from orchestra.engine import manual  # only attach, open, path and the screen's diff pay

        return manual.begin_attach(self.ctx, ref, stop=stop)

    def finish_attach(self, attach: Attach, exit_code: int | None) -> dict[str, Any]:
        """After the session: commit what changed on the branch, note the session in the record."""
        from orchestra.engine import manual  # only attach, open, path and the screen's diff pay

        return manual.finish_attach(self.ctx, attach, exit_code)

    # -- status -----------------------------------------------------------------------------

    def status(self, recent: int = 5) -> StatusReport:
        return status_cases.status(self.ctx, recent)

    def spend(self) -> dict[str, Any]:
        return status_cases.spend(self.ctx)

    def workflow_spend(self, workflow_id: str) -> dict[str, Any]:
        return status_cases.workflow_spend(self.ctx, workflow_id)

    def doctor(self, fix: bool = False) -> DoctorReport:
        from orchestra.engine import doctor as doctor_cases  # only doctor pays

        return doctor_cases.run(self.ctx, fix=fix)

    # -- settings ---------------------------------------------------------------------------

    def config_list(self) -> dict[str, dict[str, Any]]:
        return settings.listing(self.ctx)

    def config_get(self, key: str) -> Any:
        return settings.get(self.ctx, key)

    def config_set(self, key: str, value: object, *, by_person: bool = True) -> Any:
        """`by_person=False` for a model's request (MCP): privileged settings are refused."""
        return settings.set_value(self.ctx, key, value, by_person=by_person)

    def config_unset(self, key: str, *, by_person: bool = True) -> Any:
        """Back to the default (returned): the way to turn an optional setting off, or drop a bad key."""
        return settings.unset(self.ctx, key, by_person=by_person)

    # -- roles and workflows ----------------------------------------------------------------

    def roles(self) -> dict[str, Role]:
        return self.ctx.roles()

    def role(self, name: str) -> Role:
        roles = self.roles()
        if name not in roles:
            raise InvalidInput(
                f"unknown role {name!r}{did_you_mean(name, roles)}; known roles: {', '.join(sorted(roles))}"
            )
        return roles[name]

    def workflow_templates(self) -> dict[str, Template]:
        return load_templates(self.ctx.paths.state)

    def start_workflow(
        self,
        template: str,
        request: str,
        *,
        base: str | None = None,
        into: str | None = None,
        approve_merge: bool = False,
        start: bool | None = None,
    ) -> Workflow:
        from orchestra.engine import workflows  # with merge, push and forge: ~10 ms that status and list skip

        wf = workflows.start(self.ctx, template, request, base=base, into=into, approve_merge=approve_merge)
        self.autostart(start)
        return wf

    def workflows(self) -> builtins.list[Workflow]:
        from orchestra.engine import workflows  # with merge, push and forge: ~10 ms that status and list skip

        return workflows.listing(self.ctx)

    def workflow(self, ref: str) -> Workflow:
        from orchestra.engine import workflows  # with merge, push and forge: ~10 ms that status and list skip

        return workflows.get(self.ctx, ref)

    def workflow_tasks(self, wf: Workflow) -> dict[str, Task]:
        from orchestra.engine import workflows  # with merge, push and forge: ~10 ms that status and list skip

        return workflows.tasks_of(self.ctx, wf)

    def wait_workflow(self, ref: str, timeout: float | None = None, poll: float = 0.3) -> tuple[Workflow, bool]:
        """Block until the workflow stops running or needs a person.

        Returns the workflow and whether it waits for a person: a task of it is awaiting
        input, or its merge awaits approval (`awaiting_merge`), both answered by a person.
        """
        from orchestra.engine import workflows  # with merge, push and forge: ~10 ms that status and list skip

        deadline = time.monotonic() + timeout if timeout else None
        wf_id = workflows.resolve(self.ctx, ref)
        while True:
            wf = workflows.get(self.ctx, wf_id)
            live = self.ctx.store.live()  # a task waiting for a person is live
            waiting = wf.state == "awaiting_merge" or any(
                (live.get(tid) or {}).get("state") == "awaiting_input" for tid in wf.task_ids()
            )
            if wf.state not in ("running",) or waiting or (deadline and time.monotonic() >= deadline):
                return wf, waiting
            time.sleep(poll)

    def cancel_workflow(self, ref: str) -> Workflow:
        from orchestra.engine import workflows  # with merge, push and forge: ~10 ms that status and list skip

        return workflows.cancel(self.ctx, ref)

    def merge_question(self, ref: str) -> str:
        """The question to ask a person before `merge(ref)`, naming what goes where; raises when it would refuse."""
        from orchestra.engine import merge_command  # merging's modules: only merge pays

        return merge_command.preview(self.ctx, ref)

    def merge(
        self,
        ref: str,
        *,
        into: str | None = None,
        strategy: str | None = None,
        resolve: bool = False,
        start: bool | None = None,
        by_person: bool = True,
    ) -> MergeResult:
        """`by_person=False` for a model's request (MCP): a merge waiting for a person's approval is refused."""
        from orchestra.engine import merge_command  # merging's modules: only merge pays

        result = merge_command.manual(self.ctx, ref, into=into, strategy=strategy, resolve=resolve, by_person=by_person)
        if result.resolve_task or result.status == "approved":
            self.autostart(start)
        return result

    def push(self, ref: str, *, remote: str | None = None, pr: bool = False) -> PushResult:
        """Push a task's or workflow's branch to a remote; with `pr`, open a pull request for it."""
        from orchestra.engine import push  # only push pays

        return push.push(self.ctx, ref, remote=remote, pr=pr)

    def cleanup(self, *, dry_run: bool = False, force: bool = False) -> CleanupReport:
        from orchestra.engine import cleanup as cleanup_cases  # only cleanup pays

        return cleanup_cases.cleanup(self.ctx, dry_run=dry_run, force=force)

    def prune(self, *, before: object = None, keep: object = None, dry_run: bool = False) -> PruneReport:
        from orchestra.engine import prune as prune_cases  # only prune pays for its import

        return prune_cases.prune(self.ctx, before=before, keep=keep, dry_run=dry_run)

    # -- the scheduler ------------------------------------------------------------------------

    def scheduler(self, **kwargs: Any) -> Scheduler:
        from orchestra.engine.scheduler import Scheduler  # only a worker pays

        return Scheduler(self.ctx, **kwargs)

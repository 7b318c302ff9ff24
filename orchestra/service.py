"""What orchestra can do, for any front end.

The CLI and the MCP server are thin: they parse, call these methods and render.
Every rule about input (ids, refs, roles, priorities, dependencies) is checked
here, once, so both front ends refuse the same things with the same words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from orchestra import worktrees
from orchestra.config import Config, load_config, parse_duration, parse_usd
from orchestra.errors import InvalidInput, OrchestraError
from orchestra.paths import Paths, find_paths
from orchestra.roles import Role, get_role, load_roles
from orchestra.store import Store
from orchestra.task import FINAL_STATES, State, Task, make_title, now

if TYPE_CHECKING:
    from orchestra.merge import CleanupReport, MergeResult
    from orchestra.workflows import Template, Workflow

MAX_PROMPT_CHARS = 200_000
# Where the interaction module may keep what a waiting task asks (read defensively).
_REQUEST_KEYS = ("permission_request", "pending_request", "question")
PRIORITY_RANGE = (-1000, 1000)


@dataclass
class StatusReport:
    root: Path
    scheduler_pid: int | None
    counts: dict[str, int]
    running: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    total_cost_usd: float = 0.0
    corrupt: dict[str, str] = field(default_factory=dict)
    paused_until: float | None = None  # new starts paused after a burst of rate limits
    spend: dict[str, Any] = field(default_factory=dict)
    budget_usd: float = 0.0
    budget_message: str | None = None
    workflows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": str(self.root),
            "scheduler_pid": self.scheduler_pid,
            "counts": self.counts,
            "running": self.running,
            "awaiting_input": self.waiting,
            "queued": self.queued,
            "recent": self.recent,
            "total_cost_usd": round(self.total_cost_usd, 6),
            "corrupt_task_files": self.corrupt,
            "paused_until": self.paused_until,
            "spend": self.spend,
            "budget_usd": self.budget_usd or None,
            "budget_message": self.budget_message,
            "workflows": self.workflows,
        }


class Orchestra:
    def __init__(self, repo: Path | str | None = None) -> None:
        self.paths: Paths = find_paths(Path(repo) if repo else None)
        self.paths.check_usable()
        self.config: Config = load_config(self.paths.config)
        self.store = Store(self.paths)

    # -- submitting --------------------------------------------------------------

    def submit(
        self,
        prompt: str,
        *,
        role: str = "generalist",
        priority: int = 0,
        after: Iterable[str] = (),
        on: str | None = None,
        base: str | None = None,
        title: str | None = None,
        timeout: object = None,
        extra: dict[str, Any] | None = None,
        budget: object = None,
    ) -> Task:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("empty prompt: say what the agent should do")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"prompt too long ({len(prompt)} characters; the limit is {MAX_PROMPT_CHARS})")
        role_def = get_role(role, load_roles(self.paths))
        priority = validate_priority(priority)
        timeout_s = parse_duration(timeout, "timeout") if timeout is not None else role_def.timeout
        budget_usd = parse_usd(budget) if budget is not None else None
        if role_def.produces == "verdict":
            extra = {**(extra or {}), "produces": "verdict"}
        if on and base:
            raise InvalidInput("use either --on (start from another task's branch) or --base, not both")
        if title is not None and not title.strip():
            raise InvalidInput("empty title")
        if not worktrees.has_commits(self.paths.root):
            raise InvalidInput("the repository has no commits yet; make a first commit, then submit")
        base_ref = "HEAD"
        base_sha: str | None = None
        if not on:
            base_ref = base or "HEAD"
            base_sha = worktrees.resolve_commit(self.paths.root, base_ref)
        with self.store.locked():
            deps = [self.store.resolve(d) for d in after]
            on_id = self.store.resolve(on) if on else None
            if on_id and on_id not in deps:
                deps.append(on_id)
            deps = list(dict.fromkeys(deps))
            on_task = self.store.load(on_id) if on_id else None
            task_id = self.store.unused_id()
            self._check_acyclic(task_id, deps)
            task_title = (title or make_title(prompt)).strip()
            task = Task(
                id=task_id,
                prompt=prompt,
                role=role,
                title=task_title,
                priority=priority,
                depends_on=deps,
                on=on_id,
                base_ref=on_task.branch if on_task else base_ref,
                base_sha=base_sha,
                branch=worktrees.branch_name(self.config.branch_prefix, task_id, task_title),
                worktree=str(self.paths.worktree(task_id)),
                max_attempts=self.config.max_attempts,
                timeout=timeout_s,
                extra=dict(extra or {}),
                budget_usd=budget_usd,
            )
            self.store.save(task, "submitted", role=role, priority=priority, depends_on=deps)
        return task

    def _check_acyclic(self, new_id: str, deps: list[str]) -> None:
        """Refuse dependencies that lead into a cycle: such a task could never start."""
        graph = {tid: list(s.get("depends_on") or []) for tid, s in self.store.summaries().items()}
        graph[new_id] = deps
        cycle = find_cycle(graph, new_id)
        if cycle:
            raise InvalidInput(f"dependency cycle: {' -> '.join(cycle)}")

    # -- reading -----------------------------------------------------------------

    def get(self, ref: str) -> Task:
        return self.store.load(self.store.resolve(ref))

    def list(self, states: Iterable[str] = (), roles: Iterable[str] = ()) -> list[Task]:
        wanted_states = {validate_state(s) for s in states}
        wanted_roles = set(roles)
        tasks = []
        for tid, s in self.store.summaries().items():
            if wanted_states and s["state"] not in wanted_states:
                continue
            if wanted_roles and s["role"] not in wanted_roles:
                continue
            try:
                tasks.append(self.store.load(tid))
            except OrchestraError:
                continue
        tasks.sort(key=lambda t: (t.created_at, t.id))
        return tasks

    def summaries(self, states: Iterable[str] = ()) -> list[dict[str, Any]]:
        wanted = {validate_state(s) for s in states}
        rows = [s for s in self.store.summaries().values() if not wanted or s["state"] in wanted]
        rows.sort(key=lambda s: (s.get("created_at") or 0, s["id"]))
        return rows

    def status(self, recent: int = 5) -> StatusReport:
        """One pass over the index (it may hold tens of thousands of finished tasks)."""
        import heapq

        from orchestra import spend
        from orchestra.scheduler import scheduler_pid

        summaries = self.store.summaries()
        counts = {str(s): 0 for s in State}
        live_workflows: set[str] = set()
        running: list[dict[str, Any]] = []
        waiting: list[dict[str, Any]] = []
        for s in summaries.values():
            state = s["state"]
            counts[state] = counts.get(state, 0) + 1
            if state in FINAL_STATES:
                continue
            if s.get("workflow"):
                live_workflows.add(s["workflow"])
            if state == State.RUNNING:
                running.append(s)
            elif state == State.AWAITING_INPUT:
                waiting.append(s)
        totals = spend.totals(summaries.values())
        report = StatusReport(
            root=self.paths.root,
            scheduler_pid=scheduler_pid(self.paths),
            counts=counts,
            total_cost_usd=totals["cost_usd"],
            corrupt=dict(self.store.corrupt_files()),
            spend=totals,
            budget_usd=self.config.budget_usd,
            budget_message=spend.budget_message(
                totals["cost_usd"], self.config.budget_usd, counts.get(State.QUEUED, 0)
            ),
        )
        t = now()
        for s in running:
            row = dict(s)
            row["elapsed"] = round(t - (s.get("started_at") or t), 1)
            row.update(self.activity(s["id"]))
            report.running.append(row)
        for s in waiting:
            row = dict(s)
            row.update(self.activity(s["id"]))
            report.waiting.append(row)
        report.running.sort(key=lambda r: r.get("started_at") or 0)
        report.waiting.sort(key=lambda r: r.get("started_at") or 0)
        report.queued = self.queue() if counts.get(State.QUEUED) else []
        if live_workflows:
            report.workflows = self._workflow_rows(summaries, live_workflows)
        finished = (s for s in summaries.values() if s["state"] in FINAL_STATES)
        report.recent = [dict(s) for s in heapq.nlargest(recent, finished, key=lambda s: s.get("finished_at") or 0)]
        from orchestra.backoff import paused_until

        report.paused_until = paused_until(self.paths)
        return report

    def activity(self, task_id: str) -> dict[str, Any]:
        """What a live task is doing: turns, spend so far and its last step, from a bounded log tail."""
        from orchestra import transcript

        try:
            task = self.store.load(task_id)
        except OrchestraError:
            return {}
        events, complete = transcript.tail_events(self.paths.log_file(task.id), task.log_offset)
        info = transcript.summarize(events)
        out: dict[str, Any] = {
            "num_turns": info["num_turns"] or None,
            "turns_partial": not complete,
            "last_activity": info["last_activity"],
        }
        if info["cost_usd"] is not None:
            out["cost_usd"] = round((task.cost_usd or 0.0) + info["cost_usd"], 6)
        if task.state == State.AWAITING_INPUT:
            try:
                out["request"] = self.pending_request(task.id)
            except OrchestraError:
                pass
        return out

    def _workflow_rows(self, summaries: dict[str, dict[str, Any]], wanted: set[str]) -> list[dict[str, Any]]:
        """Workflows with unfinished steps; read defensively, workflows are another module's data."""
        from orchestra import spend

        groups: dict[str, list[dict[str, Any]]] = {}
        for s in summaries.values():
            wf = s.get("workflow")
            if wf in wanted:
                groups.setdefault(wf, []).append(s)
        rows = []
        for wf, members in groups.items():
            live = [m for m in members if m["state"] not in FINAL_STATES]
            current = []
            for m in sorted(live, key=lambda m: (m.get("created_at") or 0, m["id"])):
                step = m.get("step")
                if step is None:
                    try:
                        step = self.store.load(m["id"]).extra.get("step")
                    except OrchestraError:
                        step = None
                current.append({"id": m["id"], "step": str(step or m["role"]), "state": m["state"]})
            done, planned = self._workflow_progress(wf, summaries)
            rows.append({"id": wf, "tasks": len(members), "steps_done": done, "steps": planned, "current": current,
                         **{k: v for k, v in spend.totals(members).items() if k != "tasks"},
                         "created_at": min(m.get("created_at") or 0 for m in members)})
        rows.sort(key=lambda r: (r["created_at"], r["id"]))
        return rows

    def _workflow_progress(self, wf_id: str, summaries: dict[str, dict[str, Any]]) -> tuple[int, int | None]:
        """Steps whose latest run succeeded, and the steps the template plans (None if unreadable)."""
        from orchestra.workflows import load_workflow

        try:
            wf = load_workflow(self.paths, wf_id)
        except OrchestraError:
            return 0, None
        done = sum(
            1 for inst in wf.latest().values()
            if (summaries.get(inst["task"]) or {}).get("state") == State.SUCCEEDED
        )
        return done, len(wf.steps)

    # -- acting ------------------------------------------------------------------

    def cancel(self, ref: str) -> Task:
        """Queued tasks end at once; a running agent is asked to stop and the scheduler ends it."""
        task_id = self.store.resolve(ref)
        from orchestra import processes
        from orchestra.scheduler import scheduler_pid

        def mutate(task: Task) -> None:
            if task.state.final:
                raise InvalidInput(f"task {task.id} is already {task.state}")
            if task.state == State.QUEUED:
                task.state = State.CANCELLED
                task.error = "cancelled"
                task.finished_at = now()
            else:
                task.cancel_requested = True

        task = self.store.update(task_id, mutate, "cancel_requested")
        if task.state == State.CANCELLED:
            self.store.append_event(task_id, "finished", state="cancelled")
        elif scheduler_pid(self.paths) is None and task.pid and processes.is_alive(task.pid, task.proc_start):
            # Nobody is watching the agent: stop it here; the next scheduler records the end.
            processes.terminate_group(task.pid, self.config.kill_grace)
        return task

    def retry(self, ref: str) -> Task:
        task_id = self.store.resolve(ref)

        def mutate(task: Task) -> None:
            if task.state == State.SUCCEEDED:
                raise InvalidInput(f"task {task.id} succeeded; submit a new task to do more")
            if not task.state.final:
                raise InvalidInput(f"task {task.id} is {task.state}; only finished tasks can be retried")
            self._back_to_queue(task, resume=None)
            task.max_attempts = task.attempts + self.config.max_attempts

        return self.store.update(task_id, mutate, "retried")

    def wait(
        self, refs: Iterable[str], timeout: float | None = None, poll: float = 0.2, stop_on_input: bool = True
    ) -> list[Task]:
        """Block until every task is final, or one waits for a person, or the timeout passes.

        A task awaiting input will not move until someone answers, so waiting on would hang.
        """
        ids = [self.store.resolve(r) for r in refs]
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            tasks = [self.store.load(i) for i in ids]
            if all(t.state.final for t in tasks):
                return tasks
            if stop_on_input and any(t.state == State.AWAITING_INPUT for t in tasks):
                return tasks
            if deadline and time.monotonic() >= deadline:
                return tasks
            time.sleep(poll)

    def stop(self, ref: str) -> Task:
        """End a running agent gracefully; its worktree, branch and work stay."""
        task = self.get(ref)
        if task.state not in (State.RUNNING, State.AWAITING_INPUT):
            hint = "; use 'cancel' or 'queue remove' for queued tasks" if task.state == State.QUEUED else ""
            raise InvalidInput(f"task {task.id} is {task.state}, not running{hint}")
        return self.cancel(task.id)

    def stop_all(self) -> list[Task]:
        stopped = []
        for s in self.store.summaries().values():
            if s["state"] in (State.RUNNING, State.AWAITING_INPUT):
                try:
                    stopped.append(self.cancel(s["id"]))
                except InvalidInput:
                    continue  # it ended meanwhile
        return stopped

    def set_priority(self, ref: str, priority: object) -> Task:
        number = validate_priority(priority)
        task_id = self.store.resolve(ref)

        def mutate(task: Task) -> None:
            if task.state != State.QUEUED:
                raise InvalidInput(f"task {task.id} is {task.state}; only queued tasks can change priority")
            task.priority = number

        return self.store.update(task_id, mutate, "priority", priority=number)

    def assign_role(self, ref: str, role: str) -> Task:
        get_role(role, load_roles())
        task_id = self.store.resolve(ref)

        def mutate(task: Task) -> None:
            if task.state != State.QUEUED or task.attempts:
                raise InvalidInput(f"task {task.id} has already started; its role can no longer change")
            task.role = role

        return self.store.update(task_id, mutate, "role", role=role)

    def remove_from_queue(self, ref: str) -> Task:
        task_id = self.store.resolve(ref)

        def mutate(task: Task) -> None:
            if task.state != State.QUEUED:
                raise InvalidInput(f"task {task.id} is {task.state}, not queued")
            task.state = State.CANCELLED
            task.error = "removed from the queue"
            task.finished_at = now()

        return self.store.update(task_id, mutate, "finished", state="cancelled", error="removed from the queue")

    def queue(self) -> list[dict[str, Any]]:
        """Queued tasks in the order the scheduler will take them, with what each waits for."""
        summaries = self.store.summaries()
        rows = []
        for s in summaries.values():
            if s["state"] != State.QUEUED:
                continue
            waiting = []
            for dep in s.get("depends_on") or []:
                d = summaries.get(dep)
                state = d["state"] if d else "missing"
                if state != State.SUCCEEDED:
                    waiting.append({"id": dep, "state": state})
            row = dict(s)
            row["waiting_for"] = waiting
            row["ready"] = not waiting
            rows.append(row)
        rows.sort(key=lambda r: (not r["ready"], -int(r.get("priority") or 0), r.get("created_at") or 0, r["id"]))
        for position, row in enumerate(rows, 1):
            row["position"] = position
        return rows

    # -- settings ----------------------------------------------------------------

    def config_list(self) -> dict[str, dict[str, Any]]:
        from orchestra.config import SETTINGS

        return {
            name: {
                "value": getattr(self.config, name),
                "default": setting.default,
                "set": name in self.config.values,
                "help": setting.help,
            }
            for name, setting in SETTINGS.items()
        }

    def config_get(self, key: str) -> Any:
        from orchestra.config import require_setting

        return getattr(self.config, require_setting(key.strip()).name)

    def config_set(self, key: str, value: object) -> Any:
        """Validate, then rewrite only that line of config.toml (comments and tables survive)."""
        from orchestra.config import set_in_file, validate

        checked = validate(key.strip(), value)
        with self.store.locked():
            set_in_file(self.paths.config, key.strip(), checked)
            self.config = load_config(self.paths.config)
        return checked

    # -- spend -------------------------------------------------------------------

    def spend(self) -> dict[str, Any]:
        """Cost and tokens for the whole repo, per workflow and per role, and the budget."""
        from orchestra import spend

        rows = list(self.store.summaries().values())
        total = spend.totals(rows)
        queued = sum(1 for r in rows if r["state"] == State.QUEUED)
        return {
            "total": total,
            "budget_usd": self.config.budget_usd or None,
            "budget_message": spend.budget_message(total["cost_usd"], self.config.budget_usd, queued),
            "by_workflow": spend.by_key(rows, "workflow"),
            "by_role": spend.by_key(rows, "role"),
        }

    def workflow_spend(self, workflow_id: str) -> dict[str, Any]:
        """Cost and tokens summed over the tasks of one workflow (for `workflow show`)."""
        from orchestra import spend

        return spend.totals(s for s in self.store.summaries().values() if s.get("workflow") == workflow_id)

    def set_budget(self, ref: str, budget: object) -> Task:
        """Change a task's budget (covering all its attempts); it applies from its next run."""
        amount = parse_usd(budget)
        task_id = self.store.resolve(ref)

        def mutate(task: Task) -> None:
            task.budget_usd = amount

        return self.store.update(task_id, mutate, "budget", budget_usd=amount)

    # -- health ------------------------------------------------------------------

    def doctor(self, fix: bool = False) -> Any:
        """Check store, worktrees and branches against each other; `fix` repairs what loses nothing."""
        from orchestra import doctor

        return doctor.run(self.paths, self.config, self.store, fix=fix)

    # -- the scheduler -----------------------------------------------------------

    def ensure_scheduler(self) -> bool:
        from orchestra.scheduler import start_background

        return start_background(self.paths)

    def scheduler(self, **kwargs: Any) -> Any:
        from orchestra.scheduler import Scheduler

        return Scheduler(self.paths, self.config, self.store, **kwargs)

    # -- answering agents ----------------------------------------------------------

    def pending_request(self, ref: str) -> dict[str, Any] | None:
        """The oldest unanswered permission request of a waiting task, with a one-line summary."""
        from orchestra import approvals

        task = self.get(ref)
        if task.state != State.AWAITING_INPUT:
            return None
        waiting = approvals.pending(self.paths, task)
        if not waiting:
            return None
        request = dict(waiting[0])
        request["summary"] = approvals.describe(request)
        request["waiting"] = len(waiting)
        return request

    def respond(
        self,
        ref: str,
        *,
        allow: bool | None = None,
        message: str | None = None,
        always: bool = False,
        text: str | None = None,
    ) -> Task:
        """Answer a pending permission request (allow/deny) or continue an ended task (text)."""
        from orchestra import approvals, permissions

        task_id = self.store.resolve(ref)
        if text is not None and (allow is not None or message is not None or always):
            raise InvalidInput("give either a reply text or a permission answer (--allow/--deny), not both")
        if text is not None:
            return self._continue(task_id, text)
        if allow is None:
            raise InvalidInput("nothing to answer: give --allow or --deny, or a reply text")
        if message is not None and not isinstance(message, str):
            raise InvalidInput("the message must be text")
        if allow and message:
            raise InvalidInput("--message goes with --deny: it tells the agent why")
        if always and not allow:
            raise InvalidInput("--always goes with --allow")
        if message is not None and len(message) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"message too long ({len(message)} characters)")
        with self.store.locked():
            task = self.store.load(task_id)
            waiting = approvals.pending(self.paths, task) if task.state == State.AWAITING_INPUT else []
            rule = permissions.always_rule(waiting[0]["tool_name"], waiting[0].get("input") or {}) if always and waiting else None
            approvals.answer(self.store, task_id, allow=allow, message=message, always_rule=rule)
            return self.store.load(task_id)

    @staticmethod
    def _back_to_queue(task: Task, resume: str | None) -> None:
        """An ended task queued again on its branch, fresh (`resume` None) or continuing a session."""
        task.state = State.QUEUED
        task.error = None
        task.exit_code = None
        task.finished_at = None
        task.cancel_requested = False
        task.resume_session = resume

    def _continue(self, task_id: str, text: str) -> Task:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("empty reply: say what the agent should do next")
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"reply too long ({len(text)} characters; the limit is {MAX_PROMPT_CHARS})")

        def mutate(task: Task) -> None:
            if task.state == State.AWAITING_INPUT:
                raise InvalidInput(f"task {task.id} is waiting for a permission answer: use --allow or --deny")
            if task.state not in (State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.CANCELLED):
                raise InvalidInput(f"task {task.id} is {task.state}; a reply continues a task that has ended")
            if not task.session_id:
                raise InvalidInput(f"task {task.id} has no Claude session to continue; use 'orchestra retry'")
            self._back_to_queue(task, resume=task.session_id)
            task.extra["next_prompt"] = text
            task.extra.pop("api_retries", None)
            task.max_attempts = max(task.max_attempts, task.attempts + self.config.max_attempts)

        return self.store.update(task_id, mutate, "replied")


    @classmethod
    def attach(cls, paths: Paths, config: Config, store: Store) -> "Orchestra":
        """The core for a process that already holds the parts (the scheduler's workflow hook)."""
        obj = cls.__new__(cls)
        obj.paths, obj.config, obj.store = paths, config, store
        return obj

    # -- roles, workflows, merges --------------------------------------------------

    def roles(self) -> dict[str, Role]:
        return load_roles(self.paths)

    def role(self, name: str) -> Role:
        roles = self.roles()
        if name not in roles:
            raise InvalidInput(f"unknown role {name!r}; known roles: {', '.join(sorted(roles))}")
        return roles[name]

    def workflow_templates(self) -> dict[str, Template]:
        from orchestra.workflows import load_templates

        return load_templates(self.paths)

    def start_workflow(
        self, template: str, request: str, *, base: str | None = None, into: str | None = None
    ) -> Workflow:
        from orchestra.workflows import start

        return start(self, template, request, base=base, into=into)

    def workflows(self) -> list[Workflow]:
        from orchestra.workflows import refresh, workflow_ids

        out = []
        for wf_id in workflow_ids(self.paths):
            try:
                out.append(refresh(self, wf_id))
            except OrchestraError:
                continue
        out.sort(key=lambda w: (w.created_at, w.id))
        return out

    def workflow(self, ref: str) -> Workflow:
        from orchestra.workflows import refresh, resolve_workflow

        wf_id = resolve_workflow(self.paths, ref)
        if wf_id is None:
            raise InvalidInput(f"no workflow {ref}")
        return refresh(self, wf_id)

    def wait_workflow(self, ref: str, timeout: float | None = None, poll: float = 0.3) -> tuple[Workflow, bool]:
        """Block until the workflow stops running or one of its tasks needs a person.

        Returns the workflow and whether a task of it is awaiting input.
        """
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            wf = self.workflow(ref)
            waiting = any(
                (self.store.summaries().get(tid) or {}).get("state") == State.AWAITING_INPUT for tid in wf.task_ids()
            )
            if wf.state != "running" or waiting or (deadline and time.monotonic() >= deadline):
                return wf, waiting
            time.sleep(poll)

    def cancel_workflow(self, ref: str) -> Workflow:
        """Cancel every step still queued, running or waiting, and end the workflow; branches stay."""
        from orchestra.workflows import FINAL_WORKFLOW_STATES, cancel_record

        wf = self.workflow(ref)
        if wf.state in FINAL_WORKFLOW_STATES:
            raise InvalidInput(f"workflow {wf.id} is already {wf.state}")
        for task_id in wf.task_ids():
            try:
                if not self.store.load(task_id).state.final:
                    self.cancel(task_id)
            except InvalidInput:
                continue  # it ended meanwhile
        return cancel_record(self, wf.id)

    def merge(self, ref: str, *, into: str | None = None, strategy: str = "merge", resolve: bool = False) -> MergeResult:
        from orchestra.merge import run_manual_merge

        return run_manual_merge(self, ref, into=into, strategy=strategy, resolve=resolve)

    def cleanup(self, *, dry_run: bool = False, force: bool = False) -> CleanupReport:
        from orchestra.merge import cleanup

        return cleanup(self, dry_run=dry_run, force=force)


def find_cycle(graph: dict[str, list[str]], start: str) -> list[str] | None:
    """A cycle reachable from `start`, as a path that ends where it began, or None.

    Iterative, so long dependency chains cannot hit the recursion limit.
    """
    done: set[str] = set()
    path: list[str] = [start]
    on_path: set[str] = {start}
    stack: list[Iterator[str]] = [iter(graph.get(start, []))]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            node = path.pop()
            on_path.discard(node)
            done.add(node)
            continue
        if nxt in on_path:
            return path[path.index(nxt):] + [nxt]
        if nxt in done:
            continue
        path.append(nxt)
        on_path.add(nxt)
        stack.append(iter(graph.get(nxt, [])))
    return None


def validate_priority(value: object) -> int:

    if isinstance(value, bool):
        raise InvalidInput(f"invalid priority {value!r}: expected a whole number")
    try:
        number = int(str(value).strip(), 10) if not isinstance(value, int) else value
    except ValueError:
        raise InvalidInput(f"invalid priority {value!r}: expected a whole number") from None
    low, high = PRIORITY_RANGE
    if not low <= number <= high:
        raise InvalidInput(f"invalid priority {number}: must be between {low} and {high}")
    return number


def validate_state(value: str) -> str:
    try:
        return str(State(value))
    except ValueError:
        raise InvalidInput(f"unknown state {value!r}; states: {', '.join(s.value for s in State)}") from None

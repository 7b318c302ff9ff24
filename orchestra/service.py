"""What orchestra can do, for any front end.

The CLI and the MCP server are thin: they parse, call these methods and render.
Every rule about input (ids, refs, roles, priorities, dependencies) is checked
here, once, so both front ends refuse the same things with the same words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from orchestra import worktrees
from orchestra.config import Config, load_config, parse_duration
from orchestra.errors import InvalidInput, OrchestraError
from orchestra.paths import Paths, find_paths
from orchestra.roles import Role, get_role, load_roles
from orchestra.store import Store
from orchestra.task import FINAL_STATES, State, Task, make_title, now

if TYPE_CHECKING:
    from orchestra.merge import CleanupReport, MergeResult
    from orchestra.workflows import Template, Workflow

MAX_PROMPT_CHARS = 200_000
PRIORITY_RANGE = (-1000, 1000)


@dataclass
class RunningInfo:
    task: dict[str, Any]
    elapsed: float
    turns: int | None
    cost_usd: float | None


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
        }


class Orchestra:
    def __init__(self, repo: Path | str | None = None) -> None:
        self.paths: Paths = find_paths(Path(repo) if repo else None)
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
    ) -> Task:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("empty prompt: say what the agent should do")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"prompt too long ({len(prompt)} characters; the limit is {MAX_PROMPT_CHARS})")
        role_def = get_role(role, load_roles(self.paths))
        priority = validate_priority(priority)
        timeout_s = parse_duration(timeout, "timeout") if timeout is not None else role_def.timeout
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
            )
            self.store.save(task, "submitted", role=role, priority=priority, depends_on=deps)
        return task

    def _check_acyclic(self, new_id: str, deps: list[str]) -> None:
        summaries = self.store.summaries()
        graph = {tid: list(s.get("depends_on") or []) for tid, s in summaries.items()}
        graph[new_id] = deps
        seen: set[str] = set()
        stack: list[tuple[str, list[str]]] = []
        for start in deps:
            path = [new_id, start]
            stack = [(start, path)]
            while stack:
                node, path = stack.pop()
                if node == new_id:
                    raise InvalidInput(f"dependency cycle: {' -> '.join(path)}")
                if node in seen:
                    continue
                seen.add(node)
                for nxt in graph.get(node, []):
                    stack.append((nxt, path + [nxt]))

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
        from orchestra import claude
        from orchestra.scheduler import scheduler_pid

        summaries = self.store.summaries()
        counts = {str(s): 0 for s in State}
        total = 0.0
        for s in summaries.values():
            counts[s["state"]] = counts.get(s["state"], 0) + 1
            total += s.get("cost_usd") or 0.0
        report = StatusReport(
            root=self.paths.root,
            scheduler_pid=scheduler_pid(self.paths),
            counts=counts,
            total_cost_usd=total,
            corrupt=dict(self.store.corrupt_files()),
        )
        t = now()
        for s in summaries.values():
            if s["state"] == State.RUNNING:
                row = dict(s)
                row["elapsed"] = round(t - (s.get("started_at") or t), 1)
                try:
                    task = self.store.load(s["id"])
                    progress = claude.read_outcome(self.paths.log_file(task.id), task.log_offset)
                    row["num_turns"] = progress.num_turns or progress.assistant_messages or None
                    if progress.cost_usd is not None:
                        row["cost_usd"] = round((task.cost_usd or 0) + progress.cost_usd, 6)
                except OrchestraError:
                    pass
                report.running.append(row)
            elif s["state"] == State.AWAITING_INPUT:
                report.waiting.append(dict(s))
            elif s["state"] == State.QUEUED:
                report.queued.append(dict(s))
        report.running.sort(key=lambda r: r.get("started_at") or 0)
        report.queued.sort(key=lambda r: (-int(r.get("priority") or 0), r.get("created_at") or 0, r["id"]))
        finished = [s for s in summaries.values() if s["state"] in FINAL_STATES]
        finished.sort(key=lambda s: s.get("finished_at") or 0, reverse=True)
        report.recent = [dict(s) for s in finished[:recent]]
        return report

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
            task.state = State.QUEUED
            task.error = None
            task.exit_code = None
            task.finished_at = None
            task.resume_session = None
            task.cancel_requested = False
            task.max_attempts = task.attempts + self.config.max_attempts

        return self.store.update(task_id, mutate, "retried")

    def wait(self, refs: Iterable[str], timeout: float | None = None, poll: float = 0.2) -> list[Task]:
        """Block until every task is final (or the timeout passes); returns their latest state."""
        ids = [self.store.resolve(r) for r in refs]
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            tasks = [self.store.load(i) for i in ids]
            if all(t.state.final for t in tasks):
                return tasks
            if deadline and time.monotonic() >= deadline:
                return tasks
            time.sleep(poll)

    # -- the scheduler -----------------------------------------------------------

    def ensure_scheduler(self) -> bool:
        from orchestra.scheduler import start_background

        return start_background(self.paths)

    def scheduler(self, **kwargs: Any) -> Any:
        from orchestra.scheduler import Scheduler

        return Scheduler(self.paths, self.config, self.store, **kwargs)

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

    def merge(self, ref: str, *, into: str | None = None, strategy: str = "merge", resolve: bool = False) -> MergeResult:
        from orchestra.merge import run_manual_merge

        return run_manual_merge(self, ref, into=into, strategy=strategy, resolve=resolve)

    def cleanup(self, *, dry_run: bool = False, force: bool = False) -> CleanupReport:
        from orchestra.merge import cleanup

        return cleanup(self, dry_run=dry_run, force=force)


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

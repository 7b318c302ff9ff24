"""A workflow's record, and the pure decision of what it does next.

`decide` reads the record and its tasks and says what is due (wait, create steps,
start a revision round, stop); it changes nothing. The engine applies the decision.
Because the decision depends on the tasks' states alone, it can be taken again at
any time (after a task ends, after a restart) and comes out the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestra.core.roles import Role, verdict_problem
from orchestra.core.task import State, Task, now, validate_id
from orchestra.core.templates import Step, Template, is_verdict_step

WORKFLOW_STATES = ("running", "awaiting_merge", "succeeded", "changes_requested", "conflict", "failed", "cancelled")
FINAL_WORKFLOW_STATES = frozenset({"succeeded", "cancelled"})
LIVE_WORKFLOW_STATES = frozenset({"running", "awaiting_merge"})  # its steps run, or its merge waits


@dataclass
class Workflow:
    id: str
    template: str
    request: str
    title: str
    steps: list[dict[str, Any]]  # the template's steps as they were when the workflow started
    subject: str = "branch"
    state: str = "running"
    base_ref: str = "HEAD"
    base_sha: str = ""
    into: str | None = None
    head_sha: str | None = None  # for a reviewed range: its last commit
    round: int = 1
    max_rounds: int = 3  # the first round plus the revision rounds
    instances: list[dict[str, Any]] = field(default_factory=list)  # {"step", "task", "round"}
    error: str | None = None
    comments: list[dict[str, Any]] = field(default_factory=list)
    conflict: dict[str, Any] | None = None
    merge: dict[str, Any] | None = None
    report: str | None = None
    verdict: str | None = None
    approve_merge: bool = False  # stop at awaiting_merge until a person approves the merge
    merge_approved: bool = False
    merge_approved_at: float | None = None
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)
    finished_at: float | None = None

    def template_obj(self) -> Template:
        steps = tuple(
            Step(
                s["name"],
                s["role"],
                s.get("prompt", ""),
                s.get("on"),
                tuple(s.get("after", [])),
                bool(s.get("revise")),
                bool(s.get("review")),
                dict(s.get("resources") or {}),  # absent in workflows started before steps had resources
            )
            for s in self.steps
        )
        return Template(self.template, "", steps, self.subject, "snapshot")

    def latest(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for inst in self.instances:
            out[inst["step"]] = inst
        return out

    def task_ids(self) -> list[str]:
        return [i["task"] for i in self.instances]

    def add_instance(self, step: str, task_id: str) -> None:
        self.instances.append({"step": step, "task": task_id, "round": self.round})

    def stop(self, state: str, error: str | None) -> None:
        self.state = state
        self.error = error
        self.finished_at = self.finished_at or now()

    def resume(self) -> None:
        self.state, self.error, self.finished_at = "running", None, None

    def await_merge(self) -> None:
        """Hold before the merge step until a person approves it (`approve_merge`)."""
        self.state, self.error = "awaiting_merge", None

    @property
    def final(self) -> bool:
        return self.state in FINAL_WORKFLOW_STATES

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workflow:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = set(cls.__dataclass_fields__)
        wf = cls(**{k: v for k, v in data.items() if k in known})
        validate_id(wf.id)
        if wf.state not in WORKFLOW_STATES:
            raise ValueError(f"unknown workflow state {wf.state!r}")
        return wf


# -- reviews ---------------------------------------------------------------------------


def verdict_of(task: Task | None) -> str | None:
    if task is None:
        return None
    output = task.structured_output
    if verdict_problem(output) is not None:
        return None
    return str(output["verdict"])


def comment(raw: object) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {"file": raw.get("file"), "line": raw.get("line"), "comment": str(raw.get("comment") or "")}
    return {"file": None, "line": None, "comment": str(raw)}


def collect_comments(pairs: list[tuple[Step, Task | None]]) -> list[dict[str, Any]]:
    out = []
    for step, task in pairs:
        output = (task.structured_output if task else None) or {}
        out.append(
            {
                "step": step.name,
                "task": task.id if task else None,
                "verdict": output.get("verdict"),
                "summary": output.get("summary") or "",
                "comments": [comment(c) for c in output.get("comments") or []],
            }
        )
    return out


def comment_line(c: dict[str, Any]) -> str:
    where = c.get("file") or ""
    if where and c.get("line"):
        where += f":{c['line']}"
    return f"- {where + ': ' if where else ''}{c.get('comment')}"


def format_comments(reviews: list[dict[str, Any]]) -> str:
    lines = []
    for review in reviews:
        lines.append(f"Step {review['step']} ({review.get('verdict')}): {review.get('summary') or '-'}")
        lines += [comment_line(c) for c in review.get("comments") or []]
    return "\n".join(lines)


def build_report(passes: list[tuple[str, Task]]) -> tuple[str, str]:
    """One report from the review passes: the overall verdict, then each pass's summary and comments."""
    outputs = [(name, t.structured_output if isinstance(t.structured_output, dict) else {}) for name, t in passes]
    asking = [name for name, out in outputs if out.get("verdict") != "approve"]
    verdict = "request_changes" if asking else "approve"
    lines = [f"# Review report: {'changes requested' if asking else 'approved'}", ""]
    if asking:
        lines.append(f"Changes requested by: {', '.join(asking)}.")
    else:
        lines.append(f"All {len(passes)} review passes approve.")
    for name, out in outputs:
        lines += ["", f"## {name}: {out.get('verdict', 'no verdict')}", "", out.get("summary") or "(no summary)"]
        lines += [comment_line(comment(c)) for c in out.get("comments") or []]
    return "\n".join(lines) + "\n", verdict


# -- deciding the next move ------------------------------------------------------------


@dataclass
class Decision:
    """What a workflow does next. `kind` is one of:

    wait      steps are still running; nothing to do
    stop      end (or pause) the workflow in `state` with `error`
    conflict  the merge step (`task`) hit a conflict
    merged    the merge step (`task`) succeeded
    revise    reviewers asked for changes: start revision round with `comments`
    create    start the tasks of `steps`
    approve   every step before the merge is done and a person must approve the merge
    done      every step ran; `task` is the report step, if any
    """

    kind: str
    state: str | None = None
    error: str | None = None
    steps: list[Step] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    task: Task | None = None


def decide(
    wf: Workflow, tasks: Mapping[str, Task], roles: Mapping[str, Role], *, approve_merge: bool = False
) -> Decision:
    tpl = wf.template_obj()
    latest = wf.latest()
    for inst in wf.instances:
        if inst["task"] not in tasks:
            return Decision("stop", "failed", f"task {inst['task']} of step {inst['step']} no longer exists")
    for name, inst in latest.items():
        t = tasks[inst["task"]]
        if t.state == State.CANCELLED:
            return Decision("stop", "cancelled", f"step {name} (task {t.id}) was cancelled")
        if t.state in (State.FAILED, State.TIMED_OUT):
            result = t.merge_result or {}
            if t.produces == "merge" and result.get("status") == "conflict":
                return Decision("conflict", task=t)
            return Decision("stop", "failed", f"step {name} (task {t.id}) {t.state}: {t.error or 'no reason recorded'}")
    if any(not tasks[i["task"]].state.final for i in latest.values()):
        return Decision("wait")
    merge_step = tpl.merge_step
    merge_inst = latest.get(merge_step.name) if merge_step else None
    if merge_inst and tasks[merge_inst["task"]].state == State.SUCCEEDED:
        return Decision("merged", task=tasks[merge_inst["task"]])
    revising: set[str] = set()
    if tpl.revise_step:
        revising = {tpl.revise_step.name} | tpl.descendants(tpl.revise_step.name)

    def current(name: str) -> Task | None:
        inst = latest.get(name)
        if inst is None or (name in revising and inst["round"] != wf.round):
            return None
        return tasks[inst["task"]]

    verdict_steps = [s for s in tpl.steps if is_verdict_step(s, roles)]
    if tpl.revise_step:
        asking = [
            (s, current(s.name))
            for s in verdict_steps
            if s.name in revising and current(s.name) is not None and verdict_of(current(s.name)) == "request_changes"
        ]
        waiting = [s for s in revising if current(s) is None and s in {v.name for v in verdict_steps}]
        if asking and not waiting:
            comments = collect_comments(asking)
            if wf.round < wf.max_rounds:
                return Decision("revise", comments=comments)
            return Decision(
                "stop", "changes_requested", f"changes requested after {wf.round} review round(s)", comments=comments
            )
    due: list[Step] = []
    for step in tpl.steps:
        if current(step.name) is not None:
            continue
        deps = [current(d) for d in step.deps]
        if not all(d is not None and d.state == State.SUCCEEDED for d in deps):
            continue
        if roles[step.role].produces == "merge":
            refusing = [
                (s, current(s.name))
                for s in verdict_steps
                if s.name in tpl.ancestors(step.name) and verdict_of(current(s.name)) != "approve"
            ]
            if refusing:
                return Decision(
                    "stop",
                    "changes_requested",
                    "a reviewer requested changes; nothing was merged",
                    comments=collect_comments(refusing),
                )
            if approve_merge:
                return Decision("approve", "awaiting_merge", None)
        due.append(step)
    if due:
        return Decision("create", steps=due)
    if all(current(s.name) is not None for s in tpl.steps):
        report = next((current(s.name) for s in tpl.steps if roles[s.role].produces == "report"), None)
        return Decision("done", task=report)
    return Decision("wait")


def current_task(wf: Workflow, tasks: Mapping[str, Task], step: str) -> Task | None:
    """The task of a step in the workflow's current round (steps the revision re-runs included)."""
    tpl = wf.template_obj()
    revising: set[str] = set()
    if tpl.revise_step:
        revising = {tpl.revise_step.name} | tpl.descendants(tpl.revise_step.name)
    inst = wf.latest().get(step)
    if inst is None or (step in revising and inst["round"] != wf.round):
        return None
    return tasks.get(inst["task"])

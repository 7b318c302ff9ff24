"""orchestra.core.workflow.decide: what a workflow does next, from its record and its tasks' states alone."""

from __future__ import annotations

import tomllib
from typing import Any

from orchestra.core.roles import load_roles
from orchestra.core.task import State, Task
from orchestra.core.templates import BUILTIN_DIR, Template, parse_template
from orchestra.core.workflow import Workflow, decide

ROLES = load_roles()
APPROVE = {"verdict": "approve", "summary": "fine", "comments": []}
CHANGES = {
    "verdict": "request_changes",
    "summary": "Wrong greeting.",
    "comments": [{"file": "greeting.py", "line": 1, "comment": "say hello, not hi"}],
}


def builtin(name: str) -> Template:
    path = BUILTIN_DIR / f"{name}.toml"
    return parse_template(name, tomllib.loads(path.read_text()), str(path), ROLES)


class Run:
    """A workflow record and its tasks, moved on by hand the way the engine would."""

    def __init__(self, template: Template, max_rounds: int = 3) -> None:
        self.wf = Workflow(
            id="wabc12",
            template=template.name,
            request="Add a greeting",
            title="Add a greeting",
            steps=[s.to_dict() for s in template.steps],
            subject=template.subject,
            max_rounds=max_rounds,
        )
        self.tasks: dict[str, Task] = {}
        self.roles = {s.name: s.role for s in template.steps}

    def add(self, step: str, state: State, output: Any = None, **fields: Any) -> Task:
        role = self.roles.get(step, "implementer")
        fields.setdefault("produces", ROLES[role].produces)
        task = Task(
            id=f"t{len(self.tasks) + 1}",
            prompt=step,
            role=role,
            state=state,
            structured_output=output,
            workflow=self.wf.id,
            step=step,
            round=self.wf.round,
            **fields,
        )
        self.tasks[task.id] = task
        self.wf.add_instance(step, task.id)
        return task

    def decide(self, **kwargs: Any) -> Any:
        return decide(self.wf, self.tasks, ROLES, **kwargs)

    def through_review(self, verdict: dict[str, Any]) -> None:
        for name in ("design", "implement", "test"):
            self.add(name, State.SUCCEEDED)
        self.add("review", State.SUCCEEDED, verdict)


def created(decision: Any) -> list[str]:
    assert decision.kind == "create", decision
    return [s.name for s in decision.steps]


def test_a_new_workflow_creates_its_first_step_and_then_waits_for_it():
    run = Run(builtin("feature"))
    assert created(run.decide()) == ["design"]
    run.add("design", State.RUNNING)
    assert run.decide().kind == "wait"
    run.tasks["t1"].state = State.AWAITING_INPUT
    assert run.decide().kind == "wait"


def test_each_step_is_created_once_the_steps_it_depends_on_succeeded():
    run = Run(builtin("feature"))
    run.add("design", State.SUCCEEDED)
    assert created(run.decide()) == ["implement"]
    run.add("implement", State.SUCCEEDED)
    assert created(run.decide()) == ["test"]
    run.add("test", State.SUCCEEDED)
    assert created(run.decide()) == ["review"]  # the merge also waits for the review


def test_parallel_steps_are_created_together_and_the_report_waits_for_all():
    run = Run(builtin("code-review"))
    passes = ["correctness", "security", "performance", "docs"]
    assert created(run.decide()) == passes
    for name in passes[:3]:
        run.add(name, State.SUCCEEDED, APPROVE)
    run.add("docs", State.RUNNING)
    assert run.decide().kind == "wait"
    run.tasks["t4"].state = State.SUCCEEDED
    run.tasks["t4"].structured_output = CHANGES
    assert created(run.decide()) == ["report"]


def test_done_when_every_step_ran_with_the_report_task():
    run = Run(builtin("code-review"))
    for name in ("correctness", "security", "performance", "docs"):
        run.add(name, State.SUCCEEDED, APPROVE)
    report = run.add("report", State.SUCCEEDED)
    assert report.produces == "report"
    decision = run.decide()
    assert decision.kind == "done" and decision.task is report


def test_an_approved_change_is_merged_or_waits_for_a_person_to_approve_the_merge():
    run = Run(builtin("feature"))
    run.through_review(APPROVE)
    assert created(run.decide()) == ["merge"]
    decision = run.decide(approve_merge=True)
    assert decision.kind == "approve" and decision.state == "awaiting_merge"


def test_requested_changes_start_a_revision_round_with_the_comments():
    run = Run(builtin("feature"), max_rounds=3)
    run.through_review(CHANGES)
    decision = run.decide()
    assert decision.kind == "revise"
    (review,) = decision.comments
    assert review["step"] == "review" and review["verdict"] == "request_changes"
    assert review["summary"] == "Wrong greeting."
    assert review["comments"] == [{"file": "greeting.py", "line": 1, "comment": "say hello, not hi"}]


def test_a_revision_round_reruns_the_revising_step_and_everything_after_it_but_not_before():
    run = Run(builtin("feature"), max_rounds=3)
    run.through_review(CHANGES)
    run.wf.round = 2  # what the engine does on "revise"
    # Round 1's test and review no longer count; the design still does.
    assert created(run.decide()) == ["implement"]
    run.add("implement", State.SUCCEEDED)
    assert created(run.decide()) == ["test"]
    run.add("test", State.RUNNING)
    assert run.decide().kind == "wait"
    run.tasks["t6"].state = State.SUCCEEDED
    assert created(run.decide()) == ["review"]
    run.add("review", State.SUCCEEDED, APPROVE)
    assert created(run.decide()) == ["merge"]


def test_changes_requested_in_the_last_round_stop_the_workflow():
    run = Run(builtin("feature"), max_rounds=2)
    run.through_review(CHANGES)
    assert run.decide().kind == "revise"
    run.wf.round = 2
    run.add("implement", State.SUCCEEDED)
    run.add("test", State.SUCCEEDED)
    run.add("review", State.SUCCEEDED, CHANGES)
    decision = run.decide()
    assert decision.kind == "stop" and decision.state == "changes_requested"
    assert decision.error == "changes requested after 2 review round(s)"
    assert decision.comments[0]["comments"][0]["comment"] == "say hello, not hi"


def test_without_a_revising_step_a_refusing_reviewer_stops_before_the_merge():
    tpl = parse_template(
        "plain",
        {
            "step": [
                {"name": "implement", "role": "implementer"},
                {"name": "review", "role": "reviewer", "on": "implement"},
                {"name": "merge", "role": "merge", "on": "implement", "after": ["review"]},
            ]
        },
        "plain.toml",
        ROLES,
    )
    run = Run(tpl)
    run.add("implement", State.SUCCEEDED)
    run.add("review", State.SUCCEEDED, CHANGES)
    decision = run.decide()
    assert decision.kind == "stop" and decision.state == "changes_requested"
    assert decision.error == "a reviewer requested changes; nothing was merged"
    # A run that gave no usable verdict does not approve either.
    run.tasks["t2"].structured_output = {"verdict": "maybe"}
    assert run.decide().state == "changes_requested"


def test_a_failed_or_timed_out_step_fails_the_workflow_with_its_reason():
    run = Run(builtin("feature"))
    run.add("design", State.SUCCEEDED)
    impl = run.add("implement", State.FAILED, error="API error 400: bad request")
    decision = run.decide()
    assert decision.kind == "stop" and decision.state == "failed"
    assert decision.error == f"step implement (task {impl.id}) failed: API error 400: bad request"
    impl.state, impl.error = State.TIMED_OUT, None
    decision = run.decide()
    assert (
        decision.state == "failed"
        and decision.error == f"step implement (task {impl.id}) timed_out: no reason recorded"
    )


def test_a_cancelled_step_cancels_the_workflow():
    run = Run(builtin("feature"))
    design = run.add("design", State.CANCELLED)
    decision = run.decide()
    assert (decision.kind, decision.state) == ("stop", "cancelled")
    assert decision.error == f"step design (task {design.id}) was cancelled"


def test_a_task_that_no_longer_exists_fails_the_workflow():
    run = Run(builtin("feature"))
    run.wf.add_instance("design", "gone12")
    decision = run.decide()
    assert decision.state == "failed" and "task gone12 of step design no longer exists" in decision.error


def test_a_merge_conflict_and_a_merge():
    run = Run(builtin("feature"))
    run.through_review(APPROVE)
    merge = run.add("merge", State.FAILED, merge_result={"status": "conflict", "files": ["a"]})
    decision = run.decide()
    assert decision.kind == "conflict" and decision.task is merge
    merge.merge_result = {"status": "gate_failed"}
    assert run.decide().state == "failed"  # any other failed merge is a failure
    merge.state, merge.merge_result = State.SUCCEEDED, {"status": "merged"}
    decision = run.decide()
    assert decision.kind == "merged" and decision.task is merge


def test_the_decision_is_the_same_when_taken_again():
    run = Run(builtin("feature"))
    run.through_review(CHANGES)
    first, second = run.decide(), run.decide()
    assert (first.kind, first.comments) == (second.kind, second.comments)
    assert len(run.wf.instances) == 4  # deciding changed nothing

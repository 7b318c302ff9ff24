"""Cost and tokens per task, workflow and repo; per-task, per-role and repo budgets."""

from __future__ import annotations

import json

from orchestra.app import Orchestra
from orchestra.core.task import Task
from orchestra.engine import tasks as task_cases
from orchestra.engine.runner import remaining_budget as _remaining_budget


def _submit(core: Orchestra, prompt: str, **fields: object) -> object:
    """A task that belongs to a workflow, as the workflow engine submits its steps."""
    return task_cases.submit(core.ctx, task_cases.Submission(prompt, **fields))  # type: ignore[arg-type]


def result_lines(orch, task_id: str) -> list[dict]:
    log = orch.repo / ".orchestra" / "logs" / f"{task_id}.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("type") == "result"]


def argv_value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_tokens_are_recorded_and_summed_over_attempts(orch) -> None:
    tid = orch.submit("work\n@fake if-attempt 1 text working\n@fake if-attempt 1 max-turns\n@fake text done")
    orch.work()
    first = orch.show(tid)
    assert first["state"] == "failed"
    [r1] = result_lines(orch, tid)
    assert first["input_tokens"] == r1["usage"]["input_tokens"] > 0
    assert first["output_tokens"] == r1["usage"]["output_tokens"] > 0
    assert orch.run("retry", "--no-start", tid).returncode == 0
    orch.work()
    second = orch.show(tid)
    assert second["state"] == "succeeded"
    r1, r2 = result_lines(orch, tid)
    assert second["input_tokens"] == r1["usage"]["input_tokens"] + r2["usage"]["input_tokens"]
    assert second["output_tokens"] == r1["usage"]["output_tokens"] + r2["usage"]["output_tokens"]
    assert second["cache_read_tokens"] == 0
    assert abs(second["cost_usd"] - (r1["total_cost_usd"] + r2["total_cost_usd"])) < 1e-9
    shown = orch.run("show", tid, check=True).stdout
    assert "tokens       " in shown and " in / " in shown


def test_spend_per_workflow_role_and_repo(orch) -> None:
    core = Orchestra(orch.repo)
    a = _submit(core, "a\n@fake cost 0.25", role="implementer", workflow="wf1", step="implement").id
    b = _submit(core, "b\n@fake cost 0.5", role="tester", workflow="wf1", step="test").id
    _submit(core, "c\n@fake cost 1", workflow="wf2")
    orch.work()
    data = json.loads(orch.run("spend", "--json", check=True).stdout)
    assert data["total"]["cost_usd"] == 1.75 and data["total"]["tasks"] == 3
    assert data["by_workflow"]["wf1"]["cost_usd"] == 0.75 and data["by_workflow"]["wf1"]["tasks"] == 2
    assert data["by_workflow"]["wf2"]["cost_usd"] == 1.0
    assert data["by_role"]["tester"]["cost_usd"] == 0.5
    wf1 = core.workflow_spend("wf1")
    assert wf1["input_tokens"] == orch.show(a)["input_tokens"] + orch.show(b)["input_tokens"] > 0
    status = json.loads(orch.run("status", "--json", check=True).stdout)
    assert status["spend"]["cost_usd"] == 1.75 and status["spend"]["output_tokens"] > 0
    text = orch.run("spend", check=True).stdout
    assert "BY WORKFLOW" in text and "wf1" in text and "$0.7500" in text
    assert "workflow     wf1 (step implement)" in orch.run("show", a, check=True).stdout


def test_status_shows_live_workflows_with_their_current_step(orch) -> None:
    core = Orchestra(orch.repo)
    first = _submit(core, "design", role="architect", workflow="wf9", step="design")
    second = _submit(core, "build", role="implementer", after=[first.id], workflow="wf9", step="implement")
    text = orch.run("status", check=True).stdout
    assert "WORKFLOWS (1 active)" in text
    assert f"now: design {first.id} (queued), implement {second.id} (queued)" in text
    assert f"{first.id} (queued)" in text.split("QUEUED")[1]  # what the second one waits for
    rows = json.loads(orch.run("status", "--json", check=True).stdout)["workflows"]
    assert rows[0]["id"] == "wf9" and [c["step"] for c in rows[0]["current"]] == ["design", "implement"]


def test_task_budget_reaches_claude_and_a_spent_budget_fails_the_task(orch) -> None:
    tid = orch.submit(
        "spend\n@fake bash echo 1\n@fake bash echo 2\n@fake bash echo 3\n@fake bash echo 4", "--budget", "0.02"
    )
    assert orch.show(tid)["budget_usd"] == 0.02
    orch.work()
    [call] = orch.invocations()
    assert argv_value(call["argv"], "--max-budget-usd") == "0.02"
    task = orch.show(tid)
    assert task["state"] == "failed"
    assert task["error"].startswith("budget exhausted: the run spent $0.0200")
    assert result_lines(orch, tid)[-1]["subtype"] == "error_max_budget_usd"
    assert task["cost_usd"] == 0.02
    # Retrying without more money fails at once, saying how to give more; no claude runs.
    orch.run("retry", "--no-start", tid, check=True)
    orch.work()
    assert len(orch.invocations()) == 1
    again = orch.show(tid)
    assert again["state"] == "failed" and "budget exhausted: $0.0200 spent of the $0.02 budget" in again["error"]
    assert "retry --budget" in again["error"]
    # A bigger budget: the next run gets what is left of it.
    orch.run("retry", "--no-start", "--budget", "1", tid, check=True)
    orch.work()
    assert argv_value(orch.invocations()[-1]["argv"], "--max-budget-usd") == "0.98"


def test_bad_budgets_are_refused(orch) -> None:
    for bad in ("0", "-1", "lots", "nan"):
        proc = orch.run("submit", "--no-start", "--budget", bad, "x")
        assert proc.returncode == 1 and proc.stderr.startswith("orchestra: error: invalid budget"), proc.stderr
    assert orch.run("list", "--json", check=True).stdout.strip() == "[]"
    assert orch.run("config", "set", "budget_usd", "--", "-5").returncode == 1
    assert "$" not in orch.run("config", "get", "budget_usd", check=True).stdout


def test_role_default_budget_and_task_budget_win() -> None:
    task = Task(id="abc123", prompt="p", role="r")
    assert _remaining_budget(task, None) is None
    assert _remaining_budget(task, 0.5) == 0.5
    task.cost_usd = 0.2
    assert _remaining_budget(task, 0.5) == 0.3
    task.budget_usd = 2.0
    assert _remaining_budget(task, 0.5) == 1.8


def test_repo_budget_stops_new_starts_until_raised(orch) -> None:
    first = orch.submit("first\n@fake cost 0.1")
    orch.work()
    assert orch.state(first) == "succeeded"
    assert orch.run("config", "set", "budget_usd", "0.05", check=True).returncode == 0
    second = orch.submit("second")
    worker = orch.work()
    assert worker.returncode == 0  # --until-idle ends: nothing can start
    assert orch.state(second) == "queued"
    assert "repo budget reached: $0.10 spent of $0.05" in worker.stderr
    assert "nothing left to do" not in worker.stderr  # a task is left: the exit says what holds it
    assert worker.stderr.rstrip().endswith("orchestra config set budget_usd <USD>; scheduler exits"), worker.stderr
    status = " ".join(orch.run("status", check=True).stdout.split())
    assert "!! repo budget reached: $0.10 spent of $0.05 (budget_usd); 1 queued task(s) wait" in status
    assert "orchestra config set budget_usd" in status
    assert json.loads(orch.run("status", "--json", check=True).stdout)["budget_message"].startswith("repo budget")
    waited = orch.run("wait", second, "--timeout", "0.2")
    assert (
        waited.returncode == 124
        and f"note: {second} stays queued until you act: budget spent; raise it" in waited.stderr
    )
    orch.run("config", "set", "budget_usd", "5", check=True)
    orch.work()
    assert orch.state(second) == "succeeded"
    status = orch.run("status", check=True).stdout
    assert "budget $5.00" in status and "budget reached" not in status


def test_scheduler_notices_a_raised_budget_while_running(orch) -> None:
    orch.submit("first\n@fake cost 0.1")
    orch.work()
    orch.run("config", "set", "budget_usd", "0.05", check=True)
    second = orch.submit("second")
    worker = orch.start_worker()
    assert worker.stdout is not None
    for line in worker.stdout:  # the scheduler says why it starts nothing
        if "repo budget reached" in line:
            break
    assert orch.state(second) == "queued"
    orch.run("config", "set", "budget_usd", "0", check=True)
    orch.wait_for(lambda: orch.state(second) == "succeeded", what="second task to run")
    assert "repo budget allows starting tasks again" in worker.stdout.readline()

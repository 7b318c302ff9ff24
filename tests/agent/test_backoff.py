"""orchestra.agent.backoff: which API failures are worth a later re-run, and when that re-run may start."""

from __future__ import annotations

import pytest
from conftest import TRANSCRIPTS

from orchestra.agent.backoff import RATE_LIMIT, TRANSIENT, classify, plan
from orchestra.agent.outcome import Outcome, read_outcome
from orchestra.core.config import Config
from orchestra.core.task import State, Task


def api_error(status: int | None, kind: str | None = None, retries: tuple[str, ...] = ()) -> Outcome:
    return Outcome(
        has_result=True,
        subtype="success",
        is_error=True,
        result="API Error",
        api_error_status=status,
        terminal_reason="api_error",
        api_error_kind=kind,
        api_retry_errors=list(retries),
        session_id="sess-new",
    )


@pytest.mark.parametrize(
    "capture, kind",
    [
        ("api-error-529.jsonl", RATE_LIMIT),
        ("timeout.jsonl", TRANSIENT),
        ("api-error-401.jsonl", None),  # a bad key does not get better by waiting
        ("max-turns.jsonl", None),
        ("text.jsonl", None),
        ("sigterm-during-tool.jsonl", None),  # no result line at all
    ],
)
def test_real_captures_are_classified(capture: str, kind: str | None) -> None:
    assert classify(read_outcome(TRANSCRIPTS / capture)) == kind


@pytest.mark.parametrize(
    "outcome, kind",
    [
        (api_error(429), RATE_LIMIT),
        (api_error(529), RATE_LIMIT),
        (api_error(500), TRANSIENT),
        (api_error(503), TRANSIENT),
        (api_error(408), TRANSIENT),
        (api_error(None), TRANSIENT),  # a timeout or a dropped connection
        (api_error(None, "rate_limit"), RATE_LIMIT),
        (api_error(None, None, ("server_error", "overloaded")), RATE_LIMIT),  # the last retry's error counts
        (api_error(401), None),
        (api_error(403), None),
        (api_error(None, "authentication_failed"), None),
        (api_error(None, None, ("billing_error",)), None),
        (api_error(400), None),
        (api_error(404), None),
        (Outcome(has_result=True, subtype="error_max_turns", is_error=True, terminal_reason="max_turns"), None),
        (Outcome(has_result=False, api_error_status=529), None),
    ],
)
def test_classify(outcome: Outcome, kind: str | None) -> None:
    assert classify(outcome) == kind


def running_task(**fields: object) -> Task:
    task = Task(id="abc123", prompt="p", role="implementer", session_id="sess-old", **fields)  # type: ignore[arg-type]
    task.claim(0)
    return task


CONFIG = Config(values={"api_retries": 3, "api_backoff": 30.0, "api_backoff_max": 100.0})


def test_the_wait_doubles_up_to_the_limit_and_the_retries_run_out() -> None:
    waits = []
    for used in range(4):
        retry = plan(CONFIG, running_task(api_retries=used), api_error(529), "API error 529", at=1000.0)
        waits.append(None if retry is None else (retry.number, retry.not_before - 1000.0, retry.kind))
    assert waits == [(1, 30.0, RATE_LIMIT), (2, 60.0, RATE_LIMIT), (3, 100.0, RATE_LIMIT), None]


def test_no_retry_for_what_waiting_does_not_fix_or_when_retries_are_off() -> None:
    assert plan(CONFIG, running_task(), api_error(401), "API error 401", at=0.0) is None
    off = Config(values={"api_retries": 0})
    assert plan(off, running_task(), api_error(529), "API error 529", at=0.0) is None


def test_a_retry_requeues_the_task_to_continue_its_session_later() -> None:
    task = running_task(api_retries=1)
    retry = plan(CONFIG, task, api_error(500), "API error 500: server", at=50.0)
    assert retry is not None and retry.kind == TRANSIENT and retry.session == "sess-new"
    retry.apply(task)
    assert task.state == State.QUEUED and task.not_before == 110.0 and task.api_retries == 2
    assert task.resume_session == "sess-new" and task.session_id == "sess-new"
    assert task.next_prompt is not None and "temporary API error (API error 500: server)" in task.next_prompt


def test_without_a_new_session_the_retry_continues_the_tasks_own() -> None:
    outcome = api_error(529)
    outcome.session_id = None
    retry = plan(CONFIG, running_task(), outcome, "API error 529", at=0.0)
    assert retry is not None and retry.session == "sess-old"

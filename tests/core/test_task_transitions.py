"""Task's state machine: every move goes through a method, and the methods refuse what the machine forbids."""

from __future__ import annotations

import pytest

from orchestra.core.errors import InvalidInput, InvalidTransition
from orchestra.core.task import State, Task


def task(**fields: object) -> Task:
    fields.setdefault("role", "implementer")
    return Task(id="abc234", prompt="p", **fields)  # type: ignore[arg-type]


def test_a_run_goes_claim_launch_finish() -> None:
    t = task()
    t.claim(log_offset=42)
    assert (t.state, t.attempts, t.log_offset) == (State.RUNNING, 1, 42)
    t.launched(pid=100, proc_start=7, log_offset=50, base_sha="a" * 40, worktree="/w")
    assert (t.pid, t.proc_start, t.log_offset, t.base_sha) == (100, 7, 50, "a" * 40)
    t.finish(State.SUCCEEDED, None, exit_code=0)
    assert t.state == State.SUCCEEDED and t.pid is None and t.finished_at is not None


def test_finished_tasks_only_move_back_to_the_queue() -> None:
    t = task()
    t.claim(0)
    t.finish(State.FAILED, "boom")
    with pytest.raises(InvalidTransition):
        t.claim(0)
    with pytest.raises(InvalidTransition):
        t.finish(State.SUCCEEDED, None)
    t.reopen(resume="sess", next_prompt="go on", extra_attempts=3)
    assert (t.state, t.resume_session, t.next_prompt, t.error) == (State.QUEUED, "sess", "go on", None)
    assert t.max_attempts >= t.attempts + 3


def test_finish_refuses_a_state_that_is_not_final() -> None:
    t = task()
    t.claim(0)
    with pytest.raises(InvalidTransition):
        t.finish(State.QUEUED, None)


def test_cancel_ends_a_queued_task_and_marks_a_running_one() -> None:
    queued = task()
    queued.request_cancel()
    assert queued.state == State.CANCELLED and queued.error == "cancelled"
    running = task()
    running.claim(0)
    running.request_cancel()
    assert running.state == State.RUNNING and running.cancel_requested
    with pytest.raises(InvalidInput, match=r"already ended \(cancelled\)"):
        queued.request_cancel()


def test_waiting_for_a_person_is_counted_and_not_charged_to_the_timeout() -> None:
    t = task()
    t.claim(0)
    t.await_input(since=100.0)
    assert t.state == State.AWAITING_INPUT
    assert t.time_waited(at=160.0) == pytest.approx(60.0)
    assert t.input_settled() and t.state == State.RUNNING
    assert t.time_waited() > 0  # what was waited is remembered for this attempt
    assert not t.input_settled()  # nothing waits any more


def test_requeue_mid_run_keeps_the_session_to_resume() -> None:
    t = task()
    t.claim(0)
    t.record_process(123, 9)
    t.requeue(session="s-1", next_prompt="continue", not_before=5.0)
    assert (t.state, t.resume_session, t.session_id, t.pid, t.not_before) == (State.QUEUED, "s-1", "s-1", None, 5.0)


def test_a_queued_task_that_can_never_run_fails_once() -> None:
    t = task()
    assert t.fail_queued("dependency x failed")
    assert t.state == State.FAILED and t.error == "dependency x failed"
    assert not t.fail_queued("again")


def test_agentless_is_what_the_task_produces_not_its_role_name() -> None:
    assert task(produces="merge").agentless
    assert not task(role="merge", produces="branch").agentless

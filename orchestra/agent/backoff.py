"""Transient API failures: re-run the task later, resuming its session, and pause the fleet
when rate limits hit many agents at once.

Claude Code retries an API error itself for a few seconds to minutes (PROTOCOL.md §4)
and then ends the run with `api_error_status` on the result line. Overload, rate
limits, server errors and timeouts usually pass, so the task goes back to the queue
with a not-before time that doubles on each retry. Authentication errors (401, 403)
and bad requests do not pass by waiting, so they fail the task at once. Several
rate-limited runs within a short window pause every new start, so the agents do
not all burn their retries against the same limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestra.agent.outcome import Outcome
from orchestra.core.config import Config
from orchestra.core.task import Task, now

RATE_LIMIT = "rate_limit"
TRANSIENT = "transient"
_RATE_KINDS = {"rate_limit", "overloaded", "rate_limit_error", "overloaded_error"}
_AUTH_KINDS = {"authentication_failed", "authentication_error", "permission_error", "billing_error"}

CONTINUE_PROMPT = (
    "Your previous run on this task stopped on a temporary API error ({error}). Check the state "
    "of the worktree, then continue the task from where you left off and finish it."
)


def classify(outcome: Outcome) -> str | None:
    """RATE_LIMIT, TRANSIENT, or None for failures that waiting will not fix."""
    if not outcome.has_result or (outcome.terminal_reason != "api_error" and outcome.api_error_status is None):
        return None
    status = outcome.api_error_status
    kinds = {k for k in (outcome.api_error_kind, *outcome.api_retry_errors[-1:]) if k}
    if status in (401, 403) or (status is None and kinds & _AUTH_KINDS):
        return None
    if status in (429, 529) or (status is None and kinds & _RATE_KINDS):
        return RATE_LIMIT
    if status is None or status == 408 or 500 <= status < 600:
        return TRANSIENT  # None: a timeout or a dropped connection
    return None


@dataclass
class Retry:
    kind: str
    not_before: float
    number: int  # 1 for the first retry
    session: str | None
    reason: str

    def apply(self, task: Task) -> None:
        """Turn the just-finished run into a queued one that continues the same session.

        The run the API error cost is given back to `max_attempts`, which bounds the runs a dying
        agent gets: a task that waited out a rate limit must not then fail at its first crash."""
        task.requeue(
            session=self.session, next_prompt=CONTINUE_PROMPT.format(error=self.reason), not_before=self.not_before
        )
        task.api_retries = self.number
        task.max_attempts += 1


def plan(config: Config, task: Task, outcome: Outcome, reason: str, at: float | None = None) -> Retry | None:
    kind = classify(outcome)
    used = task.api_retries
    if kind is None or used >= int(config.api_retries):
        return None
    at = now() if at is None else at
    delay = min(float(config.api_backoff) * (2**used), float(config.api_backoff_max))
    return Retry(kind, round(at + delay, 3), used + 1, outcome.session_id or task.session_id, reason)

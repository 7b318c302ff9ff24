"""Money and tokens: totals per task, per workflow and per repository, and the repo budget.

Sums come from the index summaries (never the task files), so `status` stays cheap
with thousands of finished tasks. Spend is what finished runs reported in their
`result` lines; a run still going has not reported yet.
"""

from __future__ import annotations

from typing import Any, Iterable

SUMMED = ("cost_usd", "input_tokens", "output_tokens")


def _number(value: Any) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def totals(summaries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Cost and tokens of a set of tasks, and how many there are."""
    out: dict[str, Any] = {"tasks": 0, "cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0}
    for s in summaries:
        out["tasks"] += 1
        for key in SUMMED:
            out[key] += _number(s.get(key))
    out["cost_usd"] = round(out["cost_usd"], 6)
    return out


def by_key(summaries: Iterable[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Totals grouped by a summary field (`workflow`, `role`); tasks without one are left out."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        value = s.get(key)
        if isinstance(value, str) and value:
            groups.setdefault(value, []).append(s)
    return {name: totals(rows) for name, rows in sorted(groups.items())}


def budget_message(spent: float, limit: float | None, queued: int) -> str | None:
    """Why nothing starts, in the words both `status` and the scheduler log use; None if under budget."""
    if not limit or spent < limit:
        return None
    waiting = f"; {queued} queued task(s) wait" if queued else ""
    return (
        f"repo budget reached: ${spent:.2f} spent of ${limit:.2f} (budget_usd){waiting}; "
        "no new task starts until you raise it: orchestra config set budget_usd <USD>"
    )


def tokens(input_tokens: Any, output_tokens: Any) -> str:
    """`12.3k in / 456 out`, or '-' when nothing was reported."""
    if not isinstance(input_tokens, int) and not isinstance(output_tokens, int):
        return "-"
    return f"{_short(input_tokens or 0)} in / {_short(output_tokens or 0)} out"


def _short(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"

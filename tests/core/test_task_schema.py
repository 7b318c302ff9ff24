"""orchestra.core.task.Task.from_dict: task files of older orchestras read correctly, bad ones are refused."""

from __future__ import annotations

from typing import Any

import pytest

from orchestra.core.errors import InvalidInput
from orchestra.core.task import SCHEMA_VERSION, MergeSpec, State, Task, slugify

VERDICT = {"verdict": "approve", "summary": "fine", "comments": []}


def schema_1(**fields: Any) -> dict[str, Any]:
    """A task file as orchestra wrote it before schema 2: workflow and run bookkeeping in `extra`."""
    return {
        "schema_version": 1,
        "id": "abc123",
        "prompt": "Review it",
        "role": "reviewer",
        "state": "succeeded",
        **fields,
    }


def test_schema_1_extra_moves_into_typed_fields():
    task = Task.from_dict(
        schema_1(
            extra={
                "workflow": "wabc12",
                "step": "review",
                "round": 2,
                "revision_of": "old123",
                "structured_output": VERDICT,
                "next_prompt": "go on",
                "continue_session": "sess-1",
                "not_before": 1700000000.5,
                "copied": [".env"],
                "always_allow": ["Bash(make check)"],
                "conflict_files": None,
                "api_retries": "2",
                "bootstrapped": 1,
                "review": True,
                "produces": "verdict",
                "input_wait": [1, 3.5],
                "from_the_future": {"kept": True},
            }
        )
    )
    assert task.schema_version == SCHEMA_VERSION
    assert (task.workflow, task.step, task.round, task.revision_of) == ("wabc12", "review", 2, "old123")
    assert task.structured_output == VERDICT
    assert (task.next_prompt, task.continue_session, task.not_before) == ("go on", "sess-1", 1700000000.5)
    assert task.copied == [".env"] and task.always_allow == ["Bash(make check)"] and task.conflict_files == []
    assert task.api_retries == 2 and task.bootstrapped is True and task.review is True
    assert task.produces == "verdict" and task.input_wait == [1, 3.5]
    # Only what this orchestra does not know stays in `extra`, as it was.
    assert task.extra == {"from_the_future": {"kept": True}}
    # Written back, it is a schema-2 file that reads the same.
    data = task.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION and data["workflow"] == "wabc12"
    assert Task.from_dict(data) == task


def test_schema_1_merge_steps_get_their_product_from_the_role():
    merge = Task.from_dict(
        schema_1(
            role="merge",
            extra={"merge": {"source_task": "src123", "into": "main", "strategy": "squash"}, "merge_result": {"ok": 1}},
        )
    )
    assert merge.produces == "merge" and merge.agentless
    assert merge.merge == MergeSpec("src123", "main", "squash")
    assert merge.merge_result == {"ok": 1}
    plain = Task.from_dict(schema_1(role="implementer", extra={}))
    assert plain.produces == "branch" and not plain.bootstrapped and plain.extra == {}


def test_a_schema_2_file_keeps_its_extra_untouched():
    task = Task.from_dict({"id": "abc123", "prompt": "p", "role": "tester", "extra": {"workflow": "not-lifted"}})
    assert task.workflow is None and task.extra == {"workflow": "not-lifted"}
    assert task.state == State.QUEUED


@pytest.mark.parametrize(
    "data, message",
    [
        ({"schema_version": SCHEMA_VERSION + 1, "id": "abc123", "prompt": "p", "role": "r"}, "is newer than"),
        ({"schema_version": "2", "id": "abc123", "prompt": "p", "role": "r"}, "is newer than"),
        ({"prompt": "p", "role": "r"}, "missing or invalid field 'id'"),
        ({"id": "abc123", "role": "r"}, "missing or invalid field 'prompt'"),
        ({"id": "abc123", "prompt": "p", "role": "r", "state": "sleeping"}, "unknown state 'sleeping'"),
        ({"id": "abc123", "prompt": "p", "role": "r", "produces": "poetry"}, "unknown product 'poetry'"),
        (["not", "an", "object"], "not a JSON object"),
    ],
)
def test_files_that_cannot_be_a_task_are_refused(data, message):
    with pytest.raises(ValueError, match=message):
        Task.from_dict(data)


def test_ids_that_could_reach_a_path_are_refused():
    with pytest.raises(InvalidInput, match="invalid task id"):  # the store reports it as a corrupt file
        Task.from_dict({"id": "../../etc", "prompt": "p", "role": "r"})


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Fix the login bug", "fix-the-login-bug"),
        ("Ünïcödé café résumé", "unicode-cafe-resume"),  # accents keep their letters
        ("日本語だけ", "task"),  # nothing ASCII to keep
        ("--force; rm -rf /", "force-rm-rf"),
    ],
)
def test_branch_slugs_are_ascii_and_keep_accented_letters(title: str, slug: str) -> None:
    assert slugify(title) == slug

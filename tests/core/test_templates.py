"""orchestra.core.templates.parse_template: a template is checked whole, and each problem names its step."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from orchestra.core.errors import ConfigError
from orchestra.core.roles import load_roles
from orchestra.core.templates import BUILTIN_DIR, parse_template

ROLES = load_roles()
WHERE = "/repo/.orchestra/workflows/t.toml"


def parse(data: dict[str, Any], name: str = "t") -> Any:
    return parse_template(name, data, WHERE, ROLES)


def refused(data: dict[str, Any], name: str = "t") -> str:
    with pytest.raises(ConfigError) as info:
        parse(data, name)
    message = str(info.value)
    assert message.startswith(f"{WHERE}: "), message  # every problem names the file
    return message.removeprefix(f"{WHERE}: ")


def step(name: str, role: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "role": role, **fields}


def test_a_good_template_keeps_every_field_and_orders_steps_by_dependency():
    tpl = parse(
        {
            "description": "  Build and check.  ",
            "step": [
                step("merge", "merge", on="test", after=["review"]),
                step("review", "reviewer", on="test"),
                step("test", "tester", on="build", prompt="  Test it.\n"),
                step("build", "implementer", revise=True),
            ],
        }
    )
    assert tpl.name == "t" and tpl.description == "Build and check." and tpl.subject == "branch"
    assert tpl.source == WHERE
    # Every step comes after the steps it depends on, whatever the file's order.
    assert [s.name for s in tpl.steps] == ["build", "test", "review", "merge"]
    assert tpl.step("test").prompt == "Test it." and tpl.step("test").on == "build"
    assert tpl.step("merge").deps == ["test", "review"]
    assert tpl.revise_step is not None and tpl.revise_step.name == "build"
    assert tpl.merge_step is not None and tpl.merge_step.name == "merge"
    assert tpl.descendants("build") == {"test", "review", "merge"}
    assert tpl.ancestors("merge") == {"build", "test", "review"}


def test_after_may_be_a_single_name():
    tpl = parse({"step": [step("a", "tester"), step("b", "tester", after="a")]})
    assert tpl.step("b").after == ("a",)


@pytest.mark.parametrize("path", sorted(BUILTIN_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_built_in_template_parses(path):
    tpl = parse_template(path.stem, tomllib.loads(path.read_text()), str(path), ROLES)
    assert tpl.steps and tpl.description


@pytest.mark.parametrize(
    "data, message",
    [
        ({"step": [step("a", "tester")], "colour": "red"}, "unknown field 'colour'"),
        ({"step": [step("a", "tester", revize=True)]}, "step 'a': unknown field 'revize'"),
        ({"step": [step("a", "wizard")]}, "step 'a': unknown role 'wizard'; known roles: architect, "),
        ({"step": [{"role": "tester"}]}, "step 1: field 'name' is missing"),
        ({"step": [{"name": "a"}]}, "step 'a': field 'role' is missing"),
        ({"step": [step("Bad Name", "tester")]}, "invalid step name 'Bad Name'"),
        ({"step": []}, "no steps: add [[step]] tables"),
        ({"description": "no steps at all"}, "no steps"),
        ({"step": ["not a table"]}, "step 1: expected a table"),
        ({"step": [step("a", "tester")], "subject": "tree"}, "field 'subject': expected 'branch' or 'range'"),
        ({"step": [step("a", "tester")], "description": 3}, "field 'description': expected a string"),
        ({"step": [step("a", "tester", prompt=["x"])]}, "step 'a': field 'prompt': expected a string"),
        ({"step": [step("a", "tester", on=3)]}, "step 'a': field 'on': expected a step name"),
        ({"step": [step("a", "tester", after=[1])]}, "step 'a': field 'after': expected a list of step names"),
        ({"step": [step("a", "tester", revise="yes")]}, "step 'a': field 'revise': expected true or false"),
        ({"step": [step("a", "tester"), step("a", "tester")]}, "step name 'a' is used twice"),
    ],
)
def test_malformed_fields_are_refused_with_the_step(data, message):
    assert message in refused(data)


def test_bad_template_name_is_refused():
    assert "invalid template name 'Not-OK'" in refused({"step": [step("a", "tester")]}, name="Not-OK")


def test_cycles_are_refused_with_the_path():
    message = refused(
        {
            "step": [
                step("a", "tester", on="c"),
                step("b", "implementer", after=["a"]),
                step("c", "implementer", on="b"),
            ]
        }
    )
    assert message.startswith("steps form a cycle: ")
    path = message.removeprefix("steps form a cycle: ").split(" -> ")
    assert path[0] == path[-1] and set(path) == {"a", "b", "c"}


def test_a_step_on_itself_is_refused():
    assert refused({"step": [step("a", "tester", after=["a"])]}) == "step 'a' refers to itself"


def test_dangling_references_are_refused():
    assert refused({"step": [step("a", "tester", on="ghost")]}) == "step 'a' refers to unknown step 'ghost'"
    assert "refers to unknown step 'gone'" in refused({"step": [step("a", "tester", after=["gone"])]})


def test_two_revise_steps_are_refused():
    message = refused({"step": [step("a", "implementer", revise=True), step("b", "tester", on="a", revise=True)]})
    assert message == "only one step may revise; a, b all do"


def test_a_revising_step_must_produce_a_branch():
    assert "a revising step must be an agent that produces a branch" in refused(
        {"step": [step("r", "reviewer", revise=True)]}
    )
    assert "a revising step must be an agent that produces a branch" in refused(
        {"step": [step("a", "implementer", revise=True, review=True)]}
    )


def test_merge_needs_on_and_a_branch_to_merge():
    assert refused({"step": [step("m", "merge")]}).startswith("step 'm': a merge step needs 'on'")
    review_first = {"step": [step("r", "reviewer"), step("m", "merge", on="r")]}
    assert "'on' names 'r', a review step, which has no branch of its own" in refused(review_first)
    twice = {"step": [step("a", "implementer"), step("m1", "merge", on="a"), step("m2", "merge", on="a")]}
    assert refused(twice) == "only one merge step is allowed"


def test_a_range_template_cannot_merge():
    data = {"subject": "range", "step": [step("a", "implementer"), step("m", "merge", on="a")]}
    assert "a template that reviews a range cannot merge" in refused(data)


def test_on_an_agentless_step_is_refused():
    data = {"step": [step("r", "reviewer"), step("rep", "report", after=["r"]), step("t", "tester", on="rep")]}
    assert "step 't': 'on' names 'rep', which has no branch" in refused(data)


def test_a_report_must_follow_a_review_and_an_agentless_step_cannot_review():
    assert "a report step must follow at least one review step" in refused(
        {"step": [step("a", "implementer"), step("rep", "report", after=["a"])]}
    )
    assert "role 'merge' has no agent to review with" in refused(
        {"step": [step("a", "implementer"), step("m", "merge", on="a", review=True)]}
    )


def test_a_review_pass_of_a_writing_role_counts_as_a_review():
    tpl = parse(
        {"subject": "range", "step": [step("arch", "architect", review=True), step("rep", "report", after=["arch"])]}
    )
    assert tpl.subject == "range" and [s.name for s in tpl.steps] == ["arch", "rep"]


def test_a_step_carries_its_own_resources_and_a_bad_one_is_refused_with_the_step():
    """A template places one step on a particular node (executor = ray) without a role of its own."""
    tpl = parse({"step": [step("build", "implementer"), step("test", "tester", on="build", resources={"db_box": 1})]})
    assert tpl.step("test").resources == {"db_box": 1.0} and tpl.step("build").resources == {}
    assert tpl.step("test").to_dict()["resources"] == {"db_box": 1.0}
    assert "step 'a': field 'resources': invalid resources: 'orchestra_agent' is set by orchestra" in refused(
        {"step": [step("a", "tester", resources={"orchestra_agent": 1})]}
    )
    assert "step 'a': field 'resources': invalid resources: db_box must be a number above 0" in refused(
        {"step": [step("a", "tester", resources={"db_box": 0})]}
    )
    assert "step 'm': field 'resources': role 'merge' has no agent" in refused(
        {"step": [step("a", "implementer"), step("m", "merge", on="a", resources={"db_box": 1})]}
    )


def _readme_toml(marker: str) -> tuple[str, str]:
    """The README's TOML example whose first line is the comment `# <marker>NAME.toml...`: (NAME, text)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for block in re.findall(r"```toml\n(.*?)```", readme, re.S):
        first = block.splitlines()[0]
        if first.startswith(f"# {marker}"):
            return first.removeprefix(f"# {marker}").split(".toml")[0], block
    raise AssertionError(f"README.md has no TOML example for {marker}")


def test_the_readme_examples_of_a_role_file_and_a_template_are_valid(tmp_path):
    """The README shows what a role file and a workflow template hold; both load as written."""
    role_name, role_text = _readme_toml(".orchestra/roles/")
    tpl_name, tpl_text = _readme_toml(".orchestra/workflows/")
    state = tmp_path / ".orchestra"
    (state / "roles").mkdir(parents=True)
    (state / "roles" / f"{role_name}.toml").write_text(role_text)
    roles = load_roles(state)
    assert roles[role_name].source.endswith(f"{role_name}.toml")
    tpl = parse_template(tpl_name, tomllib.loads(tpl_text), str(tmp_path / f"{tpl_name}.toml"), roles)
    assert [s.name for s in tpl.steps][-1] == "merge"

"""Workflow templates: data that says which roles work on a request, in what order.

A template is checked completely when it is read, and every problem is reported
with its file and step, so a bad template never starts a workflow half way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.core import tomlfile
from orchestra.core.errors import ConfigError, InvalidInput
from orchestra.core.graph import any_cycle, topo_order
from orchestra.core.roles import Role, load_roles
from orchestra.core.values import resources as v_resources

BUILTIN_DIR = Path(__file__).resolve().parents[1] / "templates"

_STEP_FIELDS = {"name", "role", "prompt", "on", "after", "revise", "review", "title", "resources"}
_TEMPLATE_FIELDS = {"name", "description", "subject", "step"}


@dataclass(frozen=True)
class Step:
    name: str
    role: str
    prompt: str = ""
    on: str | None = None  # the step whose branch this one starts from (merge: the branch it merges)
    after: tuple[str, ...] = ()
    revise: bool = False  # takes the reviewers' comments in a revision round
    review: bool = False  # a read-only pass of its role that returns a verdict
    # custom Ray resources this step's tasks ask for (executor = ray), on top of its role's:
    # so one template can send its tests to the database box without a role of its own
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def deps(self) -> list[str]:
        return list(dict.fromkeys([*([self.on] if self.on else []), *self.after]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "prompt": self.prompt,
            "on": self.on,
            "after": list(self.after),
            "revise": self.revise,
            "review": self.review,
            "resources": dict(self.resources),
        }


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    steps: tuple[Step, ...]
    subject: str = "branch"  # "branch": the workflow makes one; "range": it reviews an existing one
    source: str = "built-in"

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def revise_step(self) -> Step | None:
        return next((s for s in self.steps if s.revise), None)

    @property
    def merge_step(self) -> Step | None:
        return next((s for s in self.steps if s.role == "merge"), None)

    def descendants(self, name: str) -> set[str]:
        out: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for s in self.steps:
                if current in s.deps and s.name not in out:
                    out.add(s.name)
                    frontier.append(s.name)
        return out

    def ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        frontier = list(self.step(name).deps)
        while frontier:
            current = frontier.pop()
            if current not in out:
                out.add(current)
                frontier.extend(self.step(current).deps)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "subject": self.subject,
            "source": self.source,
            "steps": [s.to_dict() for s in self.steps],
        }


def is_verdict_step(step: Step, roles: Mapping[str, Role]) -> bool:
    role = roles.get(step.role)
    return step.review or (role is not None and role.produces == "verdict")


def parse_template(name: str, data: dict[str, Any], where: str, roles: dict[str, Role]) -> Template:
    """Check a template completely: every problem is reported with the file and the step."""

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{where}: {msg}")

    try:
        validate_name(name)
    except InvalidInput as exc:
        raise bad(str(exc)) from None
    unknown = sorted(set(data) - _TEMPLATE_FIELDS)
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}; known fields: description, subject, [[step]]")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise bad("field 'description': expected a string")
    subject = data.get("subject", "branch")
    if subject not in ("branch", "range"):
        raise bad("field 'subject': expected 'branch' or 'range'")
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise bad("no steps: add [[step]] tables")
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps, 1):
        if not isinstance(raw, dict):
            raise bad(f"step {i}: expected a table")
        label = f"step {raw.get('name', i)!r}" if isinstance(raw.get("name"), str) else f"step {i}"
        unknown = sorted(set(raw) - _STEP_FIELDS)
        if unknown:
            raise bad(f"{label}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(_STEP_FIELDS))}")
        step_name = raw.get("name")
        if not isinstance(step_name, str):
            raise bad(f"{label}: field 'name' is missing")
        try:
            validate_name(step_name, "step name")
        except InvalidInput as exc:
            raise bad(f"{label}: {exc}") from None
        role = raw.get("role")
        if not isinstance(role, str):
            raise bad(f"{label}: field 'role' is missing")
        if role not in roles:
            raise bad(f"{label}: unknown role {role!r}; known roles: {', '.join(sorted(roles))}")
        prompt = raw.get("prompt", "")
        if not isinstance(prompt, str):
            raise bad(f"{label}: field 'prompt': expected a string")
        on = raw.get("on")
        if on is not None and not isinstance(on, str):
            raise bad(f"{label}: field 'on': expected a step name")
        after = raw.get("after", [])
        if isinstance(after, str):
            after = [after]
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise bad(f"{label}: field 'after': expected a list of step names")
        flags = {}
        for key in ("revise", "review"):
            value = raw.get(key, False)
            if not isinstance(value, bool):
                raise bad(f"{label}: field {key!r}: expected true or false")
            flags[key] = value
        step_resources: dict[str, float] = {}
        if "resources" in raw:
            if roles[role].agentless:
                raise bad(f"{label}: field 'resources': role {role!r} has no agent and runs on the coordinator")
            try:
                step_resources = v_resources(raw["resources"], "resources")
            except InvalidInput as exc:
                raise bad(f"{label}: field 'resources': {exc}") from None
        steps.append(
            Step(step_name, role, prompt.strip(), on, tuple(after), flags["revise"], flags["review"], step_resources)
        )
    names = [s.name for s in steps]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise bad(f"step name {dupes[0]!r} is used twice")
    for s in steps:
        for dep in s.deps:
            if dep == s.name:
                raise bad(f"step {s.name!r} refers to itself")
            if dep not in names:
                raise bad(f"step {s.name!r} refers to unknown step {dep!r}")
    cycle = any_cycle({s.name: s.deps for s in steps})
    if cycle:
        raise bad(f"steps form a cycle: {' -> '.join(cycle)}")
    by_name = {s.name: s for s in steps}
    revise = [s for s in steps if s.revise]
    if len(revise) > 1:
        raise bad(f"only one step may revise; {', '.join(s.name for s in revise)} all do")
    for s in steps:
        role = roles[s.role]
        if s.revise and (role.agentless or role.produces != "branch" or s.review):
            raise bad(f"step {s.name!r}: a revising step must be an agent that produces a branch")
        if s.review and role.agentless:
            raise bad(f"step {s.name!r}: role {s.role!r} has no agent to review with")
        if s.on and roles[by_name[s.on].role].agentless:
            raise bad(f"step {s.name!r}: 'on' names {s.on!r}, which has no branch")
        if s.on and is_verdict_step(by_name[s.on], roles):
            raise bad(f"step {s.name!r}: 'on' names {s.on!r}, a review step, which has no branch of its own")
        if role.produces == "merge":
            if not s.on:
                raise bad(f"step {s.name!r}: a merge step needs 'on' (the step whose branch it merges)")
            if subject == "range":
                raise bad(f"step {s.name!r}: a template that reviews a range cannot merge")
        if role.produces == "report" and not any(is_verdict_step(by_name[d], roles) for d in s.deps):
            raise bad(f"step {s.name!r}: a report step must follow at least one review step")
    if sum(1 for s in steps if roles[s.role].produces == "merge") > 1:
        raise bad("only one merge step is allowed")
    return Template(name, description.strip(), tuple(_topo_order(steps)), subject, where)


def _topo_order(steps: list[Step]) -> list[Step]:
    by_name = {s.name: s for s in steps}
    return [by_name[n] for n in topo_order({s.name: s.deps for s in steps})]


def validate_name(name: str, what: str = "template name") -> str:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 40
        or not all(c.islower() or c.isdigit() or c in "-_" for c in name)
        or not name[0].isalnum()
    ):
        raise InvalidInput(f"invalid {what} {name!r}: lowercase letters, digits, '-' and '_'")
    return name


def _read_template_file(path: Path, roles: dict[str, Role], source: str) -> Template:
    data = tomlfile.read(path)
    if "name" in data and data["name"] != path.stem:
        raise ConfigError(f"{path}: field 'name': {data['name']!r} does not match the file name {path.stem!r}")
    tpl = parse_template(path.stem, data, str(path), roles)
    return Template(tpl.name, tpl.description, tpl.steps, tpl.subject, source)


def user_template_dir(state: Path) -> Path:
    return state / "workflows"


def load_templates(state: Path, roles: dict[str, Role] | None = None) -> dict[str, Template]:
    """Built-in templates, overridden or extended by `.orchestra/workflows/*.toml`."""
    roles = roles if roles is not None else load_roles(state)
    out: dict[str, Template] = {}
    for path in sorted(BUILTIN_DIR.glob("*.toml")):
        out[path.stem] = _read_template_file(path, roles, "built-in")
    user_dir = user_template_dir(state)
    if user_dir.is_dir():
        for path in sorted(user_dir.glob("*.toml")):
            source = str(path) + (" (overrides built-in)" if path.stem in out else "")
            out[path.stem] = _read_template_file(path, roles, source)
    return out


def get_template(state: Path, name: str, roles: dict[str, Role] | None = None) -> Template:
    validate_name(name)
    roles = roles if roles is not None else load_roles(state)
    user = user_template_dir(state) / f"{name}.toml"
    builtin = BUILTIN_DIR / f"{name}.toml"
    if user.is_file():
        source = str(user) + (" (overrides built-in)" if builtin.is_file() else "")
        return _read_template_file(user, roles, source)
    if builtin.is_file():
        return _read_template_file(builtin, roles, "built-in")
    user_dir = user_template_dir(state)
    known = sorted(
        {p.stem for p in BUILTIN_DIR.glob("*.toml")}
        | ({p.stem for p in user_dir.glob("*.toml")} if user_dir.is_dir() else set())
    )
    raise InvalidInput(f"unknown workflow template {name!r}; known: {', '.join(known)}")

"""Workflows: templates (data) that expand into a task graph, the review loop, and their records.

Steps become tasks only when the steps they follow have succeeded: a reviewer's
prompt must carry the diff it reviews, and a merge must wait for the verdicts.
`advance` decides the next move from the tasks' states alone, so it can be run
again at any time (after a task ends, after a restart, on a read) and does the
same thing once.
"""

from __future__ import annotations

import json
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from orchestra import worktrees
from orchestra.errors import ConfigError, InvalidInput, OrchestraError, TaskNotFound
from orchestra.fileio import write_atomic
from orchestra.gitcmd import git
from orchestra.roles import Role, load_roles, verdict_problem
from orchestra.task import State, Task, check_transition, make_title, now, validate_id

if TYPE_CHECKING:
    from orchestra.paths import Paths
    from orchestra.service import Orchestra

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
WORKFLOW_STATES = ("running", "succeeded", "changes_requested", "conflict", "failed", "cancelled")
FINAL_WORKFLOW_STATES = frozenset({"succeeded", "cancelled"})
MAX_REQUEST_CHARS = 100_000
DIFF_BUDGET = 40_000  # characters of diff a reviewer's prompt carries before files are summarised

_STEP_FIELDS = {"name", "role", "prompt", "on", "after", "revise", "review", "title"}
_TEMPLATE_FIELDS = {"name", "description", "subject", "step"}


# -- templates ----------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    role: str
    prompt: str = ""
    on: str | None = None  # the step whose branch this one starts from (merge: the branch it merges)
    after: tuple[str, ...] = ()
    revise: bool = False  # takes the reviewers' comments in a revision round
    review: bool = False  # a read-only pass of its role that returns a verdict

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


def is_verdict_step(step: Step, roles: dict[str, Role]) -> bool:
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
        steps.append(Step(step_name, role, prompt.strip(), on, tuple(after), flags["revise"], flags["review"]))
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
    cycle = _find_cycle(steps)
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


def _find_cycle(steps: list[Step]) -> list[str] | None:
    graph = {s.name: s.deps for s in steps}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for s in steps:
        if s.name not in state:
            found = visit(s.name, [s.name])
            if found:
                return found
    return None


def _topo_order(steps: list[Step]) -> list[Step]:
    done: set[str] = set()
    ordered: list[Step] = []
    pending = list(steps)
    while pending:
        for s in pending:
            if all(d in done for d in s.deps):
                ordered.append(s)
                done.add(s.name)
                pending.remove(s)
                break
    return ordered


def validate_name(name: str, what: str = "template name") -> str:
    if not isinstance(name, str) or not name or len(name) > 40 or not all(
        c.islower() or c.isdigit() or c in "-_" for c in name
    ) or not name[0].isalnum():
        raise InvalidInput(f"invalid {what} {name!r}: lowercase letters, digits, '-' and '_'")
    return name


def _read_template_file(path: Path, roles: dict[str, Role], source: str) -> Template:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if "name" in data and data["name"] != path.stem:
        raise ConfigError(f"{path}: field 'name': {data['name']!r} does not match the file name {path.stem!r}")
    tpl = parse_template(path.stem, data, str(path), roles)
    return Template(tpl.name, tpl.description, tpl.steps, tpl.subject, source)


def user_template_dir(paths: "Paths") -> Path:
    return paths.state / "workflows"


def load_templates(paths: "Paths", roles: dict[str, Role] | None = None) -> dict[str, Template]:
    """Built-in templates, overridden or extended by `.orchestra/workflows/*.toml`."""
    roles = roles if roles is not None else load_roles(paths)
    out: dict[str, Template] = {}
    for path in sorted(BUILTIN_DIR.glob("*.toml")):
        out[path.stem] = _read_template_file(path, roles, "built-in")
    user_dir = user_template_dir(paths)
    if user_dir.is_dir():
        for path in sorted(user_dir.glob("*.toml")):
            source = str(path) + (" (overrides built-in)" if path.stem in out else "")
            out[path.stem] = _read_template_file(path, roles, source)
    return out


def get_template(paths: "Paths", name: str, roles: dict[str, Role] | None = None) -> Template:
    validate_name(name)
    roles = roles if roles is not None else load_roles(paths)
    user = user_template_dir(paths) / f"{name}.toml"
    builtin = BUILTIN_DIR / f"{name}.toml"
    if user.is_file():
        source = str(user) + (" (overrides built-in)" if builtin.is_file() else "")
        return _read_template_file(user, roles, source)
    if builtin.is_file():
        return _read_template_file(builtin, roles, "built-in")
    user_dir = user_template_dir(paths)
    known = sorted({p.stem for p in BUILTIN_DIR.glob("*.toml")}
                   | ({p.stem for p in user_dir.glob("*.toml")} if user_dir.is_dir() else set()))
    raise InvalidInput(f"unknown workflow template {name!r}; known: {', '.join(known)}")


# -- records ------------------------------------------------------------------


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
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)
    finished_at: float | None = None

    def template_obj(self) -> Template:
        steps = tuple(
            Step(s["name"], s["role"], s.get("prompt", ""), s.get("on"), tuple(s.get("after", [])),
                 bool(s.get("revise")), bool(s.get("review")))
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

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Workflow":
        known = set(cls.__dataclass_fields__)
        wf = cls(**{k: v for k, v in data.items() if k in known})
        validate_id(wf.id)
        if wf.state not in WORKFLOW_STATES:
            raise ValueError(f"unknown workflow state {wf.state!r}")
        return wf


def workflow_dir(paths: "Paths") -> Path:
    return paths.state / "workflows"


def workflow_file(paths: "Paths", wf_id: str) -> Path:
    return workflow_dir(paths) / f"{validate_id(wf_id)}.json"


def load_workflow(paths: "Paths", wf_id: str) -> Workflow:
    path = workflow_file(paths, wf_id)
    try:
        data = json.loads(path.read_bytes())
        return Workflow.from_dict(data)
    except FileNotFoundError:
        raise InvalidInput(f"no workflow {wf_id}") from None
    except (ValueError, TypeError, InvalidInput) as exc:
        raise OrchestraError(f"corrupt workflow file {path}: {exc}") from None


def save_workflow(orch: "Orchestra", wf: Workflow) -> None:
    """Write a workflow record; the caller holds the store lock, like every other state change."""
    orch.store._require_lock()
    wf.updated_at = now()
    d = workflow_dir(orch.paths)
    if not d.is_dir():
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(workflow_file(orch.paths, wf.id), json.dumps(wf.to_dict(), indent=1, sort_keys=True).encode())


def workflow_ids(paths: "Paths") -> list[str]:
    d = workflow_dir(paths)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if not p.name.startswith("."))


def resolve_workflow(paths: "Paths", text: str) -> str | None:
    """A workflow id or a unique prefix of one; None when nothing matches."""
    text = validate_id((text or "").strip().lower())
    ids = workflow_ids(paths)
    if text in ids:
        return text
    matches = [i for i in ids if i.startswith(text)]
    if len(matches) > 1:
        raise InvalidInput(f"workflow id {text!r} is ambiguous: {', '.join(matches[:5])}")
    return matches[0] if matches else None


def _new_workflow_id(orch: "Orchestra") -> str:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    taken = set(workflow_ids(orch.paths)) | set(orch.store.summaries())
    for _ in range(100):
        wf_id = "w" + "".join(secrets.choice(alphabet) for _ in range(5))
        if wf_id not in taken:
            return wf_id
    raise OrchestraError("could not find an unused workflow id")


# -- starting -----------------------------------------------------------------


def start(orch: "Orchestra", template_name: str, request: str, *, base: str | None, into: str | None) -> Workflow:
    roles = load_roles(orch.paths)
    tpl = get_template(orch.paths, template_name, roles)
    if not isinstance(request, str) or not request.strip():
        raise InvalidInput("empty request: say what the team should do")
    if len(request) > MAX_REQUEST_CHARS:
        raise InvalidInput(f"request too long ({len(request)} characters; the limit is {MAX_REQUEST_CHARS})")
    if not worktrees.has_commits(orch.paths.root):
        raise InvalidInput("the repository has no commits yet; make a first commit, then start a workflow")
    from orchestra import merge as merging

    head_sha = None
    if tpl.subject == "range":
        if not base:
            raise InvalidInput(f"template {tpl.name} reviews existing work: pass --base BRANCH or FROM..TO")
        base_ref, base_sha, head_sha = _review_range(orch, base, into)
        target = None
    else:
        base_ref = base or "HEAD"
        base_sha = worktrees.resolve_commit(orch.paths.root, base_ref)
        target = None
        if tpl.merge_step is not None:
            if into:
                target = merging.check_target(orch.paths.root, into)
            elif base and worktrees.branch_exists(orch.paths.root, base):
                target = base
            else:
                target = merging.current_branch(orch.paths.root)
                if target is None:
                    raise InvalidInput("HEAD is detached, so there is no branch to merge into: pass --into BRANCH")
    with orch.store.locked():
        wf = Workflow(
            id=_new_workflow_id(orch),
            template=tpl.name,
            request=request,
            title=make_title(request),
            steps=[s.to_dict() for s in tpl.steps],
            subject=tpl.subject,
            base_ref=base_ref,
            base_sha=base_sha,
            into=target,
            head_sha=head_sha,
            max_rounds=1 + orch.config.revision_rounds,
        )
        save_workflow(orch, wf)
        try:
            _advance(orch, wf, roles)
        except BaseException:
            if not wf.instances:  # nothing started: leave no trace of the refused workflow
                workflow_file(orch.paths, wf.id).unlink(missing_ok=True)
            raise
        save_workflow(orch, wf)
    return wf


def _review_range(orch: "Orchestra", spec: str, into: str | None) -> tuple[str, str, str]:
    root = orch.paths.root
    if ".." in spec:
        start_ref, _, end_ref = spec.partition("...") if "..." in spec else spec.partition("..")
        from_sha = worktrees.resolve_commit(root, start_ref or "HEAD")
        to_sha = worktrees.resolve_commit(root, end_ref or "HEAD")
        if "..." in spec:
            from_sha = git(root, "merge-base", from_sha, to_sha).stdout.strip()
    else:
        to_sha = worktrees.resolve_commit(root, spec)
        other = into or "HEAD"
        other_sha = worktrees.resolve_commit(root, other)
        proc = git(root, "merge-base", other_sha, to_sha, check=False)
        if proc.returncode != 0:
            raise InvalidInput(f"{spec} and {other} share no history; give a range FROM..TO")
        from_sha = proc.stdout.strip()
    if from_sha == to_sha:
        raise InvalidInput(f"nothing to review: {spec} has no commits beyond its base")
    return spec, from_sha, to_sha


# -- advancing ----------------------------------------------------------------


def advance(orch: "Orchestra", wf_id: str) -> Workflow:
    """Take the workflow's next step(s), if any are due; a no-op when nothing changed."""
    with orch.store.locked():
        wf = load_workflow(orch.paths, wf_id)
        if wf.state in FINAL_WORKFLOW_STATES:
            return wf
        before = _snapshot(wf)
        try:
            _advance(orch, wf, load_roles(orch.paths))
        except OrchestraError as exc:
            _stop(wf, "failed", str(exc))
        if _snapshot(wf) != before:
            save_workflow(orch, wf)
        return wf


def cancel_record(orch: "Orchestra", wf_id: str) -> Workflow:
    """End a workflow as cancelled by its user (its tasks were cancelled first)."""
    with orch.store.locked():
        wf = load_workflow(orch.paths, wf_id)
        if wf.state not in FINAL_WORKFLOW_STATES:
            _stop(wf, "cancelled", "cancelled by user")
            save_workflow(orch, wf)
        return wf


def _snapshot(wf: Workflow) -> str:
    return json.dumps(wf.to_dict(), sort_keys=True, default=str)


def _stop(wf: Workflow, state: str, error: str | None) -> None:
    wf.state = state
    wf.error = error
    wf.finished_at = wf.finished_at or now()


def _advance(orch: "Orchestra", wf: Workflow, roles: dict[str, Role]) -> None:
    tpl = wf.template_obj()
    tasks: dict[str, Task] = {}
    for inst in wf.instances:
        try:
            tasks[inst["task"]] = orch.store.load(inst["task"])
        except TaskNotFound:
            _stop(wf, "failed", f"task {inst['task']} of step {inst['step']} no longer exists")
            return
    latest = wf.latest()
    for name, inst in latest.items():
        t = tasks[inst["task"]]
        if t.state == State.CANCELLED:
            _stop(wf, "cancelled", f"step {name} (task {t.id}) was cancelled")
            return
        if t.state in (State.FAILED, State.TIMED_OUT):
            result = t.extra.get("merge_result") or {}
            if t.role == "merge" and result.get("status") == "conflict":
                _on_conflict(orch, wf, t, result)
                return
            _stop(wf, "failed", f"step {name} (task {t.id}) {t.state}: {t.error or 'no reason recorded'}")
            return
    wf.finished_at = None
    if any(not tasks[i["task"]].state.final for i in latest.values()):
        wf.state, wf.error = "running", None
        return
    merge_inst = latest.get(tpl.merge_step.name) if tpl.merge_step else None
    if merge_inst and tasks[merge_inst["task"]].state == State.SUCCEEDED:
        _finish_merged(wf, tasks[merge_inst["task"]])
        return
    wf.state, wf.error = "running", None
    revising = set()
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
            (s, current(s.name)) for s in verdict_steps
            if s.name in revising and current(s.name) is not None and _verdict(current(s.name)) == "request_changes"
        ]
        waiting = [s for s in revising if current(s) is None and s in {v.name for v in verdict_steps}]
        if asking and not waiting:
            comments = _collect_comments(asking)
            if wf.round < wf.max_rounds:
                _start_revision(orch, wf, tpl, roles, current, asking, comments)
            else:
                wf.comments = comments
                _stop(wf, "changes_requested", f"changes requested after {wf.round} review round(s)")
            return
    created = False
    for step in tpl.steps:
        if current(step.name) is not None:
            continue
        deps = [current(d) for d in step.deps]
        if not all(d is not None and d.state == State.SUCCEEDED for d in deps):
            continue
        if roles[step.role].produces == "merge":
            refusing = [
                (s, current(s.name)) for s in verdict_steps
                if s.name in tpl.ancestors(step.name) and _verdict(current(s.name)) != "approve"
            ]
            if refusing:
                wf.comments = _collect_comments(refusing)
                _stop(wf, "changes_requested", "a reviewer requested changes; nothing was merged")
                return
        _create_step_task(orch, wf, tpl, step, roles, current)
        created = True
    if created:
        return
    if all(current(s.name) is not None for s in tpl.steps):
        report = next((current(s.name) for s in tpl.steps if roles[s.role].produces == "report"), None)
        if report is not None:
            wf.report = report.result
            wf.verdict = report.extra.get("verdict")
        _stop(wf, "succeeded", None)


def _finish_merged(wf: Workflow, merge_task: Task) -> None:
    wf.merge = merge_task.extra.get("merge_result")
    wf.conflict = None
    _stop(wf, "succeeded", None)


def _on_conflict(orch: "Orchestra", wf: Workflow, merge_task: Task, result: dict[str, Any]) -> None:
    wf.conflict = {"files": result.get("files", []), "into": result.get("into"),
                   "branch": result.get("source_branch"), "task": merge_task.id}
    _stop(wf, "conflict", result.get("message") or "merge conflict")
    if orch.config.merge_resolve:
        start_resolve_in_workflow(orch, wf, merge_task)


def start_resolve_in_workflow(orch: "Orchestra", wf: Workflow, merge_task: Task) -> tuple[Task, Task]:
    from orchestra import merge as merging

    params = merge_task.extra.get("merge") or {}
    source = orch.store.load(params["source_task"])
    files = (merge_task.extra.get("merge_result") or {}).get("files", [])
    resolve, retry = merging.start_resolve(
        orch, source, params["into"], params.get("strategy", "merge"), files,
        {"workflow": wf.id, "round": wf.round}, request=wf.request,
    )
    wf.instances.append({"step": "resolve", "task": resolve.id, "round": wf.round})
    wf.instances.append({"step": merge_task.extra.get("step", "merge"), "task": retry.id, "round": wf.round})
    wf.state, wf.error, wf.finished_at = "running", None, None
    return resolve, retry


def _verdict(task: Task | None) -> str | None:
    if task is None:
        return None
    output = task.extra.get("structured_output")
    if verdict_problem(output) is not None:
        return None
    return output["verdict"]


def _collect_comments(pairs: list[tuple[Step, Task | None]]) -> list[dict[str, Any]]:
    out = []
    for step, task in pairs:
        output = (task.extra.get("structured_output") if task else None) or {}
        out.append({
            "step": step.name,
            "task": task.id if task else None,
            "verdict": output.get("verdict"),
            "summary": output.get("summary") or "",
            "comments": [_comment(c) for c in output.get("comments") or []],
        })
    return out


def _comment(raw: object) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {"file": raw.get("file"), "line": raw.get("line"), "comment": str(raw.get("comment") or "")}
    return {"file": None, "line": None, "comment": str(raw)}


def format_comments(reviews: list[dict[str, Any]]) -> str:
    lines = []
    for review in reviews:
        lines.append(f"Review {review['step']} ({review.get('verdict')}): {review.get('summary') or '-'}")
        for c in review.get("comments") or []:
            where = c.get("file") or ""
            if where and c.get("line"):
                where += f":{c['line']}"
            lines.append(f"- {where + ': ' if where else ''}{c.get('comment')}")
    return "\n".join(lines)


# -- creating the tasks of steps ----------------------------------------------


def _create_step_task(
    orch: "Orchestra", wf: Workflow, tpl: Template, step: Step, roles: dict[str, Role],
    current: Callable[[str], Task | None],
) -> Task:
    deps = [t.id for t in (current(d) for d in step.deps) if t is not None]
    on_task = current(step.on) if step.on else None
    extra: dict[str, Any] = {"workflow": wf.id, "step": step.name, "round": wf.round}
    title = f"{step.name}: {wf.title}"
    role = roles[step.role]
    if role.produces == "merge":
        assert on_task is not None
        extra["merge"] = {"source_task": on_task.id, "into": wf.into, "strategy": orch.config.merge_strategy}
        task = new_agentless_task(orch, "merge", f"Merge {on_task.branch} into {wf.into}.", title, deps, extra)
    elif role.produces == "report":
        task = new_agentless_task(orch, "report", "Consolidate the review passes into one report.", title, deps, extra)
    else:
        if step.review:
            extra["review"] = True
        if step.review or role.produces == "verdict":
            extra["produces"] = "verdict"
        prompt = _step_prompt(orch, wf, tpl, step, role, on_task)
        base = None if on_task else (wf.head_sha if wf.subject == "range" else wf.base_sha)
        task = orch.submit(prompt, role=step.role, after=deps, on=on_task.id if on_task else None,
                           base=base, title=title, extra=extra)
    wf.instances.append({"step": step.name, "task": task.id, "round": wf.round})
    return task


def new_agentless_task(
    orch: "Orchestra", role: str, prompt: str, title: str, deps: list[str], extra: dict[str, Any],
    *, running: bool = False,
) -> Task:
    """A task orchestra runs itself: no branch, no worktree, no agent."""
    with orch.store.locked():
        task = Task(
            id=orch.store.unused_id(),
            prompt=prompt,
            role=role,
            title=title,
            depends_on=list(deps),
            base_ref="-",
            max_attempts=orch.config.max_attempts,
            extra=dict(extra),
        )
        if running:
            task.state = State.RUNNING
            task.attempts = 1
            task.started_at = now()
        orch.store.save(task, "submitted", role=role, depends_on=task.depends_on)
    return task


def _step_prompt(orch: "Orchestra", wf: Workflow, tpl: Template, step: Step, role: Role, on_task: Task | None) -> str:
    parts = []
    if step.prompt:
        parts.append(step.prompt)
    parts.append(f"## The request\n\n{wf.request.strip()}")
    ctx = [f"Workflow {wf.id} ({wf.template}), step {step.name!r} as {step.role}, round {wf.round} of at most {wf.max_rounds}."]
    if on_task is not None:
        ctx.append(f"Your branch starts from the branch of step {_step_of(on_task)!r} (task {on_task.id}, "
                   f"{on_task.branch}), which holds the work so far.")
    parts.append("## Context\n\n" + " ".join(ctx))
    if wf.comments and wf.round > 1:
        parts.append("## The previous review asked for changes\n\n" + format_comments(wf.comments)
                     + "\n\nThe implementer has revised the work since; check that every comment was addressed.")
    if step.review or role.produces == "verdict":
        if wf.subject == "range":
            head, label = wf.head_sha or "", f"the range {wf.base_ref}"
        else:
            assert on_task is not None, "a review step in a branch workflow starts from the branch it reviews"
            head = worktrees.branch_head(orch.paths.root, on_task.branch) or ""
            label = f"branch {on_task.branch}"
        parts.append(review_material(orch.paths.root, wf.base_sha, head, label))
    return "\n\n".join(parts)


def _step_of(task: Task) -> str:
    return str(task.extra.get("step") or task.role)


def review_material(repo: Path, base: str, head: str, label: str, budget: int = DIFF_BUDGET) -> str:
    """The commit list, the diff stat and the diff; files that do not fit are named, never cut silently.

    Read through GitPython: one `Repo` for this one piece of work, closed after it (it keeps
    `git cat-file` children alive otherwise, and it is not shared between threads).
    """
    import git as gitpython  # ~60 ms to import: only review prompts pay it

    try:
        with gitpython.Repo(repo) as r:
            log = "\n".join(
                f"- {c.hexsha[:7]} {c.summary} ({c.author.name})" for c in r.iter_commits(f"{base}..{head}")
            )
            stat = r.git.diff("--no-color", "--stat=100", base, head).rstrip()
            numstat = r.git.diff("--no-color", "--numstat", base, head).splitlines()
            diff = r.git.diff("--no-color", base, head, strip_newline_in_stdout=False)
    except gitpython.GitError as exc:
        raise OrchestraError(f"cannot read the changes {base[:12]}..{head[:12]}: {exc}") from None
    chunks = _split_diff(diff)
    shown: list[str] = []
    left_out: list[str] = []
    used = 0
    changed = {}
    for line in numstat:
        added, removed, path = (line.split("\t", 2) + ["", ""])[:3]
        changed[path] = f"+{added} -{removed}" if added != "-" else "binary"
    for path, chunk in chunks:
        if used + len(chunk) <= budget:
            shown.append(chunk)
            used += len(chunk)
        else:
            left_out.append(f"{path} ({changed.get(path, 'changed')})")
    out = [
        "## What to review",
        f"{label} at {head[:12]}, compared with its base {base[:12]}. Your working directory holds the "
        "code at that commit: read the changed files there for context.",
        f"### Commits\n{log or '(none)'}",
        f"### Diff stat\n{stat or '(no changes)'}",
    ]
    if shown:
        out.append("### Diff\n```diff\n" + "".join(shown).rstrip("\n") + "\n```")
    if left_out:
        out.append(
            f"### Not shown\nThe diff is larger than this prompt can carry ({len(diff)} characters); "
            f"the changes to these {len(left_out)} file(s) are left out above, read them in full in your "
            "working directory:\n" + "\n".join(f"- {p}" for p in left_out)
        )
    return "\n\n".join(out)


def _split_diff(diff: str) -> list[tuple[str, str]]:
    chunks: list[tuple[str, str]] = []
    for part in diff.split("\ndiff --git ")[0:]:
        if not part.strip():
            continue
        text = part if part.startswith("diff --git ") else "diff --git " + part
        header = text.split("\n", 1)[0]
        path = header.split(" b/", 1)[-1] if " b/" in header else header
        chunks.append((path, text if text.endswith("\n") else text + "\n"))
    return chunks


# -- the review loop ------------------------------------------------------------


def _start_revision(
    orch: "Orchestra", wf: Workflow, tpl: Template, roles: dict[str, Role],
    current: Callable[[str], Task | None], asking: list[tuple[Step, Task | None]], comments: list[dict[str, Any]],
) -> None:
    """The revising agent continues its own session on its own branch, which first takes in the reviewed work."""
    from orchestra import merge as merging

    revise = tpl.revise_step
    assert revise is not None
    prev = current(revise.name)
    assert prev is not None
    root = orch.paths.root
    prev_head = worktrees.branch_head(root, prev.branch)
    if prev_head is None:
        raise OrchestraError(f"branch {prev.branch} of task {prev.id} no longer exists")
    merging.release_worktree(orch, prev)
    for step, _ in asking:
        reviewed = current(step.on) if step.on else None
        if reviewed is None or reviewed.branch == prev.branch:
            continue
        head = worktrees.branch_head(root, reviewed.branch)
        if head and head != prev_head and merging.is_ancestor(root, prev_head, head):
            git(root, "update-ref", "-m", f"orchestra: revision of workflow {wf.id}",
                f"refs/heads/{prev.branch}", head, prev_head)
            prev_head = head
        break
    new_round = wf.round + 1
    prompt = (
        f"A reviewer requested changes to the work on your branch (review round {wf.round}). Address every "
        "comment below, keep the existing tests passing, and commit. Your branch also holds the commits "
        "made after yours in this workflow (for example the tester's tests).\n\n"
        f"## Review comments\n\n{format_comments(comments)}\n\n"
        f"## The request\n\n{wf.request.strip()}\n\n"
        f"## Context\n\nWorkflow {wf.id} ({wf.template}), step {revise.name!r} as {revise.role}, "
        f"round {new_round} of at most {wf.max_rounds}."
    )
    extra: dict[str, Any] = {"workflow": wf.id, "step": revise.name, "round": new_round, "revision_of": prev.id}
    if prev.session_id:
        extra["continue_session"] = prev.session_id
    with orch.store.locked():
        task = orch.submit(prompt, role=revise.role, base=prev.base_sha or prev_head,
                           title=f"{revise.name} (round {new_round}): {wf.title}", extra=extra)
        task.branch = prev.branch
        orch.store.save(task, "revision", round=new_round, branch=prev.branch, resumes=prev.session_id)
    wf.comments = comments
    wf.round = new_round
    wf.instances.append({"step": revise.name, "task": task.id, "round": new_round})


# -- agentless steps ------------------------------------------------------------


def run_agentless(orch: "Orchestra", task_id: str, log: Callable[[str], None] | None = None) -> Task:
    """Run a merge or report step in this process and record its end like an agent's."""
    from orchestra import merge as merging

    task = orch.store.load(task_id)
    error: str | None = None
    extra: dict[str, Any] = {}
    result_text = ""
    try:
        if task.role == "merge":
            result = merging.run_merge_task(orch, task)
            extra["merge_result"] = result.to_dict()
            result_text = result.message
            error = None if result.ok else result.message
        elif task.role == "report":
            result_text, verdict = build_report(orch, task)
            extra["verdict"] = verdict
        else:
            error = f"role {task.role!r} needs an agent"
    except OrchestraError as exc:
        error = str(exc)
    task = finish_agentless(orch, task.id, error, result_text, extra)
    if log:
        log(f"{task.id} {task.state}" + (f": {task.error}" if task.error else ""))
    task_finished(orch, task, log)
    return task


def finish_agentless(orch: "Orchestra", task_id: str, error: str | None, result: str, extra: dict[str, Any]) -> Task:
    def mutate(t: Task) -> None:
        if t.state.final:
            return
        new = State.FAILED if error else State.SUCCEEDED
        check_transition(t.state, new)
        t.state = new
        t.error = error
        t.result = result
        t.finished_at = now()
        t.exit_code = None
        t.extra.update(extra)

    task = orch.store.update(task_id, mutate)
    orch.store.append_event(task_id, "finished", state=str(task.state), error=task.error)
    return task


def task_finished(orch: "Orchestra", task: Task, log: Callable[[str], None] | None = None) -> None:
    """The hook the scheduler calls when a task ends: move its workflow on."""
    wf_id = task.extra.get("workflow")
    if not wf_id:
        return
    try:
        wf = advance(orch, wf_id)
    except OrchestraError as exc:
        if log:
            log(f"workflow {wf_id}: {exc}")
        return
    if log and wf.state != "running":
        log(f"workflow {wf.id} {wf.state}" + (f": {wf.error}" if wf.error else ""))


def advance_all(orch: "Orchestra", log: Callable[[str], None] | None = None) -> None:
    """After a restart: catch up on workflows whose tasks ended while no hook ran."""
    for wf_id in workflow_ids(orch.paths):
        try:
            wf = load_workflow(orch.paths, wf_id)
            if wf.state not in FINAL_WORKFLOW_STATES:
                advance(orch, wf_id)
        except OrchestraError as exc:
            if log:
                log(f"workflow {wf_id}: {exc}")


def build_report(orch: "Orchestra", task: Task) -> tuple[str, str]:
    """One report from the review passes: the overall verdict, then each pass's summary and comments."""
    passes = []
    for dep in task.depends_on:
        t = orch.store.load(dep)
        output = t.extra.get("structured_output") or {}
        passes.append((str(t.extra.get("step") or t.id), t, output))
    asking = [name for name, _, out in passes if out.get("verdict") != "approve"]
    verdict = "request_changes" if asking else "approve"
    lines = [f"# Review report: {'changes requested' if asking else 'approved'}", ""]
    if asking:
        lines.append(f"Changes requested by: {', '.join(asking)}.")
    else:
        lines.append(f"All {len(passes)} review passes approve.")
    for name, t, out in passes:
        lines += ["", f"## {name}: {out.get('verdict', 'no verdict')}", "", out.get("summary") or "(no summary)"]
        for c in out.get("comments") or []:
            c = _comment(c)
            where = (c["file"] or "") + (f":{c['line']}" if c["file"] and c.get("line") else "")
            lines.append(f"- {where + ': ' if where else ''}{c['comment']}")
    return "\n".join(lines) + "\n", verdict


def refresh(orch: "Orchestra", wf_id: str) -> Workflow:
    wf = load_workflow(orch.paths, wf_id)
    if wf.state in FINAL_WORKFLOW_STATES:
        return wf
    return advance(orch, wf_id)

"""`orchestra push ID|WF [--pr]`: send a task's or a workflow's branch to a remote, and open a pull request.

For teams that merge through pull requests, this is the end of a workflow instead of
a local merge (`merge_strategy = "pr"`). The pull request's body is built from the
records, so a reviewer on the forge sees what the person here would: the request,
the reviewer's verdict and comments, the tests, the cost, the diff stat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestra.core.errors import InvalidInput, OrchestraError
from orchestra.core.redact import mask_secrets
from orchestra.core.spend import totals
from orchestra.core.task import Task
from orchestra.core.workflow import Workflow
from orchestra.engine import changes
from orchestra.engine.changes import default_target
from orchestra.engine.context import Context
from orchestra.git import forge, review

DEFAULT_REMOTE = "origin"
BODY_LIMIT = 60_000  # one argv entry; forges cap bodies near 65,536 characters
_PROMPT_LIMIT = 4_000
_RESULT_LIMIT = 2_000


@dataclass
class PushResult:
    kind: str  # task or workflow
    id: str
    remote: str
    branch: str
    sha: str
    base: str  # the branch a pull request targets
    summary: str
    pr_url: str | None = None
    pr_title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def message(self) -> str:
        text = f"pushed {self.branch} ({self.sha[:12]}, {self.summary}) to {self.remote}"
        return text + (f"; pull request: {self.pr_url}" if self.pr_url else "")


def push(ctx: Context, ref: str, *, remote: str | None = None, pr: bool = False) -> PushResult:
    task, wf = changes.resolve(ctx, ref)
    remote = forge.check_remote(ctx.root, remote or DEFAULT_REMOTE)
    if wf is not None:
        change = changes.of_workflow(ctx, wf)
        source = ctx.store.load(change.task) if change.task else None
        base = wf.into
        if source is not None and source.live:
            raise InvalidInput(
                f"workflow {wf.id}: step {source.step or source.role} ({source.id}) is still {source.state}"
            )
    else:
        assert task is not None
        source = task
        if task.live or task.state == "queued":
            raise InvalidInput(f"task {task.id} is {task.state}; push it once it has ended")
        change = changes.of_task(ctx, task)
        base = default_target(ctx, task)
    if not change.stat.count:
        raise InvalidInput(f"{change.kind} {change.id} changed nothing against {change.base[:12]}: nothing to push")
    return push_change(ctx, change, source, wf, base, remote=remote, pr=pr)


def push_change(
    ctx: Context,
    change: changes.Change,
    source: Task | None,
    wf: Workflow | None,
    base: str | None,
    *,
    remote: str | None,
    pr: bool,
) -> PushResult:
    name = forge.check_remote(ctx.root, remote or DEFAULT_REMOTE)
    if pr and not base:
        raise InvalidInput(f"{change.kind} {change.id} has no target branch for a pull request")
    forge.push(ctx.root, name, change.branch, change.head)
    result = PushResult(change.kind, change.id, name, change.branch, change.head, base or "", change.stat.summary())
    if source is not None:
        ctx.store.append_event(source.id, "pushed", remote=name, branch=change.branch, sha=change.head)
    if pr:
        assert base is not None
        title = wf.title if wf is not None else change.title
        body = pr_body(ctx, change, source, wf)
        result.pr_title = title
        result.pr_url = forge.create_pr(ctx.root, head=change.branch, base=base, title=title, body=body)
        if source is not None:
            ctx.store.append_event(source.id, "pull_request", url=result.pr_url, base=base)
    return result


def pr_body(ctx: Context, change: changes.Change, source: Task | None, wf: Workflow | None) -> str:
    """What a reviewer on the forge needs: the request, the verdict, the tests, the cost, the stat."""
    members = _members(ctx, wf) if wf is not None else ([source] if source else [])
    request = wf.request if wf is not None else (source.prompt if source else "")
    parts = [f"## {'Request' if wf is not None else 'Prompt'}\n\n{_clip(request.strip(), _PROMPT_LIMIT)}"]
    reviews = [t for t in members if isinstance(t.structured_output, dict) and t.structured_output.get("verdict")]
    if reviews:
        lines = []
        for t in reviews:
            out = t.structured_output
            lines.append(
                f"**{out.get('verdict')}** ({t.step or t.role}, task {t.id}): {out.get('summary') or ''}".strip()
            )
            for c in out.get("comments") or []:
                if isinstance(c, dict):
                    where = ":".join(str(c[k]) for k in ("file", "line") if c.get(k) is not None)
                    lines.append(f"- {where + ': ' if where else ''}{c.get('comment') or c.get('text') or ''}")
        parts.append("## Review\n\n" + "\n".join(lines))
    testers = [t for t in members if t.role == "tester" and t.result]
    tests = [f"- {t.step or t.role} (task {t.id}, {t.state}): {_clip(t.result or '', _RESULT_LIMIT)}" for t in testers]
    if ctx.config.gate:
        tests.append(f"- gate before a local merge: `{ctx.config.gate}`")
    parts.append("## Tests run\n\n" + ("\n".join(tests) if tests else "No test step recorded."))
    spent = totals(t.summary() for t in members)
    parts.append(f"## Cost\n\n${spent['cost_usd']:.4f} over {spent['tasks']} task(s)")
    picture = review.stat_text(ctx.root, change.base, change.head)
    commits = "\n".join(f"- {c['sha'][:8]} {c['subject']}" for c in change.commits)
    parts.append(f"## Changes\n\n{change.stat.summary()}\n\n```\n{picture}\n```\n\n{commits}".rstrip())
    origin = (
        f"workflow {wf.id} ({wf.template})"
        if wf is not None
        else f"task {change.id} ({source.role if source else '?'})"
    )
    parts.append(f"---\nOpened by orchestra from {origin}, branch `{change.branch}` at {change.head[:12]}.")
    body = mask_secrets("\n\n".join(parts))
    return body if len(body) <= BODY_LIMIT else body[: BODY_LIMIT - 40] + "\n\n… (cut: the body was too long)"


def _members(ctx: Context, wf: Workflow) -> list[Task]:
    out = []
    for tid in wf.task_ids():
        try:
            out.append(ctx.store.load(tid))
        except OrchestraError:  # a missing record leaves it out of the body, nothing more
            continue
    return out


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

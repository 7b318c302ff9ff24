"""Shell completion candidates: task ids, roles, states, settings and workflow templates.

Click's own completion (`_ORCHESTRA_COMPLETE=bash_source orchestra`) does the shell
side; this module supplies the values. Candidates are attached by parameter name,
when completion is requested, so commands added anywhere in the CLI get them
without wiring. A completer runs on every TAB: it must be quick and must never
print or raise; on any error it offers nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem

if TYPE_CHECKING:
    from orchestra.app import Orchestra

COMPLETION_SCAN = 2000
MAX_TASKS = 200

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def _quiet(fn: Completer) -> Completer:
    def wrapper(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        try:
            return fn(ctx, param, incomplete)
        except Exception:  # a broken repo must not spill errors into the user's shell
            return []

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# Each completer imports what it needs itself: a TAB that completes a command name
# loads none of orchestra, one that completes a state loads core.task only.


def _app(ctx: click.Context) -> Orchestra:
    from orchestra import app  # the engine: ~70 ms that only ids, roles and templates pay

    return app.Orchestra(ctx.find_root().params.get("repo"))


# The states each command accepts a task in: TAB offers only ids the command will take.
_LIVE = ("running", "awaiting_input")
_ENDED = ("succeeded", "failed", "cancelled", "timed_out")
ACCEPTS: dict[str, tuple[str, ...]] = {
    "cancel": ("queued", *_LIVE),
    "stop": _LIVE,
    "retry": ("failed", "cancelled", "timed_out"),
    "priority": ("queued",),
    "queue remove": ("queued",),
    "wait": ("queued", *_LIVE),
    "respond": ("awaiting_input", *_ENDED),
    "merge": ("succeeded",),
    "push": ("succeeded",),
    "diff": (*_LIVE, *_ENDED),
}


def _command_name(ctx: click.Context) -> str:
    """`queue remove`, `cancel`: the command being completed, without the program name."""
    names = []
    node: click.Context | None = ctx
    while node is not None and node.parent is not None:
        names.append(node.info_name or "")
        node = node.parent
    return " ".join(reversed(names))


@_quiet
def task_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Ids of tasks in a state the command accepts, newest first, with state and title as the description."""
    accepted = ACCEPTS.get(_command_name(ctx)) if param.name not in ("after", "on") else None
    rows = _app(ctx).summaries(accepted or (), limit=COMPLETION_SCAN)  # newest first: never the whole history
    matches = [r for r in rows if r["id"].startswith(incomplete.lower()) and not r.get("manual")]
    matches.sort(key=lambda r: r.get("created_at") or 0, reverse=True)
    return [CompletionItem(r["id"], help=f"{r['state']}: {r.get('title') or ''}"[:60]) for r in matches[:MAX_TASKS]]


@_quiet
def roles(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    try:  # repository roles when there is a repository, built-ins otherwise
        found = _app(ctx).roles()
    except Exception:
        from orchestra.core.roles import load_roles  # ~20 ms that other completions skip

        found = load_roles()
    return [
        CompletionItem(n, help=r.description)
        for n, r in sorted(found.items())
        if n.startswith(incomplete) and not r.agentless
    ]


@_quiet
def states(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from orchestra.core.task import State  # ~14 ms that other completions skip

    return [CompletionItem(s.value) for s in State if s.value.startswith(incomplete)]


@_quiet
def settings(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from orchestra.core.config import SETTINGS  # ~10 ms that other completions skip

    return [CompletionItem(name, help=s.help) for name, s in SETTINGS.items() if name.startswith(incomplete)]


@_quiet
def templates(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Workflow template names: the built-in ones and the repository's own."""
    names = sorted(_app(ctx).workflow_templates())
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


BY_NAME: dict[str, Completer] = {
    "task_id": task_ids,
    "task_ids": task_ids,
    "ref": task_ids,
    "after": task_ids,
    "on": task_ids,
    "role": roles,
    "roles": roles,
    "state": states,
    "states": states,
    "key": settings,
    "template": templates,
}


def install(group: click.Group) -> None:
    """Give every parameter named in BY_NAME its completer, unless it already has one."""
    ctx = click.Context(group)
    stack: list[click.Command] = [group]
    while stack:
        command = stack.pop()
        for param in command.params:
            completer = BY_NAME.get(param.name or "")
            if completer is not None and getattr(param, "_custom_shell_complete", None) is None:
                param._custom_shell_complete = completer
        if isinstance(command, click.Group):
            stack.extend(command.commands[name] for name in command.list_commands(ctx))

"""The `orchestra` command: parse, call the core, render. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from orchestra import __version__
from orchestra.core.errors import (
    EXIT_AWAITING_INPUT,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    OrchestraError,
    SchedulerBusy,
)
from orchestra.core.values import parse_duration
from orchestra.ui.completion import install as install_completion

if TYPE_CHECKING:
    from orchestra.app import Orchestra

# The façade, the views and most of core are imported inside the commands that use
# them, so `--help`, `--version` and shell completion (which loads this module on
# every TAB) cost little more than click itself.


def _orchestra(ctx: click.Context, *, repairing_config: bool = False) -> Orchestra:
    from orchestra import app  # the engine: ~70 ms off --help and completion

    obj = ctx.find_root().obj
    if obj.get("orchestra") is None:
        obj["orchestra"] = app.Orchestra(obj.get("repo"), repairing_config=repairing_config)
    orch: Orchestra = obj["orchestra"]
    return orch


def orchestra_of(ctx: click.Context) -> Orchestra:
    """The façade for the command being run, for commands attached beside this module (main.py)."""
    return _orchestra(ctx)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    help="The repository to act on (default: the one containing the current directory).",
)
@click.version_option(__version__, prog_name="orchestra")
@click.pass_context
def cli(ctx: click.Context, repo: Path | None) -> None:
    """Run a team of Claude Code agents on one git repository.

    Each task runs `claude` headless in its own checkout and branch; the queue
    lives in .orchestra/ and survives restarts.
    """
    ctx.obj = {"repo": repo, "orchestra": None}


@cli.command()
@click.argument("prompt", nargs=-1)
@click.option("-f", "--file", "prompt_file", type=click.File("r"), help="Read the prompt from FILE ('-' for stdin).")
@click.option("-r", "--role", default="generalist", show_default=True, help="The agent's role.")
@click.option("-p", "--priority", default="0", help="Higher runs first (integer, -1000..1000).")
@click.option("-a", "--after", multiple=True, metavar="ID", help="Start only after task ID succeeded (repeatable).")
@click.option("--on", "on", metavar="ID", help="Start from task ID's branch (implies --after ID).")
@click.option(
    "--base",
    metavar="REF",
    help="Start from REF instead of the HEAD of the worktree you are in (whose branch a merge goes back to).",
)
@click.option("--title", help="A short title (default: the prompt's first line).")
@click.option("--timeout", metavar="DURATION", help="Wall-clock limit per run: seconds, or 30m, 2h.")
@click.option("--budget", metavar="USD", help="Spending limit over all runs (claude --max-budget-usd).")
@click.option(
    "--batch",
    "batch_file",
    type=click.File("r"),
    metavar="FILE",
    help="Submit many tasks from JSON lines in FILE ('-' for stdin), all or none; prints one id per line.",
)
@click.option(
    "--resources", metavar="JSON", help="Custom Ray resources the task needs, e.g. '{\"gpu_box\": 1}' (executor ray)."
)
@click.option("--start/--no-start", "start", default=None, help="Start a background scheduler if none runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the new task as JSON instead of its id.")
@click.pass_context
def submit(
    ctx: click.Context,
    prompt: tuple[str, ...],
    prompt_file: Any,
    role: str,
    priority: str,
    after: tuple[str, ...],
    on: str | None,
    base: str | None,
    title: str | None,
    timeout: str | None,
    budget: str | None,
    batch_file: Any,
    resources: str | None,
    start: bool | None,
    as_json: bool,
) -> int:
    """Queue a task and print its id.

    The prompt comes from the arguments, from -f FILE, or from stdin when neither
    is given (or the argument is '-').

    With --batch, each line of FILE is one task as a JSON object with the same
    fields: prompt (required), role, priority, after (a list), on, base, title,
    timeout, budget, and an optional key. `after` and `on` may name an earlier
    line of the batch as "#N" (its line number) or by its key. Every task is
    checked first; if any line is refused, each refused line is named with its
    number and nothing is submitted.
    """
    if batch_file is not None:
        given = {
            "PROMPT": bool(prompt),
            "--file": prompt_file is not None,
            "--role": role != "generalist",
            "--priority": priority != "0",
            "--after": bool(after),
            "--on": on is not None,
            "--base": base is not None,
            "--title": title is not None,
            "--timeout": timeout is not None,
            "--budget": budget is not None,
            "--resources": resources is not None,
        }
        clash = [name for name, yes in given.items() if yes]
        if clash:
            raise click.UsageError(f"--batch takes each task's fields from its line, not from {', '.join(clash)}")
        tasks = _orchestra(ctx).submit_batch(batch_file.read(), start=start)
        if as_json:
            _echo_json([t.to_dict() for t in tasks])
        else:
            click.echo("\n".join(t.id for t in tasks))
        return EXIT_OK
    if prompt_file is not None and prompt:
        raise click.UsageError("give the prompt as arguments or with --file, not both")
    if prompt_file is not None:
        text = prompt_file.read()
    elif prompt and prompt != ("-",):
        text = " ".join(prompt)
    elif not sys.stdin.isatty() or prompt == ("-",):
        text = sys.stdin.read()
    else:
        raise click.UsageError("no prompt: give it as an argument, with --file, or on stdin")
    orch = _orchestra(ctx)
    task = orch.submit(
        text,
        role=role,
        priority=priority,
        after=after,
        on=on,
        base=base,
        title=title,
        timeout=timeout,
        budget=budget,
        resources=resources,
        start=start,
    )
    unseen = orch.unseen_changes(task)
    if unseen:
        from orchestra.ui.views import unseen_warning  # ~35 ms off --help and completion

        click.echo(f"orchestra: warning: {unseen_warning(unseen)}", err=True)
    if as_json:
        _echo_json(task.to_dict())
    else:
        click.echo(task.id)
    return EXIT_OK


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-w", "--watch", is_flag=True, help="Redraw in place until Ctrl-C.")
@click.option(
    "-n",
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
@click.pass_context
def status(ctx: click.Context, as_json: bool, watch: bool, interval: float) -> int:
    """Who waits for you, who runs, the queue, workflows, recent results and spend."""
    from orchestra.ui import term  # shutil and co.: ~4 ms off --help and completion
    from orchestra.ui.views import printable, status_lines  # ~35 ms off --help and completion

    orch = _orchestra(ctx)
    if as_json:
        if watch:
            raise click.UsageError("--watch and --json do not mix")
        _echo_json(orch.status().to_dict())
        return EXIT_OK
    if watch and sys.stdout.isatty():
        from orchestra.ui.dashboard import watch as live  # rich: ~30 ms that only --watch pays

        return live(orch.status, interval)
    color = term.color_enabled()
    try:
        while True:
            report = orch.status()
            lines = status_lines(report, term.width())
            click.echo("\n".join(term.paint(kind, text, color) for kind, text in lines))
            for reason in report.corrupt.values():
                click.echo(f"orchestra: warning: {printable(reason)}", err=True)
            if not watch:
                return EXIT_OK
            sys.stdout.flush()
            time.sleep(interval)
            click.echo(f"\n--- {time.strftime('%H:%M:%S')}")
    except KeyboardInterrupt:
        return EXIT_OK


LIST_LIMIT = 50


@cli.command("list")
@click.option("-s", "--state", "states", multiple=True, help="Only tasks in this state (repeatable).")
@click.option("-r", "--role", "roles", multiple=True, help="Only tasks with this role (repeatable).")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    help=f"At most this many tasks (default {LIST_LIMIT} in the table, all with --json; 0: all).",
)
@click.option("--merges", is_flag=True, help="List the manual merge attempts ('orchestra merge') instead.")
@click.option("--json", "as_json", is_flag=True, help="Every field of every task, as a JSON array (streamed).")
@click.pass_context
def list_cmd(
    ctx: click.Context, states: tuple[str, ...], roles: tuple[str, ...], limit: int | None, merges: bool, as_json: bool
) -> int:
    """List tasks, newest first, with what each finished one changed.

    Unfinished tasks come first (newest submitted first), then finished ones
    (most recently ended first). Reading stops at the limit, so a long history
    costs nothing here; asking only for unfinished states (queued, running,
    awaiting_input) never reads the history.
    """
    from orchestra.ui import term  # shutil and co.: ~4 ms off --help and completion
    from orchestra.ui.views import printable, task_table  # ~35 ms off --help and completion

    orch = _orchestra(ctx)
    corrupt: dict[str, str] = {}
    if as_json:
        _stream_json(t.to_dict() for t in orch.list(states, roles, limit or None, corrupt, manual=merges))
    else:
        wanted = LIST_LIMIT if limit is None else limit
        rows = orch.summaries(states, roles, wanted + 1 if wanted else None, manual=merges)
        click.echo(task_table(rows[:wanted] if wanted else rows, term.width()))
        if wanted and len(rows) > wanted:
            click.echo(f"orchestra: showing the newest {wanted}; --limit N shows more, --limit 0 all", err=True)
        attempts = 0 if merges else orch.manual_merge_attempts()
        if attempts:
            click.echo(f"({attempts} manual merge attempt(s) not listed: orchestra list --merges)")
    for reason in {**orch.corrupt_files(), **corrupt}.values():  # after the listing, which notices new ones
        click.echo(f"orchestra: warning: {printable(reason)}", err=True)
    return EXIT_OK


def _stream_json(items: Iterator[dict[str, Any]]) -> None:
    """A JSON array written one element at a time, in the same layout as _echo_json, never held whole."""
    out = sys.stdout
    first = True
    for item in items:
        text = json.dumps(item, indent=2, sort_keys=True, default=str).replace("\n", "\n  ")
        out.write(("[\n  " if first else ",\n  ") + text)
        first = False
    out.write("[]\n" if first else "\n]\n")
    out.flush()


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Every field, as JSON.")
@click.pass_context
def show(ctx: click.Context, task_id: str, as_json: bool) -> int:
    """Everything about one task, with its commits and what they changed."""
    from orchestra.ui.views import change_text, request_text, task_text  # ~35 ms off --help and completion

    orch = _orchestra(ctx)
    task = orch.get(task_id)
    request = orch.pending_request(task.id)
    change = orch.task_change(task)
    if as_json:
        _echo_json({**task.to_dict(), "pending_request": request, "changes": change.to_dict() if change else None})
    else:
        click.echo(task_text(task, orch.events(task.id), orch.paths.root))
        if change is not None:
            click.echo("")
            click.echo(change_text(change, orch.stat_text(change)))
        if request:
            click.echo(request_text(request))
    return EXIT_OK


@cli.command()
@click.argument("ref", metavar="ID|WORKFLOW")
@click.option("--stat", "stat_only", is_flag=True, help="Only the commits and the diff stat.")
@click.option("--json", "as_json", is_flag=True, help="The commits, the stat and the diff, as JSON.")
@click.pass_context
def diff(ctx: click.Context, ref: str, stat_only: bool, as_json: bool) -> int:
    """What a task's branch changed against its base, or a workflow's result against where it started.

    Control characters in the changed lines are shown escaped (\\x1b), never sent to the terminal."""
    from orchestra.ui import term  # shutil and co.: ~4 ms off --help and completion
    from orchestra.ui.views import change_text, diff_kind, printable  # ~35 ms off --help and completion

    orch = _orchestra(ctx)
    change = orch.change(ref)
    if as_json:
        data = change.to_dict()
        if not stat_only:
            data["diff"] = "".join(orch.diff_lines(change))
        _echo_json(data)
        return EXIT_OK
    if stat_only or not change.stat.count:
        what = f"{change.kind} {change.id}" + (
            f" (task {change.task})" if change.task and change.kind != "task" else ""
        )
        click.echo(
            f"{what}: {change.branch} against {change.base[:12]}" + (f", into {change.into}" if change.into else "")
        )
        click.echo(change_text(change, orch.stat_text(change)))
        return EXIT_OK
    color = term.color_enabled()
    for line in orch.diff_lines(change):
        text = printable(line.rstrip("\n"))  # the agent wrote these lines: no escape of theirs reaches the terminal
        click.echo(term.paint(diff_kind(text), text, color))
    return EXIT_OK


@cli.command()
@click.argument("task_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the task ends.")
@click.option("--raw", is_flag=True, help="Print the stream-json lines as Claude Code wrote them.")
@click.pass_context
def logs(ctx: click.Context, task_id: str, follow: bool, raw: bool) -> int:
    """The agent's transcript, rendered for people (coloured on a terminal)."""
    from orchestra.agent import transcript  # ~15 ms off --help and completion
    from orchestra.ui import term  # shutil and co.: ~4 ms off --help and completion

    orch = _orchestra(ctx)
    task = orch.get(task_id)
    path = orch.paths.log_file(task.id)
    color = term.color_enabled()
    offset = 0

    def drain(final: bool) -> None:
        """Everything written so far, a chunk at a time (fixed memory for a transcript of any size)."""
        nonlocal offset
        while True:
            if raw:
                data, new = transcript.raw_chunk(path, offset, include_partial=final)
                if data:
                    sys.stdout.buffer.write(data)
                    sys.stdout.flush()
            else:
                items, new = transcript.render_file(path, offset, include_partial=final)
                for item in items:
                    click.echo(term.paint(item.kind, transcript.relative_paths(item.text, task.worktree), color))
            if new == offset:
                return
            offset = new

    try:
        if not follow:
            drain(final=task.state.final)
        while follow:
            drain(final=False)
            if orch.get(task.id).state.final:
                drain(final=True)
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        return EXIT_OK  # leaving --follow is not an error
    if not path.exists() and not follow:
        click.echo(f"orchestra: no transcript yet for {task.id} ({task.state})", err=True)
    return EXIT_OK


@cli.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--timeout", metavar="DURATION", help="Give up after this long (exit 124).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code says it all.")
@click.option("--json", "as_json", is_flag=True, help="Print the tasks' final records as a JSON array.")
@click.pass_context
def wait(ctx: click.Context, task_ids: tuple[str, ...], timeout: str | None, quiet: bool, as_json: bool) -> int:
    """Block until the tasks end or one waits for input.

    Exit 0 if all succeeded, 1 if any failed, 3 as soon as one is awaiting input,
    124 if the timeout passed first. A task that cannot start until you act (no
    scheduler, the budget spent) is named on stderr first.
    """
    from orchestra.core.task import State  # ~14 ms off --help and completion
    from orchestra.ui.views import printable  # ~35 ms off --help and completion

    limit = parse_duration(timeout, "timeout") if timeout else None
    orch = _orchestra(ctx)
    for tid, why in orch.stuck(task_ids).items():
        click.echo(f"orchestra: note: {tid} stays queued until you act: {printable(why)}", err=True)
    tasks = orch.wait(task_ids, timeout=limit)
    if as_json:
        _echo_json([t.to_dict() for t in tasks])
    elif not quiet:
        for t in tasks:
            click.echo(printable(f"{t.id} {t.state}" + (f": {t.error}" if t.error else "")))
    if any(t.state == State.AWAITING_INPUT for t in tasks):
        return EXIT_AWAITING_INPUT
    if not all(t.state.final for t in tasks):
        return EXIT_TIMEOUT
    return EXIT_OK if all(t.state == "succeeded" for t in tasks) else EXIT_FAILED


@cli.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.pass_context
def cancel(ctx: click.Context, task_ids: tuple[str, ...]) -> int:
    """Cancel queued or running tasks; a running agent is stopped, its work kept.

    All or none: when an id is unknown or its task refuses, each such id is
    named and no task is changed.
    """
    for task in _orchestra(ctx).cancel_each(task_ids):
        click.echo(f"{task.id} {'cancelled' if task.state == 'cancelled' else 'cancelling'}")
    return EXIT_OK


@cli.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--start/--no-start", "start", default=None, help="Start a background scheduler if none runs.")
@click.option("--budget", metavar="USD", help="Set a new spending limit over all runs first.")
@click.pass_context
def retry(ctx: click.Context, task_ids: tuple[str, ...], start: bool | None, budget: str | None) -> int:
    """Queue failed, cancelled or timed-out tasks again, on the same branch.

    All or none: when an id is unknown or its task refuses, each such id is
    named and no task is changed.
    """
    for task in _orchestra(ctx).retry_each(task_ids, budget=budget, start=start):
        click.echo(f"{task.id} queued")
    return EXIT_OK


@cli.command()
@click.option(
    "--until-idle", is_flag=True, help="Exit when no task runs and none can start (it says why any stay queued)."
)
@click.option("-j", "--max-concurrent", type=click.IntRange(min=1), help="Agents at once (default: config).")
@click.option("--background", is_flag=True, hidden=True)
@click.pass_context
def worker(ctx: click.Context, until_idle: bool, max_concurrent: int | None, background: bool) -> int:
    """Run the scheduler in the foreground."""
    orch = _orchestra(ctx)
    scheduler = orch.scheduler(
        max_concurrent=max_concurrent,
        until_idle=until_idle,
        idle_exit=orch.config.idle_exit if background else None,
    )
    try:
        return scheduler.run()
    except SchedulerBusy:
        if background:
            return EXIT_OK  # lost a start-up race to another scheduler: that one does the work
        raise


@cli.command()
@click.argument("task_id")
@click.argument("text", nargs=-1)
@click.option("--allow", is_flag=True, help="Let the waiting tool use run.")
@click.option("--deny", is_flag=True, help="Refuse the waiting tool use.")
@click.option("-m", "--message", help="With --deny: why, for the agent to read.")
@click.option(
    "--always",
    is_flag=True,
    help="With --allow: allow the same again for the rest of this task (for Bash, this exact command; "
    "one a rule would read as a pattern, like 'echo ok:*', is allowed only once).",
)
@click.option("--start/--no-start", "start", default=None, help="Start a background scheduler if none runs.")
@click.pass_context
def respond(
    ctx: click.Context,
    task_id: str,
    text: tuple[str, ...],
    allow: bool,
    deny: bool,
    message: str | None,
    always: bool,
    start: bool | None,
) -> int:
    """Answer a waiting permission request, or reply to an ended task.

    With --allow or --deny, answers the tool use TASK_ID is waiting on. With TEXT
    ('-' reads stdin), continues the task's Claude session in the same worktree and
    branch as a new attempt.
    """
    if allow and deny:
        raise click.UsageError("give --allow or --deny, not both")
    reply: str | None = None
    if text:
        reply = sys.stdin.read() if text == ("-",) else " ".join(text)
    elif not (allow or deny):
        raise click.UsageError("give --allow or --deny, or a reply text")
    answer = True if allow else False if deny else None
    task = _orchestra(ctx).respond(task_id, allow=answer, message=message, always=always, text=reply, start=start)
    if reply is not None:
        click.echo(f"{task.id} queued (continuing session {task.resume_session})")
    else:
        click.echo(f"{task.id} {'allowed' if allow else 'denied'}" + (" (always, for this task)" if always else ""))
    return EXIT_OK


@cli.command("path")
@click.argument("task_id")
@click.pass_context
def path_cmd(ctx: click.Context, task_id: str) -> int:
    """Print the task's worktree path (e.g. cd "$(orchestra path ID)")."""
    click.echo(str(_orchestra(ctx).worktree(task_id)))
    return EXIT_OK


@cli.command("open")
@click.argument("task_id")
@click.pass_context
def open_cmd(ctx: click.Context, task_id: str) -> int:
    """Open the task's worktree in $VISUAL or $EDITOR (else start $SHELL there).

    Exits with the editor's or shell's own status.
    """
    from orchestra.ui import term  # shutil and co.: ~4 ms off --help and completion

    where = _orchestra(ctx).worktree(task_id)
    return term.run_here(term.editor_argv(), where)


@cli.command()
@click.argument("task_id")
@click.option("--stop", is_flag=True, help="Stop the task's running agent first (its work is kept).")
@click.pass_context
def attach(ctx: click.Context, task_id: str, stop: bool) -> int:
    """Continue the task's Claude session interactively, in its worktree.

    Runs `claude --resume SESSION` there for a task that has ended or waits for you (a
    waiting agent is stopped first; a running one only with --stop). When you leave the
    session, what changed is committed on the task's branch and the session is noted in
    the task's record (see 'orchestra show'). Exits with claude's own status when that
    is not 0 (1 when a signal ended it).
    """
    from orchestra.ui import term  # shutil and co.: ~4 ms off --help and completion

    orch = _orchestra(ctx)
    session = orch.begin_attach(task_id, stop=stop)
    if session.stopped:
        click.echo(f"{session.task.id}: stopped its agent (work kept)", err=True)
    click.echo(f"{session.task.id}: resuming session {session.task.session_id} in {session.cwd}", err=True)
    code = term.run_here(session.argv, session.cwd)
    record = orch.finish_attach(session, code)
    if record["commit"]:
        click.echo(f"{session.task.id}: committed your changes as {record['commit'][:10]} on {session.task.branch}")
    elif record["commits"]:
        click.echo(f"{session.task.id}: {record['commits']} new commit(s) on {session.task.branch}")
    else:
        click.echo(f"{session.task.id}: nothing changed on {session.task.branch}")
    if code:
        # What the person's session did is recorded all the same; a script must still see it failed.
        click.echo(f"{session.task.id}: claude exited with status {code}", err=True)
        return code if 0 < code < 256 else EXIT_FAILED
    return EXIT_OK


@cli.command()
@click.argument("task_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Stop every running agent.")
@click.pass_context
def stop(ctx: click.Context, task_ids: tuple[str, ...], all_: bool) -> int:
    """Stop running agents (SIGTERM, then SIGKILL after the grace period); work is kept.

    All or none: when an id is unknown or its task refuses, each such id is
    named and no task is changed.
    """
    orch = _orchestra(ctx)
    if all_ == bool(task_ids):
        raise click.UsageError("give task ids or --all (not both)")
    tasks = orch.stop_all() if all_ else orch.stop_each(task_ids)
    for task in tasks:
        click.echo(f"{task.id} stopping")
    if all_ and not tasks:
        click.echo("no running agents")
    return EXIT_OK


@cli.command()
@click.argument("task_id")
@click.argument("value", metavar="N")
@click.pass_context
def priority(ctx: click.Context, task_id: str, value: str) -> int:
    """Change the priority of a queued task (higher runs first)."""
    task = _orchestra(ctx).set_priority(task_id, value)
    click.echo(f"{task.id} priority {task.priority}")
    return EXIT_OK


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def queue(ctx: click.Context, as_json: bool) -> int:
    """Queued tasks in the order they will run, with what each waits for."""
    if ctx.invoked_subcommand is not None:
        return EXIT_OK
    from orchestra.ui.views import queue_text  # ~35 ms off --help and completion

    rows = _orchestra(ctx).queue()
    if as_json:
        _echo_json(rows)
    else:
        click.echo(queue_text(rows))
    return EXIT_OK


@queue.command("remove")
@click.argument("task_ids", nargs=-1, required=True)
@click.pass_context
def queue_remove(ctx: click.Context, task_ids: tuple[str, ...]) -> int:
    """Take queued tasks out of the queue (they end as cancelled).

    All or none: when an id is unknown or its task refuses, each such id is
    named and no task is changed.
    """
    for task in _orchestra(ctx).remove_each_from_queue(task_ids):
        click.echo(f"{task.id} removed")
    return EXIT_OK


@cli.group("config")
def config_group() -> None:
    """Read and change the settings in .orchestra/config.toml."""


@config_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config_list(ctx: click.Context, as_json: bool) -> int:
    """Every setting with its value; '*' marks values set in config.toml."""
    settings = _orchestra(ctx).config_list()
    if as_json:
        _echo_json(settings)
        return EXIT_OK
    from orchestra.ui.views import config_text  # ~35 ms off --help and completion

    click.echo(config_text(settings))
    return EXIT_OK


@config_group.command("get")
@click.argument("key")
@click.pass_context
def config_get(ctx: click.Context, key: str) -> int:
    """Print one setting's value (an optional setting that is off prints an empty line)."""
    value = _orchestra(ctx).config_get(key)
    click.echo(value if isinstance(value, str) else json.dumps(value))
    return EXIT_OK


@config_group.command("set", context_settings={"ignore_unknown_options": True})  # a value may start with "-"
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> int:
    """Validate and store one setting (lists: a JSON array or space-separated words).

    An optional setting (gate, setup, on_event, ray_address, ray_git_remote) is off when
    empty; 'orchestra config unset KEY' is the way to turn one off, or to put any setting
    back to its default. Setting a key works even when config.toml holds an invalid value
    for that key.
    """
    parsed: object = value
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise click.UsageError(f"invalid list for {key}: {value}") from None
    stored = _orchestra(ctx, repairing_config=True).config_set(key, parsed)
    click.echo(f"{key} = {json.dumps(stored)}")
    return EXIT_OK


@config_group.command("unset")
@click.argument("key")
@click.pass_context
def config_unset(ctx: click.Context, key: str) -> int:
    """Remove one setting from config.toml, so its default applies (an optional one: off).

    Also removes a key config.toml has wrong, an invalid value or an unknown name,
    when that keeps every other command from loading the file.
    """
    default = _orchestra(ctx, repairing_config=True).config_unset(key)
    click.echo(f"{key} removed" if default is None else f"{key} = {json.dumps(default)} (the default)")
    return EXIT_OK


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def spend(ctx: click.Context, as_json: bool) -> int:
    """Cost and tokens for the repository, per workflow and per role, and the budget."""
    from orchestra.ui.views import spend_text  # ~35 ms off --help and completion

    report = _orchestra(ctx).spend()
    if as_json:
        _echo_json(report)
    else:
        click.echo(spend_text(report))
    return EXIT_OK


@cli.group("roles", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Every field of every role, as JSON.")
@click.pass_context
def roles_cmd(ctx: click.Context, as_json: bool) -> int:
    """List the roles (built-in and your own), with where each comes from."""
    if ctx.invoked_subcommand is not None:
        return EXIT_OK
    from orchestra.ui.views import roles_table  # ~35 ms off --help and completion

    roles = _orchestra(ctx).roles()
    if as_json:
        _echo_json({name: r.to_dict() for name, r in roles.items()})
    else:
        click.echo(roles_table(roles))
    return EXIT_OK


@roles_cmd.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Every field, as JSON.")
@click.pass_context
def roles_show(ctx: click.Context, name: str, as_json: bool) -> int:
    """Everything about one role, including its full system prompt."""
    from orchestra.ui.views import role_text  # ~35 ms off --help and completion

    role = _orchestra(ctx).role(name)
    click.echo(json.dumps(role.to_dict(), indent=2, sort_keys=True) if as_json else role_text(role))
    return EXIT_OK


@cli.group("workflow")
def workflow_cmd() -> None:
    """Start and follow workflows: a team of roles working on one request."""


@workflow_cmd.command("start")
@click.argument("template")
@click.argument("request", nargs=-1)
@click.option("-f", "--file", "request_file", type=click.File("r"), help="Read the request from FILE ('-' for stdin).")
@click.option("--base", metavar="REF", help="Start from REF (default HEAD); for code-review: BRANCH or FROM..TO.")
@click.option("--into", metavar="BRANCH", help="Merge the result into BRANCH (default: the base branch).")
@click.option(
    "--approve-merge",
    is_flag=True,
    help="Stop at awaiting_merge until you approve with 'orchestra merge WF' (config: merge_approval).",
)
@click.option("--start/--no-start", "start", default=None, help="Start a background scheduler if none runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the new workflow as JSON instead of its id.")
@click.pass_context
def workflow_start(
    ctx: click.Context,
    template: str,
    request: tuple[str, ...],
    request_file: Any,
    base: str | None,
    into: str | None,
    approve_merge: bool,
    start: bool | None,
    as_json: bool,
) -> int:
    """Start workflow TEMPLATE on REQUEST and print its id."""
    if request_file is not None and request:
        raise click.UsageError("give the request as arguments or with --file, not both")
    text = request_file.read() if request_file is not None else " ".join(request)
    orch = _orchestra(ctx)
    wf = orch.start_workflow(template, text, base=base, into=into, approve_merge=approve_merge, start=start)
    if as_json:
        _echo_json(wf.to_dict())
    else:
        click.echo(wf.id)
    return EXIT_OK


@workflow_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="Every workflow record, as a JSON array.")
@click.pass_context
def workflow_list(ctx: click.Context, as_json: bool) -> int:
    """List workflows, oldest first."""
    from orchestra.ui.views import workflow_table  # ~35 ms off --help and completion

    workflows = _orchestra(ctx).workflows()
    if as_json:
        _echo_json([w.to_dict() for w in workflows])
    else:
        click.echo(workflow_table(workflows))
    return EXIT_OK


@workflow_cmd.command("wait")
@click.argument("workflow_id")
@click.option("--timeout", metavar="DURATION", help="Give up after this long (exit 124).")
@click.pass_context
def workflow_wait(ctx: click.Context, workflow_id: str, timeout: str | None) -> int:
    """Block until the workflow ends; exit 0 only if it succeeded (3: a step or its merge waits for you)."""
    from orchestra.ui.views import printable  # ~35 ms off --help and completion

    limit = parse_duration(timeout, "timeout") if timeout else None
    wf, waiting = _orchestra(ctx).wait_workflow(workflow_id, timeout=limit)
    note = " (a step waits for input)" if waiting else ""
    if wf.state == "awaiting_merge":
        note = f" (its merge waits for your approval: 'orchestra merge {wf.id}')"
    click.echo(printable(f"{wf.id} {wf.state}" + (f": {wf.error}" if wf.error else "") + note))
    if waiting:
        return EXIT_AWAITING_INPUT
    if wf.state == "running":
        return EXIT_TIMEOUT
    return EXIT_OK if wf.state == "succeeded" else EXIT_FAILED


@workflow_cmd.command("cancel")
@click.argument("workflow_id")
@click.pass_context
def workflow_cancel(ctx: click.Context, workflow_id: str) -> int:
    """Cancel a workflow: its live steps are stopped, its branches and finished work kept."""
    wf = _orchestra(ctx).cancel_workflow(workflow_id)
    click.echo(f"{wf.id} {wf.state}")
    return EXIT_OK


@workflow_cmd.command("show")
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="The record and its tasks, as JSON.")
@click.pass_context
def workflow_show(ctx: click.Context, workflow_id: str, as_json: bool) -> int:
    """The task graph of one workflow, with each step's state."""
    from orchestra.ui.views import workflow_text  # ~35 ms off --help and completion

    orch = _orchestra(ctx)
    wf = orch.workflow(workflow_id)
    tasks = orch.workflow_tasks(wf)
    spend = orch.workflow_spend(wf.id)
    if as_json:
        _echo_json({**wf.to_dict(), "tasks": {tid: t.to_dict() for tid, t in tasks.items()}, "spend": spend})
    else:
        click.echo(workflow_text(wf, tasks, spend))
    return EXIT_OK


@workflow_cmd.command("templates")
@click.option("--json", "as_json", is_flag=True, help="Every template, as JSON.")
@click.pass_context
def workflow_templates(ctx: click.Context, as_json: bool) -> int:
    """List workflow templates (built-in and .orchestra/workflows/*.toml)."""
    from orchestra.ui.views import templates_text  # ~35 ms off --help and completion

    templates = _orchestra(ctx).workflow_templates()
    if as_json:
        _echo_json({name: t.to_dict() for name, t in templates.items()})
    else:
        click.echo(templates_text(templates))
    return EXIT_OK


@cli.command("merge")
@click.argument("ref")
@click.option("--into", metavar="BRANCH", help="The branch to merge into (default: the workflow's or task's target).")
@click.option("--strategy", type=click.Choice(["merge", "squash", "ff-only"]), help="Default: config merge_strategy.")
@click.option("--resolve", is_flag=True, help="On a conflict, start an implementer to resolve it, then retry.")
@click.option("--start/--no-start", "start", default=None, help="Start a background scheduler for --resolve.")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON.")
@click.pass_context
def merge_cmd(
    ctx: click.Context,
    ref: str,
    into: str | None,
    strategy: str | None,
    resolve: bool,
    start: bool | None,
    as_json: bool,
) -> int:
    """Merge a task's branch or a workflow's result into its target, behind the gate."""
    from orchestra.ui.views import merge_text  # ~35 ms off --help and completion

    orch = _orchestra(ctx)
    result = orch.merge(ref, into=into, strategy=strategy, resolve=resolve, start=start)
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(merge_text(result, ref), err=not (result.ok or result.resolve_task))
    return EXIT_OK if result.ok or result.resolve_task else EXIT_FAILED


@cli.command("push")
@click.argument("ref", metavar="ID|WORKFLOW")
@click.option("--remote", metavar="NAME", help="The remote to push to (default: origin).")
@click.option("--pr", is_flag=True, help="Then open a pull request with 'gh pr create'.")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON.")
@click.pass_context
def push_cmd(ctx: click.Context, ref: str, remote: str | None, pr: bool, as_json: bool) -> int:
    """Push a task's branch, or a workflow's result branch, to a remote; --pr opens a pull request.

    The pull request's title is the task's or workflow's title; its body carries the
    prompt, the reviewer's verdict and comments, the tests run, the cost and the diff stat.
    """
    result = _orchestra(ctx).push(ref, remote=remote, pr=pr)
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(result.message)
    return EXIT_OK


@cli.command("cleanup")
@click.option("-n", "--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--force", is_flag=True, help="Also remove unmerged branches and dirty worktrees (listed first).")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.pass_context
def cleanup_cmd(ctx: click.Context, dry_run: bool, force: bool, as_json: bool) -> int:
    """Remove worktrees of finished tasks, and their branches once merged."""
    from orchestra.ui.views import cleanup_text  # ~35 ms off --help and completion

    report = _orchestra(ctx).cleanup(dry_run=dry_run, force=force)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(cleanup_text(report))
    return EXIT_OK


@cli.command("prune")
@click.option("--before", metavar="DATE", help="Tasks that ended before DATE (YYYY-MM-DD, or an age such as 90d).")
@click.option("--keep", type=click.IntRange(min=0), metavar="N", help="Keep the N most recently ended tasks.")
@click.option("-n", "--dry-run", is_flag=True, help="Only say what would be archived.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.pass_context
def prune_cmd(ctx: click.Context, before: str | None, keep: int | None, dry_run: bool, as_json: bool) -> int:
    """Archive the records of old finished tasks whose work is merged or cleaned up.

    Their task files, event logs and transcripts move into one compressed archive
    under .orchestra/archive/. A task is kept while anything unfinished needs it,
    while its worktree exists, or while its branch holds work not merged into its
    target. Branches and worktrees are never touched.
    """
    from orchestra.ui.views import prune_text  # ~35 ms off --help and completion

    report = _orchestra(ctx).prune(before=before, keep=keep, dry_run=dry_run)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(prune_text(report))
    return EXIT_OK


@cli.command()
@click.option("--fix", is_flag=True, help="Repair what can be repaired without losing anything.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def doctor(ctx: click.Context, fix: bool, as_json: bool) -> int:
    """Check the queue, worktrees and branches against each other; exit 1 if problems remain."""
    from orchestra.ui.views import doctor_text  # ~35 ms off --help and completion

    report = _orchestra(ctx).doctor(fix=fix)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(doctor_text(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def _fail(message: str, code: int) -> NoReturn:
    from orchestra.ui.views import printable  # ~35 ms off --help and completion

    click.echo(f"orchestra: error: {printable(message)}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    if "_ORCHESTRA_COMPLETE" in os.environ:  # shell completion: wire the candidates only when asked
        install_completion(cli)
    try:
        rv = cli.main(args=argv, prog_name="orchestra", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # pragma: no cover - click >= 8.2
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx and exc.ctx.parent else ""
        _fail(exc.format_message() + hint, EXIT_USAGE)
    except click.Abort:
        click.echo("", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except OrchestraError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(EXIT_FAILED)
    except OSError as exc:  # the file system said no (full disk, permissions): say where, in one line
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}", EXIT_FAILED)
    except Exception as exc:  # never a traceback for a person; the message still says what broke
        _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)

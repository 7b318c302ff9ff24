"""The `orchestra` command: parse, call the core, render. Nothing else lives here."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from orchestra import __version__
from orchestra.errors import OrchestraError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _orchestra(ctx: click.Context) -> Any:
    from orchestra.service import Orchestra

    obj = ctx.find_root().obj
    if obj.get("orchestra") is None:
        obj["orchestra"] = Orchestra(obj.get("repo"))
    return obj["orchestra"]


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

    Each task runs `claude` headless in its own git worktree and branch; the queue
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
@click.option("--base", metavar="REF", help="Start from REF instead of the current HEAD.")
@click.option("--title", help="A short title (default: the prompt's first line).")
@click.option("--timeout", metavar="DURATION", help="Wall-clock limit per run: seconds, or 30m, 2h.")
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
    start: bool | None,
    as_json: bool,
) -> int:
    """Queue a task and print its id.

    The prompt comes from the arguments, from -f FILE, or from stdin when neither
    is given (or the argument is '-').
    """
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
        text, role=role, priority=priority, after=after, on=on, base=base, title=title, timeout=timeout
    )
    autostart = orch.config.autostart if start is None else start
    if autostart:
        orch.ensure_scheduler()
    if as_json:
        _echo_json(task.to_dict())
    else:
        click.echo(task.id)
    return EXIT_OK


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> int:
    """Counts by state, running agents, the queue and recent results."""
    from orchestra.views import status_text

    report = _orchestra(ctx).status()
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(status_text(report))
    return EXIT_OK


@cli.command("list")
@click.option("-s", "--state", "states", multiple=True, help="Only tasks in this state (repeatable).")
@click.option("-r", "--role", "roles", multiple=True, help="Only tasks with this role (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Every field of every task, as a JSON array.")
@click.pass_context
def list_cmd(ctx: click.Context, states: tuple[str, ...], roles: tuple[str, ...], as_json: bool) -> int:
    """List tasks, oldest first."""
    from orchestra.views import task_table

    orch = _orchestra(ctx)
    if as_json:
        _echo_json([t.to_dict() for t in orch.list(states, roles)])
        return EXIT_OK
    rows = [s for s in orch.summaries(states) if not roles or s["role"] in roles]
    click.echo(task_table(rows))
    for path, reason in orch.store.corrupt_files().items():
        click.echo(f"orchestra: warning: {reason}", err=True)
    return EXIT_OK


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Every field, as JSON.")
@click.pass_context
def show(ctx: click.Context, task_id: str, as_json: bool) -> int:
    """Everything about one task."""
    from orchestra.views import task_text

    from orchestra.views import request_text

    orch = _orchestra(ctx)
    task = orch.get(task_id)
    request = orch.pending_request(task.id)
    if as_json:
        _echo_json({**task.to_dict(), "pending_request": request})
    else:
        click.echo(task_text(task, orch.store.events(task.id)))
        if request:
            click.echo(request_text(request))
    return EXIT_OK


@cli.command()
@click.argument("task_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the task ends.")
@click.option("--raw", is_flag=True, help="Print the stream-json lines as Claude Code wrote them.")
@click.pass_context
def logs(ctx: click.Context, task_id: str, follow: bool, raw: bool) -> int:
    """The agent's transcript, rendered for people."""
    from orchestra import transcript

    orch = _orchestra(ctx)
    task = orch.get(task_id)
    path = orch.paths.log_file(task.id)
    offset = 0
    while True:
        if raw:
            offset = _copy_raw(path, offset)
        else:
            items, offset = transcript.render_file(path, offset)
            for item in items:
                click.echo(item.text)
        if not follow:
            break
        state = orch.store.load(task.id).state
        if state.final:
            if raw:
                _copy_raw(path, offset)
            else:
                items, offset = transcript.render_file(path, offset, include_partial=True)
                for item in items:
                    click.echo(item.text)
            break
        time.sleep(0.3)
    if not path.exists() and not follow:
        click.echo(f"orchestra: no transcript yet for {task.id} ({task.state})", err=True)
    return EXIT_OK


def _copy_raw(path: Path, offset: int) -> int:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b"\n") + 1
    if end:
        sys.stdout.buffer.write(data[:end])
        sys.stdout.flush()
    return offset + end


@cli.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--timeout", metavar="DURATION", help="Give up after this long (exit 124).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code says it all.")
@click.pass_context
def wait(ctx: click.Context, task_ids: tuple[str, ...], timeout: str | None, quiet: bool) -> int:
    """Block until the tasks end; exit 0 only if all succeeded."""
    from orchestra.config import parse_duration

    limit = parse_duration(timeout, "timeout") if timeout else None
    tasks = _orchestra(ctx).wait(task_ids, timeout=limit)
    if not quiet:
        for t in tasks:
            click.echo(f"{t.id} {t.state}" + (f": {t.error}" if t.error else ""))
    if not all(t.state.final for t in tasks):
        return 124
    return EXIT_OK if all(t.state == "succeeded" for t in tasks) else EXIT_FAILED


@cli.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.pass_context
def cancel(ctx: click.Context, task_ids: tuple[str, ...]) -> int:
    """Cancel queued or running tasks; a running agent is stopped, its work kept."""
    orch = _orchestra(ctx)
    for ref in task_ids:
        task = orch.cancel(ref)
        click.echo(f"{task.id} {'cancelled' if task.state == 'cancelled' else 'cancelling'}")
    return EXIT_OK


@cli.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--start/--no-start", "start", default=None, help="Start a background scheduler if none runs.")
@click.pass_context
def retry(ctx: click.Context, task_ids: tuple[str, ...], start: bool | None) -> int:
    """Queue failed, cancelled or timed-out tasks again, on the same branch."""
    orch = _orchestra(ctx)
    for ref in task_ids:
        task = orch.retry(ref)
        click.echo(f"{task.id} queued")
    if orch.config.autostart if start is None else start:
        orch.ensure_scheduler()
    return EXIT_OK


@cli.command()
@click.option("--until-idle", is_flag=True, help="Exit when no task is queued or running.")
@click.option("-j", "--max-concurrent", type=click.IntRange(min=1), help="Agents at once (default: config).")
@click.option("--background", is_flag=True, hidden=True)
@click.pass_context
def worker(ctx: click.Context, until_idle: bool, max_concurrent: int | None, background: bool) -> int:
    """Run the scheduler in the foreground."""
    from orchestra.errors import SchedulerBusy

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
@click.option("--allow", "decision", flag_value="allow", help="Let the waiting tool use run.")
@click.option("--deny", "decision", flag_value="deny", help="Refuse the waiting tool use.")
@click.option("-m", "--message", help="With --deny: why, for the agent to read.")
@click.option("--always", is_flag=True, help="With --allow: allow the same again for the rest of this task.")
@click.option("--start/--no-start", "start", default=None, help="Start a background scheduler if none runs.")
@click.pass_context
def respond(
    ctx: click.Context,
    task_id: str,
    text: tuple[str, ...],
    decision: str | None,
    message: str | None,
    always: bool,
    start: bool | None,
) -> int:
    """Answer a waiting permission request, or reply to an ended task.

    With --allow or --deny, answers the tool use TASK_ID is waiting on. With TEXT
    ('-' reads stdin), continues the task's Claude session in the same worktree and
    branch as a new attempt.
    """
    orch = _orchestra(ctx)
    reply: str | None = None
    if text:
        reply = sys.stdin.read() if text == ("-",) else " ".join(text)
    elif decision is None:
        raise click.UsageError("give --allow or --deny, or a reply text")
    allow = None if decision is None else decision == "allow"
    task = orch.respond(task_id, allow=allow, message=message, always=always, text=reply)
    if reply is not None:
        click.echo(f"{task.id} queued (continuing session {task.resume_session})")
        if orch.config.autostart if start is None else start:
            orch.ensure_scheduler()
    else:
        click.echo(f"{task.id} {'allowed' if allow else 'denied'}" + (" (always, for this task)" if always else ""))
    return EXIT_OK


@cli.command()
@click.argument("task_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Stop every running agent.")
@click.pass_context
def stop(ctx: click.Context, task_ids: tuple[str, ...], all_: bool) -> int:
    """Stop running agents (SIGTERM, then SIGKILL after the grace period); work is kept."""
    orch = _orchestra(ctx)
    if all_ == bool(task_ids):
        raise click.UsageError("give task ids or --all (not both)")
    tasks = orch.stop_all() if all_ else [orch.stop(ref) for ref in task_ids]
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
    from orchestra.views import queue_text

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
    """Take queued tasks out of the queue (they end as cancelled)."""
    orch = _orchestra(ctx)
    for ref in task_ids:
        click.echo(f"{orch.remove_from_queue(ref).id} removed")
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
    for name, info in settings.items():
        mark = "*" if info["set"] else " "
        click.echo(f"{mark} {name:<16} {json.dumps(info['value'])}  # {info['help']}")
    return EXIT_OK


@config_group.command("get")
@click.argument("key")
@click.pass_context
def config_get(ctx: click.Context, key: str) -> int:
    """Print one setting's value."""
    value = _orchestra(ctx).config_get(key)
    click.echo(value if isinstance(value, str) else json.dumps(value))
    return EXIT_OK


@config_group.command("set")
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> int:
    """Validate and store one setting (lists: a JSON array or space-separated words)."""
    parsed: object = value
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise click.UsageError(f"invalid list for {key}: {value}") from None
    stored = _orchestra(ctx).config_set(key, parsed)
    click.echo(f"{key} = {json.dumps(stored)}")
    return EXIT_OK


@cli.command()
@click.option("--fix", is_flag=True, help="Repair what can be repaired without losing anything.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def doctor(ctx: click.Context, fix: bool, as_json: bool) -> int:
    """Check the queue, worktrees and branches against each other; exit 1 if problems remain."""
    from orchestra.views import doctor_text

    report = _orchestra(ctx).doctor(fix=fix)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(doctor_text(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"orchestra: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        rv = cli.main(args=argv, prog_name="orchestra", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # pragma: no cover - click >= 8.2
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        hint = f" (see 'orchestra {exc.ctx.info_name} --help')" if exc.ctx and exc.ctx.parent else ""
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
        _fail(f"internal error: {type(exc).__name__}: {exc}", 70)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)

"""The `orchestra` program: the console script's and `python -m orchestra`'s entry point.

The front ends (the command line, the MCP server, the interactive screen) sit side
by side on the façade and never import each other; an import-linter contract in
pyproject.toml checks it. A command that starts another front end, such as
`serve`, is therefore attached to the command line here, above them all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from orchestra.core.errors import EXIT_OK
from orchestra.ui import cli as command_line

program = command_line.cli


@program.command()
@click.option(
    "--repo",
    "serve_repo",
    type=click.Path(file_okay=False, path_type=Path),
    help="The repository to serve (default: the global --repo, or the one containing the current directory).",
)
@click.pass_context
def serve(ctx: click.Context, serve_repo: Path | None) -> int:
    """Run the MCP server on stdio (for Claude Desktop, Claude Code and other MCP clients).

    Starts or joins the repository's scheduler so submitted tasks run; only the
    protocol goes to stdout, logs go to stderr.
    """
    from orchestra.ui.mcp_server import serve as run_server  # the MCP SDK: most of a second, only serve pays

    run_server(serve_repo or ctx.find_root().obj.get("repo"))
    return EXIT_OK


@program.command()
@click.option(
    "-n",
    "--interval",
    type=click.FloatRange(min=0.2),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes of the table.",
)
@click.pass_context
def tui(ctx: click.Context, interval: float) -> int:
    """An interactive screen: the tasks, waiting ones first, answered with a key.

    Keys: up/down select; a allow, d deny, A always allow the selected task's
    permission request; r reply with text; enter its transcript, live; v its diff;
    o open its worktree ($VISUAL/$EDITOR, else $SHELL); s stop, c cancel, R retry;
    m merge (asks first, naming the target; says at once why not); q quit. The
    terminal bell rings when a task starts waiting for you (config tui_bell = false
    turns it off).
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise click.UsageError("orchestra tui needs a terminal; 'orchestra status --watch' works in a pipe too")
    orch = command_line.orchestra_of(ctx)
    from orchestra.ui.tui import run  # Textual: ~150 ms that only the screen pays

    return run(orch, interval)


def main(argv: list[str] | None = None) -> NoReturn:
    command_line.main(argv)

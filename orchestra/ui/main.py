"""The `orchestra` program: the console script's and `python -m orchestra`'s entry point.

The front ends (the command line, the MCP server, the interactive screen) sit side
by side on the façade and never import each other; an import-linter contract in
pyproject.toml checks it. A command that starts another front end, such as
`serve`, is therefore attached to the command line here, above them all.
"""

from __future__ import annotations

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


def main(argv: list[str] | None = None) -> NoReturn:
    command_line.main(argv)

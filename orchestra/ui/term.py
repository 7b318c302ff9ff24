"""Colour for terminals: when to use it and what each kind of line looks like.

One table of styles serves the plain output (ANSI through click, cheap) and the
rich dashboard (the same names as rich style strings), so a running agent or a
refused tool call looks the same everywhere. No colour unless the stream is a
terminal, `NO_COLOR` is unset (https://no-color.org) and TERM is not "dumb".
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from typing import IO, Any

import click

from orchestra.core.errors import OrchestraError

# kind -> (click.style keyword arguments, rich style string)
STYLES: dict[str, tuple[dict[str, Any], str]] = {
    # status picture
    "title": ({"bold": True}, "bold"),
    "heading": ({"bold": True}, "bold"),
    "alert": ({"fg": "black", "bg": "yellow", "bold": True}, "bold black on yellow"),
    "waiting": ({"fg": "yellow", "bold": True}, "bold yellow"),
    "running": ({"fg": "cyan"}, "cyan"),
    "activity": ({"dim": True}, "dim"),
    "queued": ({}, ""),
    "succeeded": ({"fg": "green"}, "green"),
    "failed": ({"fg": "red"}, "red"),
    "warning": ({"fg": "red", "bold": True}, "bold red"),
    "dim": ({"dim": True}, "dim"),
    "plain": ({}, ""),
    # transcript kinds (orchestra.transcript.KINDS)
    "init": ({"dim": True}, "dim"),
    "text": ({}, ""),
    "tool": ({"fg": "cyan", "bold": True}, "bold cyan"),
    "tool_result": ({"dim": True}, "dim"),
    "tool_error": ({"fg": "red"}, "red"),
    "denied": ({"fg": "yellow", "bold": True}, "bold yellow"),
    "retry": ({"fg": "yellow"}, "yellow"),
    "error": ({"fg": "red", "bold": True}, "bold red"),
    "result": ({"fg": "green", "bold": True}, "bold green"),
    "result_failed": ({"fg": "red", "bold": True}, "bold red"),
    "info": ({"fg": "blue"}, "blue"),
    "raw": ({"dim": True}, "dim"),
}


def color_enabled(stream: IO[str] | None = None) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    out = stream if stream is not None else sys.stdout
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def width(default: int = 80) -> int:
    """The terminal's width, or `default` when output goes to a pipe or file."""
    columns = os.environ.get("COLUMNS", "")
    if not sys.stdout.isatty():
        return int(columns) if columns.isdigit() and int(columns) >= 40 else default
    return max(shutil.get_terminal_size((default, 24)).columns, 40)


def style_kind(kind: str, text: str) -> str:
    """Refine a kind by its text: a failed result or a failed task reads red."""
    if kind == "result" and text.lstrip().startswith("✗"):
        return "result_failed"
    return kind


def paint(kind: str, text: str, color: bool) -> str:
    if not color:
        return text
    spec = STYLES.get(style_kind(kind, text), ({}, ""))[0]
    return click.style(text, **spec) if spec else text


def rich_style(kind: str, text: str) -> str:
    return STYLES.get(style_kind(kind, text), ({}, ""))[1]


def editor_argv() -> list[str]:
    """What `open` runs in a worktree: $VISUAL, else $EDITOR (with "." to open the directory), else a shell.

    The variable is split into words like a shell would (`code -w` is two), but never
    handed to a shell: the words are the argv.
    """
    for name in ("VISUAL", "EDITOR"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value]
            if words:
                return [*words, "."]
    return [os.environ.get("SHELL") or "/bin/sh"]


def run_here(argv: list[str], cwd: Any) -> int:
    """Run an interactive program on this terminal in `cwd`, and return its exit status."""
    try:
        return subprocess.run(argv, cwd=cwd, check=False).returncode
    except FileNotFoundError:
        raise OrchestraError(f"{argv[0]}: command not found") from None
    except PermissionError:
        raise OrchestraError(f"{argv[0]}: permission denied") from None

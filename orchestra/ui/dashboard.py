"""`orchestra status --watch`: the status picture, redrawn in place with rich.

The picture itself is views.status_lines, so the live view, the one-shot output
and the pipe all say the same thing; this module only styles and refreshes it.
Only imported for --watch on a terminal: rich costs more to import than `status`
may spend in total.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from orchestra.ui import term
from orchestra.ui.views import status_lines


def render(report: Any, width: int, *, header: str | None = None) -> Group:
    """The picture as rich Text lines, none wider than `width`."""
    lines: list[Text] = []
    if header:
        lines.append(Text(header[:width], style="dim"))
    for kind, text in status_lines(report, width):
        lines.append(Text(text, style=term.rich_style(kind, text), no_wrap=True, overflow="ellipsis"))
    return Group(*lines)


def watch(fetch: Callable[[], Any], interval: float = 1.0, console: Console | None = None) -> int:
    """Redraw until Ctrl-C; returns the exit status (0: a person quitting is not an error)."""
    console = console or Console()

    def frame() -> Group:
        header = f"orchestra status --watch · {time.strftime('%H:%M:%S')} · every {interval:g}s · Ctrl-C quits"
        return render(fetch(), console.width, header=header)

    try:
        with Live(frame(), console=console, auto_refresh=False, transient=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        return 0

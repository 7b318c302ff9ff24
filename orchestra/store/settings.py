"""Writing `.orchestra/config.toml`: one setting's line at a time, comments and tables kept."""

from __future__ import annotations

from collections.abc import Callable

from orchestra.store.files import write_atomic
from orchestra.store.tasks import Store


def rewrite_config(store: Store, change: Callable[[str], str]) -> None:
    """Replace config.toml's text with `change(text)` under the store's lock, so two changes never lose one.

    `change` sees the text as it is at that moment (empty when there is no file) and may refuse by raising.
    """
    path = store.paths.config
    with store.locked():
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        write_atomic(path, change(text).encode("utf-8"))

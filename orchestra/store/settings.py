"""Writing `.orchestra/config.toml`: one setting's line at a time, comments and tables kept."""

from __future__ import annotations

from orchestra.core.config import with_setting
from orchestra.store.files import write_atomic
from orchestra.store.tasks import Store


def write_setting(store: Store, key: str, value: object) -> None:
    path = store.paths.config
    with store.locked():
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        write_atomic(path, with_setting(text, key, value, where=path).encode("utf-8"))

"""Reading TOML, in one place.

`import tomllib` compiles its date and number patterns, about a tenth of the start-up
of a command like `status`; a repository with no config file, role or template file
never needs it, so it is imported on the first file read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestra.core.errors import ConfigError


def parse(text: str) -> tuple[dict[str, Any], str | None]:
    """The parsed document and None, or an empty one and why the text is not TOML."""
    import tomllib  # ~10 ms of start-up: only a command that reads a TOML file pays

    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as exc:
        return {}, str(exc)


def loads(text: str, where: object) -> dict[str, Any]:
    """The parsed document; ConfigError naming `where` when it is not valid TOML."""
    data, problem = parse(text)
    if problem is not None:
        raise ConfigError(f"{where}: invalid TOML: {problem}")
    return data


def read(path: Path) -> dict[str, Any]:
    """The file's document; ConfigError naming the file when it cannot be read or parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return loads(text, path)

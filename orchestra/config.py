"""Repository settings from `.orchestra/config.toml`.

Settings are declared once, with their type and a check, so that loading the
file, `config get/set` and the MCP server all validate the same way and a bad
value is reported with the file and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orchestra.errors import ConfigError, InvalidInput

CLAUDE_ENV = "ORCHESTRA_CLAUDE"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_BRANCH_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from `90`, `90s`, `30m`, `2h`; positive only."""
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {what}: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise InvalidInput(f"invalid {what} {value!r}: use seconds or a number with ms, s, m, h or d")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not seconds > 0:
        raise InvalidInput(f"invalid {what} {value!r}: must be greater than zero")
    return seconds


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise InvalidInput(f"invalid {what} {value!r}: expected a whole number") from None
    if value < 1:
        raise InvalidInput(f"invalid {what} {value!r}: must be at least 1")
    return value


def _bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise InvalidInput(f"invalid {what} {value!r}: expected true or false")


def _string(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"invalid {what} {value!r}: expected a non-empty string")
    return value


def _string_list(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        import shlex

        value = shlex.split(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"invalid {what} {value!r}: expected a list of strings")
    return list(value)


def _branch_prefix(value: object, what: str) -> str:
    text = _string(value, what)
    if not _BRANCH_PREFIX.match(text) or ".." in text or "//" in text or text.endswith(".lock"):
        raise InvalidInput(f"invalid {what} {text!r}: letters, digits, '.', '_', '-' and '/' only")
    return text


MERGE_STRATEGIES = ("merge", "squash", "ff-only")


def _merge_strategy(value: object, what: str) -> str:
    if value not in MERGE_STRATEGIES:
        raise InvalidInput(f"invalid {what} {value!r}: use one of {', '.join(MERGE_STRATEGIES)}")
    return str(value)


def _count(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {what} {value!r}: expected a whole number")
    try:
        number = value if isinstance(value, int) else int(str(value), 10)
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}: expected a whole number") from None
    if not 0 <= number <= 20:
        raise InvalidInput(f"invalid {what} {number}: must be between 0 and 20")
    return number


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    check: Callable[[object, str], Any]
    help: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("max_concurrent", 4, _positive_int, "agents that may run at the same time"),
        Setting("timeout", 3600.0, parse_duration, "default wall-clock limit per task run (seconds, or 30m, 2h)"),
        Setting("claude_binary", "claude", _string, "the Claude Code executable (ORCHESTRA_CLAUDE overrides)"),
        Setting("claude_args", [], _string_list, "extra arguments passed to every claude run"),
        Setting("autostart", True, _bool, "submit starts a background scheduler when none is running"),
        Setting("branch_prefix", "orchestra/", _branch_prefix, "prefix of task branch names"),
        Setting("max_attempts", 3, _positive_int, "runs a task may get when its agent dies (crash recovery)"),
        Setting("kill_grace", 10.0, parse_duration, "seconds between SIGTERM and SIGKILL when stopping an agent"),
        Setting("idle_exit", 300.0, parse_duration, "an autostarted scheduler exits after this long with nothing to do"),
        Setting("gate", None, _string, "command run (sh -c) in the merged tree before a merge moves its target, e.g. 'pytest -q'"),
        Setting("gate_timeout", 1800.0, parse_duration, "wall-clock limit of the gate command"),
        Setting("revision_rounds", 2, _count, "revision rounds a workflow gets after a reviewer requests changes"),
        Setting("merge_strategy", "merge", _merge_strategy, "how workflows merge: merge, squash or ff-only"),
        Setting("merge_resolve", False, _bool, "on a merge conflict, start an implementer to resolve it and retry"),
    )
}


@dataclass
class Config:
    values: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def __getattr__(self, name: str) -> Any:
        if name in SETTINGS:
            return self.values.get(name, SETTINGS[name].default)
        raise AttributeError(name)

    @property
    def claude_binary_resolved(self) -> str:
        return os.environ.get(CLAUDE_ENV) or self.claude_binary


def validate(name: str, value: object) -> Any:
    setting = SETTINGS.get(name)
    if setting is None:
        raise InvalidInput(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}")
    return setting.check(value, name)


def load_config(path: Path) -> Config:
    """Read config.toml; a missing file means defaults, a bad one is an error naming it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config(source=None)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            continue  # tables (roles, workflows) are read by their own modules
        try:
            values[key] = validate(key, value)
        except InvalidInput as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return Config(values=values, source=path)

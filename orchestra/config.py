"""Repository settings from `.orchestra/config.toml`.

Settings are declared once, with their type and a check, so that loading the
file, `config get/set` and the MCP server all validate the same way and a bad
value is reported with the file and the key.
"""

from __future__ import annotations

import json
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


def _whole(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip(), 10)
        except ValueError:
            raise InvalidInput(f"invalid {what} {value!r}: expected a whole number") from None
    if value < minimum:
        raise InvalidInput(f"invalid {what} {value!r}: must be at least {minimum}")
    return value


def _positive_int(value: object, what: str) -> int:
    return _whole(value, what, 1)


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


def _count(value: object, what: str) -> int:
    """A whole number that may be zero (e.g. "no retries")."""
    return _whole(value, what, 0)


def _optional_string(value: object, what: str) -> str:
    """A command or similar that may be empty, meaning "none"."""
    if not isinstance(value, str):
        raise InvalidInput(f"invalid {what} {value!r}: expected a string")
    if "\0" in value:
        raise InvalidInput(f"invalid {what}: contains a NUL byte")
    return value.strip()


def _relative_paths(value: object, what: str) -> list[str]:
    """Repository-relative paths (a TOML array, or a space-separated string on the command line)."""
    paths = _string_list(value, what)
    for p in paths:
        parts = Path(p).parts
        if not p.strip() or Path(p).is_absolute() or ".." in parts or "\0" in p or p.strip() in (".", "./"):
            raise InvalidInput(f"invalid {what} entry {p!r}: use paths relative to the repository root, inside it")
        if parts and parts[0] in (".git", ".orchestra"):
            raise InvalidInput(f"invalid {what} entry {p!r}: orchestra's and git's own state cannot be copied")
    return paths


def _permission_mode(value: object, what: str) -> str:
    from orchestra.roles import PERMISSION_MODES

    text = _string(value, what).strip()
    if text != "role" and text not in PERMISSION_MODES:
        raise InvalidInput(f"invalid {what} {text!r}: use 'role' (each role's own) or one of {', '.join(PERMISSION_MODES)}")
    return text


def _branch_prefix(value: object, what: str) -> str:
    text = _string(value, what)
    if not _BRANCH_PREFIX.match(text) or ".." in text or "//" in text or text.endswith(".lock"):
        raise InvalidInput(f"invalid {what} {text!r}: letters, digits, '.', '_', '-' and '/' only")
    return text


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
        Setting("permission_prompts", True, _bool, "tool uses that need approval wait for 'orchestra respond' (false: denied at once)"),
        Setting("permission_timeout", 1800.0, parse_duration, "an unanswered permission request is denied after this long"),
        Setting("permission_mode", "role", _permission_mode, "permission mode for every role ('role' keeps each role's own; bypassPermissions as root needs IS_SANDBOX=1)"),
        Setting("api_retries", 4, _count, "times a task is re-run after a transient API failure (429, 529, 5xx, timeouts)"),
        Setting("api_backoff", 30.0, parse_duration, "wait before the first re-run after a transient API failure; doubles each time"),
        Setting("api_backoff_max", 900.0, parse_duration, "the longest wait between re-runs after transient API failures"),
        Setting("rate_limit_burst", 3, _positive_int, "rate-limited runs within rate_limit_window that pause all new starts"),
        Setting("rate_limit_window", 60.0, parse_duration, "the window in which rate-limited runs are counted"),
        Setting("rate_limit_pause", 120.0, parse_duration, "how long new starts pause after a burst of rate limits"),
        Setting("copy", [], _relative_paths, "untracked files copied from the main worktree into each new task worktree"),
        Setting("setup", "", _optional_string, "a shell command run in each new task worktree before the agent starts"),
        Setting("setup_timeout", 600.0, parse_duration, "the longest the setup command may run"),
        Setting("on_event", "", _optional_string, "a shell command run when a task needs input, succeeds, fails or times out"),
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


def require_setting(name: str) -> Setting:
    setting = SETTINGS.get(name)
    if setting is None:
        raise InvalidInput(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}")
    return setting


def validate(name: str, value: object) -> Any:
    return require_setting(name).check(value, name)


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


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise InvalidInput(f"cannot store {value!r} in config.toml")


def set_in_file(path: Path, key: str, value: object) -> None:
    """Replace or add one top-level `key = value` line, keeping the rest of the file as it is."""
    from orchestra.fileio import write_atomic

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    new_line = f"{key} = {toml_value(value)}"
    first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i in range(first_table):
        if pattern.match(lines[i]):
            lines[i] = new_line
            break
    else:
        lines.insert(first_table, new_line)
    text = "\n".join(lines) + "\n"
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: refusing to write invalid TOML: {exc}") from None
    write_atomic(path, text.encode("utf-8"))

"""Repository settings from `.orchestra/config.toml`.

Settings are declared once, with their type and a check, so that loading the
file, `config get/set` and the MCP server all validate the same way and a bad
value is reported with the file and the key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.core import tomlfile
from orchestra.core import values as v
from orchestra.core.errors import ConfigError, InvalidInput
from orchestra.core.values import did_you_mean, parse_duration

CLAUDE_ENV = "ORCHESTRA_CLAUDE"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    check: Callable[[object, str], Any]
    help: str
    # Runs commands or widens what agents may do: changed by a person (config.toml, the CLI), never over MCP.
    privileged: bool = False


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("max_concurrent", 4, v.positive_int, "agents that may run at the same time"),
        Setting(
            "max_waiting",
            4,
            v.count,
            "agents waiting for a person that hold no slot of max_concurrent; more than this count against it",
        ),
        Setting("timeout", 3600.0, parse_duration, "default wall-clock limit per task run (seconds, or 30m, 2h)"),
        Setting("claude_binary", "claude", v.string, "the Claude Code executable (ORCHESTRA_CLAUDE overrides)", True),
        Setting("claude_args", [], v.string_list, "extra arguments passed to every claude run", True),
        Setting("autostart", True, v.boolean, "submit starts a background scheduler when none is running"),
        Setting("branch_prefix", "orchestra/", v.branch_prefix, "prefix of task branch names"),
        Setting("max_attempts", 3, v.positive_int, "runs a task may get when its agent dies (crash recovery)"),
        Setting("kill_grace", 10.0, parse_duration, "seconds between SIGTERM and SIGKILL when stopping an agent"),
        Setting(
            "idle_exit", 300.0, parse_duration, "an autostarted scheduler exits after this long with nothing to do"
        ),
        Setting(
            "permission_prompts",
            True,
            v.boolean,
            "tool uses that need approval wait for 'orchestra respond' (false: denied at once)",
            True,
        ),
        Setting(
            "permission_timeout", 1800.0, parse_duration, "an unanswered permission request is denied after this long"
        ),
        Setting(
            "permission_mode",
            "role",
            v.permission_mode,
            "permission mode for every role ('role' keeps each role's own; bypassPermissions as root needs IS_SANDBOX=1)",
            True,
        ),
        Setting(
            "sandbox",
            "required",
            v.sandbox_mode,
            "'required': agents run in Claude Code's sandbox (needs bubblewrap and socat) or not at all; "
            "'off': unconfined, with a shorter allow list",
            True,
        ),
        Setting(
            "sandbox_allow_write",
            [],
            v.absolute_paths,
            "absolute paths sandboxed commands may also write (e.g. ~/.cache/pip); the task's checkout always",
            True,
        ),
        Setting(
            "sandbox_allow_domains",
            [],
            v.domains,
            "hosts sandboxed commands may reach (e.g. pypi.org); none by default",
            True,
        ),
        Setting(
            "api_retries",
            4,
            v.small_count,
            "times a task is re-run after a transient API failure (429, 529, 5xx, timeouts); not counted in max_attempts",
        ),
        Setting(
            "api_backoff",
            30.0,
            parse_duration,
            "wait before the first re-run after a transient API failure; doubles each time",
        ),
        Setting(
            "api_backoff_max", 900.0, parse_duration, "the longest wait between re-runs after transient API failures"
        ),
        Setting(
            "rate_limit_burst",
            3,
            v.positive_int,
            "rate-limited runs within rate_limit_window that pause all new starts",
        ),
        Setting("rate_limit_window", 60.0, parse_duration, "the window in which rate-limited runs are counted"),
        Setting("rate_limit_pause", 120.0, parse_duration, "how long new starts pause after a burst of rate limits"),
        Setting(
            "copy",
            [],
            v.relative_paths,
            "untracked files copied from the main worktree into each new task worktree",
            True,
        ),
        Setting(
            "setup",
            "",
            v.optional_string,
            "a shell command run in each new task worktree before the agent starts; the new files it makes "
            "are never committed",
            True,
        ),
        Setting("setup_timeout", 600.0, parse_duration, "the longest the setup command may run"),
        Setting(
            "on_event",
            "",
            v.optional_string,
            "a shell command run when a task needs input, succeeds, fails or times out",
            True,
        ),
        Setting(
            "budget_usd",
            0.0,
            v.usd_limit,
            "no new task starts once the repo's total spend reaches this (USD; 0: no limit)",
        ),
        Setting(
            "gate",
            "",
            v.optional_string,
            "command run (sh -c) in the merged tree before a merge moves its target, e.g. 'pytest -q'",
            True,
        ),
        Setting("gate_timeout", 1800.0, parse_duration, "wall-clock limit of the gate command"),
        Setting(
            "revision_rounds", 2, v.small_count, "revision rounds a workflow gets after a reviewer requests changes"
        ),
        Setting("executor", "local", v.executor, "where agents run: local (this machine) or ray (a Ray cluster)", True),
        Setting(
            "ray_address",
            "",
            v.ray_address,
            "the Ray cluster's GCS address HOST:PORT, for executor = ray (ray://HOST:PORT for Ray Client)",
            True,
        ),
        Setting(
            "ray_env",
            [],
            v.env_names,
            "names of environment variables forwarded to agents on Ray nodes (never sent by default)",
            True,
        ),
        Setting(
            "ray_git_remote",
            "",
            v.git_remote,
            "a git URL the coordinator and every Ray node can reach: the repository travels through it "
            "instead of Ray's object store (empty: packs through Ray)",
            True,
        ),
        Setting(
            "resources",
            {},
            v.resources,
            'custom Ray resources every task asks for, as JSON, e.g. {"gpu_box": 1} (executor = ray)',
        ),
        Setting("merge_strategy", "merge", v.merge_strategy, "how workflows merge: merge, squash, ff-only or pr"),
        Setting("merge_resolve", False, v.boolean, "on a merge conflict, start an implementer to resolve it and retry"),
        Setting(
            "merge_approval",
            False,
            v.boolean,
            "workflows stop at awaiting_merge until a person approves with 'orchestra merge WF'",
            True,
        ),
        Setting(
            "tui_bell", True, v.boolean, "orchestra tui rings the terminal bell when a task starts waiting for you"
        ),
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
        return os.environ.get(CLAUDE_ENV) or str(self.claude_binary)

    @property
    def executor_name(self) -> str:
        return str(self.values.get("executor", "local"))

    @property
    def ray_env_names(self) -> list[str]:
        return list(self.values.get("ray_env", []))


def require_setting(name: str) -> Setting:
    setting = SETTINGS.get(name)
    if setting is None:
        raise InvalidInput(f"unknown setting {name!r}{did_you_mean(name, SETTINGS)}; known: {', '.join(SETTINGS)}")
    return setting


def validate(name: str, value: object) -> Any:
    return require_setting(name).check(value, name)


# Settings that bound one another: the first may not be above the second.
ORDERED = (("api_backoff", "api_backoff_max"),)


def check_together(values: dict[str, Any], changed: str | None = None) -> None:
    """Refuse settings that contradict each other, naming the one just changed (`changed`) when it is one of them.

    Each value is fine alone; only together do they say something impossible, like a longest wait
    shorter than the first.
    """
    for low, high in ORDERED:
        lo = values.get(low, SETTINGS[low].default)
        hi = values.get(high, SETTINGS[high].default)
        if lo > hi:
            if changed == low:
                raise InvalidInput(f"invalid {low} {lo:g}: must be at most {high} ({hi:g}); raise {high} first")
            raise InvalidInput(f"invalid {high} {hi:g}: must be at least {low} ({lo:g})")


def parse_settings(text: str, where: object) -> tuple[dict[str, Any], dict[str, str]]:
    """The valid top-level settings of a config.toml text, and what is wrong with each other key.

    Invalid TOML is a ConfigError naming `where`: no key of it can be trusted.
    """
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for key, value in tomlfile.loads(text, where).items():
        if isinstance(value, dict) and key not in SETTINGS:
            continue  # tables (roles, workflows) are read by their own modules
        try:
            values[key] = validate(key, value)
        except InvalidInput as exc:
            problems[key] = str(exc)
    return values, problems


def read_config_text(path: Path) -> str | None:
    """config.toml's text; None when there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_config(path: Path) -> Config:
    """Read config.toml; a missing file means defaults, a bad one is an error naming it."""
    text = read_config_text(path)
    if text is None:
        return Config(source=None)
    values, problems = parse_settings(text, path)
    try:
        for problem in problems.values():
            raise InvalidInput(problem)
        check_together(values)
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
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise InvalidInput(f"cannot store {value!r} in config.toml")


def with_setting(text: str, key: str, value: object, where: object = "config.toml") -> str:
    """The file's text with one top-level `key = value` line replaced or added, the rest kept as it is.

    `value` None takes the key's lines out instead: the setting goes back to its default.
    """
    lines = text.splitlines()
    new_line = None if value is None else f"{key} = {toml_value(value)}"
    first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    found = [i for i in range(first_table) if pattern.match(lines[i])]
    if new_line is None:
        lines = [line for i, line in enumerate(lines) if i not in found]
    elif found:
        lines[found[0]] = new_line
    else:
        lines.insert(first_table, new_line)
    out = "\n".join(lines) + "\n"
    problem = tomlfile.parse(out)[1]
    if problem is not None:
        raise ConfigError(f"{where}: refusing to write invalid TOML: {problem}")
    return out

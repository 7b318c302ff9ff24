"""The value types settings, roles and commands share: durations, money, counts, names.

Each check takes the raw value (TOML, a command-line string or a model's JSON) and the
name it goes by, and returns the value or raises InvalidInput naming both, so every
front end refuses bad input with the same words.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from pathlib import PurePosixPath

from orchestra.core.errors import InvalidInput

PERMISSION_MODES = ("default", "acceptEdits", "bypassPermissions", "dontAsk", "plan")
MERGE_STRATEGIES = ("merge", "squash", "ff-only", "pr")  # pr: push the branch and open a pull request
SANDBOX_MODES = ("required", "off")
PRIORITY_RANGE = (-1000, 1000)

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")  # a sign, to say what is wrong with it
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
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidInput(f"invalid {what} {value!r}: must be greater than zero")
    return seconds


def parse_usd(value: object, what: str = "budget") -> float:
    """A positive amount of US dollars, as `2`, `0.5` or `$1.25`."""
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {what}: {value!r}")
    text: float | str = value if isinstance(value, (int, float)) else str(value).strip().removeprefix("$")
    try:
        amount = float(text)
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}: expected an amount in USD, like 2 or 0.50") from None
    if not amount > 0 or amount != amount or amount == float("inf"):
        raise InvalidInput(f"invalid {what} {value!r}: must be a positive amount in USD")
    return round(amount, 6)


def usd_limit(value: object, what: str) -> float:
    """Like parse_usd, but 0 means no limit (TOML has no null to unset a key with)."""
    if not isinstance(value, bool) and str(value).strip().removeprefix("$") in ("0", "0.0", "0.00"):
        return 0.0
    return parse_usd(value, what)


def whole(value: object, what: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {what} {value!r}: expected a whole number")
    if not isinstance(value, int):
        try:
            value = int(str(value).strip(), 10)
        except ValueError:
            raise InvalidInput(f"invalid {what} {value!r}: expected a whole number") from None
    if maximum is not None and not minimum <= value <= maximum:
        raise InvalidInput(f"invalid {what} {value}: must be between {minimum} and {maximum}")
    if value < minimum:
        raise InvalidInput(f"invalid {what} {value!r}: must be at least {minimum}")
    return value


def positive_int(value: object, what: str) -> int:
    return whole(value, what, 1)


def count(value: object, what: str) -> int:
    """A number of things that may be zero."""
    return whole(value, what, 0)


def small_count(value: object, what: str) -> int:
    """A count of retries or rounds: zero is allowed, and more than 20 is surely a typo."""
    return whole(value, what, 0, 20)


def boolean(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise InvalidInput(f"invalid {what} {value!r}: expected true or false")


def string(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"invalid {what} {value!r}: expected a non-empty string")
    if "\0" in value:
        raise InvalidInput(f"invalid {what}: contains a NUL byte")
    return value


def optional_string(value: object, what: str) -> str:
    """A setting's command or address that may be empty, meaning "none".

    `null` and `none` are what people type to turn a setting off; stored, they would run as a
    command named null, so they are refused with the way that works.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"invalid {what} {value!r}: expected a string")
    if "\0" in value:
        raise InvalidInput(f"invalid {what}: contains a NUL byte")
    if value.strip().lower() in ("null", "none"):
        raise InvalidInput(f"invalid {what} {value.strip()!r}: to turn {what} off, use 'orchestra config unset {what}'")
    return value.strip()


def string_list(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        value = shlex.split(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"invalid {what} {value!r}: expected a list of strings")
    if any("\0" in v for v in value):
        raise InvalidInput(f"invalid {what}: contains a NUL byte")
    return list(value)


_RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
EXECUTORS = ("local", "ray")


def resources(value: object, what: str = "resources") -> dict[str, float]:
    """Custom Ray resources a task asks for, e.g. {"gpu_box": 1}: names to positive amounts.

    A JSON object in a string (as `submit --resources` gives it) or a table. `orchestra_agent`
    is orchestra's own slot resource: every agent takes exactly one, so it cannot be asked for.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise InvalidInput(f'invalid {what} {value!r}: expected a JSON object like {{"gpu_box": 1}}') from None
    if not isinstance(value, dict):
        raise InvalidInput(f"invalid {what} {value!r}: expected an object of resource names to amounts")
    out: dict[str, float] = {}
    for name, amount in value.items():
        if not isinstance(name, str) or not _RESOURCE_NAME.match(name):
            raise InvalidInput(f"invalid {what}: bad resource name {name!r}")
        if name in ("orchestra_agent", "CPU", "GPU", "memory", "object_store_memory"):
            raise InvalidInput(f"invalid {what}: {name!r} is set by orchestra or Ray, not per task")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount <= 10_000:
            raise InvalidInput(f"invalid {what}: {name} must be a number above 0")
        out[name] = float(amount)
    return out


def executor(value: object, what: str) -> str:
    if value not in EXECUTORS:
        raise InvalidInput(f"invalid {what} {value!r}: expected one of {', '.join(EXECUTORS)}")
    return str(value)


def env_names(value: object, what: str) -> list[str]:
    """Names of environment variables (never their values: those stay in the coordinator's environment)."""
    names = string_list(value, what)
    for name in names:
        if not _ENV_NAME.match(name):
            raise InvalidInput(f"invalid {what}: {name!r} is not an environment variable name")
    return names


def ray_address(value: object, what: str) -> str:
    """HOST:PORT of a Ray cluster's GCS (or ray://HOST:PORT for Ray Client); empty means not set."""
    text = optional_string(value, what)
    if text and not re.match(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$", text):
        raise InvalidInput(f"invalid {what} {text!r}: expected HOST:PORT, e.g. 10.0.0.5:6379")
    return text


_GIT_SCHEMES = ("ssh", "git+ssh", "ssh+git", "git", "http", "https", "file")
_SCP_LIKE = re.compile(r"^(?:[^@/:\s]+@)?([^@/:\s]+):(?!//)\S")


def git_remote(value: object, what: str) -> str:
    """A git URL both the coordinator and every node can reach (empty: none).

    The value reaches `git push` and `git fetch` as an argument, so what git would read as an
    option (a leading `-`, also as an ssh host) or as a remote helper that runs commands
    (`ext::`, `fd::`, any `helper::address`) is refused, and so are control characters. A
    relative path is refused too: the coordinator and each node would resolve it differently.
    A password in the URL is refused: the setting travels to the nodes, and each machine uses
    its own credentials.
    """
    text = optional_string(value, what)
    if not text:
        return ""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInput(f"invalid {what} {text!r}: contains a control character")
    if text.startswith("-"):
        raise InvalidInput(f"invalid {what} {text!r}: a git URL cannot start with '-'")
    if "::" in text.split("/", 1)[0] or text.lower().startswith(("ext::", "fd::")):
        raise InvalidInput(f"invalid {what} {text!r}: remote helpers (ext::, fd::, NAME::) are not allowed")
    scheme, sep, rest = text.partition("://")
    if sep:
        if scheme.lower() not in _GIT_SCHEMES:
            raise InvalidInput(f"invalid {what} {text!r}: use one of {', '.join(s + '://' for s in _GIT_SCHEMES)}")
        userinfo, _, host = rest.split("/", 1)[0].rpartition("@")
        if ":" in userinfo:
            raise InvalidInput(
                f"invalid {what}: a password in the URL would travel to every node; "
                "use each machine's own credential helper or ssh key"
            )
        if host.startswith("-") or (scheme.lower() != "file" and not host):
            raise InvalidInput(f"invalid {what} {text!r}: bad host {host!r}")
        return text
    if text.startswith("/"):
        return text
    m = _SCP_LIKE.match(text)
    if m and not m.group(1).startswith("-"):
        return text
    raise InvalidInput(
        f"invalid {what} {text!r}: expected a git URL (ssh://, https://, file:///…, user@host:path) or an absolute path"
    )


def relative_paths(value: object, what: str) -> list[str]:
    """Repository-relative paths (a TOML array, or a space-separated string on the command line)."""
    paths = string_list(value, what)
    for p in paths:
        parts = PurePosixPath(p).parts
        if not p.strip() or PurePosixPath(p).is_absolute() or ".." in parts or p.strip() in (".", "./"):
            raise InvalidInput(f"invalid {what} entry {p!r}: use paths relative to the repository root, inside it")
        if parts and parts[0] in (".git", ".orchestra"):
            raise InvalidInput(f"invalid {what} entry {p!r}: orchestra's and git's own state cannot be copied")
    return paths


def absolute_paths(value: object, what: str) -> list[str]:
    """Absolute directories (or ~/...), as Claude Code's sandbox takes them: it ignores relative paths and globs."""
    paths = string_list(value, what)
    for p in paths:
        if (
            not (p.startswith("/") or p.startswith("~/"))
            or any(c in p for c in "*?[")
            or ".." in PurePosixPath(p).parts
        ):
            raise InvalidInput(
                f"invalid {what} entry {p!r}: use an absolute path or one under ~/, without globs or '..' "
                "(Claude Code's sandbox ignores anything else)"
            )
        if p.rstrip("/") in ("", "~"):
            raise InvalidInput(
                f"invalid {what} entry {p!r}: it would let agents write everywhere there, your repository "
                'and orchestra\'s own state included; name the directories they need (set sandbox = "off" '
                "to run them unconfined on purpose)"
            )
    return paths


_DOMAIN = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


def domains(value: object, what: str) -> list[str]:
    """Host names like registry.npmjs.org or *.pythonhosted.org."""
    names = string_list(value, what)
    for name in names:
        if not _DOMAIN.match(name):
            raise InvalidInput(f"invalid {what} entry {name!r}: expected a host name, e.g. pypi.org or *.example.com")
    return names


def permission_mode(value: object, what: str) -> str:
    text = string(value, what).strip()
    if text != "role" and text not in PERMISSION_MODES:
        raise InvalidInput(
            f"invalid {what} {text!r}: use 'role' (each role's own) or one of {', '.join(PERMISSION_MODES)}"
        )
    return text


def branch_prefix(value: object, what: str) -> str:
    text = string(value, what)
    if not _BRANCH_PREFIX.match(text) or ".." in text or "//" in text or text.endswith(".lock"):
        raise InvalidInput(f"invalid {what} {text!r}: letters, digits, '.', '_', '-' and '/' only")
    return text


def merge_strategy(value: object, what: str) -> str:
    """The merge_strategy setting."""
    if value not in MERGE_STRATEGIES:
        raise InvalidInput(f"invalid {what} {value!r}: use one of {', '.join(MERGE_STRATEGIES)}")
    return str(value)


def sandbox_mode(value: object, what: str) -> str:
    """The sandbox setting: 'required' (agents run in Claude Code's sandbox or not at all) or 'off'."""
    if value not in SANDBOX_MODES:
        raise InvalidInput(
            f"invalid {what} {value!r}: use 'required' (agents run sandboxed, and do not start without "
            "bubblewrap and socat) or 'off' (agents run unconfined)"
        )
    return str(value)


def known_merge_strategy(value: object) -> str:
    """A strategy asked for by one merge (`--strategy`, the MCP `merge` tool)."""
    if value not in MERGE_STRATEGIES:
        raise InvalidInput(f"unknown merge strategy {value!r}; use one of {', '.join(MERGE_STRATEGIES)}")
    return str(value)


def priority(value: object) -> int:
    low, high = PRIORITY_RANGE
    return whole(value, "priority", low, high)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a known word is close enough to be the one meant, else nothing."""
    import difflib  # only a refused word pays for it

    close = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""

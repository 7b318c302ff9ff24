"""Reading and changing the repository's settings (`orchestra config`, MCP configure_orchestrator)."""

from __future__ import annotations

import contextlib
from typing import Any

from orchestra.core.config import (
    SETTINGS,
    Setting,
    check_together,
    load_config,
    parse_settings,
    read_config_text,
    require_setting,
    validate,
    with_setting,
)
from orchestra.core.errors import ConfigError, InvalidInput
from orchestra.engine.context import Context
from orchestra.store.settings import rewrite_config


def listing(ctx: Context) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "value": getattr(ctx.config, name),
            "default": setting.default,
            "set": name in ctx.config.values,
            "help": setting.help,
            "privileged": setting.privileged,
        }
        for name, setting in SETTINGS.items()
    }


def get(ctx: Context, key: str) -> Any:
    return getattr(ctx.config, require_setting(key.strip()).name)


def set_value(ctx: Context, key: str, value: object, *, by_person: bool = True) -> Any:
    """Validate, then rewrite only that line of config.toml (comments and tables survive).

    `by_person=False` (a model over MCP) may change only settings that cannot run commands or
    widen what agents may do; the privileged ones are a person's to change.
    """
    name = key.strip()
    _may_change(require_setting(name), by_person, f"orchestra config set {name} VALUE")
    checked = validate(name, value)
    _rewrite(ctx, name, checked)
    return checked


def unset(ctx: Context, key: str, *, by_person: bool = True) -> Any:
    """Take a setting out of config.toml, so its default applies again; returns that default.

    The one way to turn an optional setting off, and to get rid of a key the file has wrong
    (an invalid value, or a name orchestra does not know) when nothing else can be loaded.
    """
    name = key.strip()
    setting = SETTINGS.get(name)
    if setting is None:
        text = read_config_text(ctx.paths.config) or ""
        if name not in parse_settings(text, ctx.paths.config)[1]:
            require_setting(name)  # refuses it, with a suggestion
    else:
        _may_change(setting, by_person, f"orchestra config unset {name}")
    _rewrite(ctx, name, None)
    return None if setting is None else setting.default


def _may_change(setting: Setting, by_person: bool, command: str) -> None:
    if setting.privileged and not by_person:
        raise InvalidInput(
            f"{setting.name} can run commands or widen what agents may do, so it is not changed over MCP; "
            f"a person changes it with '{command}' or in .orchestra/config.toml"
        )


def _rewrite(ctx: Context, name: str, value: object) -> None:
    """Write `name = value` (None: remove it).

    When config.toml does not load, a change to a key it has wrong is a repair and goes ahead
    (each bad key can be mended in turn); a change to a sound key is refused with the file's
    error, as every other command would refuse, and the file is left as it is.
    """
    where = ctx.paths.config

    def change(text: str) -> str:
        values, problems = parse_settings(text, where)
        if problems and name not in problems:
            raise ConfigError(f"{where}: {next(iter(problems.values()))}")
        values.pop(name, None)
        if value is not None:
            values[name] = value
        check_together(values, changed=name)
        return with_setting(text, name, value, where=where)

    rewrite_config(ctx.store, change)
    with contextlib.suppress(ConfigError):  # another key may still be wrong: the next command says which
        ctx.config = load_config(where)

"""Reading and changing the repository's settings (`orchestra config`, MCP configure_orchestrator)."""

from __future__ import annotations

from typing import Any

from orchestra.core.config import SETTINGS, load_config, require_setting, validate
from orchestra.core.errors import InvalidInput
from orchestra.engine.context import Context
from orchestra.store.settings import write_setting


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
    setting = require_setting(name)
    if setting.privileged and not by_person:
        raise InvalidInput(
            f"{name} can run commands or widen what agents may do, so it is not changed over MCP; "
            f"a person changes it with 'orchestra config set {name} VALUE' or in .orchestra/config.toml"
        )
    checked = validate(name, value)
    write_setting(ctx.store, name, checked)
    ctx.config = load_config(ctx.paths.config)
    return checked

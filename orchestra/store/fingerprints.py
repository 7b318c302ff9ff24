"""The fingerprints of secret values agents ran with (never the values), for every reader's masking."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from orchestra.core import redact
from orchestra.store.files import read_json, write_atomic
from orchestra.store.paths import Paths


def record(paths: Paths, values: Iterable[str]) -> dict[str, object]:
    """Add these values' fingerprints (the scheduler calls this with its environment's secrets); returns all."""
    values = list(values)
    old = read_json(paths.fingerprints)
    merged = redact.merge_fingerprints(old if isinstance(old, dict) else None, values)
    if merged != old:
        paths.ensure()
        write_atomic(paths.fingerprints, json.dumps(merged).encode())
    return merged


def add_known(paths: Paths, made: object) -> dict[str, object]:
    """Add fingerprints made elsewhere with this repository's salt (a Ray node's own secrets); returns all.

    The caller serialises calls: this is a read-modify-write of the file."""
    old = read_json(paths.fingerprints)
    old = old if isinstance(old, dict) else record(paths, [])
    merged = redact.merge_hashes(old, made)
    if merged != old:
        write_atomic(paths.fingerprints, json.dumps(merged).encode())
    return merged


def salt(paths: Paths) -> str:
    """The salt this repository's fingerprints are made with (made now if there are none yet)."""
    data = read_json(paths.fingerprints)
    if not isinstance(data, dict) or not isinstance(data.get("salt"), str):
        data = record(paths, [])
    return str(data["salt"])


def install_for_reading(paths: Paths, env_values: Iterable[str] | None = None) -> redact.Redactor:
    """This process masks what its own environment knows plus what agents of this repo ran with.

    `env_values` defaults to this process's own secret-looking variables: a command that runs the
    user's gate or hook with them (`orchestra merge`) masks their output even before any scheduler
    recorded them. Readers never depend on them: the fingerprints cover what agents ran with.
    """
    if env_values is None:
        env_values = redact.secret_values(os.environ)
    data = read_json(paths.fingerprints)
    redactor = redact.Redactor(env_values, data if isinstance(data, dict) else None)
    redact.install(redactor)
    return redactor

"""The fleet-wide pause after a burst of rate limits, kept in `.orchestra/ratelimit.json`."""

from __future__ import annotations

import json
from typing import Any

from orchestra.core.config import Config
from orchestra.core.task import now
from orchestra.store.files import read_json, write_atomic
from orchestra.store.paths import Paths


def record_rate_limit(paths: Paths, config: Config, at: float | None = None) -> float | None:
    """Count one rate-limited run; returns the pause end when this one starts a pause.

    The caller holds the store lock, which also guards this file.
    """
    at = now() if at is None else at
    data = _read(paths)
    window = float(config.rate_limit_window)
    hits = [h for h in data.get("hits", []) if isinstance(h, (int, float)) and at - h < window]
    hits.append(at)
    data["hits"] = hits
    started = None
    if len(hits) >= int(config.rate_limit_burst) and (data.get("paused_until") or 0) < at:
        started = round(at + float(config.rate_limit_pause), 3)
        data["paused_until"] = started
        data["hits"] = []
    write_atomic(paths.rate_limits, json.dumps(data).encode())
    return started


def paused_until(paths: Paths, at: float | None = None) -> float | None:
    """When new starts resume, or None when they are not paused."""
    until = _read(paths).get("paused_until")
    at = now() if at is None else at
    return float(until) if isinstance(until, (int, float)) and until > at else None


def _read(paths: Paths) -> dict[str, Any]:
    data = read_json(paths.rate_limits)
    return data if isinstance(data, dict) else {}

"""What the model tabs read about one model: its devices by name, its fields, its raw data.

The tabs name devices (people think in names, the store keys by id) and show times in UTC;
these few readers keep that in one place so every tab agrees.
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def utc_text(ms: int | None) -> str:
    """``2026-11-20 13:05`` (UTC) or ``""``."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def duration_text(ms: int | None) -> str:
    """A short duration: ``850 ms``, ``42 s``, ``12 min``, ``3.5 h``, ``2.0 d``."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{int(ms)} ms"
    if ms < 60_000:
        return f"{ms / 1000:.0f} s"
    if ms < HOUR_MS:
        return f"{ms / 60_000:.0f} min"
    if ms < 2 * DAY_MS:
        return f"{ms / HOUR_MS:.1f}".removesuffix(".0") + " h"
    return f"{ms / DAY_MS:.1f}".removesuffix(".0") + " d"


def profile_devices(platform, model) -> dict[str, str]:
    """``{device id: name}`` of every device of the model's profile (its tenant only), by name."""
    devices, _ = platform.registry.list_devices(model.tenant_id, type=model.config.device_type or None,
                                                page_size=100_000)
    return {d.id: d.name for d in sorted(devices, key=lambda d: d.name)}


def model_fields(platform, model, trained=None) -> list[str]:
    """The fields the model scores: the trained ones, else the configured ones."""
    if trained is not None:
        return list(trained.fields)
    return list(model.config.fields)


def item_arrays(platform, item: str, fields: list[str], start: int, end: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Numeric points of ``fields`` of one device in ``[start, end)``."""
    return platform.store.numeric_arrays(item, list(fields) or None, int(start), int(end))

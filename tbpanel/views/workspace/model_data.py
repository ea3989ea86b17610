"""What the model tabs read about one model: its devices by name, its fields, its raw data.

The tabs name devices (people think in names, the store keys by id) and show times in UTC;
these few readers keep that in one place so every tab agrees.
"""

from __future__ import annotations

import numpy as np


def profile_devices(platform, model) -> dict[str, str]:
    """``{device id: name}`` of every device of the model's profile (its tenant only), by name."""
    devices = platform.registry.all_devices(model.tenant_id, type=model.config.device_type or None)
    return {d.id: d.name for d in devices}


def model_fields(platform, model, trained=None) -> list[str]:
    """The fields the model scores: the trained ones, else the configured ones."""
    if trained is not None:
        return list(trained.fields)
    return list(model.config.fields)


def item_arrays(
    platform, item: str, fields: list[str], start: int, end: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Numeric points of ``fields`` of one device in ``[start, end)``."""
    return platform.store.numeric_arrays(item, list(fields) or None, int(start), int(end))

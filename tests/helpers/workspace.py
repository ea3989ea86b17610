"""A small pump fleet with planted spikes, and a model built on it: what the workspace view
model and view tests share."""

from __future__ import annotations

import numpy as np

from tbpanel.anomaly.config import ModelConfig
from tbpanel.store import ValueType

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_767_225_600_000  # 2026-01-01 UTC


def write(platform, device, seed, start, end, step=MIN, keys=("vibration",), spike_at=None):
    ts = np.arange(start, end, step, dtype=np.int64)
    rng = np.random.default_rng(seed)
    points = []
    for k in keys:
        values = 10 + 2 * np.sin(2 * np.pi * (ts % DAY) / DAY) + rng.normal(0, 0.1, len(ts))
        if spike_at is not None:
            values[(ts >= spike_at) & (ts < spike_at + 2 * HOUR)] += 7.0
        points += [(device, k, int(t), ValueType.DOUBLE, float(v)) for t, v in zip(ts.tolist(), values.tolist())]
    platform.store.write_points(points)


def built(platform, tenant, name="vib", **overrides):
    cfg = ModelConfig(
        name=name,
        device_type="pump",
        fields=["vibration"],
        train_start=T0,
        train_end=T0 + 7 * DAY,
        window="fixed",
        segment_ms=HOUR,
        **overrides,
    )
    model = platform.anomaly.create_model(tenant.id, cfg)
    assert platform.tasks.wait(platform.anomaly.build(model.id).id, timeout=120).status == "DONE"
    return platform.anomaly.get_model(model.id)

"""Which field drove an anomaly (``field_contributions``): a spike planted in one of three fields
is attributed to that field, for every comparison, distance and algorithm."""

from __future__ import annotations

import numpy as np
import pytest

from tbpanel.anomaly import ModelConfig, assemble, fit
from tbpanel.anomaly.explain import field_contributions

STEP = 300_000  # 5-minute data
HOUR = 3_600_000
DAY = 24 * HOUR
TRAIN_END = 4 * DAY
FIELDS = ["a", "b", "c"]


def item(spiked: str | None, at: int = 5 * DAY + 7 * HOUR):
    """Three fields with their own periods and noise; ``spiked`` jumps by 5 for two hours at ``at``."""
    rng = np.random.default_rng(7)
    ts = np.arange(0, 7 * DAY, STEP, dtype=np.int64)
    out = {}
    for k, f in enumerate(FIELDS):
        v = np.sin(2 * np.pi * ts / ((3 + k) * HOUR)) + rng.normal(0, 0.05, ts.size)
        if f == spiked:
            v[(ts >= at) & (ts < at + 2 * HOUR)] += 5.0
        out[f] = (ts, v)
    return out


@pytest.mark.parametrize(
    "knobs",
    [
        {},
        {"distance": "manhattan"},
        {"distance": "chebyshev"},
        {"distance": "canberra"},
        {"distance": "dtw"},
        {"comparison": "feature"},
        {"algorithm": "gmm"},
        {"algorithm": "dbscan"},
        {"detector": "ensemble"},
    ],
    ids=lambda k: "-".join(map(str, k.values())) or "default",
)
@pytest.mark.parametrize("spiked", ["b", "c"])
def test_the_spiked_field_drove_the_anomaly(knobs, spiked):
    # the clustering knobs are explained on the clustering detector; {"detector": "ensemble"} on its own
    config = ModelConfig(fields=FIELDS, train_end=TRAIN_END, adaptive=False, **({"detector": "clustering"} | knobs))
    data = {"dev": item(spiked)}
    model = fit(config, data)
    top = max(assemble(model.score(data, TRAIN_END), config), key=lambda a: a.score)
    shares = field_contributions(model, data["dev"], top.start_ts, top.end_ts)
    assert set(shares) == set(FIELDS) and sum(shares.values()) == pytest.approx(1.0)
    assert list(shares.values()) == sorted(shares.values(), reverse=True)
    assert next(iter(shares)) == spiked and shares[spiked] > 0.5, shares


def test_a_span_without_segments_explains_nothing():
    config = ModelConfig(fields=FIELDS, train_end=TRAIN_END, adaptive=False)
    data = {"dev": item(None)}
    model = fit(config, data)
    assert field_contributions(model, data["dev"], 8 * DAY, 9 * DAY) == {}  # after the data

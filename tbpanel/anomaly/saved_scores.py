"""Saved anomaly scores: a model's scores written back as telemetry, so dashboards can plot them.

With "Enable Saving Anomaly Data" on, every refresh (and, if asked, a reprocess) writes two
series per device, keyed by the model's telemetry key ``K``:

- ``_EAD_K`` — per bucket, the highest score of the segments *ending* in the bucket;
- ``_EID_K`` — per bucket, the highest score index of the anomalies overlapping it, 0 when none.

Buckets are ``storage_frequency_ms`` wide and aligned to the epoch; a segment ending exactly on a
bucket edge belongs to the bucket before (its last point is there). Only buckets that hold a
segment end get points, and values are rounded to 4 decimals. Points are written, never deleted:
a later run over the same range overwrites them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from ..store.values import ValueType
from .config import ModelConfig
from .scoring import AnomalyRecord, ScoredSegments

#: (device, key, ts, value type, value), as the store writes them
ScorePoint = tuple[str, str, int, int, float]


class PointWriter(Protocol):
    """What saving needs of the telemetry store."""

    def write_points(self, points: Iterable[Any]) -> int: ...


def series_keys(telemetry_key: str) -> tuple[str, str]:
    """The two series names for a model's telemetry key: (``_EAD_key``, ``_EID_key``)."""
    return f"_EAD_{telemetry_key}", f"_EID_{telemetry_key}"


def score_points(
    segs: ScoredSegments, anomalies: Iterable[dict[str, Any]], *, telemetry_key: str, frequency_ms: int
) -> list[ScorePoint]:
    """The ``_EAD_``/``_EID_`` points of ``segs`` (see the module docstring for the rules).

    ``anomalies``: rows with ``item``, ``start_ts``, ``end_ts`` and ``score_index`` (stored
    anomalies, or :func:`records_as_rows` of freshly assembled ones).
    """
    if len(segs) == 0:
        return []
    freq = int(frequency_ms)
    ead, eid = series_keys(telemetry_key)
    points: list[ScorePoint] = []
    by_item: dict[str, list[dict[str, Any]]] = {}
    for a in anomalies:
        by_item.setdefault(a["item"], []).append(a)
    items = segs.item.astype(str)
    for item in np.unique(items).tolist():
        mask = items == item
        ends, scores = segs.end_ts[mask], segs.score[mask]
        buckets = (ends - 1) // freq * freq  # a segment ending exactly on an edge belongs to the bucket before
        ub, inv = np.unique(buckets, return_inverse=True)
        peak = np.full(len(ub), -np.inf)
        np.maximum.at(peak, inv, scores)
        index = np.zeros(len(ub))
        for a in by_item.get(item, []):
            hit = (ub < a["end_ts"]) & (ub + freq > a["start_ts"])
            index[hit] = np.maximum(index[hit], a["score_index"])
        for b, p, x in zip(ub.tolist(), peak.tolist(), index.tolist()):
            points.append((item, ead, int(b), ValueType.DOUBLE, round(float(p), 4)))
            points.append((item, eid, int(b), ValueType.DOUBLE, round(float(x), 4)))
    return points


def save_scores(
    store: PointWriter, config: ModelConfig, segs: ScoredSegments, anomalies: Iterable[dict[str, Any]]
) -> int:
    """Write the saved-score series of ``segs`` for the model ``config``; returns how many points."""
    points = score_points(segs, anomalies, telemetry_key=config.telemetry_key, frequency_ms=config.storage_frequency_ms)
    if not points:
        return 0
    return store.write_points(points)


def records_as_rows(records: Sequence[AnomalyRecord]) -> list[dict[str, Any]]:
    """Freshly assembled anomalies in the shape :func:`score_points` reads."""
    return [{"item": r.item, "start_ts": r.start_ts, "end_ts": r.end_ts, "score_index": r.score_index} for r in records]

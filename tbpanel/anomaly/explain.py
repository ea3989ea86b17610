"""Which fields drove an anomaly: each field's share of the distance between the anomaly's
segments and the model's normal behaviour.

A segment of a multi-field model is one feature vector made of one block of columns per field
(behavior-based: the field's resampled curve; feature-based: its statistics), normalised per
field, so its distance to the nearest reference point (centroid, DBSCAN core point, GMM
component mean) splits by field: each field's block is measured on its own with the model's
metric (Euclidean: squared, so the parts add up to the squared distance; the others add up as
they are). A segment's parts become shares of one, and the anomaly's shares are the segments'
shares weighted by their scores (only the anomalous segments, when there are any). The
ensemble detector scores by discords, not cluster distances; its explanation uses the same
cluster distances, which say where the shape left normal behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .distances import band_width, dtw_pairs, nearest
from .scoring import scores_from_distances

if TYPE_CHECKING:
    from .engine import TrainedModel
    from .segments import ItemData

__all__ = ["field_contributions"]


def field_contributions(trained: TrainedModel, item: ItemData, start_ms: int, end_ms: int) -> dict[str, float]:
    """``{field: share}`` (shares add up to 1, largest first) of the segments of ``item`` in
    ``[start_ms, end_ms)`` — an anomaly's span; empty when no segment of the span passes the
    segment filters."""
    table, x = trained.features(item, int(start_ms), int(end_ms))
    fields = list(trained.fields)
    if len(table) == 0 or not fields:
        return {}
    clusters = trained.clusters
    if clusters.algorithm == "gmm":
        ref = clusters.centroids[clusters.distances(x)[1]]
        metric = "euclidean"
    else:
        _, j = nearest(x, clusters.refs, clusters.metric, blocks=clusters.blocks, band_percent=clusters.band_percent)
        ref = clusters.refs[j]
        metric = clusters.metric
    width = x.shape[1] // len(fields)
    parts = np.column_stack(
        [
            _rowwise(
                x[:, k * width : (k + 1) * width], ref[:, k * width : (k + 1) * width], metric, clusters.band_percent
            )
            for k in range(len(fields))
        ]
    )
    if metric == "euclidean":
        parts = parts**2
    total = parts.sum(axis=1, keepdims=True)
    shares = np.divide(parts, total, out=np.full_like(parts, 1.0 / len(fields)), where=total > 0)
    weights = np.ones(len(table))
    if trained.ensemble is None:  # the clustering detector's scores are these distances
        scores = scores_from_distances(clusters.distances(x)[0], trained.d_thr)
        weights = np.where(scores >= 100.0, scores, 0.0) if np.any(scores >= 100.0) else scores
        if weights.sum() <= 0:
            weights = np.ones(len(table))
    mix = weights @ shares / weights.sum()
    return dict(sorted(zip(fields, (float(v) for v in mix)), key=lambda kv: -kv[1]))


def _rowwise(a: np.ndarray, b: np.ndarray, metric: str, band_percent: float) -> npt.NDArray[np.float64]:
    """Distance between ``a[i]`` and ``b[i]`` for every row ``i`` (one field's block)."""
    diff = np.abs(a - b)
    if metric == "euclidean":
        return np.asarray(np.sqrt((diff**2).sum(axis=1)), dtype=np.float64)
    if metric == "manhattan":
        return np.asarray(diff.sum(axis=1), dtype=np.float64)
    if metric == "chebyshev":
        return np.asarray(diff.max(axis=1), dtype=np.float64)
    if metric == "canberra":
        den = np.abs(a) + np.abs(b)
        return np.asarray(np.divide(diff, den, out=np.zeros_like(diff), where=den > 0).sum(axis=1), dtype=np.float64)
    if metric == "dtw":
        return dtw_pairs(a, b, band_width(a.shape[1], band_percent))
    raise ValueError(f"unknown distance {metric!r}")

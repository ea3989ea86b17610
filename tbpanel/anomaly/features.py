"""Feature vectors of segments, and the min/max normalisation fitted on training data.

* **behavior-based**: each segment is cut into ``aggregation_points`` equal sub-intervals and each
  sub-interval aggregated (AVG/MIN/MAX/SUM/COUNT) per field; empty sub-intervals (gaps) are
  filled by linear interpolation between their neighbours; the fields' curves are concatenated.
* **feature-based**: per field, statistics of the segment's points (min, max, mean, std,
  coefficient of variation, slope per segment length, quantiles).

Overlapping (sliding) segments are handled with prefix sums and ``reduceat`` over index ranges;
there is no Python loop over points or segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .config import FEATURES
from .segments import ItemData, SegmentTable, range_reduce

if TYPE_CHECKING:
    from .config import ModelConfig

__all__ = ["behavior_matrix", "feature_matrix", "extract", "fill_gaps", "Normalizer", "column_groups"]


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation over NaNs (edges take the nearest value); in place."""
    bad = np.isnan(x)
    if not bad.any():
        return x
    n, p = x.shape
    j = np.broadcast_to(np.arange(p), (n, p))
    prev = np.maximum.accumulate(np.where(~bad, j, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(~bad, j, p)[:, ::-1], axis=1)[:, ::-1]
    rows = np.broadcast_to(np.arange(n)[:, None], (n, p))
    has_prev, has_next = prev >= 0, nxt < p
    pv = x[rows, np.clip(prev, 0, p - 1)]
    nv = x[rows, np.clip(nxt, 0, p - 1)]
    span = np.where(has_prev & has_next, np.maximum(nxt - prev, 1), 1)
    w = np.where(has_prev & has_next, (j - prev) / span, 0.0)
    filled = np.where(has_prev & has_next, pv + w * (nv - pv), np.where(has_prev, pv, nv))
    x[bad] = filled[bad]
    x[np.isnan(x)] = 0.0  # rows with no data at all (cannot happen for kept segments)
    return x


def behavior_matrix(
    item: ItemData, table: SegmentTable, fields: list[str], points: int, aggregation: str = "AVG"
) -> np.ndarray:
    """``(n_segments, len(fields) * points)``: each field's segment curve, resampled."""
    n = len(table)
    out = np.empty((n, len(fields) * points), dtype=np.float64)
    if n == 0:
        return out
    seg = table.end - table.start
    # sub-interval edges, epoch ms: start + floor(j * seg / points)
    edges = table.start[:, None] + (np.arange(points + 1)[None, :] * seg[:, None]) // points
    for fi, f in enumerate(fields):
        ts, v = item[f]
        idx = np.searchsorted(ts, edges.ravel(), side="left").reshape(n, points + 1)
        a, b = idx[:, :-1], idx[:, 1:]
        cnt = (b - a).astype(np.float64)
        if aggregation in ("AVG", "SUM"):
            csum = np.concatenate(([0.0], np.cumsum(v)))
            s = csum[b] - csum[a]
            if aggregation == "SUM":
                block = s
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    block = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)
        elif aggregation == "COUNT":
            block = cnt
        elif aggregation in ("MIN", "MAX"):
            uf = np.minimum if aggregation == "MIN" else np.maximum
            block = range_reduce(uf, v, a.ravel(), b.ravel()).reshape(n, points)
        else:
            raise ValueError(f"unknown aggregation {aggregation!r}")
        if aggregation in ("AVG", "MIN", "MAX"):
            block = fill_gaps(np.array(block, dtype=np.float64))
        out[:, fi * points : (fi + 1) * points] = block
    return out


def _padded(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows of ``v[lo:hi]`` padded with NaN to the longest row."""
    n = hi - lo
    width = int(n.max()) if n.size else 0
    j = np.arange(max(width, 1))[None, :]
    idx = lo[:, None] + j
    m = j < n[:, None]
    return np.where(m, v[np.minimum(idx, max(len(v) - 1, 0))] if len(v) else np.nan, np.nan)


def feature_matrix(
    item: ItemData, table: SegmentTable, fields: list[str], features: list[str] | tuple[str, ...] = FEATURES
) -> np.ndarray:
    """``(n_segments, len(fields) * len(features))`` statistics per segment and field."""
    n = len(table)
    nf = len(features)
    out = np.empty((n, len(fields) * nf), dtype=np.float64)
    if n == 0:
        return out
    seg = (table.end - table.start).astype(np.float64)
    for fi, f in enumerate(fields):
        ts, v = item[f]
        lo, hi = table.lo[f], table.hi[f]
        cnt = hi - lo
        width = max(int(cnt.max()), 1)
        chunk = max(1, 4_000_000 // width)  # bound the padded matrix's memory
        tsf = ts.astype(np.float64)
        for c0 in range(0, n, chunk):
            sl = slice(c0, min(n, c0 + chunk))
            x = _padded(v, lo[sl], hi[sl])
            t = (_padded(tsf, lo[sl], hi[sl]) - table.start[sl, None]) / seg[sl, None]
            k = cnt[sl].astype(np.float64)
            kk = np.maximum(k, 1)
            mean = np.nansum(x, axis=1) / kk
            dev = x - mean[:, None]
            std = np.sqrt(np.nansum(dev * dev, axis=1) / kk)
            srt = np.sort(x, axis=1)  # NaN sorts last
            stats = {
                "mean": mean,
                "std": std,
                "min": srt[:, 0],
                "max": srt[np.arange(srt.shape[0]), np.maximum(k - 1, 0).astype(int)],
            }
            with np.errstate(invalid="ignore", divide="ignore"):
                stats["cv"] = np.where(np.abs(mean) > 1e-12, std / np.abs(mean), 0.0)
                tm = np.nansum(t, axis=1) / kk
                dt = t - tm[:, None]
                var_t = np.nansum(dt * dt, axis=1)
                stats["slope"] = np.where(var_t > 0, np.nansum(dt * dev, axis=1) / var_t, 0.0)
            for name in features:
                if name.startswith("q") and name not in stats:
                    q = int(name[1:]) / 100.0
                    pos = q * np.maximum(k - 1, 0)
                    i0 = np.floor(pos).astype(int)
                    i1 = np.minimum(i0 + 1, np.maximum(k - 1, 0).astype(int))
                    r = np.arange(srt.shape[0])
                    stats[name] = srt[r, i0] + (pos - i0) * (srt[r, i1] - srt[r, i0])
            for j, name in enumerate(features):
                out[sl, fi * nf + j] = stats[name]
    return out


def column_groups(config: ModelConfig, fields: list[str]) -> np.ndarray:
    """Normalisation group of each feature column: one per field (behavior-based, so a curve
    keeps its shape) or one per column (feature-based, statistics have their own scales)."""
    if config.comparison == "behavior":
        return np.repeat(np.arange(len(fields)), config.aggregation_points)
    return np.arange(len(fields) * len(config.features))


def extract(item: ItemData, table: SegmentTable, config: ModelConfig, fields: list[str]) -> np.ndarray:
    """Raw (unnormalised) feature matrix for a resolved config."""
    if config.comparison == "behavior":
        return behavior_matrix(item, table, fields, config.aggregation_points, config.aggregation)
    return feature_matrix(item, table, fields, config.features)


@dataclass
class Normalizer:
    """Min/max scaling to [0, 1] per column group, fitted on training features, then clipping."""

    lo: np.ndarray
    hi: np.ndarray
    clip: float = 1.0

    @classmethod
    def fit(cls, x: np.ndarray, groups: np.ndarray, clip: float = 1.0) -> Normalizer:
        lo = np.zeros(x.shape[1])
        hi = np.ones(x.shape[1])
        if x.shape[0]:
            for g in np.unique(groups):
                cols = groups == g
                block = x[:, cols]
                lo[cols] = np.min(block)
                hi[cols] = np.max(block)
        return cls(lo, hi, float(clip))

    def transform(self, x: np.ndarray) -> npt.NDArray[np.float64]:
        span = self.hi - self.lo
        span = np.where(span > 0, span, 1.0)
        z = (x - self.lo) / span
        out: npt.NDArray[np.float64] = np.clip(z, -self.clip, 1.0 + self.clip)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        return cls(np.asarray(d["lo"], dtype=np.float64), np.asarray(d["hi"], dtype=np.float64), float(d["clip"]))

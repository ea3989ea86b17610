"""The anomaly pipeline, pure numpy (no storage access).

```python
trained = fit(config, data)                       # data: {item: {field: (ts_ms, values)}}
segs = trained.score(data, start_ms, end_ms)      # complete segments with start >= start_ms, end <= end_ms
anomalies = assemble(segs, config)                # list[AnomalyRecord]
trained = refit(trained, data)                    # adaptive mode: same config, re-learned causally
```
Build: collect -> segment -> features -> normalise (min/max of training) -> cluster -> distances of
every training segment -> ``d_thr`` -> scores -> default severity thresholds and cluster stats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from .clustering import ClusterModel, fit_clusters
from .config import ModelConfig
from .ensemble import MEMBERS, EnsembleModel, fit_ensemble, level_stats
from .features import Normalizer, column_groups, extract
from .scoring import (
    AnomalyRecord,
    ScoredSegments,
    assemble,
    cluster_statistics,
    default_severity_thresholds,
    effective_thresholds,
    scores_from_distances,
    threshold_distance,
)
from .seasonal import CYCLES, find_period, seasonal_distances
from .segments import ItemData, SegmentTable, clean_item, median_step, segment_item

__all__ = [
    "ItemData",
    "TrainedModel",
    "ScoredSegments",
    "AnomalyRecord",
    "Cancelled",
    "fit",
    "refit",
    "assemble",
    "Progress",
    "Cancel",
]

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]
MODEL_FORMAT = 1


class Cancelled(Exception):
    """Raised when the ``cancel`` callback returns True; nothing is returned or changed."""


class _Tracker:
    def __init__(self, progress: Progress | None, cancel: Cancel | None, lo: float = 0.0, hi: float = 1.0):
        self.progress, self.cancel, self.lo, self.hi = progress, cancel, lo, hi

    def __call__(self, frac: float, msg: str) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled(msg)
        if self.progress is not None:
            self.progress(float(self.lo + (self.hi - self.lo) * min(max(frac, 0.0), 1.0)), msg)


def _select_items(config: ModelConfig, data: dict[str, ItemData]) -> list[str]:
    if config.items:
        return [i for i in config.items if i in data]
    return sorted(data)


def _select_fields(config: ModelConfig, data: dict[str, ItemData], items: list[str]) -> list[str]:
    if config.fields:
        return list(config.fields)
    return sorted({f for i in items for f in data[i]})


def _slice(item: ItemData, start: int | None, end: int | None, max_points: int = 0) -> ItemData:
    out = {}
    for f, (ts, v) in item.items():
        a = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
        b = len(ts) if end is None else int(np.searchsorted(ts, end, side="left"))
        if max_points and b - a > max_points:
            a = b - max_points
        out[f] = (ts[a:b], v[a:b])
    return out


@dataclass
class TrainedModel:
    """Everything a built model stores; ``to_dict()`` is JSON-safe."""

    config: ModelConfig  # as the user set it
    resolved: ModelConfig  # auto knobs filled from the data step
    fields: list[str]
    step_ms: float
    normalizer: Normalizer
    clusters: ClusterModel
    d_thr: float
    train_distances: np.ndarray
    severity_defaults: dict[str, float]
    cluster_stats: list[dict[str, Any]]
    trained_items: list[str]
    train_range: tuple[int | None, int | None]
    n_train_segments: int
    n_refits: int = 0
    build_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    ensemble: EnsembleModel | None = None  # detector="ensemble": the calibrated discord members

    # ------------------------------------------------------------------ views
    @property
    def train_scores(self) -> np.ndarray:
        return scores_from_distances(self.train_distances, self.d_thr)

    @property
    def centroids(self) -> np.ndarray:
        return self.clusters.centroids

    @property
    def cluster_sizes(self) -> np.ndarray:
        return self.clusters.sizes

    @property
    def auto_clusters(self) -> dict[str, Any] | None:
        return self.clusters.auto

    @property
    def segment_ms(self) -> int:
        return int(self.resolved.segment_ms)

    @property
    def context_ms(self) -> int:
        """History needed before the first segment to score (the seasonal member's earlier
        cycles): a refresh loads its data from this far before its first segment."""
        p = self.ensemble.period_ms if self.ensemble is not None else 0
        return int(CYCLES * p)

    @property
    def step(self) -> int:
        """Distance between consecutive segment starts (ms)."""
        return self.resolved.step_ms()

    def thresholds(self, config: ModelConfig | None = None) -> dict[str, float]:
        """Enabled severity thresholds (config overrides on top of the build's defaults)."""
        return effective_thresholds(self.severity_defaults, config or self.config)

    # ---------------------------------------------------------------- scoring
    def features(
        self, item: ItemData, start_ms: int | None = None, end_ms: int | None = None
    ) -> tuple[SegmentTable, npt.NDArray[np.float64]]:
        """``(segment table, normalised feature matrix)`` of one item (cleaned inside)."""
        _, table, x = self._segments(item, start_ms, end_ms)
        return table, x

    def _segments(
        self, item: ItemData, start_ms: int | None, end_ms: int | None
    ) -> tuple[ItemData, SegmentTable, npt.NDArray[np.float64]]:
        r = self.resolved
        it = clean_item(item, self.fields)
        if start_ms is not None or end_ms is not None:  # keep the seasonal member's earlier cycles
            it = _slice(it, None if start_ms is None else start_ms - self.context_ms, end_ms)
        if end_ms is None:
            lasts = [int(ts[-1]) for ts, _ in it.values() if len(ts)]
            end_ms = (max(lasts) + 1) if lasts else None
        table = segment_item(
            it,
            self.fields,
            r.segment_ms,
            r.step_ms(),
            max_gap_ms=r.max_gap_ms,
            min_duration_ms=r.min_duration_ms,
            min_points=r.min_points,
            start_ms=start_ms,
            end_ms=end_ms,
        )
        x = extract(it, table, r, self.fields)
        return it, table, self.normalizer.transform(x)

    def member_ratios(self, item_name: str, item: ItemData, table: SegmentTable, x: np.ndarray) -> np.ndarray:
        """Ensemble: ``(n, len(MEMBERS))`` distance / threshold of each member, per segment."""
        if self.ensemble is None:
            return np.zeros((len(table), 0))
        r = self.resolved
        feats = {
            "shape": x,
            "cluster": self.clusters.distances(x)[0],
            "level": self.ensemble.level_matrix(level_stats(item, table, self.fields)),
            "season": seasonal_distances(
                item,
                self.fields,
                table,
                x,
                self.ensemble.period_ms,
                r.min_points,
                lambda t: self.normalizer.transform(extract(item, t, r, self.fields)),
            )
            if self.ensemble.period_ms
            else np.full(len(table), np.nan),
        }
        return self.ensemble.member_ratios(feats, item_name, table.start)

    def score(
        self,
        data: dict[str, ItemData],
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> ScoredSegments:
        """Score every complete segment (``start >= start_ms``, ``end <= end_ms``) of every item
        in ``data`` (trained or not). ``end_ms=None``: up to each item's last point."""
        track = _Tracker(progress, cancel)
        names = sorted(data)
        tables, mats, ens = [], [], []
        for n, name in enumerate(names):
            track(n / max(len(names), 1) * 0.8, f"segmenting {name}")
            it, t, x = self._segments(data[name], start_ms, end_ms)
            tables.append((name, t))
            mats.append(x)
            if self.ensemble is not None:
                ens.append(self.member_ratios(name, it, t, x).max(axis=1) if len(t) else np.empty(0))
        track(0.8, "measuring distances")
        x = np.vstack(mats) if mats else np.empty((0, 0))
        d, lab = self.clusters.distances(x) if x.shape[0] else (np.empty(0), np.empty(0, np.int64))
        if self.ensemble is not None:
            d = np.concatenate(ens) if ens else np.empty(0)
        item = (
            np.concatenate([np.full(len(t), name, dtype=object) for name, t in tables])
            if tables
            else np.empty(0, dtype=object)
        )
        start = np.concatenate([t.start for _, t in tables]) if tables else np.empty(0, np.int64)
        end = np.concatenate([t.end for _, t in tables]) if tables else np.empty(0, np.int64)
        out = ScoredSegments(
            item,
            start.astype(np.int64),
            end.astype(np.int64),
            scores_from_distances(d, self.d_thr),
            d,
            lab.astype(np.int64),
        ).sorted()
        track(1.0, f"scored {len(out)} segments")
        return out

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "config": self.config.to_dict(),
            "resolved": self.resolved.to_dict(),
            "fields": list(self.fields),
            "step_ms": self.step_ms,
            "normalizer": self.normalizer.to_dict(),
            "clusters": self.clusters.to_dict(),
            "d_thr": self.d_thr,
            "train_distances": self.train_distances.tolist(),
            "severity_defaults": dict(self.severity_defaults),
            "cluster_stats": self.cluster_stats,
            "trained_items": list(self.trained_items),
            "train_range": list(self.train_range),
            "n_train_segments": self.n_train_segments,
            "n_refits": self.n_refits,
            "build_seconds": self.build_seconds,
            "extra": self.extra,
            "ensemble": None if self.ensemble is None else self.ensemble.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainedModel:
        if d.get("format") != MODEL_FORMAT:
            raise ValueError(f"unsupported model format {d.get('format')!r}")
        return cls(
            config=ModelConfig.from_dict(d["config"]),
            resolved=ModelConfig.from_dict(d["resolved"]),
            fields=list(d["fields"]),
            step_ms=float(d["step_ms"]),
            normalizer=Normalizer.from_dict(d["normalizer"]),
            clusters=ClusterModel.from_dict(d["clusters"]),
            d_thr=float(d["d_thr"]),
            train_distances=np.asarray(d["train_distances"], dtype=np.float64),
            severity_defaults={k: float(v) for k, v in d["severity_defaults"].items()},
            cluster_stats=list(d["cluster_stats"]),
            trained_items=list(d["trained_items"]),
            train_range=tuple(d["train_range"]),
            n_train_segments=int(d["n_train_segments"]),
            n_refits=int(d.get("n_refits", 0)),
            build_seconds=float(d.get("build_seconds", 0.0)),
            extra=dict(d.get("extra", {})),
            ensemble=None if d.get("ensemble") is None else EnsembleModel.from_dict(d["ensemble"]),
        )


def _normalised_features(
    norm: Normalizer, item: ItemData, r: ModelConfig, fields: list[str], table: SegmentTable
) -> np.ndarray:
    return norm.transform(extract(item, table, r, fields))


def _build(
    config: ModelConfig,
    resolved: ModelConfig | None,
    data: dict[str, ItemData],
    train_start: int | None,
    train_end: int | None,
    track: _Tracker,
    n_refits: int = 0,
) -> TrainedModel:
    t0 = time.perf_counter()
    config.check()
    items = _select_items(config, data)
    if not items:
        raise ValueError("no training items: the data holds none of the selected items")
    fields = _select_fields(config, data, items)
    if not fields:
        raise ValueError("no fields to train on")
    cleaned = {}
    for n, name in enumerate(items):
        track(0.1 * n / len(items), f"collecting {name}")
        cleaned[name] = _slice(clean_item(data[name], fields), train_start, train_end, config.max_points)
    step = median_step(list(cleaned.values()))
    r = resolved if resolved is not None else config.resolved(step)
    tables, mats, stats, codes, season_raw = [], [], [], [], []
    for n, name in enumerate(items):
        track(0.1 + 0.4 * n / len(items), f"segmenting {name}")
        it = cleaned[name]
        t = segment_item(
            it,
            fields,
            r.segment_ms,
            r.step_ms(),
            max_gap_ms=r.max_gap_ms,
            min_duration_ms=r.min_duration_ms,
            min_points=r.min_points,
            start_ms=train_start,
            end_ms=train_end,
        )
        tables.append(t)
        mats.append(extract(it, t, r, fields))
        if r.detector == "ensemble":
            stats.append(level_stats(it, t, fields))
            codes.append(np.full(len(t), n, dtype=np.int64))
    raw = np.vstack(mats) if mats else np.empty((0, 0))
    durations = np.concatenate([t.end - t.start for t in tables])
    seg_start = np.concatenate([t.start for t in tables])
    if raw.shape[0] == 0:
        raise ValueError(
            "no training segment passed the segment filters (check the segment length, "
            "max gap, min points and the training range)"
        )
    keep = None
    if config.max_segments and raw.shape[0] > config.max_segments:
        keep = np.unique(np.linspace(0, raw.shape[0] - 1, config.max_segments).round().astype(int))
        raw, durations, seg_start = raw[keep], durations[keep], seg_start[keep]
        stats = [np.vstack(stats)[keep]] if stats else []
        codes = [np.concatenate(codes)[keep]] if codes else []
    track(0.5, f"normalising {raw.shape[0]} segments")
    norm = Normalizer.fit(raw, column_groups(r, fields), r.clip)
    x = norm.transform(raw)
    period = 0
    season_d = None
    if r.detector == "ensemble":
        period = find_period(list(cleaned.values()), fields, step, int(r.segment_ms))
        for name, t, m in zip(items, tables, mats):
            it = cleaned[name]
            season_raw.append(
                seasonal_distances(
                    it,
                    fields,
                    t,
                    norm.transform(m),
                    period,
                    r.min_points,
                    partial(_normalised_features, norm, it, r, fields),
                )
            )
        season_d = np.concatenate(season_raw) if season_raw else np.empty(0)
        if keep is not None:
            season_d = season_d[keep]
    track(0.55, f"clustering ({config.algorithm})")
    blocks = len(fields) if r.comparison == "behavior" else 1
    clusters, _ = fit_clusters(x, r, blocks=blocks)
    track(0.85, "scoring training segments")
    d, labels = clusters.distances(x)
    ensemble = None
    if r.detector == "ensemble":
        track(0.9, "fitting the discord ensemble")
        ensemble, ratios = fit_ensemble(
            x,
            d,
            np.vstack(stats),
            np.concatenate(codes),
            seg_start,
            items,
            int(r.segment_ms),
            float(r.tail_risk),
            season_d,
            period,
        )
        d, d_thr = ratios.max(axis=1), 1.0
        ensemble.info["fired_in_training"] = {
            m: int(np.sum((ratios[:, j] >= 1.0) & (ratios[:, j] == d))) for j, m in enumerate(MEMBERS)
        }
    else:
        d_thr = threshold_distance(d, r.threshold_percent)
    s = scores_from_distances(d, d_thr)
    model = TrainedModel(
        config=config,
        resolved=r,
        fields=fields,
        step_ms=step,
        normalizer=norm,
        clusters=clusters,
        d_thr=d_thr,
        train_distances=d,
        severity_defaults=default_severity_thresholds(s),
        cluster_stats=cluster_statistics(labels, s, durations, clusters.k),
        trained_items=items,
        train_range=(train_start, train_end),
        n_train_segments=int(x.shape[0]),
        n_refits=n_refits,
        build_seconds=time.perf_counter() - t0,
        ensemble=ensemble,
    )
    track(1.0, f"ready: {clusters.k} clusters, threshold distance {d_thr:.4g}")
    return model


def fit(
    config: ModelConfig, data: dict[str, ItemData], *, progress: Progress | None = None, cancel: Cancel | None = None
) -> TrainedModel:
    """Build a model on ``data`` (restricted to the config's items, fields and training range)."""
    return _build(config, None, data, config.train_start, config.train_end, _Tracker(progress, cancel))


def refit(
    trained: TrainedModel,
    data: dict[str, ItemData],
    *,
    until_ms: int | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> TrainedModel:
    """Adaptive re-fit: same configuration (and resolved segment lengths), normalisation, clusters
    and thresholds re-learned on everything in ``data`` from the training start up to ``until_ms``
    (causal: nothing after ``until_ms`` is looked at)."""
    start = trained.config.train_start
    return _build(
        trained.config,
        trained.resolved,
        data,
        start,
        until_ms,
        _Tracker(progress, cancel),
        n_refits=trained.n_refits + 1,
    )

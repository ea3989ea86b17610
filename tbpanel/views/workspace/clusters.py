"""The Cluster info tab's view model: what "normal" the model learnt, cluster by cluster.

Centroids and per-cluster statistics come from the stored :class:`TrainedModel`; the score
histograms and sample members need each training segment's cluster, which the model does not
store, so :meth:`ClusterInfo.load` scores the training range once (the same segments the build
scored) and keeps them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from ...clock import now_ms, utc_text
from .model_data import item_arrays, profile_devices


class ClusterInfo(param.Parameterized):
    """Centroid curves, counts, durations, score histograms and sample member segments."""

    cluster = param.Integer(default=0, bounds=(0, None), doc="The cluster whose members are shown.")
    samples_per_cluster = param.Integer(default=3, bounds=(1, 20))

    def __init__(self, platform, model, **params):
        super().__init__(**params)
        self.platform, self.model = platform, model
        self.trained = platform.anomaly.trained(model.id)
        self.devices = profile_devices(platform, model)
        self.segments = None  # ScoredSegments of the training range, after load()

    @property
    def ready(self) -> bool:
        return self.trained is not None

    @property
    def k(self) -> int:
        return int(self.trained.clusters.k) if self.trained is not None else 0

    def load(self) -> None:
        """Score the training range with the stored model (its segments' clusters and scores)."""
        tm = self.trained
        if tm is None:
            return
        lo, hi = tm.train_range
        data = {
            i: item_arrays(self.platform, i, tm.fields, 0 if lo is None else lo, now_ms() if hi is None else hi)
            for i in tm.trained_items
        }
        data = {i: d for i, d in data.items() if d}
        if lo is None:  # as the build: from the first to just past the last training point
            lo = min(int(ts[0]) for d in data.values() for ts, _ in d.values())
        if hi is None:
            hi = max(int(ts[-1]) for d in data.values() for ts, _ in d.values()) + 1
        self.segments = tm.score(data, int(lo), int(hi))

    # -- from the stored model ----------------------------------------------------------------------
    def positions(self) -> tuple[list[str], int, list[str]]:
        """``(fields, columns per field, column labels)`` of a centroid row."""
        tm = self.trained
        fields = list(tm.fields)
        width = tm.centroids.shape[1] // max(len(fields), 1)
        if tm.resolved.comparison == "feature":
            labels = list(tm.resolved.features)[:width]
        else:
            seg_min = tm.segment_ms / 60_000 / max(width, 1)
            labels = [f"{i * seg_min:g} min" for i in range(width)]
        return fields, width, labels

    def centroid_curves(self) -> dict[str, np.ndarray]:
        """``{field: (k, width) array}``: each cluster's centroid, normalised units."""
        fields, width, _ = self.positions()
        c = np.asarray(self.trained.centroids, dtype=float)
        return {f: c[:, i * width : (i + 1) * width] for i, f in enumerate(fields)}

    def table(self) -> pd.DataFrame:
        """One row per cluster: training segments, share, total duration, score range, anomalous."""
        rows = []
        for s in self.trained.cluster_stats:
            c = int(s["cluster"])
            row = {
                "cluster": c,
                "segments": int(s["segments"]),
                "share_pct": round(100 * float(s["share"]), 1),
                "duration_h": round(s["total_duration_ms"] / 3_600_000, 1),
                "min_score": None if s["min_score"] is None else round(float(s["min_score"]), 1),
                "max_score": None if s["max_score"] is None else round(float(s["max_score"]), 1),
            }
            if self.segments is not None:
                m = self.segments.cluster == c
                row["anomalous_segments"] = int(np.sum(self.segments.score[m] >= 100.0))
            rows.append(row)
        return pd.DataFrame(rows)

    # -- from the scored training range -----------------------------------------------------------
    def histogram(self, cluster: int, bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """``(edges, counts)`` of the cluster's training segment scores (common edges for all)."""
        s = self.segments.score
        top = max(float(s.max()) if len(s) else 100.0, 100.0) * 1.02
        return np.histogram(s[self.segments.cluster == cluster], bins=bins, range=(0.0, top))[::-1]

    def samples(self, cluster: int | None = None) -> list[dict]:
        """Member segments of a cluster: the most typical first (lowest score), then the least
        typical; each with its device, times, score and its raw values per field."""
        cluster = self.cluster if cluster is None else cluster
        segs = self.segments
        idx = np.flatnonzero(segs.cluster == cluster)
        if idx.size == 0:
            return []
        order = idx[np.argsort(segs.score[idx], kind="stable")]
        n = self.samples_per_cluster
        picks = list(order[: max(n - 1, 1)]) + ([order[-1]] if order.size > 1 and n > 1 else [])
        out = []
        for j in dict.fromkeys(int(p) for p in picks):
            item, a, b = str(segs.item[j]), int(segs.start_ts[j]), int(segs.end_ts[j])
            raw = item_arrays(self.platform, item, self.trained.fields, a, b)
            out.append(
                {
                    "item": item,
                    "device": self.devices.get(item, item),
                    "start_ts": a,
                    "end_ts": b,
                    "start": utc_text(a),
                    "score": float(segs.score[j]),
                    "values": {f: ((ts - a) / 60_000, v) for f, (ts, v) in raw.items()},
                }
            )
        return out

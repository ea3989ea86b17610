"""Scores, thresholds, anomaly assembly and score index (tbpanel's definitions).

* ``d_thr``: the training distance at the threshold percent: with ``n`` training segments and
  ``m = ceil(n * pct / 100)``, ``d_thr`` is the ``m``-th largest training distance, so (without
  ties) exactly ``m`` training segments score >= 100.
* ``score = 100 * d / d_thr``; a segment is anomalous iff ``score >= 100``.
* An anomaly is a maximal run of consecutive anomalous segments of one item that touch or
  overlap in time (sliding segments merge); with cluster joining off a run also splits where
  the nearest cluster changes; runs shorter than the min anomaly duration are dropped.
* Score index = sum of ``score / 100 * hours added``: the first segment adds its length, every
  further segment the time it adds past the previous one (the step, for regular sliding windows;
  the segment length, for fixed windows), so overlap is never counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import SEVERITIES

if TYPE_CHECKING:
    import pandas as pd

    from .config import ModelConfig

__all__ = [
    "ScoredSegments",
    "AnomalyRecord",
    "threshold_distance",
    "scores_from_distances",
    "default_severity_thresholds",
    "effective_thresholds",
    "severity_for",
    "cluster_statistics",
    "assemble",
    "HOUR_MS",
]

HOUR_MS = 3_600_000


def threshold_distance(train_d: np.ndarray, threshold_percent: float) -> float:
    """The ``m = ceil(n * pct / 100)``-th largest training distance.

    Ties: when distances equal to it (to 1e-9 relative) would flag more than ``m`` training
    segments, the threshold moves up to the next larger distance, or just above the tie when
    there is none, so at most ``m`` training segments ever score >= 100 (repetitive, noiseless
    data would otherwise flag every repetition of a tied shape). Never zero."""
    d = np.sort(np.asarray(train_d, dtype=np.float64))[::-1]
    if d.size == 0:
        raise ValueError("no training distances")
    m = int(math.ceil(d.size * float(threshold_percent) / 100.0 - 1e-9))
    m = min(max(m, 1), d.size)
    thr = float(d[m - 1])
    tol = 1e-9 * abs(thr) + 1e-12
    if m < d.size and d[m] >= thr - tol:  # the tie block reaches past m
        above = d[d > thr + tol]
        thr = float(above.min()) if above.size else thr * (1.0 + 1e-6) + 1e-9
    return max(thr, 1e-9)


def scores_from_distances(d: np.ndarray, d_thr: float) -> np.ndarray:
    return 100.0 * np.asarray(d, dtype=np.float64) / float(d_thr)


def default_severity_thresholds(train_scores: np.ndarray) -> dict[str, float]:
    """WARNING = 100; MINOR / MAJOR / CRITICAL = median / p80 / p95 of training scores >= 100."""
    s = np.asarray(train_scores, dtype=np.float64)
    s = s[s >= 100.0]
    if s.size == 0:
        s = np.array([100.0])

    def r(q: float) -> float:  # rounded half up to a whole score
        return float(math.floor(float(np.percentile(s, q)) + 0.5))

    return {"warning": 100.0, "minor": r(50), "major": r(80), "critical": r(95)}


def effective_thresholds(defaults: dict[str, float], config: ModelConfig) -> dict[str, float]:
    """Enabled tiers only; a value set in the config overrides the build's default."""
    out = {}
    for sev in SEVERITIES:
        if not getattr(config, f"{sev}_enabled"):
            continue
        v = getattr(config, f"{sev}_threshold")
        out[sev] = float(defaults.get(sev, 100.0) if v is None else v)
    return out


def severity_for(score: float, thresholds: dict[str, float]) -> str | None:
    """The highest enabled tier whose threshold ``score`` meets (None: below all)."""
    best = None
    for sev in SEVERITIES:
        if sev in thresholds and score >= thresholds[sev]:
            best = sev
    return best


def cluster_statistics(
    labels: np.ndarray, scores: np.ndarray, durations_ms: np.ndarray, k: int
) -> list[dict[str, Any]]:
    labels = np.asarray(labels, dtype=np.int64)
    n = max(labels.size, 1)
    out = []
    for c in range(k):
        m = labels == c
        cnt = int(m.sum())
        out.append(
            {
                "cluster": c,
                "segments": cnt,
                "share": cnt / n,
                "total_duration_ms": int(np.sum(durations_ms[m])) if cnt else 0,
                "min_score": float(scores[m].min()) if cnt else None,
                "max_score": float(scores[m].max()) if cnt else None,
            }
        )
    return out


@dataclass
class ScoredSegments:
    """Columnar scored segments (any number of items), sorted by item then start."""

    item: np.ndarray  # object (str)
    start_ts: np.ndarray  # int64 ms
    end_ts: np.ndarray  # int64 ms
    score: np.ndarray  # float64
    distance: np.ndarray  # float64, raw distance
    cluster: np.ndarray  # int64, nearest cluster

    def __len__(self) -> int:
        return int(self.start_ts.size)

    @classmethod
    def empty(cls) -> ScoredSegments:
        return cls(
            np.empty(0, dtype=object),
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0),
            np.empty(0),
            np.empty(0, np.int64),
        )

    @classmethod
    def concat(cls, parts: Iterable[ScoredSegments]) -> ScoredSegments:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        out = cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls._fields()))
        return out.sorted()

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("item", "start_ts", "end_ts", "score", "distance", "cluster")

    def sorted(self) -> ScoredSegments:
        if len(self) < 2:
            return self
        o = np.lexsort((self.start_ts, self.item.astype(str)))
        return self.take(o)

    def take(self, sel: np.ndarray) -> ScoredSegments:
        """The segments picked by ``sel`` (a boolean mask or row indices)."""
        return ScoredSegments(*(getattr(self, f)[sel] for f in self._fields()))

    def for_item(self, item: str) -> ScoredSegments:
        return self.take(self.item == item)

    @property
    def anomalous(self) -> np.ndarray:
        return self.score >= 100.0

    def to_dict(self) -> dict[str, list[Any]]:
        return {f: getattr(self, f).tolist() for f in self._fields()}

    @classmethod
    def from_dict(cls, d: dict[str, list[Any]]) -> ScoredSegments:
        return cls(
            np.asarray(d["item"], dtype=object),
            np.asarray(d["start_ts"], dtype=np.int64),
            np.asarray(d["end_ts"], dtype=np.int64),
            np.asarray(d["score"], dtype=np.float64),
            np.asarray(d["distance"], dtype=np.float64),
            np.asarray(d["cluster"], dtype=np.int64),
        )

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({f: getattr(self, f) for f in self._fields()})


@dataclass
class AnomalyRecord:
    """One anomaly as assembled from scored segments (no id/model yet: the caller adds them)."""

    item: str
    start_ts: int
    end_ts: int
    score: float  # maximum segment score
    score_index: float
    cluster: int  # nearest cluster of the highest-scoring segment
    detected_at: int  # end of the first anomalous segment
    active: bool  # its last segment is the item's latest scored segment
    n_segments: int
    segment_scores: dict[str, float] = field(default_factory=dict)  # min / mean / max / last / first
    confirmed_at: int = 0  # first segment end at which it met the min anomaly duration
    ended_at: int | None = None  # end of the item's next scored segment (None while active)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnomalyRecord:
        return cls(**d)


#: auto cool-down of the ensemble detector, in segment lengths
AUTO_COOLDOWN_SEGMENTS = 4


def cooldown_ms(config: Any, segs: ScoredSegments) -> int:
    """The cool-down (ms) of :func:`assemble`: ``cooldown_segments`` segment lengths (auto: 0 for
    the clustering detector, :data:`AUTO_COOLDOWN_SEGMENTS` for the ensemble); the segment length is
    the config's, or the scored segments' own when it is auto."""
    n = getattr(config, "cooldown_segments", None)
    if n is None:
        n = AUTO_COOLDOWN_SEGMENTS if getattr(config, "detector", "clustering") == "ensemble" else 0
    if not n or len(segs) == 0:
        return 0
    seg = int(getattr(config, "segment_ms", 0) or 0) or int(np.median(segs.end_ts - segs.start_ts))
    return int(n) * seg


def assemble(segs: ScoredSegments, config: ModelConfig) -> list[AnomalyRecord]:
    """Anomalies from scored segments (see the module docstring for the rules)."""
    out: list[AnomalyRecord] = []
    if len(segs) == 0:
        return out
    segs = segs.sorted()
    items = segs.item.astype(str)
    min_dur = int(config.min_anomaly_duration_ms or 0)
    joining = bool(config.cluster_joining)
    cooldown = cooldown_ms(config, segs)
    # item boundaries
    change = np.flatnonzero(items[1:] != items[:-1]) + 1
    bounds = np.concatenate(([0], change, [len(segs)]))
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        st, en = segs.start_ts[b0:b1], segs.end_ts[b0:b1]
        sc, cl = segs.score[b0:b1], segs.cluster[b0:b1]
        an = sc >= 100.0
        if not an.any():
            continue
        n = b1 - b0
        idx = np.flatnonzero(an)  # anomalous segments, in time order
        p, q = idx[:-1], idx[1:]
        if cooldown:
            cont_pair = st[q] <= en[p] + cooldown  # within the cool-down of the previous one
        else:
            cont_pair = (q == p + 1) & (st[q] <= en[p])  # consecutive and touching
        if not joining:
            cont_pair &= cl[q] == cl[p]
        cont = np.concatenate(([False], cont_pair))  # continues the previous anomalous segment's anomaly
        prev_end = np.concatenate(([st[idx[0]]], en[p]))
        added_idx = np.where(cont, en[idx] - np.maximum(st[idx], prev_end), en[idx] - st[idx])
        added_ms = np.zeros(n, dtype=np.int64)
        added_ms[idx] = added_idx
        starts = np.flatnonzero(~cont)
        ends = np.concatenate((starts[1:], [idx.size]))
        for a, b in zip(starts, ends):
            ii = idx[a:b]
            s0, s1 = int(st[ii[0]]), int(en[ii[-1]])
            if s1 - s0 < min_dur:
                continue
            ss = sc[ii]
            top = ii[int(np.argmax(ss))]
            dur = en[ii] - s0
            conf = int(en[ii[int(np.argmax(dur >= min_dur))]])
            last = ii[-1]
            # closed by the first later segment that ends past the cool-down (None: still open)
            closer = int(np.searchsorted(en, en[last] + cooldown, side="left")) if cooldown else last + 1
            closer = max(closer, last + 1)
            out.append(
                AnomalyRecord(
                    item=str(items[b0]),
                    start_ts=s0,
                    end_ts=s1,
                    score=float(ss.max()),
                    score_index=float(np.sum(ss / 100.0 * added_ms[ii] / HOUR_MS)),
                    cluster=int(cl[top]),
                    detected_at=int(en[ii[0]]),
                    active=bool(closer >= n),
                    n_segments=int(ii.size),
                    segment_scores={
                        "first": float(ss[0]),
                        "last": float(ss[-1]),
                        "min": float(ss.min()),
                        "mean": float(ss.mean()),
                        "max": float(ss.max()),
                    },
                    confirmed_at=conf,
                    ended_at=None if closer >= n else int(en[closer]),
                )
            )
    return out

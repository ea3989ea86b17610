"""The default detector: an ensemble of calibrated nearest-neighbour discord scores.

Members (each a :class:`~tbpanel.anomaly.discord.DiscordModel` over its own feature space):

* ``shape``: the segment's normalised curve (the same behaviour / feature vector the clustering
  uses): catches spikes, dips, flat-lines and broken cycles: any shape not seen before.
* ``level``: robust-standardised statistics of the raw values per field: mean, standard
  deviation, min, max and the mean absolute step (roughness): catches level shifts, drifts out
  of the seen range, variance changes and frozen sensors (roughness 0).
* ``season``: the distance from the segment's curve to the same phase of the recent cycles
  (:mod:`.seasonal`, period found from the training data): catches a broken daily or weekly
  rhythm (a missing peak, a flat day) whose shape alone is common elsewhere in the cycle.

Each member's raw distance is calibrated on the training segments' own (overlap-excluded)
distances: its threshold is the peaks-over-threshold estimate (:mod:`.tail`) of the distance a
normal segment exceeds with probability ``tail_risk``. The ensemble distance is the largest
member ratio ``d / threshold``, so the model's ``d_thr`` is 1 and ``score = 100 x`` that
ratio: exactly 100 where the most surprised member reaches its threshold. The member that fired
is reported per segment (explainability).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .discord import DiscordModel, fit_discord
from .segments import ItemData, SegmentTable, range_reduce
from .tail import pot_threshold

__all__ = ["EnsembleModel", "fit_ensemble", "level_stats", "MEMBERS", "MAX_REFS"]

MEMBERS = ("cluster", "shape", "level", "season")
#: reference segments per member (bounds scoring cost)
MAX_REFS = 3000
#: fewest training segments with an earlier cycle needed to calibrate the seasonal member
MIN_SEASON_SEGMENTS = 8
_LEVEL_STATS = ("mean", "std", "min", "max", "roughness")


def level_stats(item: ItemData, table: SegmentTable, fields: list[str]) -> np.ndarray:
    """``(n_segments, 5 * len(fields))``: mean, std, min, max, mean |step| of each field's points."""
    n = len(table)
    out = np.zeros((n, len(_LEVEL_STATS) * len(fields)))
    if n == 0:
        return out
    for fi, f in enumerate(fields):
        _, v = item[f]
        lo, hi = table.lo[f], table.hi[f]
        cnt = np.maximum(hi - lo, 1).astype(np.float64)
        c1 = np.concatenate(([0.0], np.cumsum(v)))
        c2 = np.concatenate(([0.0], np.cumsum(v * v)))
        mean = (c1[hi] - c1[lo]) / cnt
        var = np.maximum((c2[hi] - c2[lo]) / cnt - mean * mean, 0.0)
        dv = np.abs(np.diff(v)) if v.size > 1 else np.zeros(0)
        cd = np.concatenate(([0.0], np.cumsum(dv)))
        nd = np.maximum(hi - lo - 1, 1).astype(np.float64)
        lo_d, hi_d = lo, np.maximum(hi - 1, lo)
        rough = (cd[hi_d] - cd[lo_d]) / nd
        mn = range_reduce(np.minimum, v, lo, hi, empty=0.0)
        mx = range_reduce(np.maximum, v, lo, hi, empty=0.0)
        k = len(_LEVEL_STATS)
        out[:, fi * k : (fi + 1) * k] = np.column_stack([mean, np.sqrt(var), mn, mx, rough])
    return out


def _robust_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column centre (median) and scale (IQR / 1.349, else std, else the spread of the
    column's level, else 1), so every statistic counts in units of its own normal spread."""
    med = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    std = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, std)
    scale = np.where(scale > 1e-12, scale, np.maximum(np.abs(med) * 1e-3, 1e-9))
    return med, scale


@dataclass
class EnsembleModel:
    members: dict[str, DiscordModel]
    thresholds: dict[str, float]
    level_center: np.ndarray
    level_scale: np.ndarray
    risk: float
    info: dict[str, Any]
    period_ms: int = 0  # the seasonal member's period (0: no seasonality found, member silent)

    def level_matrix(self, raw_stats: np.ndarray) -> np.ndarray:
        return np.asarray((raw_stats - self.level_center) / self.level_scale, dtype=np.float64)

    def member_ratios(self, feats: dict[str, np.ndarray], item: str, start: np.ndarray) -> np.ndarray:
        """``(n, len(MEMBERS))`` distance / threshold of each member."""
        cols = []
        for name in MEMBERS:
            if self.thresholds.get(name, 0.0) <= 0:  # silent (uncalibrated, or saved before it existed)
                cols.append(np.zeros(len(start)))
                continue
            if name in ("cluster", "season"):
                d = np.nan_to_num(feats[name], nan=0.0)
            else:
                d = self.members[name].distances(feats[name], item, start)
            cols.append(d / self.thresholds[name])
        return np.column_stack(cols) if cols else np.zeros((len(start), 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "members": {k: m.to_dict() for k, m in self.members.items()},
            "thresholds": dict(self.thresholds),
            "level_center": self.level_center.tolist(),
            "level_scale": self.level_scale.tolist(),
            "risk": self.risk,
            "info": self.info,
            "period_ms": int(self.period_ms),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnsembleModel:
        return cls(
            {k: DiscordModel.from_dict(m) for k, m in d["members"].items()},
            {k: float(v) for k, v in d["thresholds"].items()},
            np.asarray(d["level_center"], dtype=np.float64),
            np.asarray(d["level_scale"], dtype=np.float64),
            float(d["risk"]),
            dict(d.get("info", {})),
            int(d.get("period_ms", 0)),
        )


def fit_ensemble(
    shape_x: np.ndarray,
    cluster_d: np.ndarray,
    raw_stats: np.ndarray,
    item_code: np.ndarray,
    start: np.ndarray,
    items: list[str],
    segment_ms: int,
    risk: float,
    season_d: np.ndarray | None = None,
    period_ms: int = 0,
) -> tuple[EnsembleModel, np.ndarray]:
    """Fit every member on the training segments; returns the model and the training segments'
    member ratios ``(n, len(MEMBERS))``. ``season_d``: the training segments' seasonal
    distances (NaN where no earlier cycle had data), calibrated on their finite values."""
    center, scale = _robust_scale(raw_stats)
    feats = {"shape": shape_x, "level": (raw_stats - center) / scale}
    members, thr, ratios, info = {}, {}, [], {}
    for name in MEMBERS:
        if name == "cluster":
            d = cluster_d
            t = pot_threshold(d, risk)
            thr[name] = t
            ratios.append(d / t)
            info[name] = {"threshold": t, "median": float(np.median(d)), "max": float(d.max())}
            continue
        if name == "season":
            sd = np.full(cluster_d.shape, np.nan) if season_d is None or not period_ms else season_d
            fin = sd[np.isfinite(sd)]
            # too few earlier cycles in training to calibrate: threshold 0, the member stays silent
            t = pot_threshold(fin, risk) if fin.size >= MIN_SEASON_SEGMENTS else 0.0
            thr[name] = t
            ratios.append(np.nan_to_num(sd, nan=0.0) / t if t > 0 else np.zeros(sd.shape))
            info[name] = {
                "threshold": t,
                "period_ms": int(period_ms),
                "calibrated_on": int(fin.size),
                "median": float(np.median(fin)) if fin.size else 0.0,
            }
            continue
        m, d = fit_discord(feats[name], item_code, start, items, segment_ms, MAX_REFS)
        t = pot_threshold(d, risk)
        members[name], thr[name] = m, t
        ratios.append(d / t)
        info[name] = {
            "threshold": t,
            "median": float(np.median(d)) if d.size else 0.0,
            "max": float(d.max()) if d.size else 0.0,
            "refs": int(m.refs.shape[0]),
        }
    model = EnsembleModel(members, thr, center, scale, float(risk), info, int(period_ms))
    return model, np.column_stack(ratios)

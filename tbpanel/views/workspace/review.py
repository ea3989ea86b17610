"""The Review tab's view model: one device's raw telemetry, its segment scores and its anomalies.

Raw series are min/max-decimated for the overview (every spike stays visible) and sent at full
resolution inside the window being looked at, so zooming onto an anomaly shows every point.
Scores are the stored model's scores of every segment of the device (what the model saw),
not only the anomalies' peaks. An anomaly opens on the field that drove it (the largest share
of its segments' distance from normal, :func:`~tbpanel.anomaly.explain.field_contributions`),
and the tab opens on the field of the highest-ranked anomaly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from ...anomaly.explain import field_contributions
from ...anomaly.scoring import severity_for
from ...clock import HOUR_MS, duration_text, now_ms, utc_text
from ..telemetry import minmax_decimate
from .model_data import item_arrays, model_fields, profile_devices

CHANGING_KINDS = ("BUILD", "REFRESH", "REPROCESS")
ANOMALY_COLUMNS = [
    "id",
    "device",
    "start",
    "end",
    "duration",
    "score",
    "score_index",
    "severity",
    "active",
    "item",
    "start_ts",
    "end_ts",
]


class ReviewModel(param.Parameterized):
    """Which device and field the chart shows and which time window it is zoomed to."""

    item: param.Selector[str | None] = param.Selector(default=None, objects=[], allow_None=True, doc="Device id.")
    field: param.Selector[str | None] = param.Selector(default=None, objects=[], allow_None=True)
    selected = param.String(default="", doc="Id of the anomaly the chart is zoomed to.")
    window = param.Tuple(default=None, allow_None=True, length=2, doc="(start ms, end ms) shown.")
    overview_buckets = param.Integer(default=1500, bounds=(10, None))

    def __init__(self, platform, model, **params):
        super().__init__(**params)
        self.platform, self.model = platform, model
        self.service = platform.anomaly
        self.trained = self.service.trained(model.id)
        self.devices = profile_devices(platform, model)
        self.param.item.objects = list(self.devices)
        self.param.field.objects = model_fields(platform, model, self.trained)
        self._anomalies = self._frame()
        self._scores: dict[str, pd.DataFrame] = {}
        self._drivers: dict[str, dict[str, float]] = {}
        top = self._anomalies.iloc[0].to_dict() if len(self._anomalies) else None
        if self.item is None:  # start where the most important anomaly is
            self.item = top["item"] if top and top["item"] in self.devices else next(iter(self.devices), None)
        if self.field is None and top is not None and top["item"] == self.item:
            self.field = self.driving_field(top["id"])  # … on the field that drove it
        if self.field is None and self.param.field.objects:
            self.field = self.param.field.objects[0]

    # -- anomalies -------------------------------------------------------------------------------
    def thresholds(self) -> dict[str, float]:
        return self.trained.thresholds(self.model.config) if self.trained is not None else {}

    def _frame(self) -> pd.DataFrame:
        rows = self.service.anomalies(self.model.id)
        th = self.thresholds()
        out = [
            {
                "id": a["id"],
                "device": self.devices.get(a["item"], a["item"]),
                "start": utc_text(a["start_ts"]),
                "end": utc_text(a["end_ts"]),
                "duration": duration_text(a["end_ts"] - a["start_ts"]),
                "score": round(float(a["score"]), 1),
                "score_index": round(float(a["score_index"]), 3),
                "severity": (severity_for(float(a["score"]), th) or "none").upper(),
                "active": bool(a["active"]),
                "item": a["item"],
                "start_ts": int(a["start_ts"]),
                "end_ts": int(a["end_ts"]),
            }
            for a in rows
        ]
        df = pd.DataFrame(out, columns=ANOMALY_COLUMNS)
        return df.sort_values("score_index", ascending=False, ignore_index=True)

    def version(self) -> tuple:
        """Changes when a task that changes anomalies (build, refresh, reprocess) has ended."""
        return tuple(
            (t.id, t.status)
            for t in self.platform.tasks.list(model_id=self.model.id, limit=20)
            if t.kind in CHANGING_KINDS and t.status in ("DONE", "FAILED", "CANCELLED")
        )

    def reload(self) -> None:
        """Read the model, its anomalies and scores again (after a refresh run, reprocess or rebuild)."""
        self.model = self.service.get_model(self.model.id) or self.model
        self.trained = self.service.trained(self.model.id)
        self._scores.clear()
        self._drivers.clear()
        self._anomalies = self._frame()

    def anomaly_table(self) -> pd.DataFrame:
        """Every anomaly of the model, the largest score index first."""
        return self._anomalies

    def anomalies_of_item(self) -> pd.DataFrame:
        df = self._anomalies
        return df[df["item"] == self.item]

    def focus(self, anomaly_id: str, pad_fraction: float = 1.0, min_pad_ms: int = HOUR_MS) -> tuple[int, int]:
        """Zoom onto one anomaly: its device becomes the chart's, the window its span plus padding."""
        hit = self._anomalies[self._anomalies["id"] == anomaly_id]
        if hit.empty:
            raise KeyError(f"no anomaly {anomaly_id} in this model")
        row = hit.iloc[0].to_dict()
        pad = max(int((row["end_ts"] - row["start_ts"]) * pad_fraction), min_pad_ms)
        window = (int(row["start_ts"]) - pad, int(row["end_ts"]) + pad)
        field = self.driving_field(anomaly_id) or self.field
        self.param.update(item=row["item"], field=field, selected=anomaly_id, window=window)
        return window

    def drivers(self, anomaly_id: str) -> dict[str, float]:
        """``{field: share}`` of what drove one anomaly, largest first (empty: not known, e.g.
        the model is not built or the anomaly's data is gone)."""
        if anomaly_id not in self._drivers:
            hit = self._anomalies[self._anomalies["id"] == anomaly_id]
            shares: dict[str, float] = {}
            if self.trained is not None and len(hit):
                row = hit.iloc[0]
                start, end = int(row["start_ts"]), int(row["end_ts"])
                data = item_arrays(self.platform, str(row["item"]), self.trained.fields, start, end)
                shares = field_contributions(self.trained, data, start, end) if data else {}
            self._drivers[anomaly_id] = shares
        return self._drivers[anomaly_id]

    def driving_field(self, anomaly_id: str) -> str | None:
        """The field that contributed most to one anomaly (None: not known or not shown here)."""
        shown = self.param.field.objects or []
        return next((f for f in self.drivers(anomaly_id) if f in shown), None)

    # -- series --------------------------------------------------------------------------------------
    def span(self) -> tuple[int, int]:
        """The whole time the chart can show: the training range (or the data) up to now."""
        lo = self.model.config.train_start
        if lo is None:
            firsts = (
                [
                    int(ts[0])
                    for ts, _ in item_arrays(self.platform, self.item, [self.field], 0, now_ms()).values()
                    if len(ts)
                ]
                if self.item and self.field
                else []
            )
            lo = min(firsts) if firsts else now_ms() - 7 * 24 * HOUR_MS
        return int(lo), now_ms() + 1

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ts ms, values)`` of the chosen field: decimated overall, every point inside the window."""
        if not self.item or not self.field:
            return np.empty(0, np.int64), np.empty(0)
        lo, hi = self.span()
        arrays = item_arrays(self.platform, self.item, [self.field], lo, hi)
        if self.field not in arrays:
            return np.empty(0, np.int64), np.empty(0)
        ts, y = arrays[self.field]
        if len(ts) <= 2 * self.overview_buckets:
            return ts, y
        dts, dy = minmax_decimate(ts, y, lo, hi, self.overview_buckets)
        if self.window is None:
            return dts, dy
        a, b = self.window
        inside = (ts >= a) & (ts < b)
        outside = (dts < a) | (dts >= b)
        order = np.argsort(np.concatenate([dts[outside], ts[inside]]), kind="stable")
        return (np.concatenate([dts[outside], ts[inside]])[order], np.concatenate([dy[outside], y[inside]])[order])

    def scores(self) -> pd.DataFrame:
        """Every scored segment of the chosen device: ``start_ts``, ``end_ts``, ``score``."""
        if self.trained is None or not self.item:
            return pd.DataFrame(columns=["start_ts", "end_ts", "score"])
        if self.item not in self._scores:
            lo, hi = self.span()
            data = item_arrays(self.platform, self.item, self.trained.fields, lo - self.trained.segment_ms, hi)
            segs = self.trained.score({self.item: data}, lo, hi) if data else None
            self._scores[self.item] = (
                pd.DataFrame({"start_ts": segs.start_ts, "end_ts": segs.end_ts, "score": segs.score})
                if segs is not None
                else pd.DataFrame(columns=["start_ts", "end_ts", "score"])
            )
        return self._scores[self.item]

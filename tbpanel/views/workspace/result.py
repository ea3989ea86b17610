"""The numbers of a model's Result tab, from the anomaly service (no Panel import).

Cards: anomaly count, affected items, peak score, total impact (the sum of score indexes: it
grows with both height and duration, so it is what "how bad was it overall" means here) and
the score range; then the top anomalies, the items ranked by impact, and a per-item, per-day
activity grid for the heatmap.
"""

from __future__ import annotations

import pandas as pd
import param

TOP_COLUMNS = ["item", "device", "start", "end", "hours", "score", "score_index", "active"]
RANK_COLUMNS = ["item", "device", "anomalies", "impact", "peak_score", "anomaly_hours", "active"]


class ResultSummary(param.Parameterized):
    """``refresh()`` re-reads the model's anomalies; the parameters are what the tab shows."""

    model_id = param.String()
    anomalies = param.Integer(default=0)
    affected_items = param.Integer(default=0)
    peak_score = param.Number(default=0.0)
    total_impact = param.Number(default=0.0, doc="Sum of the anomalies' score indexes.")
    score_min = param.Number(default=None, allow_None=True)
    score_max = param.Number(default=None, allow_None=True)
    active = param.Integer(default=0)
    top = param.DataFrame(default=pd.DataFrame(columns=TOP_COLUMNS), doc="Top anomalies by score index.")
    ranked = param.DataFrame(default=pd.DataFrame(columns=RANK_COLUMNS), doc="Items by total impact.")
    activity = param.DataFrame(
        default=pd.DataFrame(columns=["device", "day", "anomalies", "impact"]),
        doc="One row per (device, UTC day) touched by an anomaly.",
    )
    top_n = param.Integer(default=10, bounds=(1, None))

    def __init__(self, service, device_name=None, **params):
        super().__init__(**params)
        self._service = service
        self._name = device_name or (lambda item: item)

    def refresh(self) -> ResultSummary:
        df = self._service.anomalies_frame(self.model_id)
        self.param.update(**summarise(df, self._name, self.top_n))
        return self

    @property
    def score_range(self) -> str:
        if self.score_min is None:
            return "–"
        return f"{self.score_min:,.0f} – {self.score_max:,.0f}"


def summarise(df: pd.DataFrame, name=lambda item: item, top_n: int = 10) -> dict:
    """The ResultSummary parameters for an ``anomalies_frame``."""
    if df.empty:
        return dict(
            anomalies=0,
            affected_items=0,
            peak_score=0.0,
            total_impact=0.0,
            score_min=None,
            score_max=None,
            active=0,
            top=pd.DataFrame(columns=TOP_COLUMNS),
            ranked=pd.DataFrame(columns=RANK_COLUMNS),
            activity=pd.DataFrame(columns=["device", "day", "anomalies", "impact"]),
        )
    df = df.copy()
    names = {item: name(item) for item in df["item"].unique()}
    df["device"] = df["item"].map(names)
    df["hours"] = (df["end"] - df["start"]).dt.total_seconds() / 3600.0
    top = df.sort_values(["score_index", "score"], ascending=False).head(top_n)[TOP_COLUMNS]
    ranked = (
        df.groupby(["item", "device"], as_index=False)
        .agg(
            anomalies=("id", "count"),
            impact=("score_index", "sum"),
            peak_score=("score", "max"),
            anomaly_hours=("hours", "sum"),
            active=("active", "sum"),
        )
        .sort_values(["impact", "peak_score"], ascending=False, ignore_index=True)
    )[RANK_COLUMNS]
    day = df["start"].dt.floor("D")
    activity = (
        df.assign(day=day)
        .groupby(["device", "day"], as_index=False)
        .agg(anomalies=("id", "count"), impact=("score_index", "sum"))
    )
    return dict(
        anomalies=int(len(df)),
        affected_items=int(df["item"].nunique()),
        peak_score=float(df["score"].max()),
        total_impact=float(df["score_index"].sum()),
        score_min=float(df["score"].min()),
        score_max=float(df["score"].max()),
        active=int(df["active"].sum()),
        top=top.reset_index(drop=True),
        ranked=ranked,
        activity=activity,
    )

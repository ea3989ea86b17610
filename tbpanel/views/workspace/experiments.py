"""The Experiments tab's view model: try variants of a model over a range without changing it.

A variant is the model's configuration with a few overrides (sensitivity, segment length,
algorithm, window). :meth:`ExperimentBench.run` scores the stored model and each variant over
the chosen range as one EXPERIMENT task (:meth:`AnomalyService.experiment`, which touches no
anomaly, alarm or saved score); :meth:`ExperimentBench.promote` writes a variant's overrides
into the stored model and rebuilds it when they need a rebuild.

A variant that only lowers the sensitivity lets the marginal segments of a long episode dip
under the threshold, and the Trendz rule (a run of *consecutive* anomalous segments) then splits
the episode into pieces a few segments apart. So variants of a model without a cool-down of its
own inherit the ensemble detector's merge rule (``cooldown_segments``, :attr:`ExperimentBench.merge_segments`
segment lengths): anomalous segments that close together stay one anomaly. Promoting a variant
stores exactly what was compared, its cool-down included.
"""

from __future__ import annotations

import pandas as pd
import param

from ...anomaly.config import ModelConfig
from ...anomaly.scoring import AUTO_COOLDOWN_SEGMENTS
from ...anomaly.service import AnomalyService
from ...clock import DAY_MS, HOUR_MS, now_ms, utc_text
from .model_data import profile_devices

CURRENT = "current"
SEGMENTS = {
    "auto": 0,
    "15 min": 15 * 60_000,
    "30 min": 30 * 60_000,
    "1 h": HOUR_MS,
    "2 h": 2 * HOUR_MS,
    "6 h": 6 * HOUR_MS,
    "1 day": DAY_MS,
}


class Variant(param.Parameterized):
    """One variant: a name and the settings it overrides (None: as the model)."""

    label = param.String(default="variant")
    threshold_percent = param.Number(
        default=None,
        allow_None=True,
        bounds=(0.0, 100.0),
        inclusive_bounds=(False, True),
        doc="Sensitivity: % of training segments anomalous.",
    )
    segment_ms = param.Integer(default=None, allow_None=True, bounds=(0, None))
    window: param.Selector[str | None] = param.Selector(
        default=None, objects=[None, "fixed", "sliding"], allow_None=True
    )
    algorithm: param.Selector[str | None] = param.Selector(
        default=None, objects=[None, "kmeans", "dbscan", "gmm"], allow_None=True
    )

    def overrides(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("threshold_percent", "segment_ms", "window", "algorithm")
            if getattr(self, k) is not None
        }


class ExperimentBench(param.Parameterized):
    """Variants, a range and devices; the last run's results and its comparison table."""

    variants = param.List(default=[], item_type=Variant)
    include_current = param.Boolean(default=True, doc="Compare with the stored model too.")
    start = param.Integer(default=None, allow_None=True)
    end = param.Integer(default=None, allow_None=True)
    items = param.Parameter(default="trained", doc="'trained', 'all' or a list of device ids.")
    task_id = param.String(default="", doc="The running or last experiment task.")
    message = param.String(default="")
    merge_segments = param.Integer(
        default=AUTO_COOLDOWN_SEGMENTS,
        bounds=(0, None),
        doc="Variants of a model without a cool-down of its own merge anomalous segments less than "
        "this many segment lengths apart into one anomaly (the ensemble detector's rule); 0 = as the model.",
    )

    def __init__(self, platform, model, **params):
        end = now_ms() // 60_000 * 60_000
        params.setdefault("start", end - 7 * DAY_MS)
        params.setdefault("end", end)
        super().__init__(**params)
        self.platform, self.model = platform, model
        self.service: AnomalyService = platform.anomaly
        self.devices = profile_devices(platform, model)
        if not self.variants:
            pct = float(model.config.threshold_percent)
            self.variants = [
                Variant(label="more sensitive", threshold_percent=min(pct * 2, 100.0)),
                Variant(label="less sensitive", threshold_percent=pct / 2),
            ]

    # -- checks ----------------------------------------------------------------------------------------
    def overrides(self, variant: Variant) -> dict:
        """What ``variant`` changes in the model: its own knobs, plus the merge rule
        (:attr:`merge_segments`) when the resulting config would have no cool-down."""
        out = variant.overrides()
        cfg = self.model.config.copy(**out)
        if self.merge_segments and cfg.cooldown_segments is None and cfg.detector != "ensemble":
            out["cooldown_segments"] = int(self.merge_segments)
        return out

    def named(self) -> dict[str, dict]:
        return {v.label.strip(): self.overrides(v) for v in self.variants}

    def problems(self) -> list[str]:
        out = []
        labels = [v.label.strip() for v in self.variants]
        if len(self.variants) + (1 if self.include_current else 0) < 2:
            out.append("Pick at least two variants to compare (the stored model counts as one).")
        if any(not lab for lab in labels):
            out.append("Give every variant a name.")
        if len(set(labels)) != len(labels) or CURRENT in labels:
            out.append(f"Variant names must be different from each other and from '{CURRENT}'.")
        for v in self.variants:
            for msg in self.model.config.copy(**v.overrides()).validate():
                out.append(f"{v.label}: {msg}")
        if self.start is None or self.end is None or self.start >= self.end:
            out.append("Choose a range whose end is after its start.")
        return out

    # -- running ----------------------------------------------------------------------------------------
    def run(self):
        """Submit the experiment as a task; None (with :attr:`message`) when the inputs are wrong."""
        problems = self.problems()
        if problems:
            self.message = " ".join(problems)
            return None
        start, end = int(self.start), int(self.end)
        task = self.service.submit_experiment(
            self.model.id, self.named(), start, end, self.items, include_current=self.include_current, keep=2000
        )
        self.task_id = task.id
        self.message = f"Experiment over {utc_text(start)} – {utc_text(end)} UTC running."
        return task

    def task(self):
        return self.platform.tasks.get(self.task_id) if self.task_id else None

    def comparison(self) -> pd.DataFrame:
        """One row per variant (counts and scores side by side); empty until a run is done."""
        t = self.task()
        if t is None or t.status != "DONE":
            return pd.DataFrame(
                columns=["variant", "anomalies", "items", "peak_score", "total_score_index", "anomaly_hours"]
            )
        df = pd.DataFrame(t.result.get("comparison", []))
        return df.round({"peak_score": 1, "total_score_index": 3, "anomaly_hours": 2})

    def anomalies(self) -> pd.DataFrame:
        """Every variant's anomalies: variant, device, start_ts, end_ts, score, score_index."""
        t = self.task()
        cols = ["variant", "device", "item", "start_ts", "end_ts", "score", "score_index"]
        if t is None or t.status != "DONE":
            return pd.DataFrame(columns=cols)
        rows = [
            {
                "variant": name,
                "device": self.devices.get(a["item"], a["item"]),
                "item": a["item"],
                "start_ts": int(a["start_ts"]),
                "end_ts": int(a["end_ts"]),
                "score": float(a["score"]),
                "score_index": float(a["score_index"]),
            }
            for name, recs in t.result.get("anomalies", {}).items()
            for a in recs
        ]
        return pd.DataFrame(rows, columns=cols)

    # -- promoting ---------------------------------------------------------------------------------------
    def promote(self, label: str):
        """Make a variant the stored model: its overrides are saved, with a rebuild if they need one.
        Returns the rebuild task (None when nothing needed rebuilding)."""
        variant = next((v for v in self.variants if v.label.strip() == label), None)
        if variant is None:
            self.message = f"No variant named {label!r}."
            return None
        changes = self.overrides(variant)
        model = self.service.get_model(self.model.id)
        config = None if model is None else model.config
        if config is None:
            self.message = "Not promoted: the model has been deleted."
            return None
        needs = ModelConfig.needs_rebuild(config, config.copy(**changes))
        try:
            self.model, task = self.service.update_model(self.model.id, changes, rebuild=bool(needs))
        except ValueError as exc:
            self.message = f"Not promoted: {exc}"
            return None
        self.message = (
            f"Promoted {label!r}: the model is rebuilding with {changes} (see Tasks)."
            if task is not None
            else f"Promoted {label!r}: {changes} saved (no rebuild needed)."
        )
        return task

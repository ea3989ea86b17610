"""The Input tab's view model: a draft of the model's settings, checked and previewed before saving.

The draft is a copy of the stored :class:`ModelConfig`; nothing is stored until :meth:`save`.
Before that the tab can say which changes need a rebuild (``ModelConfig.needs_rebuild``), what
is wrong next to each field (``validate_by_field``) and, for the severity thresholds, how many
of the model's anomalies would raise an alarm of each severity (the *alarm preview*).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from ...anomaly.config import SEVERITIES, ModelConfig
from ...anomaly.scoring import severity_for
from ...anomaly.service import RebuildRequired

#: the knobs grouped as the tab shows them
SECTIONS: dict[str, list[str]] = {
    "Data": ["name", "device_type", "fields", "items", "train_start", "train_end"],
    "Segmentation": [
        "segment_ms",
        "segment_points",
        "window",
        "sliding_step_percent",
        "max_gap_ms",
        "min_duration_ms",
        "min_points",
    ],
    "Comparison": ["comparison", "aggregation_points", "aggregation", "features", "clip"],
    "Algorithm": [
        "algorithm",
        "n_clusters",
        "auto_clusters",
        "max_iter",
        "dbscan_eps",
        "dbscan_min_samples",
        "gmm_components",
        "gmm_covariance",
        "distance",
        "dtw_band_percent",
        "random_state",
    ],
    "Scoring": ["threshold_percent", "min_anomaly_duration_ms", "cluster_joining", "max_points", "max_segments"],
    "Saving scores": ["telemetry_key", "storage_frequency_ms"],
    "Alarms": ["alarm_type", "alarm_on_delete"],
    "Adaptive": ["adaptive", "refit_every_segments"],
}
DELETE_BEHAVIOUR = {
    "clear": "When an anomaly is deleted (reprocess, rebuild, model deletion) its alarm is cleared and stays "
    "in the alarm history.",
    "delete": "When an anomaly is deleted (reprocess, rebuild, model deletion) its alarm is deleted too.",
}


class InputDraft(param.Parameterized):
    """Unsaved settings of one model and what saving them would do."""

    draft: param.ClassSelector[ModelConfig] = param.ClassSelector(class_=ModelConfig)  # type: ignore[assignment]  # required, never None
    message = param.String(default="", doc="The outcome of the last save, for people.")

    def __init__(self, platform, model, **params):
        params.setdefault("draft", model.config.copy())
        super().__init__(**params)
        self.platform, self.model = platform, model
        self.service = platform.anomaly
        self.trained = self.service.trained(model.id)
        self._anomalies = self.service.anomalies(model.id)
        for sev in SEVERITIES:  # show the build's defaults as values people can edit
            if getattr(self.draft, f"{sev}_threshold") is None and self.trained is not None:
                self.draft.param.update(**{f"{sev}_threshold": self.trained.severity_defaults.get(sev, 100.0)})
        self._baseline = self.draft.copy()

    # -- checks -----------------------------------------------------------------------------------
    def errors(self) -> dict[str, list[str]]:
        return self.draft.validate_by_field()

    def changes(self) -> dict:
        """Knobs that differ from the stored model (thresholds shown as defaults are not changes)."""
        a, b = self._baseline.to_dict(), self.draft.to_dict()
        return {k: v for k, v in b.items() if a.get(k) != v}

    def rebuild_needed(self) -> list[str]:
        """Changed knobs that need a rebuild (empty: saving applies in place)."""
        if self.model.status == "NEW":
            return []
        return ModelConfig.needs_rebuild(self._baseline, self.draft)

    def rebuild_note(self) -> str:
        needs = self.rebuild_needed()
        if not needs:
            return ""
        n = len(self._anomalies)
        return (
            f"Changing {', '.join(needs)} requires a rebuild. Saving will rebuild the model: its {n} "
            f"anomal{'y' if n == 1 else 'ies'} are deleted (their alarms are "
            f"{'cleared' if self.model.config.alarm_on_delete == 'clear' else 'deleted'}) and refresh is "
            f"switched off until you switch it on again in Jobs."
        )

    # -- thresholds and the alarm preview ------------------------------------------------------------
    def thresholds(self) -> dict[str, float]:
        """Enabled tiers of the draft, ``{severity: threshold}``."""
        out = {}
        for sev in SEVERITIES:
            v = getattr(self.draft, f"{sev}_threshold")
            if getattr(self.draft, f"{sev}_enabled"):
                out[sev] = float(
                    v
                    if v is not None
                    else (self.trained.severity_defaults.get(sev, 100.0) if self.trained is not None else 100.0)
                )
        return out

    def train_scores(self) -> np.ndarray:
        return self.trained.train_scores if self.trained is not None else np.empty(0)

    def alarm_preview(self) -> pd.DataFrame:
        """Per tier: its threshold, the anomalies that would get an alarm of that severity, and
        the training segments scoring at or above it; a last row counts anomalies without alarm."""
        th = self.thresholds()
        sev = [severity_for(float(a["score"]), th) for a in self._anomalies]
        scores = self.train_scores()
        rows = [
            {
                "severity": s.upper(),
                "threshold": th.get(s),
                "anomalies": sum(x == s for x in sev),
                "training_segments": int(np.sum(scores >= th[s])) if s in th else None,
                "enabled": s in th,
            }
            for s in SEVERITIES
        ]
        rows.append(
            {
                "severity": "NO ALARM",
                "threshold": None,
                "anomalies": sum(x is None for x in sev),
                "training_segments": None,
                "enabled": True,
            }
        )
        return pd.DataFrame(rows)

    # -- saving -------------------------------------------------------------------------------------------
    def reset(self) -> None:
        base = self._baseline.to_dict()
        self.draft.param.update(**{k: v for k, v in base.items() if getattr(self.draft, k) != v})
        self.message = ""

    def save(self, rebuild: bool = False):
        """Store the draft; returns the rebuild task (or None). Errors become :attr:`message`."""
        changes = self.changes()
        if not changes:
            self.message = "Nothing changed."
            return None
        errors = self.draft.validate()
        if errors:
            self.message = "Not saved: " + "; ".join(errors)
            return None
        try:
            model, task = self.service.update_model(self.model.id, changes, rebuild=rebuild)
        except RebuildRequired as exc:
            self.message = f"Not saved: {exc}."
            return None
        except ValueError as exc:
            self.message = f"Not saved: {exc}"
            return None
        self.model = model
        self._baseline = self.draft.copy()
        self.message = "Saved; the rebuild is running (see Tasks)." if task is not None else "Saved."
        return task

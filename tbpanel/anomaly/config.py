"""Anomaly model configuration: every knob of the behaviour contract in one ``param`` object.

``ModelConfig`` is a pure domain object (no Panel import): the wizard and the *Input* tab render
it, notebooks build it by hand, the store persists it with :meth:`ModelConfig.to_json`.

Knobs whose value is ``0`` and whose doc says *auto* are resolved from the data when a model is
built (:meth:`ModelConfig.resolved`), from the median sampling step of the training data, so
the defaults adapt to 1-second and 1-hour data alike; the resolved values are kept in the
trained model.
"""

from __future__ import annotations

import json
import math
from typing import Any

import param

#: Longest model name (characters), as for device and customer names.
MAX_NAME_LENGTH = 255

__all__ = ["ModelConfig", "FEATURES", "INTENTS", "SENSITIVITIES", "SEVERITIES"]

#: feature names understood by feature-based comparison (per field, in this order)
FEATURES = ("min", "max", "mean", "std", "cv", "slope", "q10", "q25", "q50", "q75", "q90")
INTENTS = ("quick_scan", "operational_monitoring", "comparative_analysis", "health_monitoring")
SENSITIVITIES = ("low", "medium", "high")
SEVERITIES = ("warning", "minor", "major", "critical")

# auto rules (see ModelConfig.resolved): max gap = max(4 steps, 1/4 segment), min points = half
# the expected points
AUTO_GAP_STEPS = 4
AUTO_GAP_FRACTION = 0.25
AUTO_MIN_POINTS_FRACTION = 0.5

_HOUR = 3_600_000
_DAY = 24 * _HOUR

# "Calendar" durations: each divides a day (or is whole days / weeks), and so does its half, so
# fixed and 50 % sliding segments fall at the same times of day every day. The wizard's presets
# round up to one of these.
_SEC, _MIN = 1_000, 60_000
_NICE_MS = (
    [_SEC * s for s in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)]
    + [_MIN * m for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)]
    + [_HOUR * h for h in (1, 2, 3, 4, 6, 8, 12)]
    + [_DAY, 2 * _DAY, 7 * _DAY]
)


def nice_duration(ms: float) -> int:
    """The smallest calendar duration >= ``ms`` (whole weeks past 7 days; ``ms`` itself below 1 s)."""
    if ms < _SEC:
        return max(int(math.ceil(ms)), 1)
    for v in _NICE_MS:
        if v >= ms:
            return v
    return int(math.ceil(ms / (7 * _DAY)) * 7 * _DAY)


class ModelConfig(param.Parameterized):
    """Configuration of one anomaly model (see reference/anomaly-detection.md)."""

    name = param.String(default="anomaly model", doc="Model name (changes without a rebuild).")

    # ---------------------------------------------------------------- data
    device_type = param.String(default="", doc="Entity type / device profile the model is built for.")
    fields = param.List(default=[], item_type=str, doc="Numeric telemetry keys; empty = every numeric key of the data.")
    items = param.List(default=[], item_type=str, doc="Devices to train on; empty = all devices of the profile.")
    train_start = param.Integer(default=None, allow_None=True, doc="Training range start (ms, inclusive).")
    train_end = param.Integer(default=None, allow_None=True, doc="Training range end (ms, exclusive).")

    # ---------------------------------------------------------- segmentation
    segment_ms = param.Integer(
        default=0,
        bounds=(0, None),
        doc="Segment time range in ms; 0 = auto: segment_points x the median "
        "sampling step (24 x a 1 s / 1 min / 5 min / 1 h step divides a "
        "day, so daily cycles line up segment for segment).",
    )
    segment_points = param.Integer(
        default=24, bounds=(2, None), doc="Expected points per segment when segment_ms is auto."
    )
    window: param.Selector[str] = param.Selector(
        default="sliding", objects=["fixed", "sliding"], doc="Fixed (no overlap) or sliding windows."
    )
    sliding_step_percent = param.Number(
        default=50.0, bounds=(1.0, 100.0), doc="Sliding step as a percentage of the segment length."
    )
    max_gap_ms = param.Integer(
        default=0,
        bounds=(0, None),
        doc="Largest time gap allowed inside a segment (edges included); "
        "0 = auto (the larger of 4 x the median step and a quarter of "
        "the segment). Larger gap -> segment discarded.",
    )
    min_duration_ms = param.Integer(
        default=0,
        bounds=(0, None),
        doc="Minimum covered duration (last - first point) of a segment; 0 = auto (half the segment).",
    )
    min_points = param.Integer(
        default=0,
        bounds=(0, None),
        doc="Minimum points per field in a segment; 0 = auto (half the expected points, at least 2).",
    )

    # ------------------------------------------------------------ comparison
    comparison: param.Selector[str] = param.Selector(
        default="behavior",
        objects=["behavior", "feature"],
        doc="Behavior-based (shape) or feature-based (statistics) comparison.",
    )
    aggregation_points = param.Integer(
        default=0,
        bounds=(0, None),
        doc="Sub-intervals per segment (behavior-based); 0 = auto (one per two expected points, 2..48).",
    )
    aggregation: param.Selector[str] = param.Selector(
        default="AVG",
        objects=["AVG", "MIN", "MAX", "SUM", "COUNT"],
        doc="Aggregation inside each sub-interval (behavior-based).",
    )
    features = param.List(
        default=list(FEATURES), item_type=str, doc="Statistics per field for feature-based comparison."
    )
    clip = param.Number(
        default=1.0, bounds=(0.0, None), doc="Normalised values are clipped to [-clip, 1 + clip] (extreme noise)."
    )

    # -------------------------------------------------------------- detector
    detector: param.Selector[str] = param.Selector(
        default="clustering",
        objects=["clustering", "ensemble"],
        doc="clustering (default): Trendz semantics, distance to the nearest cluster, "
        "threshold = threshold_percent of the training segments; ensemble: calibrated scores "
        "of four members (the cluster distance, nearest-neighbour discords of the segment's "
        "shape and of its level statistics, and the distance to the same phase of the recent "
        "cycles), each thresholded by a peaks-over-threshold fit of its training scores "
        "(tail_risk).",
    )
    tail_risk = param.Number(
        default=1e-2,
        bounds=(0.0, 0.5),
        inclusive_bounds=(False, True),
        doc="Ensemble: probability that a normal segment scores >= 100, from a "
        "generalised-Pareto fit of the training scores' upper tail.",
    )
    cooldown_segments = param.Integer(
        default=None,
        allow_None=True,
        bounds=(0, None),
        doc="An anomaly stays open (active) until this many segment "
        "lengths pass without an anomalous segment; anomalous "
        "segments within it extend the same anomaly (one alarm per "
        "episode). None = auto: 0 for clustering (Trendz), "
        "4 segment lengths for the ensemble.",
    )

    # ------------------------------------------------------------- algorithm
    algorithm: param.Selector[str] = param.Selector(default="kmeans", objects=["kmeans", "dbscan", "gmm"])
    n_clusters = param.Integer(default=8, bounds=(1, None), doc="K-Means cluster count (if not auto).")
    auto_clusters = param.Boolean(
        default=True,
        doc="Pick the cluster count (K-Means: silhouette, GMM: BIC, "
        "DBSCAN: epsilon from the k-distance curve) and record how.",
    )
    max_iter = param.Integer(default=300, bounds=(1, None))
    dbscan_eps = param.Number(default=0.5, bounds=(0.0, None), inclusive_bounds=(False, True))
    dbscan_min_samples = param.Integer(default=5, bounds=(1, None))
    gmm_components = param.Integer(default=4, bounds=(1, None))
    gmm_covariance: param.Selector[str] = param.Selector(default="diag", objects=["diag", "full", "spherical", "tied"])
    distance: param.Selector[str] = param.Selector(
        default="euclidean", objects=["euclidean", "manhattan", "chebyshev", "canberra", "dtw"]
    )
    dtw_band_percent = param.Number(
        default=10.0, bounds=(0.0, 100.0), doc="Sakoe-Chiba band width for DTW, percent of the length."
    )
    random_state = param.Integer(default=0, doc="Seed for clustering and sub-sampling.")

    # --------------------------------------------------------------- scoring
    threshold_percent = param.Number(
        default=1.0,
        bounds=(0.0, 100.0),
        inclusive_bounds=(False, True),
        doc="Share of training segments that count as anomalous (%).",
    )
    min_anomaly_duration_ms = param.Integer(default=0, bounds=(0, None))
    cluster_joining = param.Boolean(
        default=True, doc="Adjacent anomalous segments form one anomaly even when their nearest clusters differ."
    )
    max_points = param.Integer(
        default=0, bounds=(0, None), doc="Training: at most this many latest points per item and field (0 = no cap)."
    )
    max_segments = param.Integer(
        default=50_000, bounds=(0, None), doc="Training: at most this many segments, sampled evenly (0 = no cap)."
    )

    # --------------------------------------------------------------- outputs
    telemetry_key = param.String(default="anomaly", doc="Scores saved as _EAD_<key> / _EID_<key>.")
    storage_frequency_ms = param.Integer(default=_HOUR, bounds=(1, None))
    alarm_type = param.String(default="Anomaly")
    warning_threshold = param.Number(
        default=None, allow_None=True, bounds=(0, None), doc="None = default from the build (100)."
    )
    warning_enabled = param.Boolean(default=True)
    minor_threshold = param.Number(
        default=None,
        allow_None=True,
        bounds=(0, None),
        doc="None = default from the build (median of training scores >= 100).",
    )
    minor_enabled = param.Boolean(default=True)
    major_threshold = param.Number(
        default=None, allow_None=True, bounds=(0, None), doc="None = default from the build (80th percentile)."
    )
    major_enabled = param.Boolean(default=True)
    critical_threshold = param.Number(
        default=None, allow_None=True, bounds=(0, None), doc="None = default from the build (95th percentile)."
    )
    critical_enabled = param.Boolean(default=True)
    alarm_on_delete: param.Selector[str] = param.Selector(default="clear", objects=["clear", "delete"])

    # -------------------------------------------------------------- adaptive
    adaptive = param.Boolean(
        default=False,
        doc="Re-fit normalisation, clusters and thresholds on everything seen "
        "so far, every refit_every_segments new segments (causal).",
    )
    refit_every_segments = param.Integer(
        default=8, bounds=(1, None), doc="New segments (segment starts) between adaptive re-fits."
    )

    #: knobs that change without a rebuild
    REBUILD_FREE = frozenset(
        {
            "name",
            "telemetry_key",
            "storage_frequency_ms",
            "alarm_type",
            "alarm_on_delete",
            "warning_threshold",
            "warning_enabled",
            "minor_threshold",
            "minor_enabled",
            "major_threshold",
            "major_enabled",
            "critical_threshold",
            "critical_enabled",
        }
    )

    # ------------------------------------------------------------ validation
    def validate_by_field(self) -> dict[str, list[str]]:
        """Cross-field checks (single-value checks are enforced by ``param`` on assignment)."""
        msgs: dict[str, list[str]] = {}

        def bad(field: str, msg: str) -> None:
            msgs.setdefault(field, []).append(msg)

        if not self.name.strip():
            bad("name", "Give the model a name.")
        elif len(self.name) > MAX_NAME_LENGTH:
            bad("name", f"Keep the name to {MAX_NAME_LENGTH} characters.")
        if len(set(self.fields)) != len(self.fields):
            bad("fields", "Each field may be listed only once.")
        if any(not f.strip() for f in self.fields):
            bad("fields", "Field names must not be empty.")
        if len(set(self.items)) != len(self.items):
            bad("items", "Each item may be listed only once.")
        if self.train_start is not None and self.train_end is not None and self.train_end <= self.train_start:
            bad("train_end", "The training range must end after it starts.")
        seg = self.segment_ms
        if seg:
            if self.max_gap_ms and self.max_gap_ms > seg:
                bad("max_gap_ms", "The max gap is longer than the segment, so it filters nothing.")
            if self.min_duration_ms and self.min_duration_ms > seg:
                bad("min_duration_ms", "The min segment duration cannot exceed the segment length.")
            if self.window == "sliding" and seg * self.sliding_step_percent / 100.0 < 1:
                bad("sliding_step_percent", "The sliding step is shorter than 1 ms.")
        if self.comparison == "feature":
            if not self.features:
                bad("features", "Choose at least one feature for feature-based comparison.")
            unknown = [f for f in self.features if f not in FEATURES]
            if unknown:
                bad("features", f"Unknown feature(s) {', '.join(unknown)}; choose from {', '.join(FEATURES)}.")
            if len(set(self.features)) != len(self.features):
                bad("features", "Each feature may be listed only once.")
            if self.distance == "dtw":
                bad("distance", "DTW compares shapes; use it with behavior-based comparison.")
        if self.comparison == "behavior" and self.aggregation_points == 1 and self.distance == "dtw":
            bad("aggregation_points", "DTW needs at least 2 aggregation points.")
        if self.algorithm == "kmeans" and not self.auto_clusters and self.n_clusters < 1:
            bad("n_clusters", "Use at least one cluster.")
        if self.algorithm == "gmm" and self.distance != "euclidean":
            bad(
                "distance",
                "A Gaussian mixture scores by negative log-likelihood; the distance "
                "setting is only used with K-Means and DBSCAN.",
            )
        last = None
        for sev in SEVERITIES:
            v = getattr(self, f"{sev}_threshold")
            if v is None or not getattr(self, f"{sev}_enabled"):
                continue
            if last is not None and v < last[1]:
                bad(
                    f"{sev}_threshold",
                    f"The {sev.upper()} threshold ({v:g}) is below the {last[0].upper()} threshold ({last[1]:g}).",
                )
            last = (sev, v)
        if not any(getattr(self, f"{s}_enabled") for s in SEVERITIES):
            bad("warning_enabled", "Enable at least one severity, or anomalies never raise alarms.")
        if not self.telemetry_key.strip():
            bad("telemetry_key", "Give a telemetry key for the saved scores.")
        elif not all(c.isalnum() or c in "_-." for c in self.telemetry_key):
            bad("telemetry_key", "Use letters, digits, '_', '-' or '.' in the telemetry key.")
        if not self.alarm_type.strip():
            bad("alarm_type", "Give an alarm type.")
        return msgs

    def validate(self) -> list[str]:
        """Human messages, each prefixed by the knob it is about (``"field: message"``)."""
        return [f"{k}: {m}" for k, ms in self.validate_by_field().items() for m in ms]

    def check(self) -> ModelConfig:
        msgs = self.validate()
        if msgs:
            raise ValueError("Invalid model configuration:\n" + "\n".join(msgs))
        return self

    # --------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(getattr(self, k)) for k in self.param if k != "name"} | {"name": self.name}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = set(cls.param)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown model configuration knob(s): {', '.join(sorted(unknown))}")
        return cls(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()})

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    def copy(self, **changes: Any) -> ModelConfig:
        return type(self).from_dict(self.to_dict() | changes)

    @classmethod
    def needs_rebuild(cls, old: ModelConfig, new: ModelConfig) -> list[str]:
        """Names of changed knobs that require a rebuild (sorted); empty = apply in place."""
        a, b = old.to_dict(), new.to_dict()
        return sorted(k for k in a if k not in cls.REBUILD_FREE and a[k] != b.get(k))

    # ------------------------------------------------------ auto resolution
    def resolved(self, step_ms: float) -> ModelConfig:
        """A copy with every *auto* knob (value 0) filled from the median sampling step."""
        step = max(float(step_ms), 1.0)
        c = self.copy()
        if not c.segment_ms:
            c.segment_ms = int(round(c.segment_points * step))
        seg = c.segment_ms
        pts = max(seg / step, 1.0)
        if not c.max_gap_ms:
            c.max_gap_ms = int(min(max(round(AUTO_GAP_STEPS * step), round(AUTO_GAP_FRACTION * seg), 1), seg))
        if not c.min_duration_ms:
            c.min_duration_ms = int(seg // 2)
        if not c.min_points:
            c.min_points = int(max(2, math.floor(pts * AUTO_MIN_POINTS_FRACTION)))
        if not c.aggregation_points:
            c.aggregation_points = int(min(max(round(pts / 2), 2), 48))
        return c

    def step_ms(self) -> int:
        """Distance between consecutive segment starts (needs a resolved ``segment_ms``)."""
        if self.window == "fixed":
            return int(self.segment_ms)
        return max(int(round(self.segment_ms * self.sliding_step_percent / 100.0)), 1)

    # ---------------------------------------------------------------- presets
    @classmethod
    def preset(cls, intent: str, sensitivity: str = "medium", step_ms: float = 60_000, **overrides: Any) -> ModelConfig:
        """Wizard presets: intent x sensitivity, segment lengths from the data step.

        Segments are rounded up to calendar durations (they divide a day) so daily cycles line
        up; sensitivity sets the threshold percent (low 0.5 %, medium 1 %, high 2 %)."""
        if intent not in INTENTS:
            raise ValueError(f"intent must be one of {', '.join(INTENTS)}")
        if sensitivity not in SENSITIVITIES:
            raise ValueError(f"sensitivity must be one of {', '.join(SENSITIVITIES)}")
        step = max(float(step_ms), 1.0)
        pct = {"low": 0.5, "medium": 1.0, "high": 2.0}[sensitivity]
        kw: dict[str, Any]
        if intent == "quick_scan":
            # one pass over history: coarse fixed windows, no adaptation
            kw = dict(
                window="fixed", segment_ms=nice_duration(max(48 * step, _HOUR)), comparison="behavior", adaptive=False
            )
        elif intent == "operational_monitoring":
            # the benchmarked monitoring setup: ~24-point sliding windows, adaptive re-fits
            kw = dict(
                window="sliding",
                sliding_step_percent=50.0,
                segment_ms=nice_duration(24 * step),
                comparison="behavior",
                adaptive=True,
            )
        elif intent == "comparative_analysis":
            # daily (or longer) statistics, compared across items
            kw = dict(
                window="fixed", segment_ms=nice_duration(max(48 * step, _DAY)), comparison="feature", adaptive=False
            )
        else:  # health_monitoring: slow degradation -> long sliding windows
            kw = dict(
                window="sliding",
                sliding_step_percent=25.0,
                segment_ms=nice_duration(max(96 * step, 6 * _HOUR)),
                comparison="behavior",
                adaptive=False,
            )
        kw.update(threshold_percent=pct, storage_frequency_ms=_storage_advice(kw["segment_ms"], kw))
        kw.update(overrides)
        return cls(**kw)


def _storage_advice(seg: int, kw: dict[str, Any]) -> int:
    """Storage frequency >= 1 h when possible, below the segment (fixed) or the step (sliding)."""
    bound = seg * (kw.get("sliding_step_percent", 25.0) / 100.0 if kw.get("window") == "sliding" else 1.0)
    if bound > _HOUR:
        return _HOUR
    # below the bound: the largest nice value strictly under it (or the bound itself)
    cands = [v for v in _NICE_MS if v < bound]
    return cands[-1] if cands else max(int(bound), 1)


def _plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v

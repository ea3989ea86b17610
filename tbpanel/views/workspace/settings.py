"""How each :class:`~tbpanel.anomaly.config.ModelConfig` knob is shown to people: one table of
label, unit, help and kind of input per knob.

The wizard's *Advanced* form derives every field from this table, so no knob reaches a page as
its Python name ("Dbscan eps") or as raw epoch milliseconds; a test checks that every knob has
a row. ``kind`` says which input fits: ``duration`` (a choice of lengths, stored as ms),
``date`` (a date picker, stored as epoch ms), ``devices`` (a picker of devices by name, stored
as ids), ``keys`` and ``features`` (pickers of names), else the param type's plain input.
No Panel import.
"""

from __future__ import annotations

from typing import NamedTuple

from ...anomaly.config import FEATURES, ModelConfig
from ...clock import DAY_MS, HOUR_MS, MINUTE_MS, duration_text

SECOND_MS = 1000


class Setting(NamedTuple):
    label: str
    unit: str = ""
    help: str = ""
    kind: str = ""  # "" = the param type's own input

    @property
    def title(self) -> str:
        """The field's label as shown: the label and its unit (unless the label names it already)."""
        return f"{self.label} ({self.unit})" if self.unit and self.unit not in self.label.lower() else self.label


_AUTO = " 'auto' = worked out from the data when the model is built."

#: every ModelConfig knob, in the config's own order
SETTINGS: dict[str, Setting] = {
    "name": Setting("Model name", help="Changes without a rebuild."),
    # data
    "device_type": Setting("Device profile", help="The devices of this profile are what the model learns from."),
    "fields": Setting("Telemetry keys", help="Numeric keys to learn from; none = every numeric key.", kind="keys"),
    "items": Setting("Devices", help="Devices to train on; none chosen = every device of the profile.", kind="devices"),
    "train_start": Setting("Training from (UTC)", help="First moment of the training range.", kind="date"),
    "train_end": Setting("Training to (UTC)", help="End of the training range (not included).", kind="date"),
    # segmentation
    "segment_ms": Setting(
        "Segment length",
        help="The stretch of time compared with normal behaviour: shorter catches spikes, longer slow changes." + _AUTO,
        kind="duration",
    ),
    "segment_points": Setting("Points per segment", "points", "Expected points per segment when the length is auto."),
    "window": Setting("Windows", help="Fixed: segments side by side. Sliding: overlapping segments."),
    "sliding_step_percent": Setting("Sliding step", "% of segment", "How far each sliding window moves on."),
    "max_gap_ms": Setting(
        "Largest gap inside a segment",
        help="A segment with a longer gap between points is left out." + _AUTO,
        kind="duration",
    ),
    "min_duration_ms": Setting(
        "Shortest covered time per segment",
        help="First to last point; segments covering less are left out." + _AUTO,
        kind="duration",
    ),
    "min_points": Setting("Fewest points per segment", "points", "Per key; 0 = auto (half the expected points)."),
    # comparison
    "comparison": Setting(
        "Compare by", help="behavior: the curve's shape; feature: statistics such as mean and slope."
    ),
    "aggregation_points": Setting(
        "Values per segment", "points", "Sub-intervals a segment's curve is averaged into; 0 = auto."
    ),
    "aggregation": Setting("Aggregation", help="How the values in each sub-interval are combined."),
    "features": Setting(
        "Statistics", help="Per key, for feature-based comparison: " + ", ".join(FEATURES) + ".", kind="features"
    ),
    "clip": Setting("Clip extremes at", "× normal range", "Normalised values beyond this are cut (noise guard)."),
    # detector
    "detector": Setting(
        "Detector", help="clustering: distance to the nearest cluster of normal segments; ensemble: calibrated scores."
    ),
    "tail_risk": Setting("Ensemble tail risk", "probability", "Chance that a normal segment scores 100 or more."),
    "cooldown_segments": Setting(
        "Cool-down", "segments", "An anomaly stays open this many quiet segments; empty = auto."
    ),
    # algorithm
    "algorithm": Setting("Clustering algorithm", help="K-Means, DBSCAN (density) or a Gaussian mixture."),
    "n_clusters": Setting("K-Means clusters", "clusters", "Used when the cluster count is not picked automatically."),
    "auto_clusters": Setting("Pick the cluster count automatically", help="Silhouette, BIC or the k-distance curve."),
    "max_iter": Setting("Iterations at most", "iterations", "Upper bound for the clustering's fitting loop."),
    "dbscan_eps": Setting("DBSCAN radius (ε)", "normalised units", "Neighbourhood size for DBSCAN clusters."),
    "dbscan_min_samples": Setting("DBSCAN core size", "segments", "Neighbours a segment needs to start a cluster."),
    "gmm_components": Setting("Gaussian mixture components", "components", "Number of Gaussians in the mixture."),
    "gmm_covariance": Setting("Gaussian mixture covariance", help="Shape of each Gaussian's spread."),
    "distance": Setting("Distance", help="How far apart two segments are; DTW tolerates small shifts in time."),
    "dtw_band_percent": Setting("DTW band", "% of length", "How far in time DTW may stretch a curve."),
    "random_state": Setting("Random seed", help="Same seed, same clusters: builds are repeatable."),
    # scoring
    "threshold_percent": Setting(
        "Anomalous share", "% of training segments", "Training segments at least this unusual count as anomalous."
    ),
    "min_anomaly_duration_ms": Setting(
        "Shortest anomaly", help="Anomalies shorter than this are dropped; none = keep all.", kind="duration"
    ),
    "cluster_joining": Setting(
        "Join adjacent anomalous segments", help="Even when their nearest clusters differ: one anomaly per episode."
    ),
    "max_points": Setting("Latest points per device and key", "points", "Training reads at most this many; 0 = all."),
    "max_segments": Setting("Training segments at most", "segments", "Sampled evenly when there are more; 0 = all."),
    # outputs and alarms
    "telemetry_key": Setting("Saved score key", help="Scores are saved as _EAD_<key> / _EID_<key>."),
    "storage_frequency_ms": Setting(
        "Save scores every", help="How often the saved score series gets a point.", kind="duration"
    ),
    "alarm_type": Setting("Alarm type", help="The type of the alarms this model raises."),
    "warning_threshold": Setting("Warning threshold", "score", "Empty = from the build (100)."),
    "warning_enabled": Setting("Raise WARNING alarms", help="Off: anomalies scoring in this band raise no alarm."),
    "minor_threshold": Setting("Minor threshold", "score", "Empty = from the build (median of scores ≥ 100)."),
    "minor_enabled": Setting("Raise MINOR alarms", help="Off: anomalies scoring in this band raise no alarm."),
    "major_threshold": Setting("Major threshold", "score", "Empty = from the build (80th percentile)."),
    "major_enabled": Setting("Raise MAJOR alarms", help="Off: anomalies scoring in this band raise no alarm."),
    "critical_threshold": Setting("Critical threshold", "score", "Empty = from the build (95th percentile)."),
    "critical_enabled": Setting("Raise CRITICAL alarms", help="Off: anomalies scoring in this band raise no alarm."),
    "alarm_on_delete": Setting("When an anomaly is deleted", help="clear: its alarm is cleared; delete: removed."),
    # adaptive
    "adaptive": Setting("Adaptive re-fits", help="Re-learn normal from everything seen so far, as data arrives."),
    "refit_every_segments": Setting("Re-fit every", "segments", "New segments between adaptive re-fits."),
}

#: lengths offered for duration settings (plus the current value and, where it applies, auto)
DURATIONS_MS = (
    *(s * SECOND_MS for s in (1, 5, 10, 15, 30)),
    *(m * MINUTE_MS for m in (1, 2, 5, 10, 12, 15, 20, 30)),
    *(h * HOUR_MS for h in (1, 2, 3, 4, 6, 8, 12)),
    DAY_MS,
    2 * DAY_MS,
    7 * DAY_MS,
)


def setting(knob: str) -> Setting:
    """The row of ``knob`` (KeyError for a knob without one: the table must cover every knob)."""
    return SETTINGS[knob]


def help_text(knob: str) -> str:
    """The row's help, else the knob's own doc, whitespace folded."""
    s = SETTINGS[knob]
    return " ".join((s.help or ModelConfig.param[knob].doc or "").split())


def duration_options(knob: str, value: int | None) -> dict[str, int]:
    """Label -> ms for a duration knob: ``auto`` (0) where 0 means auto or none, the offered lengths
    and the current value, shortest first."""
    p = ModelConfig.param[knob]
    lowest = p.bounds[0] if p.bounds else 0
    values = sorted({v for v in DURATIONS_MS if v >= (lowest or 0)} | ({int(value)} if value else set()))
    out: dict[str, int] = {}
    if lowest == 0:
        out["none" if knob == "min_anomaly_duration_ms" else "auto"] = 0
    for v in values:
        out[duration_text(v, exact=True)] = v
    return out


def device_options(devices: dict[str, str], chosen: list[str]) -> dict[str, str]:
    """Name -> id for a device picker: the profile's devices, plus any chosen id the profile does not
    hold (shown as ``unknown device <id>`` so it can be removed, never silently dropped)."""
    out = dict(sorted(devices.items()))
    known = set(out.values())
    for item in chosen:
        if item not in known:
            out[f"unknown device {item}"] = item
    return out

"""Segment-clustering anomaly detection (pure numpy/sklearn, no storage or Panel access).

```python
from tbpanel.anomaly import ModelConfig, fit, assemble
trained = fit(ModelConfig(fields=["temperature"]), {"dev1": {"temperature": (ts_ms, values)}})
anomalies = assemble(trained.score(data, start_ms, end_ms), trained.config)
```
"""

from __future__ import annotations

from .clustering import ClusterModel, fit_clusters
from .config import FEATURES, INTENTS, SENSITIVITIES, SEVERITIES, ModelConfig
from .discord import DiscordModel, fit_discord
from .distances import METRICS, dtw_naive, dtw_pairs, nearest, pairwise
from .engine import Cancelled, ItemData, TrainedModel, fit, refit
from .ensemble import EnsembleModel, fit_ensemble
from .features import Normalizer, behavior_matrix, feature_matrix
from .scoring import (
    AnomalyRecord,
    ScoredSegments,
    assemble,
    default_severity_thresholds,
    effective_thresholds,
    severity_for,
    threshold_distance,
)
from .segments import SegmentTable, median_step, segment_item
from .tail import pot_threshold

__all__ = [
    "ModelConfig",
    "FEATURES",
    "INTENTS",
    "SENSITIVITIES",
    "SEVERITIES",
    "ItemData",
    "TrainedModel",
    "ScoredSegments",
    "AnomalyRecord",
    "Cancelled",
    "fit",
    "refit",
    "assemble",
    "SegmentTable",
    "segment_item",
    "median_step",
    "Normalizer",
    "behavior_matrix",
    "feature_matrix",
    "METRICS",
    "pairwise",
    "nearest",
    "dtw_pairs",
    "dtw_naive",
    "ClusterModel",
    "fit_clusters",
    "threshold_distance",
    "default_severity_thresholds",
    "effective_thresholds",
    "severity_for",
    "EnsembleModel",
    "fit_ensemble",
    "DiscordModel",
    "fit_discord",
    "pot_threshold",
]

"""Threshold, score = 100 at d_thr, anomaly assembly, score index, severities (hand-made inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from tbpanel.anomaly import (
    AnomalyRecord,
    ModelConfig,
    ScoredSegments,
    assemble,
    default_severity_thresholds,
    effective_thresholds,
    severity_for,
    threshold_distance,
)
from tbpanel.anomaly.scoring import cluster_statistics, scores_from_distances

H = 3_600_000


def segs(scores, seg_h=1.0, step_h=1.0, clusters=None, item="a", t0=0):
    n = len(scores)
    start = t0 + (np.arange(n) * step_h * H).astype(np.int64)
    return ScoredSegments(
        np.full(n, item, dtype=object),
        start,
        start + int(seg_h * H),
        np.asarray(scores, dtype=float),
        np.asarray(scores, dtype=float) / 100,
        np.asarray(clusters if clusters is not None else [0] * n, dtype=np.int64),
    )


def test_threshold_distance_is_the_percent_order_statistic_and_score_100_at_it():
    d = np.arange(1, 101, dtype=float)  # 1..100
    thr = threshold_distance(d, 5.0)
    assert thr == 96.0  # the 5th largest
    s = scores_from_distances(d, thr)
    assert s[d == 96.0][0] == 100.0
    assert np.sum(s >= 100) == 5  # exactly 5 % of training segments
    assert scores_from_distances([96.0 - 1e-9], thr)[0] < 100
    assert threshold_distance(d, 0.5) == 100.0  # ceil(0.5) = 1 -> the maximum
    assert threshold_distance(d, 1.5) == 99.0  # ceil(1.5) = 2
    assert threshold_distance(np.zeros(10), 5.0) > 0  # never a zero threshold


def test_threshold_ties_never_flag_more_than_the_percent():
    # 10 % of segments share one distance (a repeated shape); 5 % asked for
    d = np.array([0.0] * 90 + [2.0] * 10)
    thr = threshold_distance(d, 5.0)
    assert thr > 2.0 and np.sum(scores_from_distances(d, thr) >= 100) == 0
    assert scores_from_distances([2.0 + 1e-14], thr)[0] < 100  # float noise of a repeat
    d2 = np.array([0.0] * 90 + [2.0] * 8 + [3.0, 4.0])
    assert threshold_distance(d2, 5.0) == 3.0  # next larger distance
    d3 = np.array([0.0] * 97 + [1.0, 2.0, 3.0])
    assert threshold_distance(d3, 5.0) == 1.0  # only 3 non-zero: all flagged


def test_anomalous_iff_score_at_least_100():
    s = segs([99.999, 100.0, 100.001, 50.0])
    assert s.anomalous.tolist() == [False, True, True, False]
    an = assemble(s, ModelConfig(detector="clustering", window="fixed"))
    assert len(an) == 1 and an[0].n_segments == 2 and an[0].start_ts == H


def test_fixed_window_run_fields_and_score_index():
    s = segs([10, 150, 200, 120, 10, 300])
    an = assemble(s, ModelConfig(detector="clustering", window="fixed"))
    assert len(an) == 2
    a, b = an
    assert (a.start_ts, a.end_ts, a.n_segments) == (H, 4 * H, 3)
    assert a.score == 200.0
    assert a.score_index == pytest.approx(1.5 + 2.0 + 1.2)
    assert a.detected_at == 2 * H  # end of the first anomalous segment
    assert not a.active and a.ended_at == 5 * H  # the next scored segment's end
    assert a.segment_scores == {
        "first": 150.0,
        "last": 120.0,
        "min": 120.0,
        "mean": pytest.approx(470 / 3),
        "max": 200.0,
    }
    assert b.active and b.ended_at is None and b.score_index == pytest.approx(3.0)
    assert AnomalyRecord.from_dict(a.to_dict()) == a


def test_sliding_overlaps_merge_and_overlap_counts_once():
    # 4 h segments every hour: three overlapping anomalous segments -> one anomaly
    s = segs([50, 150, 200, 120, 50], seg_h=4, step_h=1)
    an = assemble(s, ModelConfig(detector="clustering", window="sliding", sliding_step_percent=25))
    assert len(an) == 1
    a = an[0]
    assert (a.start_ts, a.end_ts) == (1 * H, 3 * H + 4 * H)  # 6 hours covered
    # first segment adds its 4 h, each further one its 1 h step
    assert a.score_index == pytest.approx(1.5 * 4 + 2.0 * 1 + 1.2 * 1)
    assert a.detected_at == 5 * H


def test_a_time_gap_breaks_a_run():
    s = ScoredSegments.concat([segs([150, 150]), segs([150], t0=5 * H)])
    an = assemble(s, ModelConfig(detector="clustering", window="fixed"))
    assert [(a.start_ts, a.end_ts) for a in an] == [(0, 2 * H), (5 * H, 6 * H)]


def test_min_anomaly_duration_drops_short_runs():
    s = segs([150, 10, 150, 150, 150, 10])
    assert len(assemble(s, ModelConfig(detector="clustering", window="fixed"))) == 2
    an = assemble(s, ModelConfig(detector="clustering", window="fixed", min_anomaly_duration_ms=2 * H))
    assert len(an) == 1 and an[0].start_ts == 2 * H and an[0].n_segments == 3
    assert an[0].confirmed_at == 4 * H  # when it reached 2 h
    assert an[0].detected_at == 3 * H


def test_cluster_joining_on_and_off():
    s = segs([150, 160, 170, 180, 10], clusters=[0, 0, 1, 1, 0])
    joined = assemble(s, ModelConfig(detector="clustering", window="fixed", cluster_joining=True))
    assert len(joined) == 1 and joined[0].n_segments == 4 and joined[0].cluster == 1  # top segment's
    split = assemble(s, ModelConfig(detector="clustering", window="fixed", cluster_joining=False))
    assert [(a.n_segments, a.cluster) for a in split] == [(2, 0), (2, 1)]
    assert split[0].ended_at == 3 * H


def test_items_are_assembled_separately_and_active_is_per_item():
    s = ScoredSegments.concat([segs([150, 10], item="b"), segs([10, 150, 150], item="a")])
    an = assemble(s, ModelConfig(detector="clustering", window="fixed"))
    assert [(a.item, a.active) for a in an] == [("a", True), ("b", False)]


def test_long_mild_deviation_outranks_short_spike_by_score_index():
    spike = segs([10, 900, 10])
    drift = segs([10] + [130] * 12 + [10], t0=10 * H)
    an = assemble(ScoredSegments.concat([spike, drift]), ModelConfig(detector="clustering", window="fixed"))
    sp, dr = an
    assert sp.score > dr.score and dr.score_index > sp.score_index


def test_default_severity_thresholds_from_known_scores():
    scores = [50, 80, 99.9, 100, 110, 120, 130, 140, 150, 160, 170, 180, 300]
    # >= 100: 100..180 step 10 and 300 -> median 145, p80 172, p95 246 (linear interpolation)
    assert default_severity_thresholds(scores) == {"warning": 100.0, "minor": 145.0, "major": 172.0, "critical": 246.0}
    # rounded half up: median 100.5 -> 101, p80 100.8 -> 101, p95 100.95 -> 101
    assert default_severity_thresholds([100.0, 101.0, 99.0]) == {
        "warning": 100.0,
        "minor": 101.0,
        "major": 101.0,
        "critical": 101.0,
    }
    assert default_severity_thresholds([50.0]) == {"warning": 100.0, "minor": 100.0, "major": 100.0, "critical": 100.0}


def test_effective_thresholds_and_severity_for():
    defaults = {"warning": 100.0, "minor": 145.0, "major": 172.0, "critical": 246.0}
    cfg = ModelConfig(minor_threshold=150.0, warning_enabled=False)
    th = effective_thresholds(defaults, cfg)
    assert th == {"minor": 150.0, "major": 172.0, "critical": 246.0}
    assert severity_for(120.0, th) is None
    assert severity_for(160.0, th) == "minor"
    assert severity_for(500.0, th) == "critical"


def test_cluster_statistics():
    st = cluster_statistics(np.array([0, 0, 1]), np.array([10.0, 120.0, 50.0]), np.array([H, H, 2 * H]), 3)
    assert st[0] == {
        "cluster": 0,
        "segments": 2,
        "share": 2 / 3,
        "total_duration_ms": 2 * H,
        "min_score": 10.0,
        "max_score": 120.0,
    }
    assert st[2]["segments"] == 0 and st[2]["min_score"] is None


def test_scored_segments_helpers():
    s = ScoredSegments.concat([segs([1, 2], item="b"), segs([3], item="a")])
    assert s.item.tolist() == ["a", "b", "b"]
    again = ScoredSegments.from_dict(s.to_dict())
    assert again.to_dict() == s.to_dict()
    assert len(s.for_item("b")) == 2 and len(ScoredSegments.empty()) == 0
    assert assemble(ScoredSegments.empty(), ModelConfig()) == []

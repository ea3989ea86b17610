"""The whole pipeline on small hand-made series whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tbpanel.anomaly import Cancelled, ModelConfig, TrainedModel, assemble, fit, refit

STEP = 300_000  # 5-minute data
HOUR = 3_600_000
DAY = 24 * HOUR
TRAIN_END = 4 * DAY


def series(days=7, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    ts = np.arange(0, days * DAY, STEP, dtype=np.int64)
    v = np.sin(2 * np.pi * ts / (4 * HOUR)) + rng.normal(0, noise, ts.size)
    return ts, v


def data_of(ts, v, item="dev"):
    return {item: {"v": (ts, v)}}


def cfg(**kw):
    # the Trendz clustering contract (threshold percent, runs without cool-down) is what these check
    base = dict(fields=["v"], train_end=TRAIN_END, adaptive=False, detector="clustering")
    return ModelConfig(**(base | kw))


def top(anomalies):
    return max(anomalies, key=lambda a: a.score)


def test_planted_spike_is_the_top_anomaly_and_contains_the_spike():
    ts, v = series()
    i = np.searchsorted(ts, 5 * DAY + 7 * HOUR + 10 * 60_000)
    v[i] += 6.0
    c = cfg()
    m = fit(c, data_of(ts, v))
    an = assemble(m.score(data_of(ts, v), TRAIN_END), c)
    a = top(an)
    assert a.start_ts <= ts[i] < a.end_ts
    assert a.score > 300
    assert a.detected_at <= ts[i] + m.segment_ms  # known within one segment
    assert a.end_ts - a.start_ts <= 2 * m.segment_ms
    assert all(b.score < 0.5 * a.score for b in an if b is not a)


def test_planted_level_shift_is_detected_at_its_start():
    ts, v = series()
    t_shift = 5 * DAY + 3 * HOUR
    v[ts >= t_shift] += 2.0
    c = cfg()
    m = fit(c, data_of(ts, v))
    an = assemble(m.score(data_of(ts, v), TRAIN_END), c)
    a = top(an)
    assert a.start_ts <= t_shift < a.detected_at <= t_shift + m.segment_ms
    assert a.active and a.end_ts == max(x.end_ts for x in an)  # the shift persists to the end
    assert not [b for b in an if b.end_ts <= t_shift and b.score >= 0.5 * a.score]


def test_long_mild_drift_outranks_short_spike_by_score_index():
    ts, v = series()
    i = np.searchsorted(ts, 4 * DAY + 12 * HOUR)
    v[i] += 6.0
    drift = (ts >= 5 * DAY + 6 * HOUR) & (ts < 5 * DAY + 18 * HOUR)
    v[drift] += 0.3
    c = cfg()
    m = fit(c, data_of(ts, v))
    an = assemble(m.score(data_of(ts, v), TRAIN_END), c)
    spike = next(a for a in an if a.start_ts <= ts[i] < a.end_ts)
    mild = max((a for a in an if a.start_ts >= 5 * DAY), key=lambda a: a.score_index)
    assert mild.end_ts - mild.start_ts >= 8 * HOUR
    assert spike.score > mild.score  # the spike is higher...
    assert mild.score_index > spike.score_index  # ...but the drift ranks first


@pytest.mark.parametrize(
    "algorithm,distance",
    [
        ("kmeans", "euclidean"),
        ("kmeans", "manhattan"),
        ("kmeans", "chebyshev"),
        ("kmeans", "canberra"),
        ("kmeans", "dtw"),
        ("dbscan", "euclidean"),
        ("dbscan", "dtw"),
        ("gmm", "euclidean"),
    ],
)
def test_each_algorithm_and_distance_finds_a_planted_bump(algorithm, distance):
    ts, v = series(days=6)
    t0 = 5 * DAY + 2 * HOUR
    bump = (ts >= t0) & (ts < t0 + HOUR)
    v[bump] += 3.0  # one hour far above the usual range
    c = cfg(algorithm=algorithm, distance=distance, auto_clusters=algorithm != "kmeans", n_clusters=4)
    m = fit(c, data_of(ts, v))
    s = m.score(data_of(ts, v), TRAIN_END)
    hit = (s.start_ts < t0 + HOUR) & (s.end_ts > t0)
    assert s.score[hit].min() >= 100  # every segment touching it is anomalous
    assert s.score[hit].max() == s.score.max()
    a = top(assemble(s, c))
    assert a.start_ts <= t0 and a.end_ts >= t0 + HOUR


def test_feature_based_comparison_and_multi_field():
    ts, v = series()
    rng = np.random.default_rng(5)
    w = np.cos(2 * np.pi * ts / (4 * HOUR)) + rng.normal(0, 0.05, ts.size)
    burst = (ts >= 5 * DAY) & (ts < 5 * DAY + 2 * HOUR)
    w[burst] += rng.normal(0, 1.5, burst.sum())  # noise burst on the second field only
    item = {"dev": {"v": (ts, v), "w": (ts, w)}}
    c = ModelConfig(fields=["v", "w"], train_end=TRAIN_END, comparison="feature", adaptive=False)
    m = fit(c, item)
    assert m.normalizer.lo.size == 2 * len(c.features)
    a = top(assemble(m.score(item, TRAIN_END), c))
    assert a.start_ts < 5 * DAY + 2 * HOUR and a.end_ts > 5 * DAY


def test_training_scores_threshold_and_model_contents():
    ts, v = series()
    c = cfg(threshold_percent=5.0)
    m = fit(c, data_of(ts, v))
    n = m.n_train_segments
    assert np.sum(m.train_scores >= 100) == int(np.ceil(n * 0.05))
    assert m.severity_defaults["warning"] == 100.0
    assert m.severity_defaults["minor"] <= m.severity_defaults["major"] <= m.severity_defaults["critical"]
    assert m.cluster_sizes.sum() == n == sum(s["segments"] for s in m.cluster_stats)
    assert m.centroids.shape == (m.clusters.k, m.resolved.aggregation_points)
    assert m.auto_clusters["chosen"] == m.clusters.k and "silhouette" in m.auto_clusters["rule"]
    assert m.resolved.segment_ms == 24 * STEP and m.step_ms == STEP
    assert m.trained_items == ["dev"] and m.fields == ["v"]


def test_only_complete_filtered_segments_are_scored():
    ts, v = series()
    hole = (ts >= 5 * DAY + 4 * HOUR) & (ts < 5 * DAY + 6 * HOUR)  # 2-hour outage
    ts2, v2 = ts[~hole], v[~hole]
    c = cfg()
    m = fit(c, data_of(ts2, v2))
    end = 6 * DAY + 30 * 60_000
    s = m.score(data_of(ts2, v2), TRAIN_END, end)
    assert s.end_ts.max() <= end and s.start_ts.min() >= TRAIN_END
    seg = m.segment_ms
    overlaps_hole = (s.start_ts < 5 * DAY + 6 * HOUR) & (s.end_ts > 5 * DAY + 4 * HOUR)
    assert not overlaps_hole.any()  # the gap filter discarded them
    # segments just before and after the outage are there
    assert (s.end_ts == 5 * DAY + 4 * HOUR).any() and (s.start_ts == 5 * DAY + 6 * HOUR).any()
    assert np.all((s.start_ts % m.step) == 0) and np.all(s.end_ts - s.start_ts == seg)


def test_untrained_items_are_scored_too():
    ts, v = series()
    c = cfg(items=["dev"])
    m = fit(c, {"dev": {"v": (ts, v)}, "other": {"v": (ts, v + 5)}})
    assert m.trained_items == ["dev"]
    s = m.score({"dev": {"v": (ts, v)}, "other": {"v": (ts, v + 5)}}, TRAIN_END)
    assert set(s.item.tolist()) == {"dev", "other"}
    assert s.for_item("other").score.min() > s.for_item("dev").score.max()


@pytest.mark.parametrize("algorithm", ["kmeans", "dbscan", "gmm"])
def test_trained_model_round_trip_gives_identical_scores(algorithm):
    ts, v = series(days=6)
    v[np.searchsorted(ts, 5 * DAY)] += 4
    c = cfg(algorithm=algorithm)
    m = fit(c, data_of(ts, v))
    text = json.dumps(m.to_dict())
    again = TrainedModel.from_dict(json.loads(text))
    s1 = m.score(data_of(ts, v), TRAIN_END)
    s2 = again.score(data_of(ts, v), TRAIN_END)
    assert s1.to_dict() == s2.to_dict()
    assert again.to_dict() == m.to_dict()
    assert again.config.to_dict() == c.to_dict()


def test_cancel_raises_and_progress_reports():
    ts, v = series(days=5)
    with pytest.raises(Cancelled):
        fit(cfg(), data_of(ts, v), cancel=lambda: True)
    seen = []
    m = fit(cfg(), data_of(ts, v), progress=lambda f, msg: seen.append((f, msg)))
    fr = [f for f, _ in seen]
    assert fr == sorted(fr) and fr[-1] == 1.0 and all(isinstance(msg, str) for _, msg in seen)
    calls = []

    def later():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        m.score({f"d{i}": {"v": (ts, v)} for i in range(5)}, cancel=later)


def test_refit_is_causal_and_keeps_the_config():
    ts, v = series()
    c = cfg(adaptive=True)
    m = fit(c, data_of(ts, v))
    until = 5 * DAY
    noisy = v.copy()
    noisy[ts >= until] = 1e6  # the future must not matter
    r1 = refit(m, data_of(ts, v), until_ms=until)
    r2 = refit(m, data_of(ts, noisy), until_ms=until)
    assert r1.to_dict()["d_thr"] == r2.to_dict()["d_thr"]
    assert r1.clusters.to_dict() == r2.clusters.to_dict()
    assert r1.config.to_dict() == c.to_dict() and r1.resolved.to_dict() == m.resolved.to_dict()
    assert r1.n_train_segments > m.n_train_segments and r1.n_refits == 1


def test_fit_errors_are_clear():
    ts, v = series(days=1)
    with pytest.raises(ValueError, match="no training items"):
        fit(cfg(items=["nope"]), data_of(ts, v))
    with pytest.raises(ValueError, match="segment filters"):
        fit(cfg(train_end=30 * 60_000), data_of(ts, v))
    with pytest.raises(ValueError, match="Invalid model configuration"):
        fit(cfg(train_start=5, train_end=1), data_of(ts, v))


def _nab_harness():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "nab.py"
    spec = importlib.util.spec_from_file_location("nab_harness", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_nab_replay_detects_a_shift_causally():
    nab = _nab_harness()
    ts, v = series(days=8)
    t_shift = 6 * DAY + 2 * HOUR
    v[ts >= t_shift] += 2.0
    c = ModelConfig(fields=["value"], adaptive=True)
    p = 750
    got = nab.replay({"value": (ts, v)}, c, p)
    assert got and all(t > ts[p] for t in got)
    after = [t for t in got if t > t_shift]
    assert after and after[0] <= t_shift + 24 * STEP  # within one segment
    # causal: what happens after a time cannot change the detections before it
    v2 = v.copy()
    v2[ts >= 7 * DAY] = -50.0
    got2 = nab.replay({"value": (ts, v2)}, c, p)
    assert [t for t in got2 if t <= 7 * DAY] == [t for t in got if t <= 7 * DAY]

"""Each detector on synthetic cases it must catch and on pure noise it must not flag, and the
causality of scoring (a segment's score never depends on data after it)."""

from __future__ import annotations

import numpy as np
import pytest

from tbpanel.anomaly import ModelConfig, assemble, fit
from tbpanel.anomaly.tail import pot_threshold

STEP = 300_000  # 5-minute data
HOUR = 3_600_000
DAY = 24 * HOUR
DAYS = 14
TRAIN_END = 7 * DAY
AT = 10 * DAY + 5 * HOUR  # every planted anomaly starts here
DETECTORS = ("clustering", "ensemble")


def base(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.arange(0, DAYS * DAY, STEP, dtype=np.int64)
    v = 10 + 3 * np.sin(2 * np.pi * ts / DAY) + rng.normal(0, 0.3, ts.size)
    return ts, v


def plant(kind: str, ts: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, int]:
    """The series with one anomaly of ``kind`` starting at AT, and the anomaly's end (ms)."""
    v = v.copy()
    rng = np.random.default_rng(1)
    m = (ts >= AT) & (ts < AT + 6 * HOUR)
    if kind == "spike":
        v[np.searchsorted(ts, AT)] += 8.0
        return v, AT + STEP
    if kind == "level_shift":
        v[ts >= AT] += 5.0
        return v, AT + 6 * HOUR
    if kind == "drift":
        after = ts >= AT
        v[after] += (ts[after] - AT) / HOUR * 1.0  # +1 per hour
        return v, AT + 6 * HOUR
    if kind == "frozen":
        v[m] = v[np.searchsorted(ts, AT)]
        return v, AT + 6 * HOUR
    if kind == "seasonality_break":  # the daily cycle inverted for 6 h
        v[m] = 20 - v[m]
        return v, AT + 6 * HOUR
    if kind == "variance_change":
        v[m] += rng.normal(0, 2.0, int(m.sum()))
        return v, AT + 6 * HOUR
    raise ValueError(kind)


CASES = ("spike", "level_shift", "drift", "frozen", "seasonality_break", "variance_change")


def config(detector: str, **kw) -> ModelConfig:
    return ModelConfig(fields=["v"], train_end=TRAIN_END, detector=detector, **kw)


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("kind", CASES)
def test_detector_catches_planted_anomaly(detector: str, kind: str) -> None:
    if detector == "clustering" and kind == "frozen":
        pytest.xfail(
            "known limit of the Trendz clustering semantics: a flat-line at a normal level "
            "lies between the normalised cluster shapes (the ensemble's roughness catches it)"
        )
    ts, v = base()
    v, end = plant(kind, ts, v)
    c = config(detector)
    data = {"dev": {"v": (ts, v)}}
    m = fit(c, data)
    an = assemble(m.score(data, TRAIN_END), c)
    hits = [a for a in an if a.start_ts < end + m.segment_ms and a.end_ts > AT]
    assert hits, f"{detector} missed the {kind}"
    first = min(a.detected_at for a in hits)
    assert first <= end + 2 * m.segment_ms  # known within two segments of its end


def false_alarms_per_device_day(detector: str, devices: int = 4) -> float:
    n = 0
    for seed in range(devices):
        ts, v = base(seed + 10)
        c = config(detector)
        data = {"dev": {"v": (ts, v)}}
        m = fit(c, data)
        n += len(assemble(m.score(data, TRAIN_END), c))
    return n / (devices * (DAYS - TRAIN_END / DAY))


def test_pure_noise_false_alarm_rate() -> None:
    rates = {d: false_alarms_per_device_day(d) for d in DETECTORS}
    print("false alarms per device-day on pure noise:", rates)
    # measured: clustering 0.14, ensemble 0.29 (tail_risk 1 %, 24 min segments -> ~0.7 expected
    # crossings per device-day, fewer once the cool-down merges them)
    assert all(r <= 1.0 for r in rates.values())


@pytest.mark.parametrize("detector", DETECTORS)
def test_scores_are_causal(detector: str) -> None:
    """Perturbing the data after time T changes no score of a segment that ends by T."""
    ts, v = base()
    c = config(detector)
    m = fit(c, {"dev": {"v": (ts, v)}})
    t_cut = 10 * DAY
    w = v.copy()
    w[ts >= t_cut] += np.random.default_rng(5).normal(0, 5, int((ts >= t_cut).sum()))
    a = m.score({"dev": {"v": (ts, v)}}, TRAIN_END)
    b = m.score({"dev": {"v": (ts, w)}}, TRAIN_END)
    pa, pb = a.take(a.end_ts <= t_cut), b.take(b.end_ts <= t_cut)
    assert len(pa) > 0 and np.array_equal(pa.start_ts, pb.start_ts)
    np.testing.assert_allclose(pa.score, pb.score)
    # ... and a model fitted up to T does not look past T either
    m2 = fit(c.copy(train_end=t_cut), {"dev": {"v": (ts, w)}})
    m1 = fit(c.copy(train_end=t_cut), {"dev": {"v": (ts, v)}})
    np.testing.assert_allclose(m1.train_distances, m2.train_distances)


def test_ensemble_model_round_trips_and_reports_members() -> None:
    from tbpanel.anomaly import TrainedModel

    ts, v = base()
    c = config("ensemble")
    data = {"dev": {"v": (ts, v)}}
    m = fit(c, data)
    assert m.ensemble is not None and set(m.ensemble.thresholds) == {"cluster", "shape", "level", "season"}
    # the daily cycle of the synthetic series is found from the training data
    assert abs(m.ensemble.period_ms - 86_400_000) <= 2 * m.step_ms
    again = TrainedModel.from_dict(m.to_dict())
    np.testing.assert_allclose(again.score(data, TRAIN_END).score, m.score(data, TRAIN_END).score)


def test_pot_threshold_tracks_the_tail() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, 20_000)
    # exponential tail: P(X > z) = exp(-z), so the 1e-3 threshold is ~6.9
    assert 6.0 < pot_threshold(x, 1e-3) < 8.0
    assert pot_threshold(x, 1e-2) < pot_threshold(x, 1e-3)


def test_cooldown_merges_an_episode_into_one_anomaly() -> None:
    from tbpanel.anomaly import ScoredSegments

    st = np.arange(10, dtype=np.int64) * HOUR
    sc = np.array([0, 150, 0, 0, 120, 0, 0, 0, 0, 0], dtype=float)
    segs = ScoredSegments(np.full(10, "d", dtype=object), st, st + HOUR, sc, sc / 100, np.zeros(10, np.int64))
    assert len(assemble(segs, ModelConfig(detector="clustering", window="fixed", segment_ms=HOUR))) == 2  # Trendz runs
    one = assemble(segs, ModelConfig(window="fixed", segment_ms=HOUR, cooldown_segments=3))
    assert len(one) == 1 and one[0].start_ts == HOUR and one[0].end_ts == 5 * HOUR
    assert not one[0].active and one[0].ended_at == 8 * HOUR  # closed once 3 h passed quietly


def test_seasonal_member_sees_a_missing_daily_peak() -> None:
    """One day's peak hours replaced by the trough's values: each segment's shape occurs every
    night, so only the comparison with the same hours of the earlier days calls it abnormal."""
    from tbpanel.anomaly.ensemble import MEMBERS

    ts, v = base()
    peak = 10 * DAY + 6 * HOUR  # sin(2 pi t / DAY) peaks at 06:00
    m_peak = (ts >= peak - 3 * HOUR) & (ts < peak + 3 * HOUR)
    w = v.copy()
    w[m_peak] = v[m_peak] - 2 * 3 * np.sin(2 * np.pi * ts[m_peak] / DAY)  # mirrored onto the trough
    c = config("ensemble")
    m = fit(c, {"dev": {"v": (ts, v)}})
    it, table, x = m._segments({"v": (ts, w)}, TRAIN_END, None)
    season = m.member_ratios("dev", it, table, x)[:, MEMBERS.index("season")]
    inside = (table.start >= peak - 3 * HOUR) & (table.end <= peak + 3 * HOUR)
    assert season[inside].max() >= 1.0
    normal = table.end <= peak - 3 * HOUR
    assert season[normal].max() < 1.0

"""Segmentation (epoch alignment, sliding steps, gap / duration / point filters) and features."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tbpanel.anomaly import ModelConfig, behavior_matrix, feature_matrix, segment_item
from tbpanel.anomaly.features import Normalizer, column_groups, fill_gaps
from tbpanel.anomaly.segments import clean_item, median_step, range_reduce, segment_grid

MIN = 60_000
HOUR = 60 * MIN


def regular(start, stop, step=MIN, f=lambda t: np.zeros(t.size)):
    ts = np.arange(start, stop, step, dtype=np.int64)
    return ts, f(ts).astype(np.float64)


def seg(item, fields=("v",), seg_ms=HOUR, step_ms=HOUR, max_gap_ms=5 * MIN, min_duration_ms=0, min_points=1, **kw):
    return segment_item(
        clean_item(item, list(fields)),
        list(fields),
        seg_ms,
        step_ms,
        max_gap_ms=max_gap_ms,
        min_duration_ms=min_duration_ms,
        min_points=min_points,
        **kw,
    )


def test_fixed_segments_are_aligned_to_the_epoch():
    ts, v = regular(HOUR // 2, 4 * HOUR)  # data from 00:30 to 03:59
    t = seg({"v": (ts, v)})
    # [0, 1h) lacks its first half (leading gap 30 min > 5 min): discarded
    assert t.start.tolist() == [HOUR, 2 * HOUR, 3 * HOUR]
    assert (t.end - t.start == HOUR).all()
    assert (t.hi["v"] - t.lo["v"] == 60).all()


def test_sliding_segments_step_by_step_percent():
    ts, v = regular(0, 3 * HOUR)
    t = seg({"v": (ts, v)}, step_ms=HOUR // 4)
    assert t.start.tolist() == [k * HOUR // 4 for k in range(9)]  # last one: [2h, 3h)
    assert np.all(t.start % (HOUR // 4) == 0)


def test_gap_filter_discards_only_the_segment_with_the_gap():
    ts, v = regular(0, 5 * HOUR)
    gap = (ts >= 2 * HOUR + 20 * MIN) & (ts < 2 * HOUR + 30 * MIN)  # 11-minute hole in hour 2
    item = {"v": (ts[~gap], v[~gap])}
    assert seg(item, max_gap_ms=10 * MIN).start.tolist() == [0, HOUR, 3 * HOUR, 4 * HOUR]
    assert seg(item, max_gap_ms=11 * MIN).start.tolist() == [0, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR]


def test_min_points_and_min_duration_filters():
    ts = np.array(
        [
            0,
            MIN,
            2 * MIN,  # hour 0: 3 points over 2 min
            HOUR,
            HOUR + 10 * MIN,
            HOUR + 50 * MIN,
        ]  # hour 1: 3 points over 50 min
        + [2 * HOUR + k * 5 * MIN for k in range(12)],  # hour 2: 12 points over 55 min
        dtype=np.int64,
    )
    item = {"v": (ts, np.ones(ts.size))}
    big = 10 * HOUR
    assert seg(item, max_gap_ms=big).start.tolist() == [0, HOUR, 2 * HOUR]
    assert seg(item, max_gap_ms=big, min_points=4).start.tolist() == [2 * HOUR]
    assert seg(item, max_gap_ms=big, min_duration_ms=30 * MIN).start.tolist() == [HOUR, 2 * HOUR]


def test_every_field_must_pass_the_filters():
    ts, v = regular(0, 3 * HOUR)
    keep = ts < 2 * HOUR  # field b stops after two hours
    item = {"a": (ts, v), "b": (ts[keep], v[keep])}
    t = seg(item, fields=("a", "b"))
    assert t.start.tolist() == [0, HOUR]
    assert set(t.lo) == {"a", "b"}


def test_start_and_end_limits_keep_only_complete_segments():
    ts, v = regular(0, 6 * HOUR)
    t = seg({"v": (ts, v)}, step_ms=HOUR // 2, start_ms=HOUR + 1, end_ms=4 * HOUR + 10)
    assert t.start.min() >= HOUR + 1 and t.end.max() <= 4 * HOUR + 10
    assert t.start.tolist() == [int(HOUR * x) for x in (1.5, 2, 2.5, 3)]


def test_segment_grid_edges():
    s, e = segment_grid(0, 10, 5, 5)
    assert s.tolist() == [0, 5, 10] and e.tolist() == [5, 10, 15]
    s, e = segment_grid(0, 10, 5, 5, end_ms=10)
    assert s.tolist() == [0, 5]
    s, _ = segment_grid(-7, 3, 4, 2)  # negative times align to the epoch too
    assert s.tolist() == [-10, -8, -6, -4, -2, 0, 2]


def test_clean_item_sorts_and_drops_nan_and_median_step():
    item = clean_item({"v": ([3, 1, 2, 4], [3.0, 1.0, np.nan, 4.0])}, ["v", "missing"])
    assert item["v"][0].tolist() == [1, 3, 4] and item["v"][1].tolist() == [1.0, 3.0, 4.0]
    assert item["missing"][0].size == 0
    assert median_step([{"v": (np.array([0, 10, 10, 20, 40]), np.zeros(5))}]) == 10.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=1, max_size=40), st.data())
def test_range_reduce_matches_naive(values, data):
    v = np.array(values)
    n = v.size
    lo = np.array(data.draw(st.lists(st.integers(0, n), min_size=1, max_size=10)))
    hi = np.array([data.draw(st.integers(0, n)) for _ in lo])
    for uf, fn in ((np.maximum, np.max), (np.minimum, np.min)):
        got = range_reduce(uf, v, lo, hi)
        want = [fn(v[a:b]) if b > a else np.nan for a, b in zip(lo, hi)]
        np.testing.assert_array_equal(got, np.array(want))


# ----------------------------------------------------------------------------- features
def test_behavior_aggregations_and_gap_interpolation():
    ts = np.arange(0, HOUR, MIN, dtype=np.int64)
    v = np.arange(60, dtype=np.float64)
    hole = (ts >= 15 * MIN) & (ts < 30 * MIN)  # second quarter empty
    item = clean_item({"v": (ts[~hole], v[~hole])}, ["v"])
    t = segment_item(item, ["v"], HOUR, HOUR, max_gap_ms=HOUR, min_points=1)
    avg = behavior_matrix(item, t, ["v"], 4, "AVG")[0]
    assert avg[0] == pytest.approx(7.0) and avg[2] == pytest.approx(37.0) and avg[3] == pytest.approx(52.0)
    assert avg[1] == pytest.approx((7.0 + 37.0) / 2)  # interpolated between neighbours
    assert behavior_matrix(item, t, ["v"], 4, "MIN")[0].tolist() == [0, 15, 30, 45]
    assert behavior_matrix(item, t, ["v"], 4, "MAX")[0].tolist() == [14, 29, 44, 59]
    assert behavior_matrix(item, t, ["v"], 4, "COUNT")[0].tolist() == [15, 0, 15, 15]
    assert behavior_matrix(item, t, ["v"], 4, "SUM")[0].tolist() == [105, 0, 555, 780]


def test_behavior_matrix_concatenates_fields():
    ts = np.arange(0, 2 * HOUR, MIN, dtype=np.int64)
    item = clean_item({"a": (ts, np.ones(ts.size)), "b": (ts, 2 * np.ones(ts.size))}, ["a", "b"])
    t = segment_item(item, ["a", "b"], HOUR, HOUR, max_gap_ms=HOUR)
    x = behavior_matrix(item, t, ["a", "b"], 3, "AVG")
    assert x.shape == (2, 6) and x[:, :3].tolist() == [[1] * 3] * 2 and x[:, 3:].tolist() == [[2] * 3] * 2


def test_feature_matrix_statistics():
    ts = np.arange(0, HOUR, 6 * MIN, dtype=np.int64)  # 10 points
    v = np.arange(10, dtype=np.float64) * 2 + 1  # 1, 3, ..., 19
    item = clean_item({"v": (ts, v)}, ["v"])
    t = segment_item(item, ["v"], HOUR, HOUR, max_gap_ms=HOUR)
    names = ["min", "max", "mean", "std", "cv", "slope", "q25", "q50", "q75"]
    x = dict(zip(names, feature_matrix(item, t, ["v"], names)[0]))
    assert x["min"] == 1 and x["max"] == 19 and x["mean"] == pytest.approx(10)
    assert x["std"] == pytest.approx(np.std(v)) and x["cv"] == pytest.approx(np.std(v) / 10)
    assert x["slope"] == pytest.approx(2 * 10)  # value per segment length
    assert x["q50"] == pytest.approx(np.quantile(v, 0.5)) and x["q25"] == pytest.approx(np.quantile(v, 0.25))


def test_fill_gaps_edges_and_middle():
    x = np.array([[np.nan, 1.0, np.nan, np.nan, 4.0, np.nan]])
    assert fill_gaps(x).tolist() == [[1.0, 1.0, 2.0, 3.0, 4.0, 4.0]]


def test_normalizer_min_max_per_field_and_clip():
    cfg = ModelConfig(comparison="behavior", aggregation_points=2)
    x = np.array([[0.0, 10.0, 100.0, 200.0], [5.0, 5.0, 150.0, 150.0]])
    g = column_groups(cfg, ["a", "b"])
    assert g.tolist() == [0, 0, 1, 1]
    n = Normalizer.fit(x, g, clip=0.5)
    assert n.transform(x).tolist() == [[0.0, 1.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]]
    assert n.transform(np.array([[-100.0, 30.0, 150.0, 150.0]])).tolist() == [[-0.5, 1.5, 0.5, 0.5]]
    assert Normalizer.from_dict(n.to_dict()).transform(x).tolist() == n.transform(x).tolist()

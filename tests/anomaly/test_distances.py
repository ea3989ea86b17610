"""The five distances against naive references; DTW against a textbook DTW (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tbpanel.anomaly import METRICS, dtw_naive, dtw_pairs, nearest, pairwise


def naive(metric, a, b):
    if metric == "euclidean":
        return float(np.sqrt(np.sum((a - b) ** 2)))
    if metric == "manhattan":
        return float(np.sum(np.abs(a - b)))
    if metric == "chebyshev":
        return float(np.max(np.abs(a - b)))
    if metric == "canberra":
        den = np.abs(a) + np.abs(b)
        num = np.abs(a - b)
        return float(np.sum(np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)))
    raise AssertionError(metric)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "canberra"])
def test_vector_distances_match_naive(metric):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    x[0, :2] = 0.0
    y[0, :2] = 0.0  # canberra 0/0 terms count as 0
    d = pairwise(x, y, metric)
    assert d.shape == (7, 4)
    for i in range(7):
        for j in range(4):
            assert d[i, j] == pytest.approx(naive(metric, x[i], y[j]))
    dist, idx = nearest(x, y, metric)
    np.testing.assert_allclose(dist, d.min(axis=1))
    np.testing.assert_array_equal(idx, d.argmin(axis=1))


def test_unknown_metric():
    with pytest.raises(ValueError):
        pairwise(np.zeros((1, 2)), np.zeros((1, 2)), "cosine")
    assert set(METRICS) == {"euclidean", "manhattan", "chebyshev", "canberra", "dtw"}


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 9).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(-10, 10, allow_nan=False), min_size=n, max_size=n),
            st.lists(st.floats(-10, 10, allow_nan=False), min_size=n, max_size=n),
        )
    ),
    st.one_of(st.none(), st.integers(0, 4)),
)
def test_dtw_matches_textbook_dtw(pair, band):
    a, b = pair
    got = dtw_pairs(np.array([a]), np.array([b]), band)[0]
    want = dtw_naive(a, b, band)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_dtw_vectorised_over_many_pairs_and_properties():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(50, 12)), rng.normal(size=(50, 12))
    got = dtw_pairs(a, b, 2)
    want = [dtw_naive(a[i], b[i], 2) for i in range(50)]
    np.testing.assert_allclose(got, want)
    # band 0 is the Manhattan distance; wider bands can only lower the cost
    np.testing.assert_allclose(dtw_pairs(a, b, 0), np.abs(a - b).sum(axis=1))
    assert np.all(dtw_pairs(a, b, None) <= got + 1e-12)
    # a shifted copy is close under DTW but far under Manhattan
    s = np.sin(np.linspace(0, 6, 40))
    shifted = np.roll(s, 2)
    assert dtw_pairs(s[None], shifted[None], 4)[0] < 0.3 * np.abs(s - shifted).sum()


def test_dtw_pairwise_is_per_field_block():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(3, 8)), rng.normal(size=(2, 8))  # two fields of 4 points
    d = pairwise(x, y, "dtw", blocks=2, band_percent=25.0)  # band = 1 sample
    for i in range(3):
        for j in range(2):
            want = dtw_naive(x[i, :4], y[j, :4], 1) + dtw_naive(x[i, 4:], y[j, 4:], 1)
            assert d[i, j] == pytest.approx(want)
    dist, idx = nearest(x, y, "dtw", blocks=2, band_percent=25.0)
    np.testing.assert_allclose(dist, d.min(axis=1))

"""The offline point-level detector of benchmarks/nab_points.py: causal, finds a spike once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _points():
    path = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "nab_points.py"
    spec = importlib.util.spec_from_file_location("nab_points", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _daily(n: int = 3000, seed: int = 1) -> np.ndarray:
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 288) + 0.05 * np.random.default_rng(seed).standard_normal(n)


def test_left_discord_is_the_nearest_earlier_non_overlapping_window():
    x = np.array([0.0, 1.0, 0.0, 1.0, 5.0, 1.0])
    d = _points().left_discord(x, 2)
    assert np.isnan(d[:3]).all()  # the window ending at row 3 is the first with an earlier one
    assert d[3] == 0.0  # (0, 1) was seen at rows 0-1
    assert np.isclose(d[4], np.hypot(1.0, 4.0))  # (1, 5): nearest of (0, 1) and (1, 0); (0, 1) at row 3 overlaps
    assert np.isclose(d[5], np.hypot(4.0, 1.0))  # (5, 1): nearest of (0, 1), (1, 0), (0, 1) is (1, 0)


def test_a_spike_is_one_detection_and_the_future_never_changes_the_past():
    nab = _points()
    x = _daily()
    x[2500] += 3.0
    q = nab.tail_probability(np.sqrt(nab.left_discord(x, 8)), 1000, 1)
    det = nab.episodes(q, 450, 1e-4, 50)
    hits = np.flatnonzero(det)
    assert hits.tolist() and 2500 <= hits[0] <= 2508 and (hits < 2500).sum() == 0
    assert ((hits > 2500) & (hits < 2560)).sum() == 0  # one detection for the episode
    y = x.copy()
    y[2700:] = -9.0  # perturb the future: every row before it keeps its score
    q2 = nab.tail_probability(np.sqrt(nab.left_discord(y, 8)), 1000, 1)
    assert np.array_equal(q[:2700], q2[:2700])


def test_pure_noise_raises_few_detections():
    nab = _points()
    x = _daily(6000, seed=7)
    q = nab.tail_probability(np.sqrt(nab.left_discord(x, 8)), 1000, 1)
    det = nab.episodes(q, 750, 1e-4, 50)
    # 5250 scored rows = 18 device-days of 5-minute data (1 detection when written: ~0.05 per device-day)
    assert det.sum() <= 3

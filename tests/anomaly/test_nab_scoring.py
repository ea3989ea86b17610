"""The NAB scorer on the hand-made cases of reference/nab-scoring.md."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tbpanel.anomaly.nab_scoring import (
    PROFILES,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    score_corpus_detail,
    score_file,
    window_rows,
)

N = 1000  # probation = 150 rows
T0 = np.datetime64("2020-01-01T00:00:00")
TS = (T0 + np.arange(N) * np.timedelta64(5, "m")).astype("datetime64[ms]")
FP = PROFILES["standard"]["fp"]


def stamp(i):
    return str(TS[i].astype("datetime64[s]")).replace("T", " ") + ".000000"


WIN = [[stamp(400), stamp(499)]]  # rows [400, 499], width 100


def det(*rows):
    d = np.zeros(N, dtype=int)
    d[list(rows)] = 1
    return d


def test_sigmoid_and_probation():
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(3.5) == -1.0
    assert probation_rows(1000) == 150 and probation_rows(10_000) == 750 and probation_rows(6) == 0


def test_window_rows_use_the_first_equal_timestamp():
    ts = np.array([0, 1, 1, 2, 3, 3, 4], dtype=np.int64) * 60_000
    assert window_rows(ts, [[60_000, 180_000]]) == [(1, 4)]
    assert window_rows(TS, WIN) == [(400, 499)]


def test_detection_at_left_edge_scores_tp():
    r = score_file(TS, det(400), WIN)
    assert r["raw"] == pytest.approx(1.0) and r["n_tp"] == 1 and r["n_fn"] == 0


def test_detection_at_right_edge_scores_about_zero():
    r = score_file(TS, det(499), WIN)
    assert r["n_tp"] == 1
    assert abs(r["raw"]) < 0.03  # ~0, i.e. about 1 above a miss
    miss = score_file(TS, det(), WIN)["raw"]
    assert miss == -1.0 and r["raw"] - miss == pytest.approx(1.0, abs=0.03)


def test_only_the_first_detection_in_a_window_counts():
    first = score_file(TS, det(450), WIN)
    both = score_file(TS, det(450, 410), WIN)
    late_only = score_file(TS, det(450, 470), WIN)
    assert late_only["raw"] == first["raw"]
    assert both["raw"] == score_file(TS, det(410), WIN)["raw"] and both["n_tp"] == 1


def test_fp_just_after_vs_far_after_a_window():
    just = score_file(TS, det(400, 500), WIN)
    far = score_file(TS, det(400, 900), WIN)
    assert just["n_fp"] == 1 and far["n_fp"] == 1
    assert -0.01 < just["fp"] < 0  # S(1/99) * 0.11: tiny
    assert far["fp"] == pytest.approx(-FP)  # past 3 widths: -fp
    mid = score_file(TS, det(400, 599), WIN)["fp"]  # one width after: ~ -0.99 fp
    assert mid == pytest.approx(FP * scaled_sigmoid((599 - 499) / (100 - 1)))


def test_fp_before_the_first_window_and_in_probation():
    r = score_file(TS, det(200), WIN)
    assert r["fp"] == pytest.approx(-FP) and r["raw"] == pytest.approx(-1 - FP)
    ignored = score_file(TS, det(100), WIN)  # inside probation: ignored
    assert ignored["n_fp"] == 0 and ignored["raw"] == -1.0


def test_file_without_windows_and_one_detection():
    r = score_file(TS, det(600), [])
    assert r["raw"] == pytest.approx(-FP) and r["n_windows"] == 0


def test_window_inside_probation_is_neither_hit_nor_missed():
    r = score_file(TS, det(), [[stamp(10), stamp(60)]] + WIN)
    assert r["n_windows"] == 1 and r["raw"] == -1.0


def test_profiles_weights():
    lowfn = score_file(TS, det(), WIN, "reward_low_FN_rate")
    assert lowfn["raw"] == -2.0
    lowfp = score_file(TS, det(400, 900), WIN, PROFILES["reward_low_FP_rate"])
    assert lowfp["fp"] == pytest.approx(-0.22)
    nab_style = {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}}
    assert score_file(TS, det(400, 900), WIN, nab_style)["raw"] == pytest.approx(1 - 0.11)


def test_corpus_nothing_detected_is_zero_and_perfect_is_100():
    w2 = [[stamp(300), stamp(349)], [stamp(700), stamp(799)]]
    windows = {"a.csv": WIN, "b.csv": w2, "c.csv": []}
    none = {f: (TS, det()) for f in windows}
    assert score_corpus(none, windows) == {p: 0.0 for p in PROFILES}
    perfect = {"a.csv": (TS, det(400)), "b.csv": (TS, det(300, 700)), "c.csv": (TS, det())}
    assert score_corpus(perfect, windows) == {p: pytest.approx(100.0) for p in PROFILES}
    detail = score_corpus_detail(perfect, windows, ["standard"])
    assert detail["standard"]["null"] == -3 and detail["standard"]["perfect"] == 3
    # one false positive in the window-less file costs fp / (perfect - null)
    noisy = dict(perfect, **{"c.csv": (TS, det(500))})
    assert score_corpus(noisy, windows)["standard"] == pytest.approx(100 * (6 - FP) / 6)

"""tbpanel.plotting: the HoloViews shortcuts the notebooks use (structure checked, then rendered)."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tbpanel import plotting

hv.extension("bokeh")
T0 = pd.Timestamp("2026-11-01")


def dataset() -> xr.Dataset:
    times = pd.date_range(T0, periods=48, freq="h").values.astype("datetime64[ms]")
    vals = np.vstack([np.arange(48.0), np.arange(48.0) * 2])
    vals[1, 5] = np.nan
    return xr.Dataset(
        {"temperature": (("device", "time"), vals, {"key": "temperature"})},
        coords={"device": ["id-1", "id-2"], "time": times},
    )


def anomalies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item": ["id-1", "id-2", "id-1"],
            "start": pd.to_datetime(
                [T0 + pd.Timedelta("2h"), T0 + pd.Timedelta("5h"), T0 + pd.Timedelta("30h")], utc=True
            ),
            "end": pd.to_datetime(
                [T0 + pd.Timedelta("4h"), T0 + pd.Timedelta("6h"), T0 + pd.Timedelta("31h")], utc=True
            ),
            "score": [150.0, 120.0, 300.0],
            "score_index": [1.0, 0.5, 2.0],
        }
    )


def test_with_units_labels_units_and_names_without_touching_the_input():
    ds = dataset()
    out = plotting.with_units(ds, {"temperature": "°C"}, names={"id-1": "T1"})
    assert out["temperature"].attrs["units"] == "°C" and out["temperature"].attrs["long_name"] == "temperature"
    assert list(out["device"].values) == ["T1", "id-2"]
    assert "units" not in ds["temperature"].attrs and list(ds["device"].values) == ["id-1", "id-2"]
    np.testing.assert_array_equal(out["temperature"].values, ds["temperature"].values)


def test_telemetry_one_curve_per_device_with_unit_label_and_no_nans():
    ds = plotting.with_units(dataset(), {"temperature": "°C"})
    ov = plotting.telemetry(ds, "temperature")
    curves = list(ov)
    assert [c.label for c in curves] == ["id-1", "id-2"]
    assert curves[0].vdims[0].pprint_label == "temperature (°C)"
    assert len(curves[0]) == 48 and len(curves[1]) == 47  # the NaN is dropped, not drawn as 0
    assert len(list(plotting.telemetry(ds, "temperature", "id-2"))) == 1
    hv.render(ov)


def test_as_frame_accepts_experiment_records():
    recs = [{"item": "id-1", "start_ts": 1_000, "end_ts": 61_000, "score": 120.0, "score_index": 1.0}]
    df = plotting.as_frame(recs)
    assert df["start"].iloc[0] == pd.Timestamp(1_000, unit="ms", tz="UTC")
    assert df["end"].iloc[0] == pd.Timestamp(61_000, unit="ms", tz="UTC")
    assert plotting.as_frame([]).empty
    same = anomalies()
    assert plotting.as_frame(same) is same


def test_anomaly_spans_per_item():
    spans = plotting.anomaly_spans(anomalies(), "id-1")
    assert len(spans) == 2
    assert spans.dframe()["start"].iloc[0] == T0 + pd.Timedelta("2h")
    assert len(plotting.anomaly_spans(anomalies())) == 3
    assert len(plotting.anomaly_spans(anomalies(), "nobody")) == 0
    assert len(plotting.anomaly_spans([], None)) == 0


def test_telemetry_with_anomalies_and_score():
    ds, df = dataset(), anomalies()
    ov = plotting.telemetry_with_anomalies(ds, "temperature", "id-1", df)
    assert isinstance(ov.get(0), hv.VSpans) and len(ov.get(0)) == 2
    hv.render(ov)
    both = plotting.telemetry_with_score(ds, "temperature", "id-1", df)
    score = [el for el in both if isinstance(el, hv.Curve) and el.vdims[0].name == "score"][0]
    s = score.dframe()
    assert s["score"].max() == 300.0 and s["score"].iloc[0] == 0.0 and s["score"].iloc[-1] == 0.0
    # inside the first anomaly the score is its score; the item's other anomaly (id-2's) is absent
    assert 120.0 not in set(s["score"])
    hv.render(both)


def test_score_curve_steps():
    c = plotting.score_curve(anomalies(), "id-2")
    assert list(c.dframe()["score"]) == [0.0, 120.0, 120.0, 0.0]


class FakeTrained:
    fields = ["a", "b"]
    centroids = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]], dtype=float)
    cluster_sizes = np.array([90, 10])
    train_scores = np.concatenate([np.linspace(0, 99, 99), [150.0]])

    def thresholds(self, config=None):
        return {"warning": 100.0, "critical": 140.0}


def test_centroids_one_plot_per_field_one_curve_per_cluster():
    layout = plotting.centroids(FakeTrained())
    plots = list(layout)
    assert len(plots) == 2
    first = list(plots[0])
    assert [c.label for c in first] == ["cluster 0 (n=90)", "cluster 1 (n=10)"]
    np.testing.assert_array_equal(first[1].dframe()["value"], [5, 4, 3])
    np.testing.assert_array_equal(list(plots[1])[0].dframe()["value"], [3, 4, 5])
    hv.render(layout)


def test_score_distribution_histogram_and_threshold_lines():
    ov = plotting.score_distribution(FakeTrained(), bins=10)
    hist = ov.get(0)
    assert isinstance(hist, hv.Histogram) and hist.dframe()["segments"].sum() == 100
    lines = [el for el in ov if isinstance(el, hv.VLine)]
    assert sorted(line.data for line in lines) == [100.0, 140.0]
    hv.render(ov)


def test_unknown_key_is_an_error():
    with pytest.raises(KeyError):
        plotting.telemetry(dataset(), "pressure")

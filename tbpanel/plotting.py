"""HoloViews shortcuts for notebooks: telemetry with units, anomalies shaded, scores, clusters.

Every function returns a HoloViews object (nothing is rendered here), so results compose with
``*``/``+``, take ``.opts(...)`` and display inline after ``hv.extension("bokeh")`` or
``pn.extension()``. They read only public results: an ``xarray.Dataset`` from
``TelemetryStore.query``, the DataFrame of ``AnomalyModel.anomalies()`` and ``TrainedModel``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

from .alarms.model import severity_colour

__all__ = [
    "as_frame",
    "with_units",
    "telemetry",
    "anomaly_spans",
    "telemetry_with_anomalies",
    "score_curve",
    "telemetry_with_score",
    "centroids",
    "score_distribution",
]


def with_units(ds: xr.Dataset, units: Mapping[str, str], names: Mapping[str, str] | None = None) -> xr.Dataset:
    """Label a query result for people: ``attrs["units"]``/``long_name`` per key and, with
    ``names`` (``{device id: name}``), device names instead of ids on the ``device`` axis.

    The store keeps neither units nor names (they belong to the fleet definition and the
    registry), so they are attached here; plots pick them up as axis labels.
    """
    out = ds.copy()
    for var in out.data_vars:
        key = out[var].attrs.get("key", var)
        out[var].attrs["long_name"] = key
        if key in units:
            out[var].attrs["units"] = units[key]
    if names is not None:
        out = out.assign_coords(device=[names.get(d, d) for d in out["device"].values.tolist()])
    return out


def _label(da: xr.DataArray) -> str:
    name = da.attrs.get("long_name", da.name)
    return f"{name} ({da.attrs['units']})" if da.attrs.get("units") else str(name)


def telemetry(ds: xr.Dataset, key: str, devices: Sequence[str] | str | None = None, **opts: Any) -> hv.Overlay:
    """One line per device for ``key``, the y axis labelled with its unit."""
    da = ds[key]
    if isinstance(devices, str):
        devices = [devices]
    names = list(devices) if devices is not None else da["device"].values.tolist()
    curves = []
    for dev in names:
        s = da.sel(device=dev)
        s = s[~np.isnan(s.values.astype(float))] if s.dtype != object else s
        curves.append(
            hv.Curve(
                (s["time"].values, s.values.astype(float)),
                kdims=["time"],
                vdims=[hv.Dimension(key, label=_label(da))],
                label=str(dev),
            )
        )
    return hv.Overlay(curves).opts(
        hv.opts.Curve(responsive=True, height=300, tools=["hover"]), hv.opts.Overlay(legend_position="top_left", **opts)
    )


def as_frame(anomalies: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Anomalies as a DataFrame with UTC ``start``/``end``: ``AnomalyModel.anomalies()`` passes
    through, the record lists of ``AnomalyService.experiment`` (``start_ts``/``end_ts`` ms) are
    converted, so every plot takes either."""
    if isinstance(anomalies, pd.DataFrame):
        return anomalies
    df = pd.DataFrame(list(anomalies), columns=None)
    if df.empty:
        return pd.DataFrame(columns=["item", "start", "end", "score", "score_index"])
    df["start"] = pd.to_datetime(df["start_ts"], unit="ms", utc=True)
    df["end"] = pd.to_datetime(df["end_ts"], unit="ms", utc=True)
    return df


def _frame(anomalies: pd.DataFrame | Sequence[Mapping[str, Any]], item: str | None) -> pd.DataFrame:
    df = as_frame(anomalies)
    return df if item is None or df.empty else df[df["item"] == item]


def anomaly_spans(
    anomalies: pd.DataFrame, item: str | None = None, color: str = "#e15759", alpha: float = 0.25
) -> hv.VSpans:
    """The anomalies of ``item`` (a device id; None: all) as shaded time spans."""
    df = _frame(anomalies, item)
    data = pd.DataFrame(
        {
            "start": pd.to_datetime(df["start"]).dt.tz_localize(None) if len(df) else [],
            "end": pd.to_datetime(df["end"]).dt.tz_localize(None) if len(df) else [],
        }
    )
    return hv.VSpans(data, kdims=["start", "end"]).opts(color=color, alpha=alpha)


def telemetry_with_anomalies(
    ds: xr.Dataset, key: str, device: str, anomalies: pd.DataFrame, item: str | None = None, **opts: Any
) -> hv.Overlay:
    """``key`` of ``device`` with the model's anomalies of that device shaded behind it.

    ``device`` is the label on the dataset's device axis; ``item`` the device id the model
    used (defaults to ``device``, i.e. a dataset not relabelled with names).
    """
    return (anomaly_spans(anomalies, item or device) * telemetry(ds, key, device)).opts(**opts)


def score_curve(anomalies: pd.DataFrame, item: str | None = None, start: Any = None, end: Any = None) -> hv.Curve:
    """Anomaly score over time as a step curve: the score inside each anomaly, 0 between.

    A score of 100 is the model's threshold distance; the severity levels sit above it.
    """
    df = _frame(anomalies, item).sort_values("start")
    t: list = []
    v: list = []
    if start is not None:
        t.append(pd.Timestamp(start).tz_localize(None) if pd.Timestamp(start).tzinfo else pd.Timestamp(start))
        v.append(0.0)
    for row in df.itertuples():
        s, e = pd.Timestamp(row.start).tz_localize(None), pd.Timestamp(row.end).tz_localize(None)
        t += [s, s, e, e]
        v += [0.0, float(row.score), float(row.score), 0.0]
    if end is not None:
        t.append(pd.Timestamp(end).tz_localize(None) if pd.Timestamp(end).tzinfo else pd.Timestamp(end))
        v.append(0.0)
    return hv.Curve(
        (np.array(t, dtype="datetime64[ms]"), np.array(v, dtype=float)),
        kdims=["time"],
        vdims=[hv.Dimension("score", label="anomaly score")],
        label="score",
    ).opts(color="#e15759", line_dash="dashed")


def telemetry_with_score(
    ds: xr.Dataset, key: str, device: str, anomalies: pd.DataFrame, item: str | None = None
) -> hv.Overlay:
    """Telemetry on the left axis, the anomaly score on a second (right) axis, anomalies shaded."""
    da = ds[key].sel(device=device)
    times = da["time"].values
    score = score_curve(anomalies, item or device, times[0] if len(times) else None, times[-1] if len(times) else None)
    return (anomaly_spans(anomalies, item or device) * telemetry(ds, key, device) * score).opts(
        multi_y=True, responsive=True, height=320
    )


def centroids(trained: Any, fields: Sequence[str] | None = None) -> hv.Layout:
    """Each cluster's centroid, one plot per field (normalised units), labelled with its size.

    A behaviour model's centroid is a typical segment shape; looking at them tells you what
    "normal" the model learnt (e.g. day vs night) and whether a cluster is suspiciously small.
    """
    cents = np.asarray(trained.centroids, dtype=float)
    fields = list(fields or trained.fields)
    sizes = np.asarray(trained.cluster_sizes)
    n_f = max(len(fields), 1)
    width = cents.shape[1] // n_f if cents.ndim == 2 and cents.shape[1] % n_f == 0 else cents.shape[-1]
    if cents.ndim != 2 or cents.shape[1] != width * n_f:
        fields, width = ["feature"], cents.shape[-1]
    plots = []
    for fi, f in enumerate(fields):
        curves = [
            hv.Curve(
                (np.arange(width), cents[c, fi * width : (fi + 1) * width]),
                kdims=[hv.Dimension("position", label="position in segment")],
                vdims=[hv.Dimension("value", label=f"{f} (normalised)")],
                label=f"cluster {c} (n={int(sizes[c]) if c < len(sizes) else '?'})",
            )
            for c in range(cents.shape[0])
        ]
        plots.append(hv.Overlay(curves, label=f).opts(title=f, legend_position="right", width=520, height=260))
    return hv.Layout(plots).cols(1)


def score_distribution(trained: Any, bins: int = 60, config: Any = None) -> hv.Overlay:
    """Histogram of the training segments' scores with the severity thresholds as lines.

    By construction ``threshold_percent`` of training segments score above 100; where the
    severity lines fall relative to the tail tells you how noisy alarms would be.
    """
    scores = np.asarray(trained.train_scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    top = max(float(scores.max()) if len(scores) else 100.0, *trained.thresholds(config).values(), 100.0) * 1.05
    hist = hv.Histogram(
        np.histogram(scores, bins=bins, range=(0, top)),
        kdims=[hv.Dimension("score", label="training segment score")],
        vdims=["segments"],
    ).opts(alpha=0.6, width=600, height=280, logy=True, ylim=(0.5, None), tools=["hover"])
    lines = [
        hv.VLine(v, label=k).opts(color=severity_colour(k, "black"), line_dash="dashed")
        for k, v in trained.thresholds(config).items()
    ]
    return hv.Overlay([hist, *lines])

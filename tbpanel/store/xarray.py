"""Telemetry as an ``xarray.Dataset``: :func:`query_dataset` (behind
:meth:`TelemetryStore.query`) and an xarray backend, so that ::

    ds = xr.open_dataset("data/demo", engine="tbpanel", agg="avg", interval="1h")

opens a store directory (or store URL) like any other file xarray reads. The backend is
registered under ``[project.entry-points."xarray.backends"]``; before the package is
(re)installed, pass the class itself: ``engine=TbpanelBackendEntrypoint``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendEntrypoint

from ..clock import now_ms
from .aggregate import aggregate, normalize_agg
from .buckets import QueryError, bucket_edges, check_range, get_zone, normalize_interval_type
from .hot import db_path
from .payload import TS_MIN
from .series import SeriesIndex
from .snapshot import Snapshots
from .times import parse_interval, to_ms
from .values import ValueType

_STR = int(ValueType.STR)


def query_dataset(
    series: SeriesIndex,
    snapshots: Snapshots,
    devices: str | Iterable[str],
    keys: str | Iterable[str] | None = None,
    start: Any = None,
    end: Any = None,
    interval: Any = None,
    agg: str | None = None,
    *,
    interval_type: str = "MILLISECONDS",
    tz: str = "UTC",
) -> xr.Dataset:
    """The ``xarray.Dataset`` behind :meth:`TelemetryStore.query` (its docstring is the
    specification): ids resolved by the caller, reads through ``snapshots``."""
    if isinstance(devices, str):
        devices = [devices]
    devices = list(dict.fromkeys(devices))
    agg_u = normalize_agg(agg, allow_none=True)
    it = normalize_interval_type(interval_type)
    interval_ms = parse_interval(interval)
    if agg_u is None and interval_ms is not None:
        raise QueryError("an interval needs an aggregation; pass agg='avg' (or min, max, sum, count)")
    if it != "MILLISECONDS":
        get_zone(tz)
    end_ms = now_ms() + 1 if end is None else to_ms(end, "end")
    start_ms = TS_MIN if start is None else to_ms(start, "start")
    check_range(start_ms, end_ms)
    if agg_u is not None:  # validate interval (and, with a start, the bucket count) before reading
        bucket_edges(start_ms, end_ms, interval_ms, it, tz) if start is not None else bucket_edges(
            0, 1, interval_ms, it, tz
        )
    if keys is None:
        keys = sorted({k for d in devices for k in series.keys(d)})
    elif isinstance(keys, str):
        keys = [keys]
    keys = list(dict.fromkeys(keys))

    pairs: dict[tuple[int, int], int] = {}
    for di, d in enumerate(devices):
        for ki, k in enumerate(keys):
            sid = series.sid(d, k)
            if sid is not None:
                pairs[(di, ki)] = sid

    def run() -> tuple[int, dict[tuple[int, int], tuple[np.ndarray, np.ndarray, bool]]]:
        data = snapshots.collect(list(dict.fromkeys(pairs.values())), start_ms, end_ms) if pairs else {}
        first = start_ms
        if start is None:
            firsts = [int(sd.ts[0]) for sd in data.values() if len(sd)]
            first = min(firsts) if firsts else start_ms
        results: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, bool]] = {}
        if agg_u is not None:
            if not any(len(sd) for sd in data.values()):
                return first, results
            edges = bucket_edges(first, end_ms, interval_ms, it, tz)
            for pk, sid in pairs.items():
                sd = data[sid]
                if not len(sd):
                    continue
                r = aggregate(agg_u, edges, sd.ts, sd.column)
                if len(r):
                    has_str = bool((r.vtype == _STR).any())
                    results[pk] = (r.ts, r.values() if has_str else r.fval, has_str)
        else:
            for pk, sid in pairs.items():
                sd = data[sid]
                if not len(sd):
                    continue
                has_text = bool((sd.column("t") >= _STR).any())
                results[pk] = (sd.ts, sd.values() if has_text else sd.column("num"), has_text)
        return first, results

    start_ms, results = snapshots.read(run)
    attrs = {
        "agg": agg_u or "NONE",
        "interval_ms": int(interval_ms or 0) if it == "MILLISECONDS" else 0,
        "interval_type": it,
        "tz": tz or "UTC",
        "start_ms": int(start_ms),
        "end_ms": int(end_ms),
    }
    return _dataset(devices, keys, results, attrs)


def _dataset(
    devices: list[str],
    keys: list[str],
    results: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, bool]],
    attrs: dict[str, Any],
) -> xr.Dataset:
    """One ``(device, time)`` variable per key from ``(device index, key index) -> (ts, values,
    is text)``; ``time`` is the union of every series' timestamps, missing cells NaN."""
    all_ts = [r[0] for r in results.values()]
    times = np.unique(np.concatenate(all_ts)) if all_ts else np.empty(0, np.int64)
    data_vars: dict[str, tuple[tuple[str, str], np.ndarray, dict[str, str]]] = {}
    for ki, k in enumerate(keys):
        is_obj = any(results[(di, ki)][2] for di in range(len(devices)) if (di, ki) in results)
        arr = np.full((len(devices), len(times)), np.nan, dtype=object if is_obj else np.float64)
        for di in range(len(devices)):
            r = results.get((di, ki))
            if r is None:
                continue
            pos = np.searchsorted(times, r[0])
            arr[di, pos] = r[1]
        name = k if k not in ("device", "time") else k + "_"
        data_vars[name] = (("device", "time"), arr, {"key": k})
    return xr.Dataset(
        data_vars,
        coords={"device": np.array(devices, dtype=object), "time": times.astype("datetime64[ms]")},
        attrs=attrs,
    )


class TbpanelBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(path, engine="tbpanel", ...)``: a telemetry store as a Dataset.

    ``path`` is a store directory (or a store URL, see :func:`tbpanel.store.open_store`). The
    keyword arguments are :meth:`TelemetryStore.query`'s; ``devices`` defaults to every
    entity with data. The store is opened for the read and closed again: the Dataset holds
    the values in memory.
    """

    description = "Open a tbpanel telemetry store (SQLite hot tier + Zarr cold tier) as a Dataset"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "devices",
        "keys",
        "start",
        "end",
        "interval",
        "agg",
        "interval_type",
        "tz",
    )

    def open_dataset(  # type: ignore[override]  # xarray's signature has only the first two
        self,
        filename_or_obj: str | os.PathLike[str],
        *,
        drop_variables: str | Iterable[str] | None = None,
        devices: str | Sequence[str] | None = None,
        keys: str | Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
        interval: Any = None,
        agg: str | None = None,
        interval_type: str = "MILLISECONDS",
        tz: str = "UTC",
    ) -> xr.Dataset:
        from .telemetry import open_store

        if not isinstance(filename_or_obj, (str, os.PathLike)):
            raise TypeError(f"the tbpanel engine opens a store directory or URL, not {type(filename_or_obj).__name__}")
        with open_store(filename_or_obj, compaction_interval_s=0) as store:
            ds = store.query(
                store.entities() if devices is None else devices,
                keys,
                start,
                end,
                interval,
                agg,
                interval_type=interval_type,
                tz=tz,
            )
        if drop_variables is not None:
            ds = ds.drop_vars(
                [drop_variables] if isinstance(drop_variables, str) else list(drop_variables), errors="ignore"
            )
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """A directory holding ``telemetry.sqlite``."""
        if not isinstance(filename_or_obj, (str, os.PathLike)):
            return False
        try:
            return os.path.isfile(db_path(os.fspath(filename_or_obj)))
        except (TypeError, ValueError):
            return False

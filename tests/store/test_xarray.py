"""TelemetryStore.query(): xarray.Dataset shape, coordinates, dtypes and values."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tbpanel.store import QueryError, ValueType, open_store
from tbpanel.store.xarray import TbpanelBackendEntrypoint

V = ValueType
HOUR = 3_600_000
JAN = 1_704_067_200_000  # 2024-01-01T00:00Z
FAR = 4_102_444_800_000


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "data", compaction_interval_s=0) as s:
        pts = []
        for i in range(6):  # dev-a: hourly, 00:00..05:00
            pts.append(("dev-a", "temp", JAN + i * HOUR, V.DOUBLE, 10.0 + i))
            pts.append(("dev-a", "on", JAN + i * HOUR, V.BOOL, i % 2 == 1))
            pts.append(("dev-a", "state", JAN + i * HOUR, V.STR, f"s{i}"))
        for i in range(3):  # dev-b: 02:30, 03:30, 04:30 (longs)
            pts.append(("dev-b", "temp", JAN + 2 * HOUR + HOUR // 2 + i * HOUR, V.LONG, 100 + i))
        s.write_points(pts)
        s.compact(before_ts=FAR)
        s.write_points([("dev-b", "temp", JAN + 5 * HOUR + HOUR // 2, V.LONG, 103)])  # one hot point
        yield s


def test_aggregated_query_two_devices(store):
    ds = store.query(["dev-a", "dev-b"], ["temp", "state"], start=JAN, end=JAN + 6 * HOUR, interval=2 * HOUR, agg="avg")
    assert ds["temp"].dims == ("device", "time")
    assert list(ds["device"].values) == ["dev-a", "dev-b"]
    assert ds["time"].dtype == np.dtype("datetime64[ms]")
    mids = [JAN + HOUR, JAN + 3 * HOUR, JAN + 5 * HOUR]
    assert ds["time"].values.astype(np.int64).tolist() == mids
    assert ds["temp"].dtype == np.float64
    np.testing.assert_allclose(ds["temp"].sel(device="dev-a").values, [10.5, 12.5, 14.5])
    np.testing.assert_allclose(ds["temp"].sel(device="dev-b").values, [np.nan, 100.5, 102.5])
    # AVG ignores strings: the variable exists but is all NaN
    assert ds["state"].dtype == np.float64 and np.isnan(ds["state"].values).all()
    assert ds["temp"].attrs == {"key": "temp"}
    assert ds.attrs["agg"] == "AVG" and ds.attrs["interval_ms"] == 2 * HOUR
    assert ds.attrs["start_ms"] == JAN and ds.attrs["end_ms"] == JAN + 6 * HOUR
    # string interval spelling and lower-case agg
    ds2 = store.query(["dev-a", "dev-b"], ["temp"], start=JAN, end=JAN + 6 * HOUR, interval="2h", agg="AVG")
    np.testing.assert_array_equal(ds2["temp"].values, ds["temp"].values)


def test_aggregated_union_of_bucket_times_and_nan(store):
    ds = store.query(["dev-a", "dev-b"], ["temp"], start=JAN, end=JAN + 6 * HOUR, interval=HOUR, agg="max")
    assert ds["time"].values.astype(np.int64).tolist() == [JAN + HOUR // 2 + i * HOUR for i in range(6)]
    b = ds["temp"].sel(device="dev-b").values
    assert np.isnan(b[:2]).all()  # dev-b has no bucket there
    np.testing.assert_array_equal(b[2:], [100, 101, 102, 103])
    ds = store.query(["dev-a"], ["state"], start=JAN, end=JAN + 6 * HOUR, interval=3 * HOUR, agg="min")
    assert ds["state"].dtype == object
    assert ds["state"].values.tolist() == [["s0", "s3"]]
    ds = store.query(["dev-a"], ["on"], start=JAN, end=JAN + 6 * HOUR, interval=3 * HOUR, agg="count")
    assert ds["on"].dtype == np.float64 and ds["on"].values.tolist() == [[3.0, 3.0]]


def test_raw_query_two_devices(store):
    ds = store.query(["dev-a", "dev-b"], ["temp", "on", "state"], start=JAN, end=FAR)
    times = sorted({JAN + i * HOUR for i in range(6)} | {JAN + 2 * HOUR + HOUR // 2 + i * HOUR for i in range(4)})
    assert ds["time"].values.astype(np.int64).tolist() == times
    assert ds.attrs["agg"] == "NONE"
    a = ds["temp"].sel(device="dev-a").values
    b = ds["temp"].sel(device="dev-b").values
    assert ds["temp"].dtype == np.float64
    np.testing.assert_array_equal(a[~np.isnan(a)], [10, 11, 12, 13, 14, 15])
    np.testing.assert_array_equal(b[~np.isnan(b)], [100, 101, 102, 103])  # cold + hot merged
    assert ds["on"].dtype == np.float64  # bool -> 0/1
    on = ds["on"].sel(device="dev-a").values
    np.testing.assert_array_equal(on[~np.isnan(on)], [0, 1, 0, 1, 0, 1])
    assert ds["state"].dtype == object
    st = ds["state"].sel(device="dev-a").values
    assert [x for x in st if isinstance(x, str)] == [f"s{i}" for i in range(6)]
    assert np.isnan(ds["state"].sel(device="dev-b").values.astype(float)).all()
    # raw queries have no limit and honour start <= ts < end
    ds = store.query("dev-a", "temp", start=JAN + HOUR, end=JAN + 3 * HOUR)
    assert ds["temp"].shape == (1, 2)
    assert ds["temp"].values.tolist() == [[11.0, 12.0]]


def test_defaults_start_earliest_end_now(store):
    ds = store.query(["dev-a", "dev-b"], ["temp"], interval="1h", agg="count")
    assert ds.attrs["start_ms"] == JAN  # earliest point
    assert ds["time"].values[0].astype(np.int64) == JAN + HOUR // 2
    assert np.nansum(ds["temp"].values) == 10
    ds = store.query(["dev-b"])  # all keys, raw
    assert list(ds.data_vars) == ["temp"]
    assert ds["temp"].shape == (1, 4)


def test_query_errors(store):
    with pytest.raises(QueryError, match="aggregation"):
        store.query(["dev-a"], ["temp"], start=JAN, end=FAR, interval="1h")
    with pytest.raises(QueryError, match="interval"):
        store.query(["dev-a"], ["temp"], start=JAN, end=FAR, interval="fortnight", agg="avg")
    with pytest.raises(QueryError, match="100000"):
        store.query(["dev-a"], ["temp"], start=JAN, end=FAR, interval=1, agg="avg")


def _engines() -> list:
    """The backend class itself, and its entry-point name once the package is (re)installed."""
    return [TbpanelBackendEntrypoint] + (["tbpanel"] if "tbpanel" in xr.backends.list_engines() else [])


def test_open_dataset_engine_reads_a_store_directory(store):
    for engine in _engines():
        ds = xr.open_dataset(
            store.path, engine=engine, start=JAN, end=JAN + 6 * HOUR, interval=2 * HOUR, agg="avg", keys=["temp"]
        )
        assert list(ds["device"].values) == ["dev-a", "dev-b"]  # every device, sorted
        np.testing.assert_allclose(ds["temp"].sel(device="dev-a").values, [10.5, 12.5, 14.5])
        np.testing.assert_allclose(ds["temp"].sel(device="dev-b").values, [np.nan, 100.5, 102.5])
        assert ds.attrs["agg"] == "AVG"
        want = store.query(["dev-a", "dev-b"], ["temp"], start=JAN, end=JAN + 6 * HOUR, interval=2 * HOUR, agg="avg")
        xr.testing.assert_identical(ds.load(), want)
        # defaults: every key of every device, raw; drop_variables honoured
        raw = xr.open_dataset(store.path, engine=engine, end=FAR, drop_variables=["state"])
        assert sorted(raw.data_vars) == ["on", "temp"]
        assert raw["temp"].shape == (2, 10)
        ds.close()
        raw.close()


def test_backend_guesses_store_directories(store, tmp_path):
    backend = TbpanelBackendEntrypoint()
    assert backend.guess_can_open(store.path)
    assert not backend.guess_can_open(tmp_path / "nothing-here")
    assert not backend.guess_can_open(str(tmp_path / "file.nc"))

"""Telemetry query REST API: keys, latest, history, aggregation, save, delete, bad parameters."""

from __future__ import annotations

import pytest
import requests

T0 = 1_700_000_000_000  # a fixed epoch-ms origin


@pytest.fixture(scope="module")
def series(world):
    """A device with 300 one-second points of 'v' (long) and 'w' (double), and one string key."""
    did, token = world.new_device("tel-series")
    body = [{"ts": T0 + i * 1000, "values": {"v": i, "w": i / 2, "s": f"s{i:03d}"}} for i in range(300)]
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", json=body, timeout=30)
    assert r.status_code == 200
    return did


def q(world, did, **params):
    return world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries", params=params)


def test_keys(world, series):
    r = world.admin.get(f"/api/plugins/telemetry/DEVICE/{series}/keys/timeseries")
    assert sorted(r.json()) == ["s", "v", "w"]


def test_latest(world, series):
    r = q(world, series, keys="v,w")
    assert r.json() == {"v": [{"ts": T0 + 299_000, "value": "299"}], "w": [{"ts": T0 + 299_000, "value": "149.5"}]}
    strict = q(world, series, keys="v", useStrictDataTypes="true").json()
    assert strict["v"][0]["value"] == 299
    everything = q(world, series).json()
    assert set(everything) == {"s", "v", "w"}


def test_raw_history_defaults_limit_100_desc(world, series):
    data = q(world, series, keys="v", startTs=T0, endTs=T0 + 10**9).json()
    assert len(data["v"]) == 100
    assert data["v"][0] == {"ts": T0 + 299_000, "value": "299"}
    assert [p["ts"] for p in data["v"]] == sorted((p["ts"] for p in data["v"]), reverse=True)


def test_raw_history_range_is_start_inclusive_end_exclusive(world, series):
    data = q(world, series, keys="v", startTs=T0 + 10_000, endTs=T0 + 20_000, orderBy="ASC", limit=1000).json()
    assert [int(p["value"]) for p in data["v"]] == list(range(10, 20))


def test_history_path_variant_and_repeated_key_params(world, series):
    r = world.admin.get(
        f"/api/plugins/telemetry/DEVICE/{series}/values/timeseries/history",
        params=[("key", "v"), ("key", "w"), ("startTs", T0), ("endTs", T0 + 3000), ("orderBy", "ASC")],
    )
    assert r.status_code == 200
    assert [p["value"] for p in r.json()["w"]] == ["0.0", "0.5", "1.0"]


def test_keys_without_data_are_absent_from_history(world, series):
    data = q(world, series, keys="v,nothing", startTs=T0, endTs=T0 + 1000).json()
    assert set(data) == {"v"}


def test_aggregation_midpoints_and_types(world, series):
    params = dict(keys="v,w,s", startTs=T0, endTs=T0 + 25_000, interval=10_000, useStrictDataTypes="true")
    avg = q(world, series, agg="AVG", **params).json()
    # buckets [T0, T0+10s), [T0+10s, T0+20s), [T0+20s, T0+25s) with midpoint timestamps
    assert [p["ts"] for p in avg["v"]] == [T0 + 5000, T0 + 15000, T0 + 22500]
    assert [p["value"] for p in avg["v"]] == [4.5, 14.5, 22.0]
    total = q(world, series, agg="SUM", **params).json()
    assert total["v"][0]["value"] == 45 and isinstance(total["v"][0]["value"], int)
    assert total["w"][0]["value"] == 22.5
    count = q(world, series, agg="COUNT", **params).json()
    assert [p["value"] for p in count["v"]] == [10, 10, 5]
    assert [p["value"] for p in count["s"]] == [10, 10, 5]
    mn = q(world, series, agg="MIN", **params).json()
    mx = q(world, series, agg="MAX", **params).json()
    assert [p["value"] for p in mn["v"]] == [0, 10, 20] and [p["value"] for p in mx["v"]] == [9, 19, 24]
    assert mn["s"][0]["value"] == "s000" and mx["s"][0]["value"] == "s009"
    text = q(world, series, agg="AVG", keys="v", startTs=T0, endTs=T0 + 10_000, interval=10_000).json()
    assert text["v"] == [{"ts": T0 + 5000, "value": "4.5"}]


def test_empty_buckets_are_omitted(world, series):
    data = q(world, series, agg="COUNT", keys="v", startTs=T0 - 50_000, endTs=T0 + 5000, interval=10_000).json()
    assert [p["ts"] for p in data["v"]] == [T0 - 50_000 + 50_000 + 2500]


def test_calendar_interval_month(world, series):
    data = q(
        world,
        series,
        agg="COUNT",
        keys="v",
        startTs=T0 - 10**10,
        endTs=T0 + 10**10,
        intervalType="MONTH",
        timeZone="Europe/Berlin",
        useStrictDataTypes="true",
    ).json()
    assert sum(p["value"] for p in data["v"]) == 300


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(keys="v", startTs=T0), "endts"),
        (dict(keys="v", startTs=T0 + 5, endTs=T0), "less than"),
        (dict(keys="v", startTs="abc", endTs=T0), "integer"),
        (dict(startTs=T0, endTs=T0 + 1), "keys"),
        (dict(keys="v", startTs=T0, endTs=T0 + 1000, agg="MEDIAN"), "agg"),
        (dict(keys="v", startTs=T0, endTs=T0 + 1000, agg="AVG", interval=0), "interval"),
        (dict(keys="v", startTs=T0, endTs=T0 + 1000, agg="AVG", interval=-5), "interval"),
        (dict(keys="v", startTs=0, endTs=T0, agg="AVG", interval=1), "cap"),
        (dict(keys="v", startTs=T0, endTs=T0 + 1000, limit=0), "limit"),
        (dict(keys="v", startTs=T0, endTs=T0 + 1000, orderBy="UP"), "orderby"),
        (dict(keys="v", startTs=T0, endTs=T0 + 1000, agg="AVG", intervalType="DECADE"), "intervaltype"),
        (
            dict(keys="v", startTs=T0, endTs=T0 + 10**9, agg="AVG", intervalType="MONTH", timeZone="Mars/Olympus"),
            "zone",
        ),
        (dict(keys="v", useStrictDataTypes="maybe"), "usestrictdatatypes"),
    ],
)
def test_bad_query_parameters_are_400_with_a_message(world, series, params, words):
    r = q(world, series, **params)
    assert r.status_code == 400, r.text
    assert words in r.json()["message"].lower(), r.json()


def test_only_device_entities(world, series):
    r = world.admin.get(f"/api/plugins/telemetry/ASSET/{series}/keys/timeseries")
    assert r.status_code == 400 and "DEVICE" in r.json()["message"]


def test_server_side_save_and_errors(world):
    did, _ = world.new_device("tel-save")
    url = f"/api/plugins/telemetry/DEVICE/{did}/timeseries/ANY"
    assert world.admin.post(url + "?scope=ANY", json={"ts": T0, "values": {"k": 1.5}}).status_code == 200
    assert world.admin.post(url, json=[{"ts": T0 + 1, "values": {"k": 2}}]).status_code == 200
    data = q(world, did, keys="k", startTs=T0, endTs=T0 + 10, orderBy="ASC").json()
    assert [p["value"] for p in data["k"]] == ["1.5", "2"]
    r = world.admin.post(url, data=b"{nope")
    assert r.status_code == 400 and "Invalid JSON body" in r.json()["message"]
    r = world.admin.post(url, json={})
    assert r.status_code == 400 and r.json()["message"] == "No time series data found in request body"
    # customer users may save to their own devices only
    a1 = world.devices["dev-a1"]["id"]["id"]
    a2 = world.devices["dev-a2"]["id"]["id"]
    assert world.customer.post(f"/api/plugins/telemetry/DEVICE/{a1}/timeseries/ANY", json={"c": 1}).status_code == 200
    assert world.customer.post(f"/api/plugins/telemetry/DEVICE/{a2}/timeseries/ANY", json={"c": 1}).status_code == 403


def test_delete_range_and_latest(world):
    did, _ = world.new_device("tel-delete")
    save = f"/api/plugins/telemetry/DEVICE/{did}/timeseries/ANY"
    world.admin.post(save, json=[{"ts": T0 + i, "values": {"d": i}} for i in range(10)])
    base = f"/api/plugins/telemetry/DEVICE/{did}/timeseries/delete"
    assert world.admin.delete(base, params=dict(keys="d", startTs=T0 + 5, endTs=T0 + 100)).status_code == 200
    data = q(world, did, keys="d", startTs=T0, endTs=T0 + 100, orderBy="ASC").json()
    assert [p["value"] for p in data["d"]] == [str(i) for i in range(5)]
    latest = q(world, did, keys="d").json()
    assert latest["d"][0]["value"] is None  # the latest value was in the deleted range
    world.admin.post(save, json=[{"ts": T0 + 50, "values": {"e": 1}}, {"ts": T0 + 60, "values": {"e": 2}}])
    assert (
        world.admin.delete(
            base, params=dict(keys="e", startTs=T0 + 55, endTs=T0 + 65, rewriteLatestIfDeleted="true")
        ).status_code
        == 200
    )
    assert q(world, did, keys="e").json()["e"] == [{"ts": T0 + 50, "value": "1"}]
    assert world.admin.delete(base, params=dict(keys="e", deleteAllDataForKeys="true")).status_code == 200
    assert "e" not in q(world, did, keys="e", startTs=0, endTs=T0 * 2).json()
    assert world.admin.delete(base, params=dict(keys="", startTs=0, endTs=1)).status_code == 400
    assert world.admin.delete(base, params=dict(keys="d")).status_code == 400


def test_telemetry_isolation(world):
    b = world.devices["dev-b"]["id"]["id"]
    a2 = world.devices["dev-a2"]["id"]["id"]
    assert world.admin.get(f"/api/plugins/telemetry/DEVICE/{b}/keys/timeseries").status_code == 403
    assert world.customer.get(f"/api/plugins/telemetry/DEVICE/{a2}/values/timeseries").status_code == 403
    assert (
        world.customer.delete(
            f"/api/plugins/telemetry/DEVICE/{a2}/timeseries/delete", params=dict(keys="x", startTs=0, endTs=1)
        ).status_code
        == 403
    )

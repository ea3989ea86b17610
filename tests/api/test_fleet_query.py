"""``POST /api/tbpanel/telemetry/query``: many devices × keys in one request, JSON columns or
Arrow IPC, with the ThingsBoard routes' scoping and typing."""

from __future__ import annotations

import pyarrow as pa
import pytest
import requests

T0 = 1_700_000_000_000
FAR = 4_000_000_000_000
ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture(scope="module")
def fleet(world):
    """Three devices of tenant A (one of customer A1's) with numbers, a long, a bool and text."""
    ids = {}
    for name in ("fq-1", "fq-2", "fq-3"):
        ids[name], _ = world.new_device(name)
    for i, (name, did) in enumerate(ids.items()):
        body = [
            {"ts": T0 + m * 60_000, "values": {"temp": round(20 + i + m / 10, 3), "count": m, "on": m % 2 == 0}}
            for m in range(30)
        ]
        body[3]["values"]["note"] = f"hello {name}"
        r = world.admin.post(f"/api/plugins/telemetry/DEVICE/{did}/timeseries/ANY", json=body)
        assert r.status_code == 200, r.text
    dev_a1 = world.devices["dev-a1"]["id"]["id"]
    r = world.admin.post(
        f"/api/plugins/telemetry/DEVICE/{dev_a1}/timeseries/ANY", json={"ts": T0, "values": {"temp": 5.5}}
    )
    assert r.status_code == 200
    ids["dev-a1"] = dev_a1
    return ids


def query(api, accept: str | None = None, **body):
    headers = {"Accept": accept} if accept else {}
    return api.post("/api/tbpanel/telemetry/query", json=body, headers=headers)


def test_raw_json_columns_keep_types(world, fleet):
    r = query(world.admin, deviceIds=[fleet["fq-1"], fleet["fq-2"]], startTs=0, endTs=FAR)
    assert r.status_code == 200, r.text
    answer = r.json()
    got = {(s["entityId"]["id"], s["key"]): s for s in answer["series"]}
    assert set(got) == {(fleet[d], k) for d in ("fq-1", "fq-2") for k in ("temp", "count", "on", "note")}
    temp = got[fleet["fq-2"], "temp"]
    assert temp["entityId"]["entityType"] == "DEVICE"
    assert temp["ts"] == [T0 + m * 60_000 for m in range(30)]
    assert temp["values"] == [round(21 + m / 10, 3) for m in range(30)]
    assert got[fleet["fq-1"], "count"]["values"] == list(range(30))  # longs stay integers
    assert got[fleet["fq-1"], "on"]["values"] == [m % 2 == 0 for m in range(30)]
    assert got[fleet["fq-1"], "note"] == {
        "entityId": {"entityType": "DEVICE", "id": fleet["fq-1"]},
        "key": "note",
        "ts": [T0 + 3 * 60_000],
        "values": ["hello fq-1"],
    }
    assert answer["points"] == 2 * (3 * 30 + 1)
    # the same series as the ThingsBoard route, point for point
    tb = world.admin.get(
        f"/api/plugins/telemetry/DEVICE/{fleet['fq-2']}/values/timeseries",
        params={
            "keys": "temp",
            "startTs": 0,
            "endTs": FAR,
            "limit": 1000,
            "orderBy": "ASC",
            "useStrictDataTypes": "true",
        },
    ).json()["temp"]
    assert [(p["ts"], p["value"]) for p in tb] == list(zip(temp["ts"], temp["values"]))


def test_limit_order_keys_and_aggregates(world, fleet):
    ids = [fleet["fq-1"], fleet["fq-3"]]
    r = query(world.admin, deviceIds=ids, keys=["temp"], startTs=0, endTs=FAR, limit=3, orderBy="DESC").json()
    assert [s["ts"] for s in r["series"]] == [[T0 + m * 60_000 for m in (27, 28, 29)]] * 2  # newest 3, ascending
    r = query(world.admin, deviceIds=ids, keys=["temp", "nope"], startTs=0, endTs=FAR, limit=2).json()
    assert [s["ts"] for s in r["series"]] == [[T0, T0 + 60_000]] * 2
    r = query(
        world.admin,
        deviceIds=ids,
        keys=["temp", "count"],
        startTs=T0,
        endTs=T0 + 30 * 60_000,
        agg="avg",
        interval=600_000,
    ).json()
    by = {(s["entityId"]["id"], s["key"]): s["values"] for s in r["series"]}
    assert by[fleet["fq-3"], "count"] == [4.5, 14.5, 24.5]
    assert by[fleet["fq-1"], "temp"] == pytest.approx([20 + m / 10 for m in (0.45e1, 1.45e1, 2.45e1)])
    r = query(world.admin, deviceIds=ids, keys=["count"], startTs=T0, endTs=T0 + 30 * 60_000, agg="MAX", interval=10**9)
    assert [s["values"] for s in r.json()["series"]] == [[29], [29]]  # a long's MAX stays a long


def test_arrow_stream_loads_in_one_call(world, fleet):
    r = query(world.admin, ARROW, deviceIds=[fleet["fq-1"], fleet["fq-2"]], startTs=0, endTs=FAR)
    assert r.status_code == 200 and r.headers["Content-Type"] == ARROW
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.schema.names == ["deviceId", "key", "ts", "type", "value", "long", "text"]
    assert table.num_rows == 2 * (3 * 30 + 1)
    df = table.to_pandas()
    temp = df[(df["deviceId"] == fleet["fq-2"]) & (df["key"] == "temp")]
    assert temp["value"].tolist() == [round(21 + m / 10, 3) for m in range(30)]
    assert str(temp["ts"].iloc[0]) == "2023-11-14 22:13:20+00:00"
    count = df[(df["deviceId"] == fleet["fq-1"]) & (df["key"] == "count")]
    assert count["long"].tolist() == list(range(30)) and set(count["type"]) == {"LONG"}
    note = df[df["key"] == "note"]
    assert sorted(note["text"]) == ["hello fq-1", "hello fq-2"] and note["value"].isna().all()
    assert set(df[df["key"] == "on"]["value"]) == {0.0, 1.0}
    # JSON asked for first, or nothing said: JSON
    r = query(world.admin, f"application/json, {ARROW}", deviceIds=[fleet["fq-1"]], startTs=0, endTs=FAR)
    assert r.headers["Content-Type"].startswith("application/json")


def test_scoping_refuses_the_whole_request(world, fleet):
    mine = world.devices["dev-a1"]["id"]["id"]
    r = query(world.customer, deviceIds=[mine], keys=["temp"], startTs=0, endTs=FAR)
    assert r.status_code == 200 and r.json()["series"][0]["values"] == [5.5]
    for api, status in ((world.customer, 403), (world.other_customer, 403), (world.other_admin, 403)):
        r = query(api, deviceIds=[mine, fleet["fq-1"]] if api is world.customer else [mine], startTs=0, endTs=FAR)
        assert r.status_code == status, r.text
        assert "temp" not in r.text and "5.5" not in r.text
    assert requests.post(world.url + "/api/tbpanel/telemetry/query", json={"deviceIds": [mine]}).status_code == 401


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({}, 400, "deviceIds"),
        ({"deviceIds": [], "startTs": 0, "endTs": 1}, 400, "deviceIds"),
        ({"deviceIds": "x", "startTs": 0, "endTs": 1}, 400, "deviceIds"),
        ({"deviceIds": [1], "startTs": 0, "endTs": 1}, 400, "deviceIds"),
        ({"deviceIds": ["not-a-uuid"], "startTs": 0, "endTs": 1}, 400, ""),
        ({"deviceIds": ["{dev}"]}, 400, "startTs and endTs"),
        ({"deviceIds": ["{dev}"], "startTs": 5, "endTs": 5}, 400, "less than"),
        ({"deviceIds": ["{dev}"], "startTs": "0", "endTs": 5}, 400, "integer"),
        ({"deviceIds": ["{dev}"], "startTs": True, "endTs": 5}, 400, "integer"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "agg": "MEDIAN"}, 400, "agg"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "agg": "AVG"}, 400, "interval"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "agg": "AVG", "interval": -1}, 400, "interval"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "intervalType": "DECADE"}, 400, "intervalType"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "limit": 0}, 400, "limit"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "orderBy": "UP"}, 400, "orderBy"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "keys": [""]}, 400, "keys"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "keys": "temp"}, 400, "keys"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "timeZone": 3}, 400, "timeZone"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "color": "red"}, 400, "unknown field"),
        ({"deviceIds": ["{dev}"] * 10_001, "startTs": 0, "endTs": 5}, 413, "at most"),
        ({"deviceIds": ["{dev}"], "startTs": 0, "endTs": 5, "keys": ["k"] * 1001}, 413, "at most"),
    ],
)
def test_bad_queries_say_what_is_wrong(world, fleet, body, status, says):
    body = {
        k: ([fleet["fq-1"] if v == "{dev}" else v for v in val] if k == "deviceIds" and isinstance(val, list) else val)
        for k, val in body.items()
    }
    r = world.admin.post("/api/tbpanel/telemetry/query", json=body)
    assert r.status_code == status, r.text
    assert says in r.json()["message"]


def test_a_body_that_is_not_a_query(world):
    for data in (b"", b"[1]", b"{", b"null"):
        r = world.admin.post("/api/tbpanel/telemetry/query", data=data, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (data, r.text)


def test_openapi_describes_the_fleet_query():
    import json
    from pathlib import Path

    spec = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
    op = spec["paths"]["/api/tbpanel/telemetry/query"]["post"]
    from tbpanel.api.fleet_query import FIELDS, MAX_DEVICES

    props = op["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert props["deviceIds"]["maxItems"] == MAX_DEVICES
    assert set(props) == set(FIELDS)
    assert {"application/json", ARROW} <= set(op["responses"]["200"]["content"])

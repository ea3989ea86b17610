"""``ENTITY_DATA``, ``ENTITY_COUNT`` and ``ALARM_COUNT`` on ``/api/ws`` against a real server
with tornado's WebSocket client: the first page, live updates after a telemetry POST and an
attribute save, tsCmd/historyCmd series, live counts, unsubscribe, scoping and errors."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import requests
from tornado.websocket import websocket_connect

from tests.helpers import Api, jwt
from tests.helpers.ws import recv

pytestmark = pytest.mark.usefixtures("no_server_errors")


async def open_ws(world, api: Api):
    conn = await websocket_connect(world.url.replace("http://", "ws://") + "/api/ws")
    await conn.write_message(json.dumps({"authCmd": {"cmdId": 0, "token": jwt(api)}}))
    return conn


async def send(conn, *cmds) -> None:
    await conn.write_message(json.dumps({"cmds": list(cmds)}))


async def post(url, body):
    r = await asyncio.to_thread(requests.post, url, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r


@pytest.fixture
def fleet(world):
    """Three devices of a fresh type: the first assigned to customer A1, the second to A2."""
    dtype = "ws" + uuid.uuid4().hex[:8]
    devices = []
    for i in range(3):
        did, token = world.new_device(f"{dtype}-{i}", type=dtype)
        r = requests.post(f"{world.url}/api/v1/{token}/telemetry", json={"temperature": 20 + i}, timeout=30)
        assert r.status_code == 200, r.text
        devices.append({"id": did, "token": token, "name": f"{dtype}-{i}"})
    for i, customer in ((0, "Customer A1"), (1, "Customer A2")):
        r = world.admin.post(f"/api/customer/{world.customer_ids[customer]}/device/{devices[i]['id']}")
        assert r.status_code == 200, r.text
    return dtype, devices


def data_cmd(cmd_id, dtype, **extra):
    cmd = {
        "type": "ENTITY_DATA",
        "cmdId": cmd_id,
        "query": {
            "entityFilter": {"type": "deviceType", "deviceTypes": [dtype]},
            "pageLink": {
                "pageSize": 10,
                "page": 0,
                "sortOrder": {"key": {"type": "ENTITY_FIELD", "key": "name"}, "direction": "ASC"},
            },
            "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}],
            "latestValues": [{"type": "TIME_SERIES", "key": "temperature"}],
        },
        "latestCmd": {
            "keys": [{"type": "TIME_SERIES", "key": "temperature"}, {"type": "CLIENT_ATTRIBUTE", "key": "fw"}]
        },
    }
    cmd.update(extra)
    return cmd


def test_first_page_then_live_telemetry_and_attribute_updates(world, fleet):
    dtype, devices = fleet

    async def main():
        conn = await open_ws(world, world.admin)
        await send(conn, data_cmd(3, dtype))
        first = await recv(conn)
        assert first["cmdId"] == 3 and first["cmdUpdateType"] == "ENTITY_DATA" and first["errorCode"] == 0
        assert first["update"] is None
        page = first["data"]
        assert page["totalElements"] == 3 and page["hasNext"] is False
        assert [e["entityId"]["id"] for e in page["data"]] == [d["id"] for d in devices]
        assert page["data"][1]["latest"]["TIME_SERIES"]["temperature"]["value"] == "21"
        assert page["data"][1]["latest"]["CLIENT_ATTRIBUTE"]["fw"] == {"ts": 0, "value": ""}
        ts = int(time.time() * 1000)
        await post(f"{world.url}/api/v1/{devices[1]['token']}/telemetry", {"ts": ts, "values": {"temperature": 99.5}})
        upd = await recv(conn)
        assert upd["cmdId"] == 3 and upd["data"] is None and upd["cmdUpdateType"] == "ENTITY_DATA"
        assert upd["update"] == [
            {
                "entityId": {"entityType": "DEVICE", "id": devices[1]["id"]},
                "latest": {"TIME_SERIES": {"temperature": {"ts": ts, "value": "99.5"}}},
                "timeseries": {},
            }
        ]
        await post(f"{world.url}/api/v1/{devices[2]['token']}/attributes", {"fw": "v2.0"})
        upd = await recv(conn)
        (entity,) = upd["update"]
        assert entity["entityId"]["id"] == devices[2]["id"]
        assert entity["latest"]["CLIENT_ATTRIBUTE"]["fw"]["value"] == "v2.0"
        # after unsubscribing, nothing more arrives: the next message answers the next command
        await send(conn, {"type": "ENTITY_DATA_UNSUBSCRIBE", "cmdId": 3})
        await asyncio.sleep(0.3)
        await post(f"{world.url}/api/v1/{devices[1]['token']}/telemetry", {"temperature": 1})
        await asyncio.sleep(0.5)
        await send(
            conn,
            {
                "type": "ENTITY_COUNT",
                "cmdId": 4,
                "query": {"entityFilter": {"type": "deviceType", "deviceTypes": [dtype]}},
            },
        )
        msg = await recv(conn)
        assert msg == {"cmdId": 4, "cmdUpdateType": "COUNT_DATA", "count": 3, "errorCode": 0, "errorMsg": None}
        conn.close()
        await asyncio.sleep(0.3)

    asyncio.run(main())
    stats = world.admin.get("/api/tbpanel/live/stats").json()
    assert stats["websocketSubscriptions"] == 0  # closed sockets leave nothing behind


def test_ts_and_history_commands(world, fleet):
    dtype, devices = fleet
    now = int(time.time() * 1000)
    for i, v in enumerate((1, 2, 3)):
        r = requests.post(
            f"{world.url}/api/v1/{devices[0]['token']}/telemetry",
            json={"ts": now - 3000 + i * 1000, "values": {"rh": v}},
            timeout=30,
        )
        assert r.status_code == 200

    async def main():
        conn = await open_ws(world, world.admin)
        one = {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": devices[0]["id"]}}
        history = data_cmd(
            1, dtype, historyCmd={"keys": ["rh"], "startTs": now - 10_000, "endTs": now + 1, "limit": 10}
        )
        history["query"]["entityFilter"] = one
        await send(conn, history)
        first = await recv(conn)
        assert [p["value"] for p in first["data"]["data"][0]["timeseries"]["rh"]] == ["3", "2", "1"]
        live = data_cmd(2, dtype, tsCmd={"keys": ["rh"], "timeWindow": 60_000, "limit": 100})
        live["query"]["entityFilter"] = one
        await send(conn, live)
        first = await recv(conn)
        assert first["cmdId"] == 2 and len(first["data"]["data"][0]["timeseries"]["rh"]) == 3
        await post(f"{world.url}/api/v1/{devices[0]['token']}/telemetry", {"ts": now + 5, "values": {"rh": 7}})
        upd = await recv(conn)
        assert upd["cmdId"] == 2 and upd["update"][0]["timeseries"] == {"rh": [{"ts": now + 5, "value": "7"}]}
        conn.close()

    asyncio.run(main())


def test_entity_count_follows_key_filter_matches(world, fleet):
    dtype, devices = fleet
    hot = {
        "key": {"type": "TIME_SERIES", "key": "temperature"},
        "valueType": "NUMERIC",
        "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 100}},
    }

    async def main():
        conn = await open_ws(world, world.admin)
        await send(
            conn,
            {
                "type": "ENTITY_COUNT",
                "cmdId": 7,
                "query": {"entityFilter": {"type": "deviceType", "deviceTypes": [dtype]}, "keyFilters": [hot]},
            },
        )
        assert (await recv(conn))["count"] == 0
        await post(f"{world.url}/api/v1/{devices[2]['token']}/telemetry", {"temperature": 150})
        msg = await recv(conn)
        assert msg["cmdId"] == 7 and msg["cmdUpdateType"] == "COUNT_DATA" and msg["count"] == 1
        conn.close()

    asyncio.run(main())


def test_alarm_count_is_live(world, fleet):
    dtype, devices = fleet
    atype = "wsalarm" + uuid.uuid4().hex[:6]

    async def main():
        conn = await open_ws(world, world.admin)
        customer = await open_ws(world, world.customer)
        query = {"entityFilter": {"type": "deviceType", "deviceTypes": [dtype]}, "typeList": [atype]}
        await send(conn, {"type": "ALARM_COUNT", "cmdId": 9, "query": query})
        await send(customer, {"type": "ALARM_COUNT", "cmdId": 9, "query": query})
        assert (await recv(conn)) == {
            "cmdId": 9,
            "cmdUpdateType": "ALARM_COUNT_DATA",
            "count": 0,
            "errorCode": 0,
            "errorMsg": None,
        }
        assert (await recv(customer))["count"] == 0
        for d in (devices[1], devices[0]):
            r = await asyncio.to_thread(
                world.admin.post,
                "/api/alarm",
                json={"type": atype, "originator": {"entityType": "DEVICE", "id": d["id"]}},
            )
            assert r.status_code == 200, r.text
        counts = [(await recv(conn))["count"]]
        while counts[-1] != 2:
            counts.append((await recv(conn))["count"])
        assert counts[-1] == 2
        assert (await recv(customer))["count"] == 1  # only the alarm of its own device
        conn.close()
        customer.close()

    asyncio.run(main())


def test_customer_user_sees_only_its_devices(world, fleet):
    dtype, devices = fleet

    async def main():
        conn = await open_ws(world, world.customer)
        await send(conn, data_cmd(1, dtype))
        page = (await recv(conn))["data"]
        assert [e["entityId"]["id"] for e in page["data"]] == [devices[0]["id"]] and page["totalElements"] == 1
        # pushes of devices outside the page never arrive; its own do
        await post(f"{world.url}/api/v1/{devices[1]['token']}/telemetry", {"temperature": 5})
        await post(f"{world.url}/api/v1/{devices[0]['token']}/telemetry", {"temperature": 6})
        upd = await recv(conn)
        assert [e["entityId"]["id"] for e in upd["update"]] == [devices[0]["id"]]
        conn.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "cmd, word",
    [
        ({"type": "ENTITY_DATA"}, "query"),
        (
            {"type": "ENTITY_DATA", "query": {"entityFilter": {"type": "nope"}, "pageLink": {"pageSize": 1}}},
            "entityFilter.type",
        ),
        (
            {"type": "ENTITY_DATA", "query": {"entityFilter": {"type": "entityType", "entityType": "DEVICE"}}},
            "pageLink",
        ),
        (
            {
                "type": "ENTITY_DATA",
                "query": {"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 1}},
                "tsCmd": {"keys": []},
            },
            "tsCmd",
        ),
        (
            {
                "type": "ENTITY_DATA",
                "query": {"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 1}},
                "latestCmd": {"keys": "x"},
            },
            "latestCmd",
        ),
        (
            {"type": "ENTITY_COUNT", "query": {"entityFilter": {"type": "entityType", "entityType": "ASSET"}}},
            "entityType",
        ),
        ({"type": "ALARM_COUNT", "query": {"statusList": ["NOPE"]}}, "statusList"),
    ],
)
def test_bad_commands_are_answered_and_the_socket_stays_open(world, cmd, word):
    async def main():
        conn = await open_ws(world, world.admin)
        await send(conn, dict(cmd, cmdId=11))
        msg = await recv(conn)
        assert msg["cmdId"] == 11 and msg["errorCode"] == 2 and word in msg["errorMsg"], msg
        await send(
            conn,
            {
                "type": "ENTITY_COUNT",
                "cmdId": 12,
                "query": {"entityFilter": {"type": "entityType", "entityType": "TENANT"}},
            },
        )
        assert (await recv(conn))["count"] == 1
        conn.close()

    asyncio.run(main())


def test_hostile_queries_never_cause_an_internal_error(world):
    """Every hostile REST body as the query of each command: answered with errorCode 2 (or 0
    when it is a valid query after all), never 1, and the socket keeps serving."""
    from tests.api.test_entity_query import HOSTILE, deep_complex

    queries = []
    for raw in [*HOSTILE, deep_complex(50)]:
        try:
            query = json.loads(raw)
            json.dumps(query, allow_nan=False)  # 1e999 reads as inf, which JSON cannot carry
        except ValueError:
            query = raw.decode(errors="replace")
        queries.append(query)

    async def main():
        conn = await open_ws(world, world.admin)
        n = 0
        for kind in ("ENTITY_DATA", "ENTITY_COUNT", "ALARM_COUNT"):
            for i, query in enumerate(queries):
                extra = {"tsCmd": {"keys": ["a"], "timeWindow": -1}} if i % 5 == 0 and kind == "ENTITY_DATA" else {}
                await send(conn, {"type": kind, "cmdId": 100 + n, "query": query, **extra})
                msg = await recv(conn)
                assert msg["cmdId"] == 100 + n and msg["errorCode"] in (0, 2, 3), msg
                assert msg["errorCode"] == 0 or msg["errorMsg"], msg
                n += 1
        await send(
            conn,
            {
                "type": "ENTITY_COUNT",
                "cmdId": 1,
                "query": {"entityFilter": {"type": "entityType", "entityType": "TENANT"}},
            },
        )
        assert (await recv(conn))["count"] == 1
        conn.close()

    asyncio.run(main())


def test_a_command_without_query_updates_the_running_one(world, fleet):
    """ThingsBoard's dashboards send the query once, then ``tsCmd``/``latestCmd`` alone with the
    same cmdId: the running query is kept and the new commands apply to its page."""
    dtype, devices = fleet

    async def main():
        conn = await open_ws(world, world.admin)
        await send(conn, data_cmd(5, dtype))
        assert (await recv(conn))["data"]["totalElements"] == 3
        await send(conn, {"type": "ENTITY_DATA", "cmdId": 5, "tsCmd": {"keys": ["rh"], "timeWindow": 60_000}})
        again = await recv(conn)
        assert again["cmdId"] == 5 and again["errorCode"] == 0 and again["data"]["totalElements"] == 3
        ts = int(time.time() * 1000)
        await post(
            f"{world.url}/api/v1/{devices[2]['token']}/telemetry", {"ts": ts, "values": {"rh": 4, "temperature": 8}}
        )
        upd = await recv(conn)
        (entity,) = upd["update"]
        assert entity["timeseries"] == {"rh": [{"ts": ts, "value": "4"}]}
        assert entity["latest"]["TIME_SERIES"]["temperature"] == {
            "ts": ts,
            "value": "8",
        }  # the first latestCmd still holds
        conn.close()

    asyncio.run(main())

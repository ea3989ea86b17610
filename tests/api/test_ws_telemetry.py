"""ThingsBoard's WebSocket API against a real server, with a real WebSocket client.

Absence of a push is checked without sleeping: the server hands a committed point to its
subscribers before it answers the POST that stored it, so once the POST has returned, a
push (if any) is already on the socket ahead of the answer to any command sent afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import pytest
import requests
from tornado.websocket import websocket_connect

from tests.helpers import jwt

pytestmark = pytest.mark.usefixtures("no_server_errors")

T0 = 1_700_000_000_000  # fixed timestamps: history tests must not depend on the clock


def ws_url(world, path: str) -> str:
    return world.url.replace("http://", "ws://") + path


async def connect(world, path: str):
    return await websocket_connect(ws_url(world, path))


async def recv(conn, timeout: float = 20) -> dict | None:
    msg = await asyncio.wait_for(conn.read_message(), timeout)
    return None if msg is None else json.loads(msg)


async def send(conn, payload) -> None:
    await conn.write_message(payload if isinstance(payload, str) else json.dumps(payload))


async def post(world, token: str, payload) -> None:
    r = await asyncio.to_thread(requests.post, f"{world.url}/api/v1/{token}/telemetry", json=payload, timeout=30)
    assert r.status_code == 200, r.text


def sub(cmd_id: int, device_id: str, keys: str | None = "temperature", **extra) -> dict:
    cmd = {"cmdId": cmd_id, "entityType": "DEVICE", "entityId": device_id, **extra}
    if keys is not None:
        cmd["keys"] = keys
    return cmd


def ok(cmd_id: int, data: dict) -> dict:
    """The exact update ThingsBoard sends for ``data``."""
    return {
        "subscriptionId": cmd_id,
        "errorCode": 0,
        "errorMsg": None,
        "data": data,
        "latestValues": {k: max(p[0] for p in v) for k, v in data.items()},
    }


def device_id(world, name: str) -> str:
    return world.devices[name]["id"]["id"]


def ws_count(world) -> int:
    r = world.admin.get("/api/tbpanel/live/stats")
    assert r.status_code == 200, r.text
    return r.json()["websocketSubscriptions"]


# ------------------------------------------------------------------------- legacy endpoint
def test_legacy_latest_values_then_pushes_of_changed_keys_only(world):
    did, token = world.new_device(f"ws-latest-{uuid.uuid4().hex[:6]}")

    async def main():
        await post(world, token, {"ts": T0, "values": {"temperature": 21.5, "humidity": 40}})
        conn = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}")
        await send(conn, {"tsSubCmds": [sub(7, did, "temperature,humidity,missing")]})
        first = await recv(conn)
        now_ts = first["data"]["missing"][0][0]
        assert first == ok(7, {"humidity": [[T0, "40"]], "temperature": [[T0, "21.5"]], "missing": [[now_ts, None]]})
        # a key nobody subscribed to is not pushed; the next push carries only what changed
        await post(world, token, {"ts": T0 + 1, "values": {"pressure": 3}})
        await post(world, token, {"ts": T0 + 2, "values": {"temperature": 22.25}})
        assert await recv(conn) == ok(7, {"temperature": [[T0 + 2, "22.25"]]})
        await post(world, token, {"ts": T0 + 3, "values": {"humidity": 41, "flag": True}})
        assert await recv(conn) == ok(7, {"humidity": [[T0 + 3, "41"]]})
        conn.close()

    asyncio.run(main())


def test_legacy_subscription_to_all_keys_renders_every_type_as_strings(world):
    did, token = world.new_device(f"ws-types-{uuid.uuid4().hex[:6]}")

    async def main():
        await post(world, token, {"ts": T0, "values": {"a": 1}})
        conn = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}")
        await send(conn, {"tsSubCmds": [sub(1, did, keys=None)]})
        assert await recv(conn) == ok(1, {"a": [[T0, "1"]]})
        await post(
            world,
            token,
            [
                {"ts": T0 + 5, "values": {"b": 2.0, "c": "on", "d": False, "e": {"x": 1}}},
                {"ts": T0 + 6, "values": {"b": 2.5}},
            ],
        )
        assert await recv(conn) == ok(
            1,
            {
                "b": [[T0 + 5, "2.0"], [T0 + 6, "2.5"]],
                "c": [[T0 + 5, "on"]],
                "d": [[T0 + 5, "false"]],
                "e": [[T0 + 5, '{"x":1}']],
            },
        )
        conn.close()

    asyncio.run(main())


def test_legacy_time_window_sends_history_first_then_pushes(world):
    did, token = world.new_device(f"ws-window-{uuid.uuid4().hex[:6]}")

    async def main():
        await post(world, token, [{"ts": T0 + i * 1000, "values": {"temperature": 20 + i}} for i in range(5)])
        conn = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}")
        # raw: newest first, limited (ThingsBoard's default order)
        await send(conn, {"tsSubCmds": [sub(3, did, startTs=T0, timeWindow=10_000, limit=3)]})
        assert await recv(conn) == ok(3, {"temperature": [[T0 + 4000, "24"], [T0 + 3000, "23"], [T0 + 2000, "22"]]})
        # aggregated history; later points are still pushed raw, as ThingsBoard does
        await send(conn, {"tsSubCmds": [sub(4, did, startTs=T0, timeWindow=4000, agg="AVG", interval=2000)]})
        assert await recv(conn) == ok(4, {"temperature": [[T0 + 1000, "20.5"], [T0 + 3000, "22.5"]]})
        await post(world, token, {"ts": T0 + 9000, "values": {"temperature": 30}})
        pushes = [await recv(conn), await recv(conn)]
        assert sorted(pushes, key=lambda m: m["subscriptionId"]) == [
            ok(3, {"temperature": [[T0 + 9000, "30"]]}),
            ok(4, {"temperature": [[T0 + 9000, "30"]]}),
        ]
        conn.close()

    asyncio.run(main())


def test_legacy_history_cmds_answer_once_and_do_not_subscribe(world):
    did, token = world.new_device(f"ws-history-{uuid.uuid4().hex[:6]}")

    async def main():
        await post(
            world, token, [{"ts": T0 + i * 1000, "values": {"temperature": i, "humidity": 50}} for i in range(4)]
        )
        conn = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}")
        await send(
            conn,
            {
                "historyCmds": [
                    sub(10, did, "temperature,humidity", startTs=T0, endTs=T0 + 3000, limit=2),
                    sub(11, did, "temperature", startTs=T0, endTs=T0 + 4000, agg="SUM", interval=4000),
                    sub(12, did, "temperature", startTs=T0 + 5000, endTs=T0 + 6000),
                ]
            },
        )
        assert await recv(conn) == ok(
            10,
            {"humidity": [[T0 + 2000, "50"], [T0 + 1000, "50"]], "temperature": [[T0 + 2000, "2"], [T0 + 1000, "1"]]},
        )
        assert await recv(conn) == ok(11, {"temperature": [[T0 + 2000, "6"]]})
        assert await recv(conn) == ok(12, {})
        await post(world, token, {"ts": T0 + 7000, "values": {"temperature": 9}})
        await send(conn, {"historyCmds": [sub(13, did, "temperature", startTs=T0 + 7000, endTs=T0 + 7001)]})
        assert await recv(conn) == ok(13, {"temperature": [[T0 + 7000, "9"]]})  # no push came first
        conn.close()

    asyncio.run(main())


def test_legacy_unsubscribe_stops_pushes(world):
    did, token = world.new_device(f"ws-unsub-{uuid.uuid4().hex[:6]}")

    async def main():
        conn = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}")
        await send(conn, {"tsSubCmds": [sub(1, did), sub(2, did)]})
        assert (await recv(conn))["subscriptionId"] == 1
        assert (await recv(conn))["subscriptionId"] == 2
        await send(conn, {"tsSubCmds": [sub(1, did, unsubscribe=True)]})
        await post(world, token, {"ts": T0, "values": {"temperature": 1}})
        assert await recv(conn) == ok(2, {"temperature": [[T0, "1"]]})  # only 2 is left
        await send(conn, {"tsSubCmds": [{"cmdId": 2, "unsubscribe": True}]})  # no entityId: all
        await post(world, token, {"ts": T0 + 1, "values": {"temperature": 2}})
        await send(conn, {"historyCmds": [sub(5, did, startTs=T0, endTs=T0 + 2)]})
        assert (await recv(conn))["subscriptionId"] == 5
        conn.close()

    asyncio.run(main())


# ------------------------------------------------------------------------------ /api/ws
def test_api_ws_auth_cmd_then_cmds(world):
    did, token = world.new_device(f"ws-v2-{uuid.uuid4().hex[:6]}")

    async def main():
        await post(world, token, {"ts": T0, "values": {"temperature": 5}})
        conn = await connect(world, "/api/ws")
        await send(
            conn,
            {
                "authCmd": {"cmdId": 0, "token": jwt(world.admin)},
                "cmds": [
                    dict(sub(1, did), type="TIMESERIES"),
                    dict(sub(2, did, startTs=T0, endTs=T0 + 1), type="TIMESERIES_HISTORY"),
                ],
            },
        )
        assert await recv(conn) == ok(1, {"temperature": [[T0, "5"]]})
        assert await recv(conn) == ok(2, {"temperature": [[T0, "5"]]})
        await post(world, token, {"ts": T0 + 1, "values": {"temperature": 6}})
        assert await recv(conn) == ok(1, {"temperature": [[T0 + 1, "6"]]})
        # timeWindow mode on the new endpoint, then its unsubscribe
        await send(conn, {"cmds": [dict(sub(3, did, startTs=T0, timeWindow=10), type="TIMESERIES")]})
        assert await recv(conn) == ok(3, {"temperature": [[T0 + 1, "6"], [T0, "5"]]})
        await send(
            conn,
            {
                "cmds": [
                    dict(sub(1, did, unsubscribe=True), type="TIMESERIES"),
                    dict(sub(3, did, unsubscribe=True), type="TIMESERIES"),
                ]
            },
        )
        await post(world, token, {"ts": T0 + 2, "values": {"temperature": 7}})
        await send(conn, {"cmds": [dict(sub(4, did, startTs=T0 + 2, endTs=T0 + 3), type="TIMESERIES_HISTORY")]})
        assert await recv(conn) == ok(4, {"temperature": [[T0 + 2, "7"]]})
        conn.close()

    asyncio.run(main())


def test_api_ws_closes_without_valid_auth(world):
    async def main():
        idle = await connect(world, "/api/ws")  # sends nothing: closed after 10 s
        missing = await connect(world, "/api/ws")
        await send(missing, {"cmds": [{"type": "TIMESERIES", "cmdId": 1}]})
        assert await recv(missing) is None
        assert (missing.close_code, missing.close_reason) == (1008, "Auth cmd is missing")
        bad = await connect(world, "/api/ws")
        await send(bad, {"authCmd": {"cmdId": 0, "token": "not-a-jwt"}})
        assert await recv(bad) is None
        assert bad.close_code == 1007 and "Authentication failed" in bad.close_reason
        legacy = await connect(world, "/api/ws/plugins/telemetry?token=not-a-jwt")
        assert await recv(legacy) is None
        assert legacy.close_code == 1011 and "Authentication failed" in legacy.close_reason
        assert await recv(idle, timeout=30) is None
        assert idle.close_code == 1008 and "authCmd" in idle.close_reason

    asyncio.run(main())


# -------------------------------------------------------------------------- errors, authz
def test_bad_and_unauthorised_commands_get_error_codes_and_the_socket_stays_usable(world):
    own, token = world.new_device(f"ws-errors-{uuid.uuid4().hex[:6]}")
    other_tenant, _a2 = device_id(world, "dev-b"), device_id(world, "dev-a2")

    def err(cmd_id: int, code: int, contains: str):
        def check(msg):
            assert msg["subscriptionId"] == cmd_id and msg["errorCode"] == code, msg
            assert contains in msg["errorMsg"] and msg["data"] is None and msg["latestValues"] == {}, msg

        return check

    async def main():
        conn = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}")
        cases = [
            ("{not json", err(0, 2, "Failed to parse the payload")),
            ({"tsSubCmds": [sub(1, str(uuid.uuid4()))]}, err(1, 2, "not found")),
            ({"tsSubCmds": [sub(2, "not-a-uuid")]}, err(2, 2, "UUID")),
            ({"tsSubCmds": [sub(3, other_tenant)]}, err(3, 3, "permission")),
            ({"tsSubCmds": [{"cmdId": 4, "entityType": "DEVICE", "keys": "t"}]}, err(4, 2, "Device id is empty")),
            ({"tsSubCmds": [sub(5, own, entityType="ASSET")]}, err(5, 2, "DEVICE")),
            ({"tsSubCmds": [{"entityType": "DEVICE", "entityId": own}]}, err(0, 2, "cmdId")),
            ({"tsSubCmds": [sub(-1, own)]}, err(0, 2, "negative")),
            ({"tsSubCmds": [sub(6, own, timeWindow=1000, agg="MEDIAN")]}, err(6, 2, "agg")),
            ({"tsSubCmds": [sub(7, own, timeWindow=1000, agg="AVG")]}, err(7, 2, "interval")),
            ({"historyCmds": [sub(8, own, keys=None, startTs=0, endTs=1)]}, err(8, 2, "Keys are empty")),
            ({"historyCmds": [sub(9, own, startTs=0)]}, err(9, 2, "endTs")),
            ({"historyCmds": [sub(10, own, startTs=5, endTs=5)]}, err(10, 2, "less than")),
            ({"historyCmds": [sub(11, own, startTs=0, endTs=10**12, agg="AVG", interval=1)]}, err(11, 2, "bucket")),
            ({"attrSubCmds": [sub(12, own, scope="NOPE")]}, err(12, 2, "scope")),
            ({"tsSubCmds": "nope"}, err(0, 2, "list")),
        ]
        for payload, check in cases:
            await send(conn, payload)
            check(await recv(conn))
        # the socket still works, and failed commands left no subscription behind
        await send(conn, {"tsSubCmds": [sub(20, own)]})
        first = await recv(conn)  # no data yet: ThingsBoard's [now, null]
        assert (first["subscriptionId"], first["errorCode"], first["data"]["temperature"][0][1]) == (20, 0, None)
        await post(world, token, {"ts": T0, "values": {"temperature": 1}})
        assert await recv(conn) == ok(20, {"temperature": [[T0, "1"]]})
        conn.close()

        v2 = await connect(world, "/api/ws")
        await send(
            v2,
            {
                "authCmd": {"token": jwt(world.admin)},
                "cmds": [
                    {"cmdId": 1, "entityType": "DEVICE", "entityId": own},
                    dict(sub(2, own), type="NOTIFICATIONS"),
                ],
            },
        )
        err(1, 2, "type")(await recv(v2))
        err(2, 2, "not supported")(await recv(v2))
        v2.close()

    asyncio.run(main())


def test_customer_user_gets_only_its_customers_devices(world):
    mine, theirs = device_id(world, "dev-a1"), device_id(world, "dev-a2")

    async def main():
        conn = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.customer)}")
        await send(conn, {"tsSubCmds": [sub(1, theirs)], "historyCmds": [sub(2, theirs, startTs=0, endTs=T0)]})
        for cmd_id in (1, 2):
            msg = await recv(conn)
            assert (msg["subscriptionId"], msg["errorCode"], msg["data"]) == (cmd_id, 3, None), msg
            assert "permission" in msg["errorMsg"]
        await send(conn, {"tsSubCmds": [sub(3, device_id(world, "dev-tenant"))]})  # tenant's own, unassigned
        assert (await recv(conn))["errorCode"] == 3
        await send(conn, {"tsSubCmds": [sub(4, mine)]})
        msg = await recv(conn)
        assert (msg["subscriptionId"], msg["errorCode"]) == (4, 0)
        conn.close()

    asyncio.run(main())


# ---------------------------------------------------------------------- fan-out and cleanup
def test_concurrent_writes_reach_each_subscriber_exactly_once(world):
    dev1, tok1 = world.new_device(f"ws-conc1-{uuid.uuid4().hex[:6]}")
    dev2, tok2 = world.new_device(f"ws-conc2-{uuid.uuid4().hex[:6]}")
    per_thread, threads = 20, 4

    def writer(token: str, base: int) -> None:
        with requests.Session() as s:
            for i in range(per_thread):
                r = s.post(
                    f"{world.url}/api/v1/{token}/telemetry",
                    json={"ts": base + i, "values": {"temperature": i}},
                    timeout=30,
                )
                assert r.status_code == 200

    async def main():
        a = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}")
        b = await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}")
        await send(a, {"tsSubCmds": [sub(1, dev1)]})
        await send(b, {"tsSubCmds": [sub(1, dev1), sub(2, dev2)]})
        await recv(a), await recv(b), await recv(b)
        jobs = [
            threading.Thread(target=writer, args=(tok, T0 + 1000 * n))
            for n, tok in enumerate([tok1, tok2] * (threads // 2))
        ]
        await asyncio.to_thread(lambda: ([j.start() for j in jobs], [j.join() for j in jobs]))
        expected1 = {T0 + 1000 * n + i for n in range(0, threads, 2) for i in range(per_thread)}
        expected2 = {T0 + 1000 * n + i for n in range(1, threads, 2) for i in range(per_thread)}

        async def collect(conn, want: dict[int, int]) -> dict[int, list[int]]:
            got: dict[int, list[int]] = {k: [] for k in want}
            while any(len(got[k]) < n for k, n in want.items()):
                msg = await recv(conn)
                assert msg["errorCode"] == 0 and list(msg["data"]) == ["temperature"], msg
                got[msg["subscriptionId"]].extend(p[0] for p in msg["data"]["temperature"])
            return got

        got_a = await collect(a, {1: len(expected1)})
        got_b = await collect(b, {1: len(expected1), 2: len(expected2)})
        assert sorted(got_a[1]) == sorted(expected1)
        assert sorted(got_b[1]) == sorted(expected1) and sorted(got_b[2]) == sorted(expected2)
        a.close()
        b.close()

    asyncio.run(main())


def test_closed_sockets_leave_no_subscription(world):
    did, _token = world.new_device(f"ws-cleanup-{uuid.uuid4().hex[:6]}")
    baseline = ws_count(world)

    async def main():
        conns = [await connect(world, f"/api/ws/plugins/telemetry?token={jwt(world.admin)}") for _ in range(2)]
        v2 = await connect(world, "/api/ws")
        await send(v2, {"authCmd": {"token": jwt(world.admin)}, "cmds": [dict(sub(1, did), type="TIMESERIES")]})
        await recv(v2)
        for c in conns:
            await send(c, {"tsSubCmds": [sub(1, did), sub(2, did, keys=None)]})
            await recv(c), await recv(c)
        assert ws_count(world) == baseline + 5
        for c in conns + [v2]:
            c.close()

    asyncio.run(main())
    deadline = time.time() + 30
    while ws_count(world) != baseline and time.time() < deadline:
        time.sleep(0.1)
    assert ws_count(world) == baseline


def test_live_stats_are_for_tenant_admins(world):
    assert world.customer.get("/api/tbpanel/live/stats").status_code == 403
    assert world.anon.get("/api/tbpanel/live/stats").status_code == 401
    body = world.admin.get("/api/tbpanel/live/stats").json()
    assert set(body) == {"subscriptions", "websocketSubscriptions", "pageSubscriptions"}

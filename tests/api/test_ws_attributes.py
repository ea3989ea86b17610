"""Attribute subscriptions on both WebSocket endpoints (legacy ``attrSubCmds`` and the
``/api/ws`` cmd type ``ATTRIBUTES``), with a real WebSocket client against a real server.

Absence of a push is checked without sleeping, as in test_ws_telemetry.py: an attribute save
hands its change to the socket's loop before the REST answer is written, so once the save has
returned, a push (if any) is on the socket ahead of the answer to any command sent later.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import requests
from tornado.websocket import websocket_connect

from tests.helpers import jwt
from tests.helpers.ws import recv

pytestmark = pytest.mark.usefixtures("no_server_errors")
TEL = "/api/plugins/telemetry"


async def connect(world, api, legacy: bool):
    base = world.url.replace("http://", "ws://")
    if legacy:
        return await websocket_connect(f"{base}/api/ws/plugins/telemetry?token={jwt(api)}")
    conn = await websocket_connect(f"{base}/api/ws")
    await conn.write_message(json.dumps({"authCmd": {"cmdId": 0, "token": jwt(api)}}))
    return conn


async def command(conn, legacy: bool, cmd: dict) -> None:
    message = {"attrSubCmds": [cmd]} if legacy else {"cmds": [dict(cmd, type="ATTRIBUTES")]}
    await conn.write_message(json.dumps(message))


async def call(method, *args, **kw):
    r = await asyncio.to_thread(method, *args, **kw)
    assert r.status_code == 200, r.text
    return r


def data_of(msg: dict, cmd_id: int) -> dict:
    assert msg["subscriptionId"] == cmd_id and msg["errorCode"] == 0, msg
    return {k: [tuple(p) for p in v] for k, v in msg["data"].items()}


def ts_of(world, did: str, scope: str, key: str) -> int:
    rows = world.admin.get(f"{TEL}/DEVICE/{did}/values/attributes/{scope}", params={"keys": key}).json()
    return rows[0]["lastUpdateTs"]


@pytest.mark.parametrize("legacy", [True, False], ids=["attrSubCmds", "ATTRIBUTES"])
def test_current_values_then_live_updates_and_unsubscribe(world, legacy):
    did, token = world.new_device(f"ws-attr-{legacy}")
    a = world.admin
    assert (
        a.post(f"{TEL}/DEVICE/{did}/SHARED_SCOPE", json={"interval": 10, "mode": "eco", "on": True}).status_code == 200
    )
    assert a.post(f"{TEL}/DEVICE/{did}/SERVER_SCOPE", json={"calib": 1.5}).status_code == 200

    async def main():
        conn = await connect(world, a, legacy)
        await command(
            conn,
            legacy,
            {
                "cmdId": 1,
                "entityType": "DEVICE",
                "entityId": did,
                "scope": "SHARED_SCOPE",
                "keys": "interval,on,missing",
            },
        )
        first = data_of(await recv(conn), 1)
        assert first == {
            "interval": [(ts_of(world, did, "SHARED_SCOPE", "interval"), "10")],
            "on": [(ts_of(world, did, "SHARED_SCOPE", "on"), "true")],
        }
        await command(conn, legacy, {"cmdId": 2, "entityType": "DEVICE", "entityId": did})  # every scope and key
        every = data_of(await recv(conn), 2)
        assert {k: v[0][1] for k, v in every.items()} == {"interval": "10", "mode": "eco", "on": "true", "calib": "1.5"}
        # a save of a watched key: both subscriptions hear it; of an unwatched key only cmd 2
        await call(a.post, f"{TEL}/DEVICE/{did}/SHARED_SCOPE", json={"interval": 20, "mode": "off"})
        ts = ts_of(world, did, "SHARED_SCOPE", "interval")
        pushes = {m["subscriptionId"]: data_of(m, m["subscriptionId"]) for m in [await recv(conn), await recv(conn)]}
        assert pushes == {1: {"interval": [(ts, "20")]}, 2: {"interval": [(ts, "20")], "mode": [(ts, "off")]}}
        # server scope: only the every-scope subscription; client scope from the device likewise
        await call(a.post, f"{TEL}/DEVICE/{did}/SERVER_SCOPE", json={"calib": 2.25})
        assert data_of(await recv(conn), 2) == {"calib": [(ts_of(world, did, "SERVER_SCOPE", "calib"), "2.25")]}
        await call(requests.post, f"{world.url}/api/v1/{token}/attributes", json={"fw": "v7"}, timeout=30)
        assert data_of(await recv(conn), 2) == {"fw": [(ts_of(world, did, "CLIENT_SCOPE", "fw"), "v7")]}
        # deletion: ThingsBoard's [[0, ""]]
        await call(a.delete, f"{TEL}/DEVICE/{did}/SHARED_SCOPE", params={"keys": "on"})
        pushes = {m["subscriptionId"]: data_of(m, m["subscriptionId"]) for m in [await recv(conn), await recv(conn)]}
        assert pushes == {1: {"on": [(0, "")]}, 2: {"on": [(0, "")]}}
        # unsubscribe cmd 1: the next change reaches cmd 2 only; then everything
        await command(conn, legacy, {"cmdId": 1, "entityType": "DEVICE", "entityId": did, "unsubscribe": True})
        await call(a.post, f"{TEL}/DEVICE/{did}/SHARED_SCOPE", json={"interval": 30})
        assert set(data_of(await recv(conn), 2)) == {"interval"}
        await command(conn, legacy, {"cmdId": 0, "unsubscribe": True})
        await call(a.post, f"{TEL}/DEVICE/{did}/SHARED_SCOPE", json={"interval": 40})
        # nothing was pushed: the next message is the answer to a new subscription
        await command(
            conn,
            legacy,
            {"cmdId": 9, "entityType": "DEVICE", "entityId": did, "scope": "SHARED_SCOPE", "keys": "interval"},
        )
        assert data_of(await recv(conn), 9) == {"interval": [(ts_of(world, did, "SHARED_SCOPE", "interval"), "40")]}
        conn.close()

    asyncio.run(main())


@pytest.mark.parametrize("legacy", [True, False], ids=["attrSubCmds", "ATTRIBUTES"])
def test_customer_subscribes_only_to_its_own_devices(world, legacy):
    mine, theirs = world.devices["dev-a1"]["id"]["id"], world.devices["dev-a2"]["id"]["id"]
    a = world.admin
    assert a.post(f"{TEL}/DEVICE/{theirs}/SERVER_SCOPE", json={"theirs_secret": 1}).status_code == 200

    async def main():
        conn = await connect(world, world.customer, legacy)
        await command(conn, legacy, {"cmdId": 1, "entityType": "DEVICE", "entityId": theirs})
        refused = await recv(conn)
        assert (refused["subscriptionId"], refused["errorCode"], refused["data"]) == (1, 3, None)
        await command(conn, legacy, {"cmdId": 2, "entityType": "DEVICE", "entityId": mine, "scope": "SERVER_SCOPE"})
        data_of(await recv(conn), 2)
        await call(a.post, f"{TEL}/DEVICE/{theirs}/SERVER_SCOPE", json={"theirs_secret": 2})
        await call(a.post, f"{TEL}/DEVICE/{mine}/SERVER_SCOPE", json={"mine": 1})
        assert set(data_of(await recv(conn), 2)) == {"mine"}  # not the other customer's change
        conn.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("cmd", "code", "words"),
    [
        ({"scope": "NOPE"}, 2, "scope"),
        ({"scope": 5}, 2, "scope"),
        ({"keys": 5}, 2, "keys"),
        ({"entityId": "not-a-uuid"}, 2, "UUID"),
        ({"entityId": None}, 2, "Device id is empty"),
        ({"entityType": "ASSET"}, 2, "DEVICE"),
        ({"entityId": "00000000-0000-4000-8000-000000000000"}, 2, "not found"),
    ],
)
def test_bad_commands_are_answered_and_the_socket_stays_open(world, cmd, code, words):
    did = world.devices["dev-a1"]["id"]["id"]

    async def main():
        conn = await connect(world, world.admin, False)
        await command(conn, False, {"cmdId": 3, "entityType": "DEVICE", "entityId": did, **cmd})
        msg = await recv(conn)
        assert msg["subscriptionId"] == 3 and msg["errorCode"] == code and words in msg["errorMsg"], msg
        await command(conn, False, {"cmdId": 4, "entityType": "DEVICE", "entityId": did})
        data_of(await recv(conn), 4)
        conn.close()

    asyncio.run(main())

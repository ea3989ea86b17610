"""``ALARM_DATA`` subscriptions on ``/api/ws`` against a real server: first page, live
updates of committed changes, deletions, filters, isolation and errors."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from tornado.websocket import websocket_connect

from tests.helpers import Api, jwt
from tests.helpers.ws import recv

pytestmark = pytest.mark.usefixtures("no_server_errors")


async def open_ws(world, api: Api):
    conn = await websocket_connect(world.url.replace("http://", "ws://") + "/api/ws")
    await conn.write_message(json.dumps({"authCmd": {"cmdId": 0, "token": jwt(api)}}))
    return conn


async def send(conn, payload) -> None:
    await conn.write_message(json.dumps(payload))


async def call(fn, *args, **kw):
    return await asyncio.to_thread(fn, *args, **kw)


def alarm_cmd(cmd_id: int, **link) -> dict:
    return {"type": "ALARM_DATA", "cmdId": cmd_id, "query": {"pageLink": {"page": 0, "pageSize": 10, **link}}}


def test_first_page_then_live_updates_and_deletions(world):
    d = world.devices["dev-tenant"]["id"]["id"]
    t = "Ws" + uuid.uuid4().hex[:6]

    async def main():
        first = (
            await call(
                world.admin.post,
                "/api/alarm",
                json={"type": t, "originator": {"entityType": "DEVICE", "id": d}, "severity": "MINOR"},
            )
        ).json()
        conn = await open_ws(world, world.admin)
        cmd = alarm_cmd(5, typeList=[t], statusList=["ACTIVE"])
        cmd["query"]["entityFilter"] = {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": d}}
        await send(conn, {"cmds": [cmd]})
        msg = await recv(conn)
        assert msg["cmdId"] == 5 and msg["cmdUpdateType"] == "ALARM_DATA" and msg["errorCode"] == 0
        assert [a["id"] for a in msg["data"]["data"]] == [first["id"]] and msg["data"]["totalElements"] == 1
        assert msg["update"] is None
        await call(world.admin.post, f"/api/alarm/{first['id']['id']}/ack")
        msg = await recv(conn)
        assert msg["data"] is None and [a["status"] for a in msg["update"]] == ["ACTIVE_ACK"]
        # leaving the ACTIVE filter is announced once, so the client can drop it
        await call(world.admin.post, f"/api/alarm/{first['id']['id']}/clear")
        msg = await recv(conn)
        assert msg["update"][0]["status"] == "CLEARED_ACK"
        # an alarm of another type is not pushed; this one's deletion is
        await call(
            world.admin.post, "/api/alarm", json={"type": t + "-other", "originator": {"entityType": "DEVICE", "id": d}}
        )
        await call(world.admin.delete, f"/api/alarm/{first['id']['id']}")
        msg = await recv(conn)
        assert msg["deleted"] == [first["id"]] and msg["update"] is None
        await send(conn, {"cmds": [{"type": "ALARM_DATA_UNSUBSCRIBE", "cmdId": 5}]})
        await call(world.admin.post, "/api/alarm", json={"type": t, "originator": {"entityType": "DEVICE", "id": d}})
        # a push for cmd 5 would be queued before the answer to this later command
        await send(conn, {"cmds": [alarm_cmd(6, typeList=[t])]})
        msg = await recv(conn)
        assert msg["cmdId"] == 6 and msg["data"]["totalElements"] == 1
        conn.close()

    asyncio.run(main())


def test_customer_sees_only_its_devices_alarms(world):
    a1, a2 = world.devices["dev-a1"]["id"]["id"], world.devices["dev-a2"]["id"]["id"]
    t = "WsIso" + uuid.uuid4().hex[:6]

    async def main():
        conn = await open_ws(world, world.customer)
        await send(conn, {"cmds": [alarm_cmd(1, typeList=[t])]})
        assert (await recv(conn))["data"]["totalElements"] == 0
        for dev in (a2, a1):
            r = await call(
                world.admin.post, "/api/alarm", json={"type": t, "originator": {"entityType": "DEVICE", "id": dev}}
            )
            assert r.status_code == 200
        msg = await recv(conn)
        assert [a["originator"]["id"] for a in msg["update"]] == [a1]
        # asking for another customer's device is refused
        cmd = alarm_cmd(2)
        cmd["query"]["entityFilter"] = {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": a2}}
        await send(conn, {"cmds": [cmd]})
        msg = await recv(conn)
        assert msg["cmdId"] == 2 and msg["errorCode"] == 3
        conn.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "link,needle",
    [
        ({"statusList": ["SOMETIMES"]}, "statusList"),
        ({"severityList": ["LOUD"]}, "severityList"),
        ({"pageSize": 0}, "pageSize"),
        ({"typeList": "x"}, "typeList"),
        ({"sortOrder": {"key": {"key": "colour"}, "direction": "DESC"}}, "sortOrder"),
    ],
)
def test_bad_alarm_commands_get_error_updates(world, link, needle):
    async def main():
        conn = await open_ws(world, world.admin)
        await send(conn, {"cmds": [alarm_cmd(9, **link)]})
        msg = await recv(conn)
        assert msg["cmdId"] == 9 and msg["errorCode"] == 2 and needle in msg["errorMsg"]
        # the socket stays usable
        await send(conn, {"cmds": [alarm_cmd(10)]})
        assert (await recv(conn))["errorCode"] == 0
        conn.close()

    asyncio.run(main())

"""CoAP RPC and attributes with aiocoap as the client: observe /rpc (requests from REST, answers
by POST), device → server RPC, GET and observe of attributes, and datagrams whose text options
are not UTF-8 (4.00, one DEBUG line each, no ERROR)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import pytest
from aiocoap import GET, POST, Context, Message
from aiocoap.numbers.codes import Code

from tbpanel.clock import now_ms
from tbpanel.platform import Platform
from tbpanel.store.payload import parse_attributes
from tbpanel.transports.coap import CoapTransport, bad_request_for


@pytest.fixture(scope="module")
def port(world) -> int:
    assert world.server.coap_port
    return world.server.coap_port


async def request(ctx: Context, port: int, path: str, payload: bytes = b"", code=POST, query: str = ""):
    uri = f"coap://127.0.0.1:{port}{path}" + (f"?{query}" if query else "")
    response = await asyncio.wait_for(ctx.request(Message(code=code, uri=uri, payload=payload)).response, 30)
    return response.code, response.payload


def test_observe_rpc_receives_requests_and_answers_them(world, port):
    did, token = world.new_device("coap-rpc")
    result: dict = {}

    def rest():
        deadline = time.monotonic() + 20
        while True:  # 409 until the observation is registered
            r = world.admin.post(f"/api/rpc/twoway/{did}", json={"method": "setLed", "params": {"on": 1}})
            if r.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        result["r"] = r

    async def device():
        ctx = await Context.create_client_context()
        try:
            msg = Message(code=GET, uri=f"coap://127.0.0.1:{port}/api/v1/{token}/rpc", observe=0)
            req = ctx.request(msg)
            first = await asyncio.wait_for(req.response, 30)
            assert first.code == Code.CONTENT
            caller = threading.Thread(target=rest)
            caller.start()
            notification = await asyncio.wait_for(req.observation.__aiter__().__anext__(), 30)
            rpc = json.loads(notification.payload)
            assert rpc["method"] == "setLed" and rpc["params"] == {"on": 1}
            # another device's token cannot answer it
            _, other = world.new_device("coap-rpc-other")
            code, _ = await request(ctx, port, f"/api/v1/{other}/rpc/{rpc['id']}", b'{"forged": 1}')
            assert code == Code.NOT_FOUND
            code, _ = await request(ctx, port, f"/api/v1/{token}/rpc/{rpc['id']}", b'{"led": "on"}')
            assert code == Code.CHANGED
            await asyncio.get_running_loop().run_in_executor(None, caller.join, 30)
            req.observation.cancel()
        finally:
            await ctx.shutdown()

    asyncio.run(device())
    assert result["r"].status_code == 200 and result["r"].json() == {"led": "on"}


def test_device_to_server_and_bad_rpc_requests(world, port):
    _, token = world.new_device("coap-rpc-d2s")

    async def go():
        ctx = await Context.create_client_context()
        try:
            code, body = await request(ctx, port, f"/api/v1/{token}/rpc", b'{"method": "getCurrentTime"}')
            assert code == Code.CONTENT and "currentTime" in json.loads(body)
            code, body = await request(ctx, port, f"/api/v1/{token}/rpc", b'{"method": "other"}')
            assert "unsupported RPC method" in json.loads(body)["error"]
            assert (await request(ctx, port, f"/api/v1/{token}/rpc", b"{"))[0] == Code.BAD_REQUEST
            assert (await request(ctx, port, "/api/v1/nope/rpc", b"{}"))[0] == Code.UNAUTHORIZED
            assert (await request(ctx, port, f"/api/v1/{token}/rpc/x", b"{}"))[0] == Code.BAD_REQUEST
            assert (await request(ctx, port, f"/api/v1/{token}/rpc/77777", b"{}"))[0] == Code.NOT_FOUND
            assert (await request(ctx, port, f"/api/v1/{token}/rpc", code=GET))[0] == Code.BAD_REQUEST
            assert (await request(ctx, port, f"/api/v1/{token}/telemetry", code=GET))[0] == Code.METHOD_NOT_ALLOWED
        finally:
            await ctx.shutdown()

    asyncio.run(go())


def test_get_attributes(world, port):
    _, token = world.new_device("coap-attr-get")

    async def go():
        ctx = await Context.create_client_context()
        try:
            assert (await request(ctx, port, f"/api/v1/{token}/attributes", b'{"fw": "v1.0", "n": 2}'))[
                0
            ] == Code.CREATED
            code, body = await request(ctx, port, f"/api/v1/{token}/attributes", code=GET, query="clientKeys=fw")
            assert code == Code.CONTENT and json.loads(body) == {"client": {"fw": "v1.0"}}
            code, body = await request(ctx, port, f"/api/v1/{token}/attributes", code=GET)
            assert json.loads(body) == {"client": {"fw": "v1.0", "n": 2}}
            assert (await request(ctx, port, "/api/v1/nope/attributes", code=GET))[0] == Code.UNAUTHORIZED
        finally:
            await ctx.shutdown()

    asyncio.run(go())


def test_observe_shared_attributes_in_process(tmp_path):
    """A real platform and CoAP transport in this process: shared-attribute saves and deletes
    (registry calls, as every REST route makes them) reach the observer; client ones do not."""
    platform = Platform(tmp_path / "data", compaction_interval_s=0)
    try:
        tenant = platform.registry.create_tenant("T")
        device = platform.registry.save_device(tenant.id, "observer")
        token = platform.registry.get_credentials(device.id)
        platform.registry.save_attributes(device.id, "SHARED_SCOPE", parse_attributes(b'{"mode": "eco"}', now_ms()))

        async def go():
            transport = CoapTransport(platform)
            p = await transport.start("127.0.0.1", 0)
            ctx = await Context.create_client_context()
            loop = asyncio.get_running_loop()
            try:
                req = ctx.request(Message(code=GET, uri=f"coap://127.0.0.1:{p}/api/v1/{token}/attributes", observe=0))
                first = await asyncio.wait_for(req.response, 30)
                assert json.loads(first.payload) == {"mode": "eco"}
                updates = req.observation.__aiter__()

                def save(scope: str, body: bytes) -> None:
                    platform.registry.save_attributes(device.id, scope, parse_attributes(body, now_ms()))

                async def next_update() -> dict:
                    return json.loads((await asyncio.wait_for(updates.__anext__(), 30)).payload)

                # one change at a time: aiocoap's client iterator keeps only the latest notification
                await loop.run_in_executor(None, save, "CLIENT_SCOPE", b'{"ignored": 1}')
                await loop.run_in_executor(None, save, "SHARED_SCOPE", b'{"target": 21.5}')
                assert await next_update() == {"target": 21.5}  # the client save sent nothing
                await loop.run_in_executor(None, save, "SHARED_SCOPE", b'{"mode": "boost"}')
                assert await next_update() == {"mode": "boost"}
                await loop.run_in_executor(
                    None, platform.registry.delete_attributes, device.id, "SHARED_SCOPE", ["mode"]
                )
                assert await next_update() == {"deleted": ["mode"]}
                req.observation.cancel()
            finally:
                await ctx.shutdown()
                await transport.close()

        asyncio.run(go())
    finally:
        platform.close()


BAD = bytes([0x41, 0x01, 0x12, 0x34, 0xAB, 0xB2, 0xFF, 0xFE])  # CON GET, token AB, Uri-Path ff fe


def test_undecodable_uri_path_gets_4_00_and_no_error_log(world, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        start = len(world.server.output)
        for _ in range(20):
            s.sendto(BAD, ("127.0.0.1", port))
            answer, _ = s.recvfrom(2048)
            assert answer[1] == 0x80 and answer[2:4] == b"\x12\x34" and answer[4:5] == b"\xab"  # 4.00, ACK
            assert (answer[0] >> 4) & 3 == 2
    time.sleep(0.2)
    out = "".join(world.server.output[start:])
    assert "Traceback" not in out and "ERROR" not in out, out[-2000:]


def test_undecodable_datagram_logs_one_debug_line_in_process(tmp_path, caplog):
    platform = Platform(tmp_path / "data", compaction_interval_s=0)
    try:

        async def go():
            transport = CoapTransport(platform)
            p = await transport.start("127.0.0.1", 0)
            loop = asyncio.get_running_loop()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                for _ in range(5):
                    await loop.sock_sendto(s, BAD, ("127.0.0.1", p))
                    answer = await asyncio.wait_for(loop.sock_recv(s, 2048), 10)
                    assert answer[1] == 0x80
            finally:
                s.close()
                await transport.close()

        with caplog.at_level(logging.DEBUG):
            asyncio.run(go())
        mine = [r for r in caplog.records if "not UTF-8" in r.getMessage()]
        assert len(mine) == 5 and all(r.levelno == logging.DEBUG for r in mine)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        platform.close()


def test_bad_request_for_answers_only_requests():
    assert bad_request_for(bytes([0x60, 0x45, 0, 1])) is None  # an ACK with 2.05: not a request
    assert bad_request_for(b"\x00") is None
    non = bad_request_for(bytes([0x50, 0x02, 0, 9]))  # NON POST without token
    assert non is not None and (non[0] >> 4) & 3 == 1 and non[1] == 0x80


def test_observe_shared_attributes_set_over_rest(world, port):
    """The ThingsBoard device-configuration pattern end to end: the server sets a shared
    attribute over REST, the CoAP device observing /attributes gets it, and its deletion."""
    did, token = world.new_device("coap-attr-observe")
    base = f"/api/plugins/telemetry/DEVICE/{did}"
    r = world.admin.post(f"{base}/attributes/SHARED_SCOPE", json={"interval": 30})
    assert r.status_code == 200, r.text

    async def go():
        ctx = await Context.create_client_context()
        loop = asyncio.get_running_loop()
        try:
            req = ctx.request(Message(code=GET, uri=f"coap://127.0.0.1:{port}/api/v1/{token}/attributes", observe=0))
            first = await asyncio.wait_for(req.response, 30)
            assert json.loads(first.payload) == {"interval": 30}
            updates = req.observation.__aiter__()
            r = await loop.run_in_executor(
                None, lambda: world.admin.post(f"{base}/attributes/SHARED_SCOPE", json={"interval": 5})
            )
            assert r.status_code == 200, r.text
            assert json.loads((await asyncio.wait_for(updates.__anext__(), 30)).payload) == {"interval": 5}
            r = await loop.run_in_executor(None, lambda: world.admin.delete(f"{base}/SHARED_SCOPE?keys=interval"))
            assert r.status_code == 200, r.text
            assert json.loads((await asyncio.wait_for(updates.__anext__(), 30)).payload) == {"deleted": ["interval"]}
            code, body = await request(ctx, port, f"/api/v1/{token}/attributes", code=GET, query="sharedKeys=interval")
            assert code == Code.CONTENT and json.loads(body) == {}
            req.observation.cancel()
        finally:
            await ctx.shutdown()

    asyncio.run(go())

"""CoAP device API against a real ``tbpanel serve``, with the aiocoap client: every outcome."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiocoap import GET, POST, Context, Message
from aiocoap.numbers.codes import Code


@pytest.fixture(scope="module")
def coap(world):
    assert world.server.coap_port, "".join(world.server.output)
    port = world.server.coap_port

    def request(path: str, payload: bytes | dict | list = b"", code=POST) -> tuple[Code, str]:
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()

        async def go():
            ctx = await Context.create_client_context()
            try:
                msg = Message(code=code, uri=f"coap://127.0.0.1:{port}{path}", payload=payload)
                response = await asyncio.wait_for(ctx.request(msg).response, 30)
                return response.code, response.payload.decode()
            finally:
                await ctx.shutdown()

        return asyncio.run(go())

    return request


def history(world, did: str, key: str) -> list:
    r = world.admin.get(
        f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries"
        f"?keys={key}&startTs=0&endTs=9999999999999&useStrictDataTypes=true"
    )
    assert r.status_code == 200, r.text
    return [p["value"] for p in r.json().get(key, [])]


def test_telemetry_and_attributes_created(world, coap):
    did, token = world.new_device("coap-dev")
    assert coap(f"/api/v1/{token}/telemetry", {"temperature": 22.5, "n": 3})[0] == Code.CREATED
    assert (
        coap(f"/api/v1/{token}/telemetry", [{"ts": 1_700_000_000_000, "values": {"temperature": 1}}])[0] == Code.CREATED
    )
    assert sorted(history(world, did, "temperature")) == [1, 22.5]
    assert history(world, did, "n") == [3]
    assert coap(f"/api/v1/{token}/attributes", {"fw": "v2", "slots": 2})[0] == Code.CREATED
    attrs = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/attributes/CLIENT_SCOPE").json()
    assert {a["key"]: a["value"] for a in attrs} == {"fw": "v2", "slots": 2}


def test_errors(world, coap):
    did, token = world.new_device("coap-bad")
    code, text = coap("/api/v1/no-such-token/telemetry", {"a": 1})
    assert code == Code.UNAUTHORIZED
    code, text = coap(f"/api/v1/{token}/telemetry", b'{"a": 1, "b": ')
    assert code == Code.BAD_REQUEST and "Invalid JSON" in text
    code, text = coap(f"/api/v1/{token}/attributes", b"[1]")
    assert code == Code.BAD_REQUEST and "object" in text
    assert coap(f"/api/v1/{token}/telemetry", b"")[0] == Code.BAD_REQUEST
    assert coap(f"/api/v1/{token}/nothing", {"a": 1})[0] == Code.NOT_FOUND
    assert coap("/nothing/here", {"a": 1})[0] == Code.NOT_FOUND
    assert coap(f"/api/v1/{token}/telemetry", code=GET)[0] == Code.METHOD_NOT_ALLOWED
    assert history(world, did, "a") == []

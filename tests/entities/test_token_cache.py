"""The access token -> device cache (``TokenCache``) that the device transports look up:
filled when a device is created or first seen, answering ``get_device`` too, forgotten by
every write to the device (credentials, rename, owner, deletion), bounded in size; over HTTP,
CoAP and MQTT a changed token is refused at once and the new one accepted, and a deleted
device's token refused."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import requests
from aiocoap import POST, Context, Message
from aiocoap.numbers.codes import Code

from tbpanel.entities import EntityRegistry
from tbpanel.entities.tables import TokenCache
from tbpanel.transports import mqtt_codec as c
from tests.helpers.mqtt import RawClient


@pytest.fixture
def reg(tmp_path):
    with EntityRegistry(tmp_path) as r:
        yield r


def test_a_created_device_is_cached_and_get_device_answers_from_the_cache(reg):
    t = reg.create_tenant("T")
    d = reg.save_device(t.id, "d", access_token="tok-new")
    assert reg.device_by_token("tok-new") is d  # no query, no second object for its first upload
    assert reg.get_device(d.id) is d
    renamed = reg.save_device(t.id, "renamed", device_id=d.id)
    assert reg.get_device(d.id).name == "renamed" and reg.get_device(d.id) is not d
    assert reg.device_by_token("tok-new").name == renamed.name
    reg.delete_device(d.id)
    assert reg.device_by_token("tok-new") is None
    with pytest.raises(Exception, match="not found"):
        reg.get_device(d.id)


def test_a_device_created_in_a_rolled_back_transaction_is_not_served(reg):
    t = reg.create_tenant("T")
    with pytest.raises(RuntimeError):
        with reg.transaction():
            reg.save_device(t.id, "gone", access_token="tok-gone")
            raise RuntimeError
    assert reg.device_by_token("tok-gone") is None
    assert reg.find_device(t.id, "gone") is None


def test_profile_rename_and_customer_deletion_reach_cached_devices(reg):
    t = reg.create_tenant("T")
    cust = reg.create_customer(t.id, "C")
    d = reg.save_device(t.id, "d", type="thermo", access_token="tok-p")
    reg.assign_device(d.id, cust.id)
    assert reg.device_by_token("tok-p").customer_id == cust.id
    profile = reg.get_device_profile(reg.device_by_token("tok-p").device_profile_id)
    reg.save_device_profile(t.id, dict(profile.to_json(), name="thermo-2"))
    assert reg.device_by_token("tok-p").type == "thermo-2"
    assert reg.get_device(d.id).type == "thermo-2"
    reg.delete_customer(cust.id)
    assert reg.device_by_token("tok-p").customer_id is None
    assert reg.get_device(d.id).customer_id is None


def test_the_cache_is_bounded():
    cache = TokenCache(limit=3)
    reg_devices = [type("D", (), {"id": f"id-{i}"})() for i in range(5)]
    for i, dev in enumerate(reg_devices):
        cache.put(f"t{i}", dev)  # type: ignore[arg-type]
        assert len(cache._devices) <= 3 and len(cache._token_of) <= 3
    assert cache.get("t4") is reg_devices[4] and cache.of_device("id-4") is reg_devices[4]
    assert cache.get("t0") is None and cache.of_device("id-0") is None


def coap_post(port: int, token: str) -> Code:
    async def go():
        ctx = await Context.create_client_context()
        try:
            msg = Message(code=POST, uri=f"coap://127.0.0.1:{port}/api/v1/{token}/telemetry", payload=b'{"t": 1}')
            return (await asyncio.wait_for(ctx.request(msg).response, 30)).code
        finally:
            await ctx.shutdown()

    return asyncio.run(go())


def mqtt_connect(port: int, token: str) -> int:
    client = RawClient(port, c.MQTT_311)
    try:
        return client.connect(token, client_id=f"cache-{uuid.uuid4().hex[:8]}")
    finally:
        client.close()


def test_changed_and_deleted_tokens_are_refused_at_once_on_every_transport(world):
    """HTTP, CoAP and MQTT CONNECT share the cache: after a credentials change the old token is
    refused on the next request and the new one accepted; after a deletion the token is refused."""
    coap, mqtt = world.server.coap_port, world.server.mqtt_port
    assert coap and mqtt, "".join(world.server.output)
    did, old = world.new_device("token-cache")

    def http(token: str) -> int:
        return requests.post(f"{world.url}/api/v1/{token}/telemetry", json={"t": 1}, timeout=30).status_code

    # every transport has used (and so cached) the old token
    assert (http(old), coap_post(coap, old), mqtt_connect(mqtt, old)) == (200, Code.CREATED, 0)
    new = f"cache-{uuid.uuid4().hex[:10]}"
    body = {"deviceId": {"entityType": "DEVICE", "id": did}, "credentialsType": "ACCESS_TOKEN", "credentialsId": new}
    assert world.admin.post("/api/device/credentials", json=body).status_code == 200
    assert (http(old), coap_post(coap, old), mqtt_connect(mqtt, old)) == (401, Code.UNAUTHORIZED, 5)
    assert (http(new), coap_post(coap, new), mqtt_connect(mqtt, new)) == (200, Code.CREATED, 0)
    assert world.admin.delete(f"/api/device/{did}").status_code == 200
    assert (http(new), coap_post(coap, new), mqtt_connect(mqtt, new)) == (401, Code.UNAUTHORIZED, 5)

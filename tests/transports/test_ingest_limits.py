"""``serve --max-keys-per-device`` / ``--max-points-per-message`` over HTTP, MQTT and CoAP, and a
20,000-new-key message through a real server (issue 15, item 1).

Over the point limit: HTTP 413, MQTT 5 PUBACK 0x97 (QoS 1; 0x95 is not a PUBACK code) or
DISCONNECT 0x95 (QoS 0), CoAP 4.13. Over the key limit: HTTP 400, MQTT 5 0x97, CoAP 4.00. MQTT
3.1.1 closes the session. Every answer names the limit, and nothing of the message is stored.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading

import pytest
import requests
from aiocoap import POST, Context, Message
from aiocoap.numbers.codes import Code

from tbpanel.transports import mqtt_codec as c
from tests.helpers.mqtt import RawClient
from tests.helpers.server import cli, open_world

MAX_KEYS, MAX_POINTS = 30, 40


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    extra = ("--max-keys-per-device", str(MAX_KEYS), "--max-points-per-message", str(MAX_POINTS))
    w = open_world(tmp_path_factory.mktemp("limited") / "data", extra)
    yield w
    w.server.stop()


def keys_of(world, did: str) -> list[str]:
    r = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries")
    assert r.status_code == 200, r.text
    return r.json()


def values(n: int, prefix: str = "k", value: int = 1) -> dict:
    return {f"{prefix}{i}": value for i in range(n)}


def post(world, token: str, body) -> requests.Response:
    return requests.post(f"{world.url}/api/v1/{token}/telemetry", json=body, timeout=60)


def coap(world, token: str, body) -> tuple[Code, str]:
    async def go():
        ctx = await Context.create_client_context()
        try:
            uri = f"coap://127.0.0.1:{world.server.coap_port}/api/v1/{token}/telemetry"
            msg = Message(code=POST, uri=uri, payload=json.dumps(body).encode())
            response = await asyncio.wait_for(ctx.request(msg).response, 30)
            return response.code, response.payload.decode()
        finally:
            await ctx.shutdown()

    return asyncio.run(go())


def test_flags_in_serve_help():
    text = " ".join(cli("serve", "--help").stdout.split())
    assert "--max-keys-per-device N telemetry keys one device may have (default: 10000)" in text
    assert "--max-points-per-message N points one telemetry message may carry (default: 100000)" in text
    r = cli("serve", "--max-keys-per-device", "0", check=False)
    assert r.returncode == 2 and "--max-keys-per-device" in r.stderr


def test_http_point_limit_is_413_and_stores_nothing(limited):
    did, token = limited.new_device("lim-http-points")
    r = post(limited, token, [{"ts": 1_700_000_000_000 + i, "values": {"v": i}} for i in range(MAX_POINTS + 1)])
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["status"] == 413 and body["errorCode"] == 31
    assert "max-points-per-message" in body["message"] and f"limit of {MAX_POINTS} points" in body["message"]
    assert keys_of(limited, did) == []
    at_limit = [{"ts": 1_700_000_000_000 + i, "values": {"v": i}} for i in range(MAX_POINTS)]
    assert post(limited, token, at_limit).status_code == 200  # at the limit: fine
    assert keys_of(limited, did) == ["v"]


def test_http_key_limit_is_400_and_stores_nothing(limited):
    did, token = limited.new_device("lim-http-keys")
    assert post(limited, token, values(MAX_KEYS - 5, value=1)).status_code == 200
    r = post(limited, token, {**values(MAX_KEYS - 5, value=2), **values(6, "new")})  # 6 new: one too many
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == 400 and body["errorCode"] == 31
    assert "max-keys-per-device" in body["message"] and f"limit of {MAX_KEYS} keys" in body["message"]
    assert len(keys_of(limited, did)) == MAX_KEYS - 5
    latest = limited.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries?keys=k0").json()
    assert latest["k0"][0]["value"] == "1"  # the refused message's value of a known key is not stored
    assert post(limited, token, values(5, "new")).status_code == 200  # exactly up to the limit
    assert post(limited, token, {"k0": 3}).status_code == 200  # known keys keep working
    assert len(keys_of(limited, did)) == MAX_KEYS


def test_mqtt_limits_have_reason_codes(limited):
    port = limited.server.mqtt_port
    did, token = limited.new_device("lim-mqtt")
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token, "lim-1") == 0
    raw.publish("v1/devices/me/telemetry", values(MAX_POINTS + 1), qos=1, packet_id=3)
    first, body = raw.read()
    assert first >> 4 == c.PUBACK and body[:3] == bytes([0, 3, c.V5_QUOTA_EXCEEDED]), body
    assert b"max-points-per-message" in body
    raw.publish("v1/devices/me/telemetry", values(MAX_KEYS - 1), qos=1, packet_id=4)
    assert raw.puback() == (4, 0)
    raw.publish("v1/devices/me/telemetry", values(2, "new"), qos=1, packet_id=5)  # one key too many
    first, body = raw.read()
    assert first >> 4 == c.PUBACK and body[:3] == bytes([0, 5, c.V5_QUOTA_EXCEEDED]), body
    assert b"max-keys-per-device" in body
    raw.publish("v1/devices/me/telemetry", values(MAX_POINTS + 1), qos=0)  # QoS 0: DISCONNECT 0x95
    first, body = raw.read()
    assert first >> 4 == c.DISCONNECT and body[0] == c.V5_PACKET_TOO_LARGE
    assert b"max-points-per-message" in body
    assert raw.closed()
    v3 = RawClient(port, c.MQTT_311)  # 3.1.1 has no reason codes: the session is closed
    assert v3.connect(token, "lim-2") == 0
    v3.publish("v1/devices/me/telemetry", values(2, "other"), qos=1, packet_id=6)
    assert v3.closed()
    assert sorted(keys_of(limited, did)) == sorted(values(MAX_KEYS - 1))


def test_mqtt_gateway_message_counts_every_device(limited):
    r = limited.admin.post(
        "/api/device", json={"name": "lim-gw", "type": "gateway", "additionalInfo": {"gateway": True}}
    )
    assert r.status_code == 200, r.text
    gw = r.json()["id"]["id"]
    token = limited.admin.get(f"/api/device/{gw}/credentials").json()["credentialsId"]
    raw = RawClient(limited.server.mqtt_port, c.MQTT_5)
    assert raw.connect(token, "lim-gw") == 0
    half = MAX_POINTS // 2 + 1  # each device's part is under the limit, together they are over
    payload = {name: [{"ts": 1_700_000_000_000, "values": values(half)}] for name in ("lim-gw-a", "lim-gw-b")}
    raw.publish("v1/gateway/telemetry", payload, qos=1, packet_id=7)
    first, body = raw.read()
    assert first >> 4 == c.PUBACK and body[:3] == bytes([0, 7, c.V5_QUOTA_EXCEEDED]), body
    assert b"max-points-per-message" in body
    raw.close()
    found = limited.admin.get("/api/tenant/devices?pageSize=100&page=0&textSearch=lim-gw-").json()["data"]
    assert all(keys_of(limited, d["id"]["id"]) == [] for d in found)


def test_coap_limits(limited):
    assert limited.server.coap_port, "".join(limited.server.output)
    did, token = limited.new_device("lim-coap")
    code, text = coap(limited, token, values(MAX_POINTS + 1))
    assert code == Code.REQUEST_ENTITY_TOO_LARGE and "max-points-per-message" in text
    assert keys_of(limited, did) == []
    assert coap(limited, token, values(MAX_KEYS))[0] == Code.CREATED
    code, text = coap(limited, token, values(1, "new"))
    assert code == Code.BAD_REQUEST and "max-keys-per-device" in text
    assert len(keys_of(limited, did)) == MAX_KEYS


@pytest.fixture(scope="module")
def roomy(tmp_path_factory):
    w = open_world(tmp_path_factory.mktemp("roomy") / "data", ("--max-keys-per-device", "30000"))
    yield w
    w.server.stop()


def test_twenty_thousand_new_keys_over_http_while_another_device_posts(roomy):
    """The big message (shuffled keys, ~480 KB) is stored whole, and the 1-point posts another
    device sends meanwhile are all answered and stored (the writer is never held by it for
    longer than its own size takes; see tests/store/test_many_keys.py for the ordering)."""
    big_id, big_token = roomy.new_device("many-keys")
    small_id, small_token = roomy.new_device("one-point")
    keys = [f"key_{i:06d}" for i in range(20_000)]
    random.Random(1).shuffle(keys)
    body = json.dumps({k: i for i, k in enumerate(keys)})
    answer: dict = {}

    def send_big() -> None:
        r = requests.post(f"{roomy.url}/api/v1/{big_token}/telemetry", data=body, timeout=120)
        answer["status"] = r.status_code

    thread = threading.Thread(target=send_big)
    thread.start()
    small = requests.Session()
    sent = 0
    while thread.is_alive() or sent < 3:
        r = small.post(f"{roomy.url}/api/v1/{small_token}/telemetry", json={"n": sent}, timeout=60)
        assert r.status_code == 200, r.text
        sent += 1
    thread.join()
    assert answer["status"] == 200
    assert sorted(keys_of(roomy, big_id)) == sorted(keys)
    latest = roomy.admin.get(f"/api/plugins/telemetry/DEVICE/{big_id}/values/timeseries?keys={keys[0]},{keys[-1]}")
    assert latest.json()[keys[0]][0]["value"] == "0" and latest.json()[keys[-1]][0]["value"] == "19999"
    r = roomy.admin.get(
        f"/api/plugins/telemetry/DEVICE/{small_id}/values/timeseries?keys=n&startTs=0&endTs=9999999999999&limit=100000"
    )
    assert len(r.json()["n"]) >= 1  # posts within one millisecond share a timestamp
    assert keys_of(roomy, small_id) == ["n"]

"""ThingsBoard 3.5+ short MQTT topics (``v2/t``, ``v2/a/req/{n}``, ``v2/r/req/{n}``): the names,
and a real session answering on the short form it was asked on."""

from __future__ import annotations

import json

import pytest

from tbpanel.transports import mqtt_codec as c
from tbpanel.transports.mqtt_topics import inbound, matches, outbound, push_topic, short_form
from tests.helpers.mqtt import RawClient


@pytest.mark.parametrize(
    "short, canonical",
    [
        ("v2/t", "v1/devices/me/telemetry"),
        ("v2/a", "v1/devices/me/attributes"),
        ("v2/a/req/7", "v1/devices/me/attributes/request/7"),
        ("v2/a/res/7", "v1/devices/me/attributes/response/7"),
        ("v2/r/req/12", "v1/devices/me/rpc/request/12"),
        ("v2/r/res/12", "v1/devices/me/rpc/response/12"),
    ],
)
def test_short_and_long_names(short, canonical):
    assert inbound(short) == (canonical, True)
    assert inbound(canonical) == (canonical, False)
    assert short_form(canonical) == short and outbound(canonical, True) == short
    assert outbound(canonical, False) == canonical


@pytest.mark.parametrize("topic", ["v2/t/x", "v2/a/req/1/2", "v2/tt", "v2/fw/response/1", "v1/gateway/telemetry"])
def test_other_topics_pass_unchanged(topic):
    assert inbound(topic) == (topic, False)


def test_filter_matching_and_push_topics():
    assert matches("v1/devices/me/rpc/request/+", "v1/devices/me/rpc/request/5")
    assert not matches("v1/devices/me/rpc/request/+", "v1/devices/me/rpc/request/5/6")
    assert matches("v1/devices/me/#", "v1/devices/me/attributes") and matches("#", "a/b")
    assert not matches("v1/devices/me/attributes", "v1/devices/me/attributes/response/1")
    assert push_topic(["v2/r/req/+"], "v1/devices/me/rpc/request/3") == "v2/r/req/3"
    assert push_topic(["v1/devices/me/attributes"], "v1/devices/me/attributes") == "v1/devices/me/attributes"
    assert push_topic(["v2/a"], "v1/devices/me/attributes") == "v2/a"
    assert push_topic(["v1/devices/me/telemetry"], "v1/devices/me/attributes") is None


@pytest.fixture(scope="module")
def port(world) -> int:
    assert world.server.mqtt_port, "".join(world.server.output)
    return world.server.mqtt_port


def _publish_topic(body: bytes, level: int) -> tuple[str, dict]:
    n = int.from_bytes(body[:2], "big")
    payload = body[2 + n + (1 if level == c.MQTT_5 else 0) :]
    return body[2 : 2 + n].decode(), json.loads(payload)


@pytest.mark.parametrize("level", [c.MQTT_311, c.MQTT_5])
def test_a_session_speaks_short_topics(world, port, level):
    did, token = world.new_device(f"mqtt-short-{level}")
    raw = RawClient(port, level)
    assert raw.connect(token) == 0
    raw.sock.sendall(c.encode_subscribe(level, 3, [("v2/a/res/+", 1), ("v2/r/res/+", 1)]))
    first, body = raw.read()
    assert first >> 4 == c.SUBACK and body[-2:] == bytes([1, 1])
    raw.publish("v2/t", {"short": 21.5}, packet_id=4)
    assert raw.puback() == (4, 0)
    raw.publish("v2/a", {"fw": "v2"}, packet_id=5)
    assert raw.puback() == (5, 0)
    raw.publish("v2/a/req/8", {"clientKeys": "fw"}, packet_id=6)
    first, body = raw.read()
    assert first >> 4 == c.PUBLISH and _publish_topic(body, level) == ("v2/a/res/8", {"client": {"fw": "v2"}})
    assert raw.puback() == (6, 0)
    raw.publish("v2/r/req/9", {"method": "getSessionLimits", "params": {}}, packet_id=7)
    first, body = raw.read()
    topic, answer = _publish_topic(body, level)
    assert topic == "v2/r/res/9" and "rateLimits" in answer
    assert raw.puback() == (7, 0)
    latest = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries", params={"keys": "short"})
    assert latest.json()["short"][0]["value"] in ("21.5", 21.5)
    raw.close()

"""Attributes over MQTT against a real ``tbpanel serve``: request/response scopes, shared
pushes and deletions, short topics, gateway requests and pushes — with paho-mqtt 2.x (3.1.1
and 5) and the unchanged tb-mqtt-client in its own virtualenv."""

from __future__ import annotations

import json
import queue
import threading

import pytest

from tests.helpers import jwt
from tests.helpers.clients_venv import run_client_script

pytestmark = pytest.mark.usefixtures("no_server_errors")
TEL = "/api/plugins/telemetry"
WAIT = 20


@pytest.fixture(scope="module")
def port(world) -> int:
    assert world.server.mqtt_port, "".join(world.server.output)
    return world.server.mqtt_port


class Paho:
    """An upstream paho-mqtt 2.x client of one device; received messages queue up."""

    def __init__(self, port: int, token: str, version: str = "5") -> None:
        import paho.mqtt.client as mqtt

        protocol = mqtt.MQTTv311 if version == "311" else mqtt.MQTTv5
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"attr-{token[:6]}", protocol=protocol)
        self.client.username_pw_set(token)
        self.messages: queue.Queue = queue.Queue()
        self.subscribed: queue.Queue = queue.Queue()
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, json.loads(msg.payload)))
        self.client.on_subscribe = lambda _c, _u, mid, codes, *a: self.subscribed.put((mid, codes))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(WAIT)

    def subscribe(self, *topics: str) -> None:
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        got_mid, codes = self.subscribed.get(timeout=WAIT)
        assert got_mid == mid and all(int(getattr(c, "value", c)) < 0x80 for c in codes), codes

    def publish(self, topic: str, payload: dict) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(WAIT)

    def next(self) -> tuple[str, dict]:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def save(world, did: str, scope: str, body: dict) -> None:
    r = world.admin.post(f"{TEL}/DEVICE/{did}/{scope}", json=body)
    assert r.status_code == 200, r.text


def delete(world, did: str, scope: str, keys: str) -> None:
    r = world.admin.delete(f"{TEL}/DEVICE/{did}/{scope}", params={"keys": keys})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("version", ["311", "5"])
def test_request_response_is_scope_correct(world, port, version):
    did, token = world.new_device(f"mqtt-attr-req-{version}")
    save(world, did, "SHARED_SCOPE", {"interval": 10, "mode": "eco"})
    save(world, did, "SERVER_SCOPE", {"server_secret": "s", "mode": "server"})
    dev = Paho(port, token, version)
    try:
        dev.subscribe("v1/devices/me/attributes/response/+")
        dev.publish("v1/devices/me/attributes", {"fw": "v3", "slots": 2})
        cases = [
            ({}, {"client": {"fw": "v3", "slots": 2}, "shared": {"interval": 10, "mode": "eco"}}),
            ({"clientKeys": "fw", "sharedKeys": "mode"}, {"client": {"fw": "v3"}, "shared": {"mode": "eco"}}),
            ({"clientKeys": "slots"}, {"client": {"slots": 2}}),
            ({"sharedKeys": "interval,server_secret"}, {"shared": {"interval": 10}}),
            ({"sharedKeys": "server_secret"}, {}),
            (
                {"clientKeys": ["fw"], "sharedKeys": ["mode", "missing"]},
                {"client": {"fw": "v3"}, "shared": {"mode": "eco"}},
            ),
        ]
        for n, (request, expected) in enumerate(cases, start=1):
            dev.publish(f"v1/devices/me/attributes/request/{n}", request)
            assert dev.next() == (f"v1/devices/me/attributes/response/{n}", expected), request
    finally:
        dev.close()


def test_shared_pushes_and_deletions_reach_only_subscribed_sessions_of_the_device(world, port):
    did, token = world.new_device("mqtt-attr-push")
    other_did, other_token = world.new_device("mqtt-attr-push-other")
    dev, unsubscribed, other = Paho(port, token), Paho(port, token, "311"), Paho(port, other_token)
    try:
        dev.subscribe("v1/devices/me/attributes", "v1/devices/me/attributes/response/+")
        unsubscribed.subscribe("v1/devices/me/attributes/response/+")
        other.subscribe("v1/devices/me/attributes", "v1/devices/me/attributes/response/+")
        save(world, did, "SERVER_SCOPE", {"hidden": 1})  # never pushed
        save(world, did, "SHARED_SCOPE", {"interval": 30, "mode": "eco"})
        assert dev.next() == ("v1/devices/me/attributes", {"interval": 30, "mode": "eco"})
        save(world, other_did, "SHARED_SCOPE", {"theirs": True})
        assert other.next() == ("v1/devices/me/attributes", {"theirs": True})
        delete(world, did, "SHARED_SCOPE", "mode,never-existed")
        assert dev.next() == ("v1/devices/me/attributes", {"deleted": ["mode"]})
        delete(world, did, "SERVER_SCOPE", "hidden")  # not pushed either
        # what came next on each session is the answer to a request: nothing else was pushed
        # (not the server-scope changes, not the other device's, not to the unsubscribed one)
        for n, session in enumerate((dev, unsubscribed), start=1):
            session.publish(f"v1/devices/me/attributes/request/{n}", {"sharedKeys": "interval"})
            assert session.next() == (f"v1/devices/me/attributes/response/{n}", {"shared": {"interval": 30}})
        other.publish("v1/devices/me/attributes/request/9", {"sharedKeys": "interval"})
        assert other.next() == ("v1/devices/me/attributes/response/9", {})
    finally:
        for s in (dev, unsubscribed, other):
            s.close()


def test_short_topics(world, port):
    did, token = world.new_device("mqtt-attr-short")
    save(world, did, "SHARED_SCOPE", {"interval": 5})
    dev = Paho(port, token)
    try:
        dev.subscribe("v2/a", "v2/a/res/+")
        dev.publish("v2/a/req/3", {"sharedKeys": "interval"})
        assert dev.next() == ("v2/a/res/3", {"shared": {"interval": 5}})
        save(world, did, "SHARED_SCOPE", {"interval": 6})
        assert dev.next() == ("v2/a", {"interval": 6})
        delete(world, did, "SHARED_SCOPE", "interval")
        assert dev.next() == ("v2/a", {"deleted": ["interval"]})
    finally:
        dev.close()


def test_bad_attribute_request_is_refused_with_a_reason(world, port):
    """MQTT 5: a QoS 1 request that is not an object gets PUBACK 0x99 and the session goes on."""
    from tbpanel.transports import mqtt_codec as c
    from tests.helpers.mqtt import RawClient

    _, token = world.new_device("mqtt-attr-bad")
    raw = RawClient(port, c.MQTT_5)
    try:
        assert raw.connect(token) == 0
        raw.publish("v1/devices/me/attributes/request/1", b"[1, 2]", packet_id=4)
        assert raw.puback() == (4, c.V5_PAYLOAD_FORMAT_INVALID)
        raw.publish("v1/devices/me/attributes/request/2", {"clientKeys": 5}, packet_id=5)
        assert raw.puback() == (5, c.V5_PAYLOAD_FORMAT_INVALID)
        raw.publish("v1/devices/me/attributes/request/3", {}, packet_id=6)
        first, _ = raw.read()
        assert first >> 4 == c.PUBLISH  # the answer, then its PUBACK
        assert raw.puback() == (6, 0)
    finally:
        raw.close()


def _gateway(world, name: str = "mqtt-attr-gw") -> tuple[str, str]:
    r = world.admin.post("/api/device", json={"name": name, "type": "gateway", "additionalInfo": {"gateway": True}})
    assert r.status_code == 200, r.text
    gw = r.json()["id"]["id"]
    return gw, world.admin.get(f"/api/device/{gw}/credentials").json()["credentialsId"]


def test_gateway_requests_and_pushes(world, port):
    _, token = _gateway(world)
    gw = Paho(port, token)
    try:
        gw.subscribe("v1/gateway/attributes", "v1/gateway/attributes/response")
        gw.publish("v1/gateway/connect", {"device": "gw-attr-child", "type": "thermo"})
        gw.publish("v1/gateway/attributes", {"gw-attr-child": {"fw": "c1"}})
        found = world.admin.get(
            "/api/tenant/devices", params={"pageSize": 100, "page": 0, "textSearch": "gw-attr-child"}
        )
        child = next(d["id"]["id"] for d in found.json()["data"] if d["name"] == "gw-attr-child")
        save(world, child, "SHARED_SCOPE", {"setpoint": 21, "mode": "heat"})
        assert gw.next() == (
            "v1/gateway/attributes",
            {"device": "gw-attr-child", "data": {"setpoint": 21, "mode": "heat"}},
        )
        save(world, child, "SERVER_SCOPE", {"hidden": 1})
        gw.publish("v1/gateway/attributes/request", {"id": 1, "device": "gw-attr-child", "client": True, "key": "fw"})
        assert gw.next() == ("v1/gateway/attributes/response", {"id": 1, "device": "gw-attr-child", "value": "c1"})
        gw.publish(
            "v1/gateway/attributes/request",
            {"id": 2, "device": "gw-attr-child", "keys": ["setpoint", "mode", "hidden"]},
        )
        assert gw.next() == (
            "v1/gateway/attributes/response",
            {"id": 2, "device": "gw-attr-child", "values": {"mode": "heat", "setpoint": 21}},
        )
        gw.publish("v1/gateway/attributes/request", {"id": 3, "device": "gw-attr-child", "key": "hidden"})
        assert gw.next() == ("v1/gateway/attributes/response", {"id": 3, "device": "gw-attr-child"})
        delete(world, child, "SHARED_SCOPE", "mode")
        assert gw.next() == ("v1/gateway/attributes", {"device": "gw-attr-child", "data": {"deleted": ["mode"]}})
    finally:
        gw.close()


TB_CLIENT = r"""
import json, sys, threading, time, urllib.request
from tb_device_mqtt import TBDeviceMqttClient
port, token, url, jwt, did = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

def rest(method, path, body=None):
    req = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"X-Authorization": "Bearer " + jwt, "Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=30).status

client = TBDeviceMqttClient("127.0.0.1", port=port, username=token)
client.connect()
client.send_attributes({"fw": "t1"}).get()
out = {"all": [], "interval": []}
events = {"request": threading.Event(), "pushed": threading.Event(), "deleted": threading.Event()}
def on_all(content, exception):
    out["all"].append(content)
    events["deleted" if "deleted" in content else "pushed"].set()
client.subscribe_to_all_attributes(on_all)
client.subscribe_to_attribute("interval", lambda content, exception: out["interval"].append(content))
def on_response(content, exception):
    out["response"], out["error"] = content, repr(exception) if exception else None
    events["request"].set()
client.request_attributes(client_keys=["fw"], shared_keys=["interval"], callback=on_response)
events["request"].wait(20)
out["saved"] = rest("POST", "/api/plugins/telemetry/DEVICE/" + did + "/SHARED_SCOPE", {"interval": 45})
events["pushed"].wait(20)
out["deleted_status"] = rest("DELETE", "/api/plugins/telemetry/DEVICE/" + did + "/SHARED_SCOPE?keys=interval")
events["deleted"].wait(20)
client.disconnect()
print("RESULT " + json.dumps(out))
"""


def test_tb_mqtt_client_request_and_shared_subscription(world, port, tb_client_python, tmp_path):
    did, token = world.new_device("mqtt-attr-tb-client")
    save(world, did, "SHARED_SCOPE", {"interval": 15})
    out = run_client_script(
        tb_client_python, TB_CLIENT, str(port), token, world.url, jwt(world.admin), did, cwd=tmp_path
    )
    assert out["error"] is None
    assert out["response"] == {"client": {"fw": "t1"}, "shared": {"interval": 15}}
    assert (out["saved"], out["deleted_status"]) == (200, 200)
    assert out["all"] == [{"interval": 45}, {"deleted": ["interval"]}]
    assert out["interval"] == [{"interval": 45}]


def test_gateway_request_for_a_device_that_cannot_exist_is_refused_not_a_crash(world, port):
    """MQTT 5, QoS 1: a gateway request naming a device that cannot be created (a 300-character
    name) fails inside the deferred work: PUBACK 0x99 with the reason, and the session goes on
    (this path raised UnboundLocalError in the session's writer before)."""
    from tbpanel.transports import mqtt_codec as c
    from tests.helpers.mqtt import RawClient

    _, token = _gateway(world, "mqtt-attr-gw-bad")
    raw = RawClient(port, c.MQTT_5)
    try:
        assert raw.connect(token) == 0
        raw.publish("v1/gateway/attributes/request", {"id": 1, "device": "x" * 300, "key": "a"}, packet_id=3)
        assert raw.puback() == (3, c.V5_PAYLOAD_FORMAT_INVALID)
        raw.publish("v1/gateway/attributes/request", {"id": 2, "device": "gw-attr-ok", "key": "a"}, packet_id=4)
        first, body = raw.read()
        assert first >> 4 == c.PUBLISH and b'"id":2' in body
        assert raw.puback() == (4, 0)
    finally:
        raw.close()


def test_a_customers_gateway_never_reads_another_customers_device(world, port):
    """A gateway assigned to customer A1 may act for A1's devices and those it created; naming
    customer A2's device gets PUBACK 0x99 and none of that device's shared changes."""
    from tbpanel.transports import mqtt_codec as c
    from tests.helpers.mqtt import RawClient

    gw_id, token = _gateway(world, "mqtt-attr-gw-a1")
    r = world.admin.post(f"/api/customer/{world.customer_ids['Customer A1']}/device/{gw_id}")
    assert r.status_code == 200, r.text
    mine, theirs = world.devices["dev-a1"]["id"]["id"], world.devices["dev-a2"]["id"]["id"]
    save(world, theirs, "SHARED_SCOPE", {"a2_secret": 1})
    save(world, mine, "SHARED_SCOPE", {"a1_cfg": 1})
    raw = RawClient(port, c.MQTT_5)
    try:
        assert raw.connect(token) == 0
        raw.sock.sendall(
            c.encode_subscribe(raw.level, 2, [("v1/gateway/attributes", 0), ("v1/gateway/attributes/response", 0)])
        )
        assert raw.read()[0] >> 4 == c.SUBACK
        raw.publish("v1/gateway/attributes/request", {"id": 1, "device": "dev-a2", "key": "a2_secret"}, packet_id=3)
        assert raw.puback() == (3, c.V5_PAYLOAD_FORMAT_INVALID)
        save(world, theirs, "SHARED_SCOPE", {"a2_secret": 2})  # not pushed to this gateway
        raw.publish("v1/gateway/attributes/request", {"id": 2, "device": "dev-a1", "key": "a1_cfg"}, packet_id=4)
        first, body = raw.read()
        assert first >> 4 == c.PUBLISH and b"a2_secret" not in body
        assert json.loads(body[body.index(b"{") :]) == {"id": 2, "device": "dev-a1", "value": 1}
        assert raw.puback() == (4, 0)
    finally:
        raw.close()


@pytest.mark.parametrize(
    "payload",
    [
        b"[1]",
        b'"x"',
        b"{}",
        b'{"id": 1, "key": "a"}',
        b'{"id": 1, "device": "", "key": "a"}',
        b'{"id": 1, "device": 5, "key": "a"}',
        b'{"id": true, "device": "d", "key": "a"}',
        b'{"id": [1], "device": "d", "key": "a"}',
        b'{"device": "d", "key": "a"}',
        b'{"id": 1, "device": "d", "client": "yes", "key": "a"}',
        b'{"id": 1, "device": "d"}',
        b'{"id": 1, "device": "d", "keys": 5}',
        b'{"id": 1, "device": "d", "keys": [1, 2]}',
        b'{"id": 1, "device": "d", "key": ""}',
        b'{"id": 1, "device": "d", "key": "a", "keys": []}',
        b'{"id": 1, "device": "d", "key": "a"',
    ],
)
def test_bad_gateway_attribute_requests(world, port, payload):
    """Each malformed gateway request: v5 PUBACK 0x99 with a reason, nothing created, and the
    session still answers a good request."""
    from tbpanel.transports import mqtt_codec as c
    from tests.helpers.mqtt import RawClient

    _, token = _gateway(world, f"mqtt-attr-gw-hostile-{abs(hash(payload))}")
    raw = RawClient(port, c.MQTT_5)
    try:
        assert raw.connect(token) == 0
        raw.publish("v1/gateway/attributes/request", payload, packet_id=3)
        assert raw.puback() == (3, c.V5_PAYLOAD_FORMAT_INVALID)
        raw.publish("v1/devices/me/attributes/request/1", {}, packet_id=4)
        assert raw.read()[0] >> 4 == c.PUBLISH and raw.puback() == (4, 0)
    finally:
        raw.close()
    names = world.admin.get("/api/tenant/devices", params={"pageSize": 1000, "page": 0}).json()["data"]
    assert "d" not in {d["name"] for d in names}

"""RPC over MQTT against a real server with paho-mqtt 2.x (3.1.1 and 5): requests pushed on the
long and short topics, answers, device → server requests, gateway RPC both directions, and
tb-mqtt-client's RPC callbacks (its own virtualenv)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.helpers.rpc_device import PahoRpcDevice

pytestmark = pytest.mark.usefixtures("no_server_errors")


@pytest.fixture(scope="module")
def port(world) -> int:
    assert world.server.mqtt_port
    return world.server.mqtt_port


@pytest.mark.parametrize("version", [311, 5])
@pytest.mark.parametrize("short", [False, True])
def test_request_and_answer(world, port, version, short):
    did, token = world.new_device(f"mqtt-rpc-{version}-{short}")
    with PahoRpcDevice(port, token, short=short, version=version) as dev:
        r = world.admin.post(f"/api/rpc/twoway/{did}", json={"method": "getTemp", "params": {"unit": "C"}})
        assert r.status_code == 200, r.text
        assert r.json() == {"echo": "getTemp", "params": {"unit": "C"}}
        rid, body = dev.requests.get(timeout=10)
        assert rid.isdigit() and body == {"method": "getTemp", "params": {"unit": "C"}}


@pytest.mark.parametrize("short", [False, True])
def test_device_to_server(world, port, short):
    _, token = world.new_device(f"mqtt-rpc-d2s-{short}")
    with PahoRpcDevice(port, token, short=short) as dev:
        limits = dev.call_server(1, "getSessionLimits")
        assert limits["maxPayloadSize"] > 0 and "rateLimits" in limits
        now = dev.call_server(2, "getCurrentTime")
        assert abs(now["currentTime"] - time.time() * 1000) < 60_000
        assert "unsupported RPC method 'fly'" in dev.call_server(3, "fly", {})["error"]


def test_unsubscribed_session_gets_no_requests(world, port):
    did, token = world.new_device("mqtt-rpc-unsub")
    with PahoRpcDevice(port, token) as dev:
        done = threading.Event()
        dev.client.on_unsubscribe = lambda *a: done.set()
        dev.client.unsubscribe("v1/devices/me/rpc/request/+")
        assert done.wait(10)
        time.sleep(0.2)
        assert world.admin.post(f"/api/rpc/twoway/{did}", json={"method": "x"}).status_code == 409


def test_answer_that_is_not_json_comes_back_as_text(world, port):
    did, token = world.new_device("mqtt-rpc-text")
    with PahoRpcDevice(port, token, answer=None) as dev:
        rpc_id = world.admin.post(
            f"/api/rpc/twoway/{did}", json={"method": "m", "persistent": True, "timeout": 60_000}
        ).json()["rpcId"]
        rid, _ = dev.requests.get(timeout=10)
        dev.client.publish(f"v1/devices/me/rpc/response/{rid}", b"plain ok", qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = world.admin.get(f"/api/rpc/persistent/{rpc_id}").json()
            if got["status"] == "SUCCESSFUL":
                break
            time.sleep(0.05)
        assert got["response"] == "plain ok"


def test_gateway_rpc_both_directions(world, port):
    import paho.mqtt.client as mqtt

    r = world.admin.post("/api/device", json={"name": "mqtt-rpc-gw", "additionalInfo": {"gateway": True}})
    gw = r.json()["id"]["id"]
    token = world.admin.get(f"/api/device/{gw}/credentials").json()["credentialsId"]
    got: list = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set(token)
    subscribed, connected = threading.Event(), threading.Event()

    def on_message(c, u, msg):
        body = json.loads(msg.payload)
        got.append(body)
        answer = {"device": body["device"], "id": body["data"]["id"], "data": {"ok": body["data"]["params"]}}
        c.publish("v1/gateway/rpc", json.dumps(answer), qos=1)

    client.on_message = on_message
    client.on_connect = lambda *a: connected.set()
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(10)
        client.subscribe("v1/gateway/rpc", qos=1)
        assert subscribed.wait(10)
        client.publish("v1/gateway/connect", json.dumps({"device": "gw-child-1"}), qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 20
        child = None
        while child is None and time.monotonic() < deadline:
            page = world.admin.get("/api/tenant/devices?pageSize=1000&page=0&textSearch=gw-child-1").json()
            child = next((d["id"]["id"] for d in page["data"] if d["name"] == "gw-child-1"), None)
            time.sleep(0.05)
        assert child is not None
        deadline = time.monotonic() + 20
        while True:  # the child is announced once the gateway's connect was processed
            r = world.admin.post(f"/api/rpc/twoway/{child}", json={"method": "valve", "params": {"open": True}})
            if r.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        assert r.json() == {"ok": {"open": True}}
        assert got[-1]["device"] == "gw-child-1" and got[-1]["data"]["method"] == "valve"
        assert world.admin.post(f"/api/rpc/twoway/{gw}", json={"method": "x"}).status_code == 409  # gw itself
    finally:
        client.loop_stop()
        client.disconnect()


TB_CLIENT_RPC = r"""
import json, sys, time, threading
from tb_device_mqtt import TBDeviceMqttClient
port, token = int(sys.argv[1]), sys.argv[2]
client = TBDeviceMqttClient("127.0.0.1", port=port, username=token)
def on_server_rpc(request_id, request_body):
    client.send_rpc_reply(request_id, {"sdk": request_body["method"], "params": request_body["params"]})
client.set_server_side_rpc_request_handler(on_server_rpc)
client.connect()
answer = {}
done = threading.Event()
def on_reply(request_id, response, exception=None):
    answer.update(response or {"exception": str(exception)}); done.set()
client.send_rpc_call("getCurrentTime", {}, on_reply)
done.wait(10)
print("READY " + json.dumps(answer), flush=True)
sys.stdin.readline()
client.disconnect()
"""


def test_tb_mqtt_client_rpc_callbacks(world, port, tb_client_python):
    import subprocess

    did, token = world.new_device("mqtt-rpc-sdk")
    proc = subprocess.Popen(
        [str(tb_client_python), "-c", TB_CLIENT_RPC, str(port), token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while not line.startswith("READY") and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "SDK script ended"
        assert "currentTime" in json.loads(line.split(" ", 1)[1]), line
        r = world.admin.post(f"/api/rpc/twoway/{did}", json={"method": "sdkCall", "params": {"x": 1}})
        assert r.status_code == 200, r.text
        assert r.json() == {"sdk": "sdkCall", "params": {"x": 1}}
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)


def wait_status(world, rpc_id: str, want: str) -> dict:
    deadline = time.monotonic() + 20
    while (got := world.admin.get(f"/api/rpc/persistent/{rpc_id}").json())["status"] != want:
        assert time.monotonic() < deadline, got
        time.sleep(0.05)
    return got


@pytest.mark.parametrize("qos", [0, 1])
def test_request_qos_follows_the_subscription(world, port, qos):
    """QoS 1 subscription: the request comes at QoS 1 and is DELIVERED only on the PUBACK;
    QoS 0: at QoS 0 and DELIVERED once written."""
    from tbpanel.transports import mqtt_codec as c
    from tests.helpers.mqtt import RawClient

    did, token = world.new_device(f"mqtt-rpc-qos{qos}")
    raw = RawClient(port)
    try:
        assert raw.connect(token) == 0
        raw.sock.sendall(c.encode_subscribe(raw.level, 1, [("v1/devices/me/rpc/request/+", qos)]))
        first, body = raw.read()
        assert first >> 4 == c.SUBACK and body[-1] == qos
        rpc_id = world.admin.post(
            f"/api/rpc/twoway/{did}", json={"method": "m", "persistent": True, "timeout": 60_000}
        ).json()["rpcId"]
        first, body = raw.read()
        assert first >> 4 == c.PUBLISH and (first >> 1) & 3 == qos
        topic_len = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + topic_len].decode()
        rid = topic.rsplit("/", 1)[1]
        if qos:
            packet_id = int.from_bytes(body[2 + topic_len : 4 + topic_len], "big")
            time.sleep(0.3)
            assert world.admin.get(f"/api/rpc/persistent/{rpc_id}").json()["status"] == "SENT"
            raw.sock.sendall(c.puback(raw.level, packet_id))
        wait_status(world, rpc_id, "DELIVERED")
        raw.publish(f"v1/devices/me/rpc/response/{rid}", {"done": qos}, qos=1, packet_id=7)
        assert raw.puback() == (7, 0)
        assert wait_status(world, rpc_id, "SUCCESSFUL")["response"] == {"done": qos}
    finally:
        raw.close()


def test_unacknowledged_qos1_request_is_sent_again_on_the_next_session(world, port):
    from tbpanel.transports import mqtt_codec as c
    from tests.helpers.mqtt import RawClient

    did, token = world.new_device("mqtt-rpc-unacked")
    rpc_id = world.admin.post(
        f"/api/rpc/oneway/{did}", json={"method": "again", "persistent": True, "timeout": 60_000}
    ).json()["rpcId"]
    raw = RawClient(port)
    assert raw.connect(token) == 0
    raw.sock.sendall(c.encode_subscribe(raw.level, 1, [("v1/devices/me/rpc/request/+", 1)]))
    raw.read()  # SUBACK
    first, _ = raw.read()
    assert first >> 4 == c.PUBLISH  # received, never acknowledged
    raw.close()
    with PahoRpcDevice(port, token) as dev:
        assert dev.requests.get(timeout=20)[1]["method"] == "again"
        wait_status(world, rpc_id, "DELIVERED")

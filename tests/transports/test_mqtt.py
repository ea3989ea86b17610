"""MQTT device transport against a real ``tbpanel serve``: tb-mqtt-client (v5, in its own
virtualenv), upstream paho-mqtt 3.1.1 and 5, and a raw socket client for the answers paho hides
(CONNACK codes, PUBACK reasons, closes)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tbpanel.transports import mqtt_codec as c
from tests.helpers import ADMIN, Api, ServerProcess, cli
from tests.helpers.clients_venv import run_client_script
from tests.helpers.mqtt import RawClient


def latest(world, device_id: str, keys: str) -> dict:
    r = world.admin.get(f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries?keys={keys}")
    assert r.status_code == 200, r.text
    return r.json()


def history(world, device_id: str, key: str) -> list:
    r = world.admin.get(
        f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries"
        f"?keys={key}&startTs=0&endTs=9999999999999&limit=10000&useStrictDataTypes=true"
    )
    assert r.status_code == 200, r.text
    return r.json().get(key, [])


@pytest.fixture(scope="module")
def port(world) -> int:
    assert world.server.mqtt_port, "".join(world.server.output)
    return world.server.mqtt_port


TB_CLIENT = r"""
import json, sys
from tb_device_mqtt import TBDeviceMqttClient
port, token = int(sys.argv[1]), sys.argv[2]
client = TBDeviceMqttClient("127.0.0.1", port=port, username=token)
client.connect()
out = {"telemetry": client.send_telemetry({"temperature": 21.5, "count": 7, "on": True}).get(),
       "ts": client.send_telemetry({"ts": 1710000000000, "values": {"temperature": 20.0}}).get(),
       "attributes": client.send_attributes({"firmware": "v1.2.3", "slots": 4}).get()}
limits = {}
client.request_service_configuration(lambda _, response, *a: limits.update(response or {}))
import time
deadline = time.time() + 10
while not limits and time.time() < deadline:
    time.sleep(0.05)
out["limits"] = limits
client.disconnect()
print("RESULT " + json.dumps(out))
"""


def test_tb_mqtt_client_v5_telemetry_attributes_and_session_limits(world, port, tb_client_python, tmp_path):
    """The unchanged TBDeviceMqttClient (MQTT 5) gets result 0 and the data reads back typed."""
    did, token = world.new_device("mqtt-tb-client")
    out = run_client_script(tb_client_python, TB_CLIENT, str(port), token, cwd=tmp_path)
    assert (out["telemetry"], out["ts"], out["attributes"]) == (0, 0, 0)
    assert out["limits"]["maxPayloadSize"] > 0 and "rateLimits" in out["limits"]
    values = latest(world, did, "temperature,count,on")
    assert values["temperature"][0]["value"] == "21.5"
    assert values["count"][0]["value"] == "7" and values["on"][0]["value"] == "true"
    typed = {p["ts"]: p["value"] for p in history(world, did, "temperature")}
    assert typed[1710000000000] == 20.0
    attrs = {
        a["key"]: a["value"]
        for a in world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/attributes/CLIENT_SCOPE").json()
    }
    assert attrs == {"firmware": "v1.2.3", "slots": 4}


def test_paho_tests_import_upstream_paho():
    """The paho tests below exercise upstream paho-mqtt, not tb-mqtt-client's fork of it (both
    install the ``paho`` package; the fork lives only in the SDK's own virtualenv)."""
    from importlib.metadata import PackageNotFoundError, distribution
    from pathlib import Path

    import paho.mqtt

    with pytest.raises(PackageNotFoundError):
        distribution("tb-paho-mqtt-client")  # a .venv from before: `make venv` removes it
    upstream = distribution("paho-mqtt")
    files = {Path(upstream.locate_file(f)).resolve() for f in upstream.files or ()}
    assert Path(paho.mqtt.__file__).resolve() in files
    assert int(paho.mqtt.__version__.split(".")[0]) >= 2


@pytest.mark.parametrize("version", ["311", "5"])
def test_paho_qos0_1_and_2(world, port, version):
    import paho.mqtt.client as mqtt

    did, token = world.new_device(f"mqtt-paho-{version}")
    protocol = mqtt.MQTTv311 if version == "311" else mqtt.MQTTv5
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-{version}", protocol=protocol)
    client.username_pw_set(token)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(20)
        for i in range(20):
            info = client.publish(
                "v1/devices/me/telemetry", json.dumps({"ts": 1_700_000_000_000 + i, "values": {"v": i}}), qos=i % 3
            )
            info.wait_for_publish(20)
            assert info.is_published()  # QoS 1: PUBACK; QoS 2: PUBREC, PUBREL, PUBCOMP done
        # a QoS 1/2 message is durable when its PUBACK/PUBREC arrives; QoS 0 ones before it
        # were written earlier on the same session (writes keep arrival order)
        for qos in (1, 2):
            client.publish("v1/devices/me/telemetry", json.dumps({f"last{qos}": 1}), qos=qos).wait_for_publish(20)
    finally:
        client.loop_stop()
        client.disconnect()
    assert sorted(p["value"] for p in history(world, did, "v")) == list(range(20))
    assert len(history(world, did, "last1")) == 1 and len(history(world, did, "last2")) == 1


@pytest.mark.parametrize("level, refused", [(c.MQTT_311, 5), (c.MQTT_5, 0x87)])
def test_bad_token_is_refused_not_authorized(port, level, refused):
    raw = RawClient(port, level)
    assert raw.connect("not-a-token") == refused
    assert raw.closed()


@pytest.mark.parametrize("level, refused", [(c.MQTT_311, 4), (c.MQTT_5, 0x86)])
def test_empty_or_missing_username_is_bad_user_name_or_password(port, level, refused):
    """No access token at all: ThingsBoard answers "bad user name or password" (3.1.1 code 4,
    v5 0x86), with or without a password; an unknown token stays "not authorized"."""
    for username, password in ((None, None), ("", None), ("", b"secret")):
        raw = RawClient(port, level)
        assert raw.connect(username, password=password) == refused, (username, password)
        assert raw.closed()


def test_unsupported_protocol_level(port):
    raw = RawClient(port, 3)
    assert raw.connect("whatever") == c.V311_UNACCEPTABLE_PROTOCOL


def test_malformed_payload_v5_reason_0x99_nothing_stored(world, port):
    did, token = world.new_device("mqtt-bad-v5")
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token) == 0
    raw.publish("v1/devices/me/telemetry", b'{"a": 1, "b": ', packet_id=3)
    assert raw.puback() == (3, c.V5_PAYLOAD_FORMAT_INVALID)
    raw.publish("v1/devices/me/telemetry", b'{"ok": 1, "bad": NaN}', packet_id=4)
    assert raw.puback() == (4, c.V5_PAYLOAD_FORMAT_INVALID)
    raw.publish("v1/devices/me/attributes", b"[1, 2]", packet_id=5)
    assert raw.puback() == (5, c.V5_PAYLOAD_FORMAT_INVALID)
    raw.publish("v1/devices/me/telemetry", {"good": 2}, packet_id=6)  # the session goes on
    assert raw.puback() == (6, 0)
    raw.close()
    assert history(world, did, "ok") == [] and history(world, did, "a") == []
    assert [p["value"] for p in history(world, did, "good")] == [2]


def test_malformed_payload_311_closes_session_nothing_stored(world, port):
    did, token = world.new_device("mqtt-bad-311")
    raw = RawClient(port, c.MQTT_311)
    assert raw.connect(token) == 0
    raw.publish("v1/devices/me/telemetry", {"before": 1}, packet_id=1)
    raw.publish("v1/devices/me/telemetry", b'{"x": 1, "y": "unterminated', packet_id=2)
    assert raw.puback() == (1, 0)  # the earlier message is still acknowledged
    assert raw.closed()
    assert history(world, did, "x") == [] and len(history(world, did, "before")) == 1
    deadline = time.time() + 10  # the server's log reaches us through a pipe and a reader thread
    while not any("closing session" in line and "Invalid JSON" in line for line in world.server.output):
        assert time.time() < deadline, "the session's close was not logged"
        time.sleep(0.05)


def test_oversized_payload(world, port):
    did, token = world.new_device("mqtt-big")
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token) == 0
    big = b'{"s": "' + b"x" * (1 << 20) + b'"}'
    raw.publish("v1/devices/me/telemetry", big, packet_id=9)
    pid, reason = raw.puback()
    assert (pid, reason) == (9, c.V5_QUOTA_EXCEEDED)
    raw.close()
    assert history(world, did, "s") == []
    # beyond the packet limit: the session is ended with DISCONNECT 0x95 before the body is read
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token) == 0
    raw.sock.sendall(bytes([0x32]) + c.encode_varint(10 << 20))
    first, body = raw.read()
    assert first >> 4 == c.DISCONNECT and body[0] == c.V5_PACKET_TOO_LARGE
    assert raw.closed()


def test_subscribe_rpc_ping_and_me_topics_never_cross(world, port):
    """Each session's ``me`` is its own device: B's RPC answer never reaches A, data stays apart."""
    did_a, token_a = world.new_device("mqtt-me-a")
    did_b, token_b = world.new_device("mqtt-me-b")
    a, b = RawClient(port, c.MQTT_5), RawClient(port, c.MQTT_311)
    assert a.connect(token_a, "same-id") == 0 and b.connect(token_b, "same-id") == 0
    topics = [
        ("v1/devices/me/attributes", 1),
        ("v1/devices/me/attributes/response/+", 1),
        ("v1/devices/me/rpc/request/+", 1),
        ("v1/devices/me/rpc/response/+", 1),
    ]
    for raw in (a, b):
        raw.sock.sendall(c.encode_subscribe(raw.level, 11, topics))
        first, body = raw.read()
        assert first >> 4 == c.SUBACK and int.from_bytes(body[:2], "big") == 11
        assert body[-4:] == bytes([1, 1, 1, 1])
    b.publish("v1/devices/me/rpc/request/1", {"method": "getSessionLimits", "params": {}}, packet_id=2)
    first, body = b.read()
    assert first >> 4 == c.PUBLISH
    topic_len = int.from_bytes(body[:2], "big")
    assert body[2 : 2 + topic_len] == b"v1/devices/me/rpc/response/1"
    assert "rateLimits" in json.loads(body[2 + topic_len :])
    assert b.puback() == (2, 0)
    a.publish("v1/devices/me/telemetry", {"who": 1}, packet_id=5)
    b.publish("v1/devices/me/telemetry", {"who": 2}, packet_id=5)
    assert a.puback() == (5, 0) and b.puback() == (5, 0)
    a.publish("v1/devices/me/attributes", {"fw": "v9", "mode": "eco"}, packet_id=6)
    assert a.puback() == (6, 0)
    a.publish("v1/devices/me/attributes/request/7", {"clientKeys": "fw"}, packet_id=8)
    first, body = a.read()
    topic_len = int.from_bytes(body[:2], "big")
    assert body[2 : 2 + topic_len] == b"v1/devices/me/attributes/response/7"
    assert json.loads(body[2 + topic_len + 1 :]) == {"client": {"fw": "v9"}}  # +1: v5 properties
    assert a.puback() == (8, 0)
    a.sock.sendall(bytes([c.PINGREQ << 4, 0]))
    assert a.read()[0] >> 4 == c.PINGRESP  # A got no RPC answer before its PINGRESP
    assert [p["value"] for p in history(world, did_a, "who")] == [1]
    assert [p["value"] for p in history(world, did_b, "who")] == [2]
    a.sock.sendall(bytes([c.DISCONNECT << 4, 0]))
    assert a.closed()
    b.close()


def test_gateway_connect_and_telemetry_create_owned_devices(world, port):
    r = world.admin.post(
        "/api/device", json={"name": "mqtt-gw", "type": "gateway", "additionalInfo": {"gateway": True}}
    )
    assert r.status_code == 200, r.text
    gw_id = r.json()["id"]["id"]
    token = world.admin.get(f"/api/device/{gw_id}/credentials").json()["credentialsId"]
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token) == 0
    raw.publish("v1/gateway/connect", {"device": "GW Device A", "type": "thermometer"}, packet_id=1)
    assert raw.puback() == (1, 0)
    raw.publish(
        "v1/gateway/telemetry",
        {
            "GW Device A": [{"ts": 1_700_000_000_000, "values": {"temp": 21}}, {"hum": 40}],
            "GW Device B": [{"ts": 1_700_000_000_000, "values": {"temp": 19.5}}],
        },
        packet_id=2,
    )
    assert raw.puback() == (2, 0)
    raw.publish("v1/gateway/telemetry", {"GW Device A": {"temp": 1}}, packet_id=3)  # not an array
    assert raw.puback() == (3, c.V5_PAYLOAD_FORMAT_INVALID)
    raw.close()
    devices = {}
    for name in ("GW Device A", "GW Device B"):
        d = world.admin.get(f"/api/tenant/devices?deviceName={name}").json()
        devices[name] = d
        assert d["additionalInfo"]["lastConnectedGateway"] == gw_id
    assert devices["GW Device A"]["type"] == "thermometer"
    a_id = devices["GW Device A"]["id"]["id"]
    assert [p["value"] for p in history(world, a_id, "temp")] == [21]
    assert len(history(world, a_id, "hum")) == 1
    b_id = devices["GW Device B"]["id"]["id"]
    assert [p["value"] for p in history(world, b_id, "temp")] == [19.5]


def test_gateway_topics_need_a_gateway_device(world, port):
    _, token = world.new_device("mqtt-not-gw")
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token) == 0
    raw.publish("v1/gateway/telemetry", {"Sneaky": [{"v": 1}]}, packet_id=1)
    assert raw.puback() == (1, c.V5_NOT_AUTHORIZED)
    raw.close()
    assert world.admin.get("/api/tenant/devices?deviceName=Sneaky").status_code == 404


def test_qos2_exactly_once_with_resends(world, port):
    """PUBREC after the write; a resend before PUBREL is answered but not stored again; PUBREL
    gets PUBCOMP (v5: 0x92 for an unknown id); a refused QoS 2 publish gets its reason on PUBREC."""
    did, token = world.new_device("mqtt-qos2")
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token) == 0
    raw.publish("v1/devices/me/telemetry", {"once": 1}, qos=2, packet_id=7)
    assert raw.puback(c.PUBREC) == (7, 0)
    assert [p["value"] for p in history(world, did, "once")] == [1]  # durable at PUBREC
    raw.publish("v1/devices/me/telemetry", {"once": 2}, qos=2, packet_id=7, dup=True)
    assert raw.puback(c.PUBREC) == (7, 0)
    raw.pubrel(7)
    assert raw.puback(c.PUBCOMP) == (7, 0)
    raw.pubrel(7)  # already released
    assert raw.puback(c.PUBCOMP) == (7, c.V5_PACKET_ID_NOT_FOUND)
    raw.publish("v1/devices/me/telemetry", {"once": 3}, qos=2, packet_id=7)  # id reused: new
    assert raw.puback(c.PUBREC) == (7, 0)
    raw.pubrel(7)
    assert raw.puback(c.PUBCOMP) == (7, 0)
    raw.publish("v1/devices/me/telemetry", b'{"once": ', qos=2, packet_id=8)
    assert raw.puback(c.PUBREC) == (8, c.V5_PAYLOAD_FORMAT_INVALID)
    raw.close()
    assert sorted(p["value"] for p in history(world, did, "once")) == [1, 3]
    # MQTT 3.1.1: the same flow without reason codes
    did, token = world.new_device("mqtt-qos2-311")
    raw = RawClient(port, c.MQTT_311)
    assert raw.connect(token) == 0
    raw.publish("v1/devices/me/attributes", {"mode": "eco"}, qos=2, packet_id=1)
    raw.publish("v1/devices/me/attributes", {"mode": "eco"}, qos=2, packet_id=1, dup=True)
    assert raw.puback(c.PUBREC) == (1, 0) and raw.puback(c.PUBREC) == (1, 0)
    raw.pubrel(1)
    assert raw.puback(c.PUBCOMP) == (1, 0)
    raw.close()


def test_retain_flag(world, port):
    """MQTT 5 advertises Retain Available = 0 and ends a session that retains anyway (0x9A,
    nothing stored); MQTT 3.1.1 cannot be told, so the flag is ignored and the data stored."""
    did, token = world.new_device("mqtt-retain")
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token) == 0
    assert bytes([c.PROP_RETAIN_AVAILABLE, 0]) in raw.connack_body
    raw.publish("v1/devices/me/telemetry", {"kept5": 1}, qos=1, packet_id=1, retain=True)
    first, body = raw.read()
    assert first >> 4 == c.DISCONNECT and body[0] == c.V5_RETAIN_NOT_SUPPORTED
    assert b"retained messages are not supported" in body
    assert raw.closed()
    raw = RawClient(port, c.MQTT_311)
    assert raw.connect(token) == 0
    raw.publish("v1/devices/me/telemetry", {"kept311": 1}, qos=1, packet_id=1, retain=True)
    assert raw.puback() == (1, 0)
    raw.close()
    assert history(world, did, "kept5") == []
    assert [p["value"] for p in history(world, did, "kept311")] == [1]


def _attributes(world, device_id: str) -> dict:
    r = world.admin.get(f"/api/plugins/telemetry/DEVICE/{device_id}/values/attributes/CLIENT_SCOPE")
    assert r.status_code == 200, r.text
    return {a["key"]: a["value"] for a in r.json()}


def _eventually(check, timeout: float = 20):
    """Poll ``check`` until it is truthy (the will is stored after the server sees the close)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("level", [c.MQTT_311, c.MQTT_5])
def test_will_stored_when_the_session_ends_abnormally(world, port, level):
    did, token = world.new_device(f"mqtt-will-{level}")
    will = c.Will("v1/devices/me/attributes", b'{"online": false}', 1)
    raw = RawClient(port, level)
    assert raw.connect(token, will=will) == 0
    raw.publish("v1/devices/me/attributes", {"online": True}, packet_id=1)
    assert raw.puback() == (1, 0)
    assert _attributes(world, did) == {"online": True}
    raw.close()  # no DISCONNECT: the network "failed"
    _eventually(lambda: _attributes(world, did) == {"online": False})
    # a normal DISCONNECT discards the will; MQTT 5 "disconnect with will message" (0x04) keeps
    # it. The server closes the socket only after the will (if any) is stored, so no waiting.
    for reason, stored in ((0, 0), (c.V5_DISCONNECT_WITH_WILL, 1)):
        if reason and level != c.MQTT_5:
            continue
        raw = RawClient(port, level)
        assert raw.connect(token, will=c.Will("v1/devices/me/telemetry", b'{"bye": 1}')) == 0
        raw.sock.sendall(c.disconnect(level, reason))
        assert raw.closed()
        assert len(history(world, did, "bye")) == stored


def test_wills_that_cannot_be_stored(world, port):
    """MQTT 5 refuses a retained will or a bad will payload with the reason, and is told in the
    CONNACK when a will on a non-device topic is ignored; MQTT 3.1.1 connects and logs why."""
    did, token = world.new_device("mqtt-will-bad")
    cases = [
        (c.Will("v1/devices/me/attributes", b'{"a": 1}', 0, True), c.V5_RETAIN_NOT_SUPPORTED),
        (c.Will("v1/devices/me/telemetry", b'{"a": '), c.V5_PAYLOAD_FORMAT_INVALID),
    ]
    for will, code in cases:
        raw = RawClient(port, c.MQTT_5)
        assert raw.connect(token, will=will) == code
        assert raw.closed()
    raw = RawClient(port, c.MQTT_5)
    assert raw.connect(token, will=c.Will("devices/x/status", b"offline")) == 0
    assert b"will on 'devices/x/status' ignored" in raw.connack_body
    raw.close()
    for will, _ in cases[1:]:  # 3.1.1: retain is ignored; bad wills are dropped (logged)
        raw = RawClient(port, c.MQTT_311)
        assert raw.connect(token, will=will) == 0
        raw.close()
    raw = RawClient(port, c.MQTT_311)  # the session's own data still flows after such a will
    assert raw.connect(token, will=cases[0][0]) == 0
    raw.publish("v1/devices/me/telemetry", {"after": 1}, packet_id=1)
    assert raw.puback() == (1, 0)
    raw.close()
    _eventually(lambda: _attributes(world, did) == {"a": 1})  # the 3.1.1 will with retain set
    assert any("will dropped" in line and "Invalid JSON" in line for line in world.server.output)


@pytest.mark.parametrize("qos", [1, 2])
def test_acknowledged_messages_survive_kill(tmp_path, qos):
    """SIGKILL right after the PUBACKs (QoS 2: PUBRECs): every acknowledged message is on disk
    after restart."""
    data = tmp_path / "data"
    cli("init", "--data", str(data), "--admin-email", ADMIN[0], "--admin-password", ADMIN[1])
    server = ServerProcess(data).start()
    try:
        admin = Api.login(server.url, *ADMIN)
        did = admin.post("/api/device", json={"name": "kill-me"}).json()["id"]["id"]
        token = admin.get(f"/api/device/{did}/credentials").json()["credentialsId"]
        raw = RawClient(server.mqtt_port, c.MQTT_311)
        assert raw.connect(token) == 0
        n = 300
        for i in range(1, n + 1):
            raw.publish(
                "v1/devices/me/telemetry", {"ts": 1_700_000_000_000 + i, "values": {"seq": i}}, qos=qos, packet_id=i
            )
        acked = [raw.puback(c.PUBACK if qos == 1 else c.PUBREC)[0] for _ in range(n)]
        server.kill()
        assert acked == list(range(1, n + 1))  # in order, all of them
    finally:
        server.stop()
    server = ServerProcess(data).start()
    try:
        admin = Api.login(server.url, *ADMIN)
        r = admin.get(
            f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries?keys=seq&startTs=0&endTs=9999999999999&limit=10000"
        )
        assert sorted(int(p["value"]) for p in r.json()["seq"]) == list(range(1, n + 1))
    finally:
        server.stop()


def test_limit_options_parse_and_help():
    from tbpanel.cli import build_parser
    from tbpanel.transports.mqtt import MqttLimits

    parser = build_parser()
    a = parser.parse_args(["serve"])
    assert (a.mqtt_max_sessions, a.mqtt_max_rate, a.mqtt_max_payload) == (None, None, None)
    for text, size in (("65536", 65536), ("64KiB", 65536), ("64k", 65536), ("1M", 1 << 20), ("2 MiB", 2 << 20)):
        assert parser.parse_args(["serve", "--mqtt-max-payload", text]).mqtt_max_payload == size
    for bad in (
        ["--mqtt-max-payload", "0"],
        ["--mqtt-max-payload", "lots"],
        ["--mqtt-max-payload", "300MiB"],
        ["--mqtt-max-payload", "1GiB"],
        ["--mqtt-max-rate", "0"],
        ["--mqtt-max-sessions", "two"],
    ):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(["serve", *bad])
        assert info.value.code == 2
    text = " ".join(cli("serve", "--help").stdout.split())
    defaults = MqttLimits()
    assert f"at once (default: {defaults.max_sessions_per_device})" in text
    assert f"worth (default: {defaults.messages_per_second:g})" in text
    assert "(default: 1MiB, the HTTP body limit)" in text
    r = cli("serve", "--mqtt-max-payload", "9GB", check=False)
    assert r.returncode == 2 and "--mqtt-max-payload" in r.stderr


def test_per_device_limits_from_the_command_line(tmp_path):
    """``serve --mqtt-max-sessions 1 --mqtt-max-rate 5 --mqtt-max-payload 64``: each limit is
    enforced with its reason, and getSessionLimits reports them."""
    data = tmp_path / "data"
    cli("init", "--data", str(data), "--admin-email", ADMIN[0], "--admin-password", ADMIN[1])
    server = ServerProcess(
        data, extra=("--mqtt-max-sessions", "1", "--mqtt-max-rate", "5", "--mqtt-max-payload", "64")
    ).start()
    try:
        assert any("1 sessions, 5 messages/s, 64-byte payloads" in line for line in server.output)
        admin = Api.login(server.url, *ADMIN)
        tokens, ids = [], []
        for name in ("limited-a", "limited-b"):
            did = admin.post("/api/device", json={"name": name}).json()["id"]["id"]
            ids.append(did)
            tokens.append(admin.get(f"/api/device/{did}/credentials").json()["credentialsId"])
        a = RawClient(server.mqtt_port, c.MQTT_5)
        assert a.connect(tokens[0], "a1") == 0
        for level, refused in ((c.MQTT_5, c.V5_QUOTA_EXCEEDED), (c.MQTT_311, c.V311_SERVER_UNAVAILABLE)):
            second = RawClient(server.mqtt_port, level)
            assert second.connect(tokens[0], "a2") == refused  # one session per device
            assert second.closed()
        # device A: its session limits, then a payload over 64 bytes (2 of its 5 tokens)
        a.publish("v1/devices/me/rpc/request/1", {"method": "getSessionLimits"}, packet_id=1)
        first, body = a.read()
        topic_len = int.from_bytes(body[:2], "big")
        answer = json.loads(body[2 + topic_len + 1 :])
        assert answer["maxPayloadSize"] == 64 and answer["rateLimits"]["messages"] == "5:1"
        assert a.puback() == (1, 0)
        a.publish("v1/devices/me/telemetry", {"s": "x" * 80}, packet_id=2)
        first, body = a.read()
        assert first >> 4 == c.PUBACK and body[:3] == bytes([0, 2, c.V5_QUOTA_EXCEEDED])
        assert b"exceeds the limit of 64 bytes" in body
        a.close()
        # a will over the payload limit is refused at CONNECT (a will is a deferred publish)
        raw = RawClient(server.mqtt_port, c.MQTT_5)
        assert (
            raw.connect(tokens[1], "b0", c.Will("v1/devices/me/telemetry", json.dumps({"s": "x" * 80}).encode()))
            == c.V5_PACKET_TOO_LARGE
        )
        assert raw.closed()
        # device B: 30 publishes at once against 5 per second; the refused ones say why
        b = RawClient(server.mqtt_port, c.MQTT_5)
        assert b.connect(tokens[1], "b1") == 0
        b.sock.sendall(
            b"".join(
                c.publish(
                    c.MQTT_5,
                    "v1/devices/me/telemetry",
                    json.dumps({"ts": 1_700_000_000_000 + i, "values": {"n": i}}).encode(),
                    1,
                    i,
                )
                for i in range(1, 31)
            )
        )
        accepted, refused = [], []
        for _ in range(30):
            first, body = b.read()
            assert first >> 4 == c.PUBACK
            pid, reason = int.from_bytes(body[:2], "big"), body[2] if len(body) > 2 else 0
            if reason:
                assert reason == c.V5_QUOTA_EXCEEDED and b"rate limit of 5/s exceeded" in body
                refused.append(pid)
            else:
                accepted.append(pid)
        b.close()
        assert refused and 5 <= len(accepted) < 30
        r = admin.get(
            f"/api/plugins/telemetry/DEVICE/{ids[1]}/values/timeseries?keys=n&startTs=0&endTs=9999999999999&limit=100"
        )
        assert sorted(int(p["value"]) for p in r.json()["n"]) == sorted(accepted)
        r = admin.get(f"/api/plugins/telemetry/DEVICE/{ids[0]}/values/timeseries?keys=s&startTs=0&endTs=9999999999999")
        assert r.json().get("s", []) == []
    finally:
        server.stop()


def test_demo_simulator_posts_mqtt_devices_over_mqtt(world, port):
    """Fleet devices marked "transport": "mqtt" post through the MQTT session, the rest over HTTP."""
    from tbpanel.demo import FleetSimulator, load_fleet

    fleet = load_fleet()
    by_name = {d["name"]: d for d in fleet["devices"]}
    ids = {}
    for name in ("Pump P1", "Pump P2"):
        ids[name], token = world.new_device(f"sim {name}", "pump")
        by_name[name] = dict(by_name[name], token=token)
    fleet["devices"] = [by_name["Pump P1"], by_name["Pump P2"]]
    assert "transport" not in by_name["Pump P1"] and by_name["Pump P2"]["transport"] == "mqtt"
    sim = FleetSimulator(None, world.url, fleet=fleet, mqtt_port=port)
    try:
        sim.post_once()
        sim.post_once()
    finally:
        sim.stop()
    assert sim.posted == 12
    for name in ("Pump P1", "Pump P2"):
        assert len(history(world, ids[name], "pressure")) == 2
    assert any(f"device {ids['Pump P2']} connected (MQTT 3.1.1)" in line for line in world.server.output)
    assert not any(f"device {ids['Pump P1']} connected" in line for line in world.server.output)


def _paho(port: int, version: str, token: str | None):
    """A connected-or-refused paho client: (client, CONNACK reason code value)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"paho-x-{version}",
        protocol=mqtt.MQTTv311 if version == "311" else mqtt.MQTTv5,
    )
    if token is not None:
        client.username_pw_set(token)
    result: list[int] = []
    done = threading.Event()

    def on_connect(_c, _u, _flags, reason, _props):
        result.append(reason.value)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(20)
    return client, result[0]


@pytest.mark.parametrize("version", ["311", "5"])
def test_paho_bad_token_and_no_username(port, version):
    """paho reports a wrong token as "Not authorized" (it maps 3.1.1's CONNACK 5 to 0x87) and no
    username as "Bad user name or password" (CONNACK 4 to 0x86); the wire values are checked
    with the raw client above."""
    for token, expected in (("wrong-token", 0x87), (None, 0x86), ("", 0x86)):
        client, code = _paho(port, version, token)
        client.loop_stop()
        client.disconnect()
        assert code == expected, token


def test_paho_v5_malformed_payload_and_gateway(world, port):
    r = world.admin.post(
        "/api/device", json={"name": "paho-gw", "type": "gateway", "additionalInfo": {"gateway": True}}
    )
    gw_id = r.json()["id"]["id"]
    token = world.admin.get(f"/api/device/{gw_id}/credentials").json()["credentialsId"]
    client, code = _paho(port, "5", token)
    acks: dict[int, int] = {}
    got = threading.Condition()

    def on_publish(_c, _u, mid, reason, _props):
        with got:
            acks[mid] = reason.value
            got.notify_all()

    client.on_publish = on_publish
    try:
        assert code == 0
        bad = client.publish("v1/devices/me/telemetry", b'{"t": ', qos=1).mid
        bad2 = client.publish("v1/devices/me/telemetry", b'{"t": ', qos=2).mid
        good = client.publish(
            "v1/gateway/telemetry",
            json.dumps({"Paho GW child": [{"ts": 1_700_000_000_000, "values": {"t": 5}}]}),
            qos=1,
        ).mid
        with got:
            assert got.wait_for(lambda: {bad, bad2, good} <= set(acks), 20)
        assert (acks[bad], acks[good]) == (c.V5_PAYLOAD_FORMAT_INVALID, 0)
        # paho ignores PUBREC's reason (0x99, checked with the raw client) and sends PUBREL
        # anyway; that exchange had ended, so its PUBCOMP says "packet identifier not found"
        assert acks[bad2] == c.V5_PACKET_ID_NOT_FOUND
    finally:
        client.loop_stop()
        client.disconnect()
    child = world.admin.get("/api/tenant/devices?deviceName=Paho GW child").json()
    assert [p["value"] for p in history(world, child["id"]["id"], "t")] == [5]
    assert history(world, gw_id, "t") == []

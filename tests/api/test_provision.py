"""Device provisioning (ThingsBoard's onboarding): ``POST /api/v1/provision`` and the MQTT
provision-only session, with curl-like requests, paho-mqtt 2.x and tb-mqtt-client's own
``TBDeviceMqttClient.provision`` (in its virtualenv)."""

from __future__ import annotations

import json
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
import requests

from tbpanel.transports import mqtt_codec as c
from tests.helpers.clients_venv import run_client_script
from tests.helpers.mqtt import RawClient

pytestmark = pytest.mark.usefixtures("no_server_errors")
NOT_FOUND = {"status": "NOT_FOUND", "errorMsg": "Provision data was not found!"}
FAILURE = {"status": "FAILURE", "errorMsg": "Failed to provision device!"}


def profile(world, provision_type: str, api=None) -> tuple[dict, str, str]:
    key, secret = f"key-{uuid.uuid4().hex}", f"secret-{uuid.uuid4().hex}"
    r = (api or world.admin).post(
        "/api/deviceProfile",
        json={
            "name": f"prov-{uuid.uuid4().hex[:8]}",
            "provisionType": provision_type,
            "provisionDeviceKey": key,
            "profileData": {"provisionConfiguration": {"type": provision_type, "provisionDeviceSecret": secret}},
        },
    )
    assert r.status_code == 200, r.text
    return r.json(), key, secret


def provision(world, body) -> dict:
    r = requests.post(f"{world.url}/api/v1/provision", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def telemetry_ok(world, token: str) -> bool:
    return requests.post(f"{world.url}/api/v1/{token}/telemetry", json={"p": 1}, timeout=30).status_code == 200


def test_allow_create_new_devices(world):
    p, key, secret = profile(world, "ALLOW_CREATE_NEW_DEVICES")
    name = f"prov-new-{uuid.uuid4().hex[:6]}"
    answer = provision(world, {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret})
    assert answer["status"] == "SUCCESS" and answer["credentialsType"] == "ACCESS_TOKEN"
    assert telemetry_ok(world, answer["credentialsValue"])
    device = world.admin.get("/api/tenant/device", params={"deviceName": name}).json()
    assert device["deviceProfileId"] == p["id"] and device["type"] == p["name"]
    attrs = world.admin.get(f"/api/plugins/telemetry/DEVICE/{device['id']['id']}/values/attributes/SERVER_SCOPE").json()
    assert {"key": "provisionState", "value": "provisioned"} in [{k: a[k] for k in ("key", "value")} for a in attrs]
    # the same name again: ThingsBoard refuses ("could not be provisioned once more")
    assert provision(world, {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret}) == FAILURE
    # an existing device of another profile, too
    assert (
        provision(world, {"deviceName": "dev-a1", "provisionDeviceKey": key, "provisionDeviceSecret": secret})
        == FAILURE
    )
    # no name: a generated one; a device-chosen token is kept
    token = f"own-{uuid.uuid4().hex[:10]}"
    answer = provision(
        world,
        {"provisionDeviceKey": key, "provisionDeviceSecret": secret, "credentialsType": "ACCESS_TOKEN", "token": token},
    )
    assert answer["status"] == "SUCCESS" and answer["credentialsValue"] == token and telemetry_ok(world, token)
    creds = {
        "provisionDeviceKey": key,
        "provisionDeviceSecret": secret,
        "deviceName": "x",
        "credentialsType": "MQTT_BASIC",
    }
    assert provision(world, creds) == FAILURE


def test_check_pre_provisioned_devices(world):
    p, key, secret = profile(world, "CHECK_PRE_PROVISIONED_DEVICES")
    name = f"pre-{uuid.uuid4().hex[:6]}"
    body = {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret}
    assert provision(world, body) == FAILURE  # not pre-provisioned yet
    d = world.admin.post("/api/device", json={"name": name, "deviceProfileId": p["id"]}).json()
    token = world.admin.get(f"/api/device/{d['id']['id']}/credentials").json()["credentialsId"]
    answer = provision(world, body)
    assert answer == {"status": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "credentialsValue": token}
    assert provision(world, body) == FAILURE  # provisioned once already
    other = world.admin.post("/api/device", json={"name": name + "-other"}).json()  # default profile
    assert provision(world, dict(body, deviceName=other["name"])) == FAILURE


def test_not_found_answers(world):
    p, key, secret = profile(world, "ALLOW_CREATE_NEW_DEVICES")
    for body in (
        {},
        {"provisionDeviceKey": key},
        {"provisionDeviceKey": key, "provisionDeviceSecret": "wrong"},
        {"provisionDeviceKey": "no-such-key", "provisionDeviceSecret": secret},
        {"provisionDeviceKey": 5, "provisionDeviceSecret": [secret]},
    ):
        assert provision(world, dict(body, deviceName="nf")) == NOT_FOUND, body
    disabled = world.admin.post("/api/deviceProfile", json=dict(p, provisionType="DISABLED", profileData=None)).json()
    assert disabled["provisionType"] == "DISABLED"
    assert (
        provision(world, {"deviceName": "nf", "provisionDeviceKey": key, "provisionDeviceSecret": secret}) == NOT_FOUND
    )
    for raw in (b"", b"{bad", b"[1]"):
        r = requests.post(f"{world.url}/api/v1/provision", data=raw, timeout=30)
        assert r.status_code == 400 and r.json()["message"]
    assert world.admin.get("/api/tenant/device", params={"deviceName": "nf"}).status_code == 404


def test_keys_never_cross_tenants(world):
    """A key of tenant B creates devices in tenant B only."""
    _, key, secret = profile(world, "ALLOW_CREATE_NEW_DEVICES", api=world.other_admin)
    name = f"b-prov-{uuid.uuid4().hex[:6]}"
    assert (
        provision(world, {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret})["status"]
        == "SUCCESS"
    )
    assert world.other_admin.get("/api/tenant/device", params={"deviceName": name}).status_code == 200
    assert world.admin.get("/api/tenant/device", params={"deviceName": name}).status_code == 404


@pytest.fixture(scope="module")
def port(world) -> int:
    assert world.server.mqtt_port
    return world.server.mqtt_port


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_mqtt_provision_with_paho(world, port, version):
    _, key, secret = profile(world, "ALLOW_CREATE_NEW_DEVICES")
    name = f"mqtt-prov-{version}-{uuid.uuid4().hex[:6]}"
    got: list[dict] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}", protocol=version)
    client.username_pw_set("provision")

    def on_connect(cl, _u, _f, rc, _p=None):
        assert rc == 0
        cl.subscribe("/provision/response", qos=1)
        cl.publish(
            "/provision/request",
            json.dumps({"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret}),
            qos=1,
        )

    def on_message(_cl, _u, msg):
        got.append(json.loads(msg.payload))
        done.set()

    client.on_connect, client.on_message = on_connect, on_message
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    try:
        assert done.wait(20), "no provisioning answer"
    finally:
        client.disconnect()
        client.loop_stop()
    assert got[0]["status"] == "SUCCESS" and telemetry_ok(world, got[0]["credentialsValue"])
    assert world.admin.get("/api/tenant/device", params={"deviceName": name}).status_code == 200


def test_mqtt_provision_session_is_provision_only(world, port):
    for level in (c.MQTT_311, c.MQTT_5):
        raw = RawClient(port, level)
        assert raw.connect("provision") == 0
        raw.sock.sendall(c.encode_subscribe(level, 3, [("v1/devices/me/rpc/request/+", 1), ("/provision/response", 1)]))
        first, body = raw.read()
        assert first >> 4 == c.SUBACK
        codes = body[2:] if level == c.MQTT_311 else body[3:]
        assert codes[0] >= 0x80 and codes[1] == 1
        raw.publish("/provision/request", b"not json", qos=1, packet_id=7)
        assert raw.puback() == (7, 0)
        first, body = raw.read()
        assert first >> 4 == c.PUBLISH and b"/provision/response" in body and b"NOT_FOUND" in body
        raw.publish("v1/devices/me/telemetry", {"t": 1}, qos=1, packet_id=8)
        with pytest.raises(ConnectionError):  # anything else ends the session
            while True:
                first, body = raw.read()
                assert first >> 4 in (c.PUBACK, c.DISCONNECT)
        raw.sock.close()


TB_PROVISION = r"""
import json, sys
from tb_device_mqtt import TBDeviceMqttClient
port, key, secret, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
creds = TBDeviceMqttClient.provision("127.0.0.1", key, secret, port=port, device_name=name)
out = {"creds": creds}
if creds:
    client = TBDeviceMqttClient("127.0.0.1", port=port, username=creds["credentialsValue"])
    client.connect()
    out["telemetry"] = client.send_telemetry({"provisioned": 1}).get()
    client.disconnect()
print("RESULT " + json.dumps(out))
"""


def test_tb_mqtt_client_provision(world, port, tb_client_python, tmp_path):
    _, key, secret = profile(world, "ALLOW_CREATE_NEW_DEVICES")
    name = f"tb-prov-{uuid.uuid4().hex[:6]}"
    out = run_client_script(tb_client_python, TB_PROVISION, str(port), key, secret, name, cwd=tmp_path, timeout=120)
    assert out["creds"]["status"] == "SUCCESS" and out["telemetry"] == 0
    device = world.admin.get("/api/tenant/device", params={"deviceName": name}).json()
    latest = world.admin.get(
        f"/api/plugins/telemetry/DEVICE/{device['id']['id']}/values/timeseries?keys=provisioned"
    ).json()
    assert latest["provisioned"][0]["value"] == "1"


def test_tb_rest_client_provision_device(world):
    from tb_rest_client.rest_client import RestClient

    _, key, secret = profile(world, "ALLOW_CREATE_NEW_DEVICES")
    client = RestClient(base_url=world.url)
    client.login("admin@tenant-a.test", "admin-a-pass")
    try:
        answer = client.provision_device(
            body={
                "deviceName": f"rc-prov-{uuid.uuid4().hex[:6]}",
                "provisionDeviceKey": key,
                "provisionDeviceSecret": secret,
            }
        )
    finally:
        client.stop()
    assert answer["status"] == "SUCCESS"

"""Server-side RPC REST API against a real server, with a paho device on MQTT: one-way and
two-way on both route families, 408, 409, persistent life cycle, list, delete, who may do it,
and tb-rest-client 4.4's RPC methods."""

from __future__ import annotations

import json
import time

import pytest
from tb_rest_client.models.device_id import DeviceId
from tb_rest_client.models.rpc_id import RpcId
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client import RestClient

from tests.helpers import ADMIN, CUSTOMER_USER
from tests.helpers.rpc_device import PahoRpcDevice

pytestmark = pytest.mark.usefixtures("no_server_errors")

FAMILIES = ["/api/rpc", "/api/plugins/rpc"]


@pytest.fixture(scope="module")
def port(world) -> int:
    assert world.server.mqtt_port
    return world.server.mqtt_port


def wait_status(api, rpc_id: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.get(f"/api/rpc/persistent/{rpc_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] == status:
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"never {status}: {r.json()}")


@pytest.mark.parametrize("family", FAMILIES)
def test_two_way_and_one_way_reach_a_connected_device(world, port, family):
    did, token = world.new_device(f"rpc-rest-{family.count('/')}")
    with PahoRpcDevice(port, token) as dev:
        r = world.admin.post(f"{family}/twoway/{did}", json={"method": "setGpio", "params": {"pin": 7}})
        assert r.status_code == 200, r.text
        assert r.json() == {"echo": "setGpio", "params": {"pin": 7}}
        r = world.admin.post(f"{family}/oneway/{did}", json={"method": "blink", "params": {}})
        assert r.status_code == 200 and r.text == ""
        methods = [dev.requests.get(timeout=10)[1]["method"] for _ in range(2)]
        assert methods == ["setGpio", "blink"]


def test_not_connected_is_409_and_no_answer_is_408(world, port):
    did, token = world.new_device("rpc-rest-408")
    r = world.admin.post(f"/api/rpc/twoway/{did}", json={"method": "x", "params": {}})
    assert r.status_code == 409, r.text
    assert "not connected" in r.json()["message"]
    with PahoRpcDevice(port, token, answer=None) as dev:
        r = world.admin.post(f"/api/rpc/twoway/{did}", json={"method": "silent", "params": {}, "timeout": 300})
        assert r.status_code == 408, r.text
        assert r.json()["status"] == 408
        assert dev.requests.get(timeout=10)[1]["method"] == "silent"
    time.sleep(0.3)  # the session is gone: 409 again
    assert world.admin.post(f"/api/rpc/oneway/{did}", json={"method": "x"}).status_code == 409


def test_short_topics_get_requests_on_v2(world, port):
    did, token = world.new_device("rpc-rest-short")
    with PahoRpcDevice(port, token, short=True) as dev:
        r = world.admin.post(f"/api/rpc/twoway/{did}", json={"method": "short", "params": 1})
        assert r.status_code == 200 and r.json() == {"echo": "short", "params": 1}
        assert dev.requests.get(timeout=10)[1] == {"method": "short", "params": 1}


def test_persistent_life_cycle_list_and_delete(world, port):
    did, token = world.new_device("rpc-rest-persistent")
    r = world.admin.post(
        f"/api/rpc/twoway/{did}", json={"method": "config", "params": {"a": 1}, "persistent": True, "timeout": 60_000}
    )
    assert r.status_code == 200, r.text
    rpc_id = r.json()["rpcId"]
    got = wait_status(world.admin, rpc_id, "QUEUED")
    assert got["id"] == {"entityType": "RPC", "id": rpc_id} and got["deviceId"]["id"] == did
    assert got["request"]["body"] == {"method": "config", "params": '{"a":1}'}
    doomed = world.admin.post(
        f"/api/rpc/oneway/{did}", json={"method": "doomed", "persistent": True, "timeout": 60_000}
    ).json()["rpcId"]
    assert world.admin.delete(f"/api/rpc/persistent/{doomed}").status_code == 200
    assert world.admin.get(f"/api/rpc/persistent/{doomed}").status_code == 404
    with PahoRpcDevice(port, token) as dev:
        assert dev.requests.get(timeout=10)[1]["method"] == "config"  # the deleted one never comes
        done = wait_status(world.admin, rpc_id, "SUCCESSFUL")
        assert done["response"] == {"echo": "config", "params": {"a": 1}}
        assert dev.requests.empty()
    one = world.admin.post(f"/api/rpc/oneway/{did}", json={"method": "later", "persistent": True}).json()["rpcId"]
    page = world.admin.get(f"/api/rpc/persistent/device/{did}?pageSize=10&page=0").json()
    assert page["totalElements"] == 2 and [x["id"]["id"] for x in page["data"]] == [one, rpc_id]
    page = world.admin.get(f"/api/rpc/persistent/device/{did}?pageSize=1&page=0&rpcStatus=SUCCESSFUL").json()
    assert (page["totalElements"], page["hasNext"], page["data"][0]["id"]["id"]) == (1, False, rpc_id)
    r = world.admin.get(f"/api/rpc/persistent/device/{did}?pageSize=10&page=0&rpcStatus=NOPE")
    assert r.status_code == 400 and "rpcStatus" in r.json()["message"]


def test_persistent_expires(world):
    did, _ = world.new_device("rpc-rest-expire")
    expiration = int(time.time() * 1000) + 500
    r = world.admin.post(
        f"/api/rpc/twoway/{did}", json={"method": "x", "persistent": True, "expirationTime": expiration}
    )
    wait_status(world.admin, r.json()["rpcId"], "EXPIRED")


def test_customer_users_only_for_their_devices(world, port):
    a1 = world.devices["dev-a1"]["id"]["id"]
    a2 = world.devices["dev-a2"]["id"]["id"]
    assert world.customer.post(f"/api/rpc/twoway/{a1}", json={"method": "x"}).status_code == 409
    assert world.customer.post(f"/api/rpc/twoway/{a2}", json={"method": "x"}).status_code == 403
    assert world.other_admin.post(f"/api/rpc/twoway/{a1}", json={"method": "x"}).status_code == 403
    rpc_id = world.admin.post(f"/api/rpc/oneway/{a2}", json={"method": "x", "persistent": True}).json()["rpcId"]
    for api in (world.customer, world.other_admin):
        assert api.get(f"/api/rpc/persistent/{rpc_id}").status_code == 403
        assert api.delete(f"/api/rpc/persistent/{rpc_id}").status_code == 403
        assert api.get(f"/api/rpc/persistent/device/{a2}?pageSize=10&page=0").status_code == 403
    assert world.other_customer.get(f"/api/rpc/persistent/{rpc_id}").status_code == 200
    assert world.anon.post(f"/api/rpc/twoway/{a1}", json={"method": "x"}).status_code == 401


def test_a_device_never_answers_another_devices_request(world, port):
    """Device B publishing on rpc/response/{the number A got} does not finish A's request."""
    did_a, token_a = world.new_device("rpc-rest-victim")
    _, token_b = world.new_device("rpc-rest-intruder")
    with PahoRpcDevice(port, token_a, answer=None) as victim, PahoRpcDevice(port, token_b, answer=None) as intruder:
        rpc_id = world.admin.post(
            f"/api/rpc/twoway/{did_a}", json={"method": "m", "persistent": True, "timeout": 60_000}
        ).json()["rpcId"]
        rid, _ = victim.requests.get(timeout=10)
        intruder.client.publish(f"v1/devices/me/rpc/response/{rid}", json.dumps({"forged": 1}), qos=1).wait_for_publish(
            10
        )
        time.sleep(0.3)
        assert world.admin.get(f"/api/rpc/persistent/{rpc_id}").json()["status"] in ("SENT", "DELIVERED")
        victim.client.publish(f"v1/devices/me/rpc/response/{rid}", json.dumps({"real": 1}), qos=1)
        assert wait_status(world.admin, rpc_id, "SUCCESSFUL")["response"] == {"real": 1}


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "empty"),
        (b"{", "Invalid JSON"),
        (b"[]", "JSON object"),
        (b'{"params": {}}', "'method' is required"),
        (b'{"method": "m", "timeout": -1}', "'timeout'"),
        (b'{"method": "m", "persistent": 1}', "'persistent'"),
    ],
)
def test_bad_bodies_are_400(world, body, message):
    did = world.devices["dev-tenant"]["id"]["id"]
    r = world.admin.post(f"/api/rpc/twoway/{did}", data=body)
    assert r.status_code == 400 and message in r.json()["message"], r.text


def test_tb_rest_client(world, port):
    did, token = world.new_device("rpc-tb-rest-client")
    client = RestClient(base_url=world.url)
    client.login(*ADMIN)
    try:
        device = DeviceId(did, "DEVICE")
        with pytest.raises(ApiException) as e:
            client.handle_two_way_device_rpc_request(device, {"method": "x", "params": {}})
        assert e.value.status == 409
        with PahoRpcDevice(port, token):
            assert client.handle_two_way_device_rpc_request(device, {"method": "v1", "params": {"p": 1}}) == {
                "echo": "v1",
                "params": {"p": 1},
            }
            body = json.dumps({"method": "v2", "params": 2})
            assert client.handle_two_way_device_rpc_request_v1(device, body) == {"echo": "v2", "params": 2}
            client.handle_one_way_device_rpc_request(device, json.dumps({"method": "o1", "params": {}}))
            client.handle_one_way_device_rpc_request_v1(device, json.dumps({"method": "o2", "params": {}}))
        queued = client.handle_two_way_device_rpc_request_v1(
            device, json.dumps({"method": "p", "params": {}, "persistent": True, "timeout": 60_000})
        )
        rpc_id = RpcId(queued["rpcId"], "RPC")
        rpc = client.get_persisted_rpc(rpc_id)
        assert rpc.id.id == queued["rpcId"] and str(getattr(rpc.status, "value", rpc.status)).endswith("QUEUED")
        page = client.get_persisted_rpc_by_device(device, 10, 0)
        assert page["totalElements"] == 1
        assert client.get_persisted_rpc_by_device(device, 10, 0, rpc_status="SUCCESSFUL")["totalElements"] == 0
        client.delete_rpc(rpc_id)
        with pytest.raises(ApiException) as e:
            client.get_persisted_rpc(rpc_id)
        assert e.value.status == 404
    finally:
        client.stop()


def test_customer_tb_rest_client(world):
    client = RestClient(base_url=world.url)
    client.login(*CUSTOMER_USER)
    try:
        with pytest.raises(ApiException) as e:
            client.handle_two_way_device_rpc_request(
                DeviceId(world.devices["dev-a2"]["id"]["id"], "DEVICE"), {"method": "x", "params": {}}
            )
        assert e.value.status == 403
    finally:
        client.stop()

"""Device claiming (issue 16 item 6) against a real server, with the real clients: the device
side over HTTP (requests and tb-rest-client), MQTT (paho-mqtt 2.x, 3.1.1 and 5) and CoAP
(aiocoap), and the customer side over REST (requests and tb-rest-client); plus the rules on an
in-process registry of two tenants (a customer user of another tenant never reaches the device).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import uuid

import pytest
import requests
from aiocoap import GET, POST, Context, Message
from aiocoap.numbers.codes import Code

from tbpanel.entities import EntityRegistry
from tbpanel.entities.claiming import (
    CLAIM_DATA_KEY,
    DEFAULT_DURATION_MS,
    ClaimResponse,
    claim_device,
    reclaim_device,
    register_claim,
)
from tbpanel.errors import Conflict, NotFound, PermissionDenied
from tests.helpers import ADMIN, CUSTOMER_USER, open_world
from tests.helpers.clients_venv import run_client_script

TIMEOUT = 30


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A server of this module's own: claims assign devices to the customers, which the
    session's shared world must not see (other modules count the customers' devices)."""
    w = open_world(tmp_path_factory.mktemp("claiming-data"))
    try:
        yield w
    finally:
        w.server.stop()


def fresh_device(world, prefix: str) -> tuple[str, str, str]:
    """A new device of tenant A, assigned to no customer: (id, access token, name)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    did, token = world.new_device(name)
    return did, token, name


def device_claims(world, token: str, body) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body)
    return requests.post(f"{world.url}/api/v1/{token}/claim", data=data, timeout=TIMEOUT)


def customer_claims(api, name: str, secret: str | None = None) -> requests.Response:
    return api.post(f"/api/customer/device/{name}/claim", json={} if secret is None else {"secretKey": secret})


NULL_UUID = "13814000-1dd2-11b2-8080-808080808080"  # ThingsBoard's "no customer"


def owner(world, did: str) -> str | None:
    cid = (world.admin.get(f"/api/device/{did}").json()["customerId"] or {}).get("id")
    return None if cid == NULL_UUID else cid


def claim_attribute(world, did: str) -> list:
    r = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/attributes/SERVER_SCOPE?keys={CLAIM_DATA_KEY}")
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------- HTTP device side
def test_http_claim_then_customer_claims_it(world):
    did, token, name = fresh_device(world, "claim-http")
    r = device_claims(world, token, {"secretKey": "s3cret-value", "durationMs": 60_000})
    assert r.status_code == 200 and r.content == b"", r.text
    stored = claim_attribute(world, did)
    assert len(stored) == 1 and "s3cret-value" not in json.dumps(stored)  # the secret is kept hashed
    r = customer_claims(world.customer, name, "s3cret-value")
    assert r.status_code == 200, r.text
    answer = r.json()
    a1 = world.customer_ids["Customer A1"]
    assert answer["response"] == "SUCCESS"
    assert answer["device"]["id"]["id"] == did and answer["device"]["customerId"]["id"] == a1
    assert owner(world, did) == a1
    assert world.customer.get(f"/api/device/{did}").status_code == 200  # now the customer's device
    assert claim_attribute(world, did) == []  # the claim is used up
    # a second claim, by the other customer of the tenant: ThingsBoard's 400 "CLAIMED"
    r = customer_claims(world.other_customer, name, "s3cret-value")
    assert r.status_code == 400 and r.json() == "CLAIMED", r.text
    assert owner(world, did) == a1


def test_wrong_secret_expired_or_no_claim_is_failure(world):
    did, token, name = fresh_device(world, "claim-fail")
    r = customer_claims(world.customer, name, "anything")
    assert r.status_code == 400 and r.json() == "FAILURE", r.text  # no claim yet
    assert device_claims(world, token, {"secretKey": "right"}).status_code == 200
    for wrong in ("wrong", "", "Right", "right "):
        r = customer_claims(world.customer, name, wrong)
        assert r.status_code == 400 and r.json() == "FAILURE", (wrong, r.text)
    assert owner(world, did) is None
    # an expired claim: 1 ms, then a little later
    assert device_claims(world, token, {"secretKey": "right", "durationMs": 1}).status_code == 200
    time.sleep(0.05)
    r = customer_claims(world.customer, name, "right")
    assert r.status_code == 400 and r.json() == "FAILURE", r.text
    assert owner(world, did) is None
    # the device claims again (a new claim replaces the old one): now it works
    assert device_claims(world, token, {"secretKey": "right", "durationMs": 60_000}).status_code == 200
    r = customer_claims(world.customer, name, "right")
    assert r.status_code == 200 and r.json()["response"] == "SUCCESS", r.text


def test_empty_secret_and_empty_bodies_are_the_defaults(world):
    """ThingsBoard: no secretKey is the empty secret; no durationMs is the default duration."""
    did, token, name = fresh_device(world, "claim-empty")
    r = requests.post(f"{world.url}/api/v1/{token}/claim", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    r = world.customer.post(f"/api/customer/device/{name}/claim")  # no body at all
    assert r.status_code == 200 and r.json()["response"] == "SUCCESS", r.text


def test_device_side_refusals(world):
    did, token, name = fresh_device(world, "claim-bad")
    assert device_claims(world, "no-such-token", {"secretKey": "x"}).status_code == 401
    for body in (b"{", b"[]", b'"x"', b'{"secretKey": 5}', b'{"durationMs": "soon"}', b'{"durationMs": true}'):
        r = device_claims(world, token, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["message"]
    bomb = gzip.compress(b'{"secretKey": "' + b"s" * (8 << 20) + b'"}')  # the device limit applies inflated
    r = requests.post(
        f"{world.url}/api/v1/{token}/claim", data=bomb, headers={"Content-Encoding": "gzip"}, timeout=TIMEOUT
    )
    assert r.status_code == 413 and "decompressed" in r.json()["message"], r.text
    r = requests.post(
        f"{world.url}/api/v1/{token}/claim",
        data=gzip.compress(b'{"secretKey": "zipped", "durationMs": 60000}'),
        headers={"Content-Encoding": "gzip"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    assert world.admin.delete(f"/api/customer/device/{name}/claim").status_code == 200  # drop it again
    r = device_claims(world, token, {"durationMs": 2**62})
    assert r.status_code == 400 and "9999" in r.json()["message"], r.text
    assert claim_attribute(world, did) == []
    # a device that already belongs to a customer: ThingsBoard's message
    r = device_claims(world, world.token("dev-a1"), {"secretKey": "x"})
    assert r.status_code == 400 and "has been already claimed" in r.json()["message"], r.text
    r = requests.get(f"{world.url}/api/v1/{token}/claim", timeout=TIMEOUT)
    assert r.status_code == 405 and "POST" in r.headers["Allow"]


def test_customer_side_refusals(world):
    did, token, name = fresh_device(world, "claim-who")
    assert device_claims(world, token, {"secretKey": "k"}).status_code == 200
    for api in (world.admin, world.other_admin):  # ThingsBoard: CUSTOMER_USER only
        r = customer_claims(api, name, "k")
        assert r.status_code == 403, r.text
    assert world.anon.post(f"/api/customer/device/{name}/claim", json={"secretKey": "k"}).status_code == 401
    r = customer_claims(world.customer, "no-such-device-name", "k")
    assert r.status_code == 404 and r.json()["message"] == "Requested item wasn't found!", r.text
    for body in (b"[]", b"{", b'{"secretKey": 7}', b'"k"'):
        r = world.customer.post(f"/api/customer/device/{name}/claim", data=body)
        assert r.status_code == 400 and r.json()["message"], (body, r.text)
    assert owner(world, did) is None


def test_reclaim(world):
    did, token, name = fresh_device(world, "claim-again")
    assert device_claims(world, token, {"secretKey": "k1"}).status_code == 200
    assert customer_claims(world.customer, name, "k1").status_code == 200
    assert world.other_customer.delete(f"/api/customer/device/{name}/claim").status_code == 403  # not its device
    assert world.other_admin.delete(f"/api/customer/device/{name}/claim").status_code == 404  # another tenant
    r = world.admin.delete(f"/api/customer/device/{name}/claim")
    assert r.status_code == 200 and r.content == b"", r.text
    assert owner(world, did) is None
    # claimable again, now by the other customer; its user may give it back itself
    assert device_claims(world, token, {"secretKey": "k2"}).status_code == 200
    r = customer_claims(world.other_customer, name, "k2")
    assert r.status_code == 200 and r.json()["device"]["customerId"]["id"] == world.customer_ids["Customer A2"]
    assert world.customer.delete(f"/api/customer/device/{name}/claim").status_code == 403
    assert world.other_customer.delete(f"/api/customer/device/{name}/claim").status_code == 200
    assert owner(world, did) is None
    # reclaiming an unassigned device drops a pending claim
    assert device_claims(world, token, {"secretKey": "k3"}).status_code == 200
    assert world.admin.delete(f"/api/customer/device/{name}/claim").status_code == 200
    assert claim_attribute(world, did) == []
    assert customer_claims(world.customer, name, "k3").json() == "FAILURE"


def test_tb_rest_client_claims(world):
    from tb_rest_client.models.claim_request import ClaimRequest
    from tb_rest_client.rest_client import RestClient

    did, token, name = fresh_device(world, "claim-tbrest")
    customer = RestClient(base_url=world.url)
    admin = RestClient(base_url=world.url)
    try:
        admin.login(*ADMIN)  # the client builds its controllers at login, the device API call included
        admin.claim_device(token, body=json.dumps({"secretKey": "tb-secret", "durationMs": 60_000}))
        customer.login(*CUSTOMER_USER)
        customer.device_controller.claim_device(device_name=name, body=ClaimRequest(secret_key="tb-secret"))
        assert owner(world, did) == world.customer_ids["Customer A1"]
        admin.re_claim_device(name)
        assert owner(world, did) is None
    finally:
        for c in (customer, admin):
            c.stop()


# ---------------------------------------------------------------------------- MQTT device side
@pytest.mark.parametrize("version", ["311", "5"])
def test_mqtt_claim(world, version):
    import paho.mqtt.client as mqtt

    did, token, name = fresh_device(world, f"claim-mqtt{version}")
    port = world.server.mqtt_port
    assert port
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"claim-{version}",
        protocol=mqtt.MQTTv311 if version == "311" else mqtt.MQTTv5,
    )
    client.username_pw_set(token)
    connected = threading.Event()
    acks: dict[int, int] = {}
    got = threading.Condition()

    def on_publish(_c, _u, mid, reason, _props):
        with got:
            acks[mid] = reason.value
            got.notify_all()

    client.on_connect = lambda *a: connected.set()
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(20)
        info = client.publish("v1/devices/me/claim", json.dumps({"secretKey": "mq-secret", "durationMs": 60_000}), 1)
        with got:
            assert got.wait_for(lambda: info.mid in acks, 20)
        assert acks[info.mid] == 0  # PUBACK once the claim is stored
        r = customer_claims(world.customer, name, "mq-secret")
        assert r.status_code == 200 and r.json()["response"] == "SUCCESS", r.text
        # claiming again once claimed: acknowledged (ThingsBoard does), the session goes on
        info = client.publish("v1/devices/me/claim", json.dumps({"secretKey": "again"}), 1)
        with got:
            assert got.wait_for(lambda: info.mid in acks, 20)
        assert acks[info.mid] == 0 and client.is_connected()
        if version == "5":  # a malformed claim: PUBACK 0x99, nothing stored
            info = client.publish("v1/devices/me/claim", b"{not json", 1)
            with got:
                assert got.wait_for(lambda: info.mid in acks, 20)
            assert acks[info.mid] == 0x99
    finally:
        client.loop_stop()
        client.disconnect()
    assert owner(world, did) == world.customer_ids["Customer A1"]


TB_CLAIM = r"""
import json, sys
from tb_device_mqtt import TBDeviceMqttClient
port, token = int(sys.argv[1]), sys.argv[2]
client = TBDeviceMqttClient("127.0.0.1", port=port, username=token)
client.connect()
out = {"claim": client.claim(secret_key="tb-mqtt-secret", duration=60000).get()}
client.disconnect()
print("RESULT " + json.dumps(out))
"""


def test_tb_mqtt_client_claims(world, tb_client_python, tmp_path):
    """ThingsBoard's own device SDK (TBDeviceMqttClient.claim, MQTT 5) in its own venv."""
    did, token, name = fresh_device(world, "claim-tbmqtt")
    out = run_client_script(tb_client_python, TB_CLAIM, str(world.server.mqtt_port), token, cwd=tmp_path)
    assert out["claim"] == 0
    r = customer_claims(world.customer, name, "tb-mqtt-secret")
    assert r.status_code == 200 and r.json()["response"] == "SUCCESS", r.text


# ---------------------------------------------------------------------------- CoAP device side
def coap(world, path: str, payload: bytes = b"", code=POST) -> tuple[Code, str]:
    port = world.server.coap_port
    assert port

    async def go():
        ctx = await Context.create_client_context()
        try:
            msg = Message(code=code, uri=f"coap://127.0.0.1:{port}{path}", payload=payload)
            response = await asyncio.wait_for(ctx.request(msg).response, TIMEOUT)
            return response.code, response.payload.decode()
        finally:
            await ctx.shutdown()

    return asyncio.run(go())


def test_coap_claim(world):
    did, token, name = fresh_device(world, "claim-coap")
    assert coap(world, f"/api/v1/{token}/claim", b'{"secretKey": "co-secret", "durationMs": 60000}')[0] == Code.CREATED
    r = customer_claims(world.customer, name, "co-secret")
    assert r.status_code == 200 and r.json()["response"] == "SUCCESS", r.text
    code, text = coap(world, f"/api/v1/{token}/claim", b'{"secretKey": "x"}')
    assert code == Code.BAD_REQUEST and "already claimed" in text
    assert coap(world, "/api/v1/no-such-token/claim", b"{}")[0] == Code.UNAUTHORIZED
    code, text = coap(world, f"/api/v1/{token}/claim", b'{"secretKey": [1]}')
    assert code == Code.BAD_REQUEST and "secretKey" in text
    assert coap(world, f"/api/v1/{token}/claim", code=GET)[0] == Code.METHOD_NOT_ALLOWED
    assert coap(world, f"/api/v2/{token}/claim")[0] == Code.NOT_FOUND
    assert coap(world, "/claim")[0] == Code.NOT_FOUND


# ---------------------------------------------------------------------------- the rules, in-process
@pytest.fixture
def two_tenants(tmp_path):
    """Tenants A and B, each with a customer, a customer user and a device named "same-name"."""
    registry = EntityRegistry(tmp_path / "data")
    out = {}
    for t in ("A", "B"):
        tenant = registry.create_tenant(f"Tenant {t}")
        customer = registry.create_customer(tenant.id, f"Customer {t}")
        user = registry.create_user(
            f"user-{t.lower()}@x.test",
            "password-1",
            authority="CUSTOMER_USER",
            tenant_id=tenant.id,
            customer_id=customer.id,
        )
        admin = registry.create_user(
            f"admin-{t.lower()}@x.test", "password-1", authority="TENANT_ADMIN", tenant_id=tenant.id
        )
        device = registry.save_device(tenant.id, "same-name")
        out[t] = {"tenant": tenant, "customer": customer, "user": user, "admin": admin, "device": device}
    yield registry, out
    registry.close()


def test_a_user_of_another_tenant_never_reaches_the_device(two_tenants):
    registry, t = two_tenants
    now = 1_700_000_000_000
    register_claim(registry, t["A"]["device"].id, "shared-secret", None, now)
    # B's user names the device A claimed: it reaches only B's own "same-name", which has no claim
    result = claim_device(registry, t["B"]["user"], "same-name", "shared-secret", now + 1)
    assert result.response is ClaimResponse.FAILURE
    assert registry.get_device(t["A"]["device"].id).customer_id is None
    with pytest.raises(NotFound):
        claim_device(registry, t["B"]["user"], "only-in-a", "shared-secret", now)
    with pytest.raises(PermissionDenied):
        claim_device(registry, t["A"]["admin"], "same-name", "shared-secret", now)
    with pytest.raises(PermissionDenied):  # B's admin may not give back A's device; it finds only B's
        reclaim_device(registry, t["B"]["user"], "same-name")
    result = claim_device(registry, t["A"]["user"], "same-name", "shared-secret", now + DEFAULT_DURATION_MS)
    assert result.response is ClaimResponse.SUCCESS and result.device.customer_id == t["A"]["customer"].id
    assert registry.get_device(t["B"]["device"].id).customer_id is None


def test_claim_rules(two_tenants):
    registry, t = two_tenants
    a = t["A"]
    now = 1_700_000_000_000
    expires = register_claim(registry, a["device"].id, "k", 5_000, now)
    assert expires == now + 5_000
    assert claim_device(registry, a["user"], "same-name", "k", now + 5_001).response is ClaimResponse.FAILURE
    assert register_claim(registry, a["device"].id, "k", 0, now) == now + DEFAULT_DURATION_MS  # <= 0: default
    stored = registry.get_attributes(a["device"].id, "SERVER_SCOPE", [CLAIM_DATA_KEY])[0]["value"]
    assert '"k"' not in stored and "secretKeyHash" in stored and "expirationTime" in stored
    assert claim_device(registry, a["user"], "same-name", "k", now).response is ClaimResponse.SUCCESS
    with pytest.raises(Conflict, match=r"Device \[same-name\] has been already claimed!"):
        register_claim(registry, a["device"].id, "k", None, now)
    # the tenant admin takes it back; the customer it was taken from is returned
    assert reclaim_device(registry, a["admin"], "same-name").id == a["customer"].id
    assert reclaim_device(registry, a["admin"], "same-name") is None
    # a hand-written claimingData that is not ours counts as no claim
    from tbpanel.store.values import ValueType

    registry.save_attributes(a["device"].id, "SERVER_SCOPE", [(now, CLAIM_DATA_KEY, int(ValueType.STR), "junk")])
    assert claim_device(registry, a["user"], "same-name", "", now).response is ClaimResponse.FAILURE

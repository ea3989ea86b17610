"""Devices and customers over REST, and who may see and change what."""

from __future__ import annotations

import uuid

import pytest
import requests


def only_a1(names) -> bool:
    """Customer A1's view: its device dev-a1 (other tests of the session may assign it more),
    none of customer A2's, the tenant's or tenant B's shared devices."""
    names = set(names)
    return "dev-a1" in names and not names & {"dev-a2", "dev-tenant", "dev-b"}


def did(world, name):
    return world.devices[name]["id"]["id"]


def test_device_create_get_update_delete(world):
    r = world.admin.post(
        "/api/device?accessToken=MY_TOKEN_1",
        json={"name": "crud-1", "type": "meter", "label": "hall", "additionalInfo": {"floor": 2}},
    )
    assert r.status_code == 200, r.text
    dev = r.json()
    assert dev["id"]["entityType"] == "DEVICE" and dev["name"] == "crud-1" and dev["type"] == "meter"
    assert dev["label"] == "hall" and dev["additionalInfo"] == {"floor": 2}
    assert dev["tenantId"]["entityType"] == "TENANT" and isinstance(dev["createdTime"], int)
    device_id = dev["id"]["id"]
    cred = world.admin.get(f"/api/device/{device_id}/credentials").json()
    assert cred["credentialsType"] == "ACCESS_TOKEN" and cred["credentialsId"] == "MY_TOKEN_1"
    assert world.admin.get(f"/api/device/{device_id}").json()["name"] == "crud-1"
    dev["label"] = "lobby"
    r = world.admin.post("/api/device", json=dev)
    assert r.status_code == 200 and r.json()["label"] == "lobby" and r.json()["id"] == dev["id"]
    assert world.admin.delete(f"/api/device/{device_id}").status_code == 200
    r = world.admin.get(f"/api/device/{device_id}")
    assert r.status_code == 404 and r.json()["errorCode"] == 32


def test_device_errors(world):
    assert world.admin.post("/api/device", json={"type": "x"}).status_code == 400
    assert world.admin.post("/api/device", data=b"{bad").status_code == 400
    assert world.admin.post("/api/device", json={"name": "dev-a1"}).status_code == 400  # duplicate name
    assert world.admin.get("/api/device/not-a-uuid").status_code == 400
    assert world.admin.get(f"/api/device/{uuid.uuid4()}").status_code == 404
    r = world.admin.post("/api/device?accessToken=dup-token-x", json={"name": "tok-1"})
    assert r.status_code == 200
    assert world.admin.post("/api/device?accessToken=dup-token-x", json={"name": "tok-2"}).status_code == 400


def test_tenant_devices_paging_and_search(world):
    for i in range(5):
        assert world.admin.post("/api/device", json={"name": f"page-dev-{i}", "type": "pager"}).status_code == 200
    r = world.admin.get("/api/tenant/devices", params={"pageSize": 2, "page": 0, "type": "pager"})
    page = r.json()
    assert page["totalElements"] == 5 and page["totalPages"] == 3 and page["hasNext"] is True
    assert len(page["data"]) == 2
    last = world.admin.get("/api/tenant/devices", params={"pageSize": 2, "page": 2, "type": "pager"}).json()
    assert len(last["data"]) == 1 and last["hasNext"] is False
    found = world.admin.get(
        "/api/tenant/devices", params={"pageSize": 10, "page": 0, "textSearch": "page-dev-3"}
    ).json()
    assert [d["name"] for d in found["data"]] == ["page-dev-3"]
    one = world.admin.get("/api/tenant/devices", params={"deviceName": "page-dev-4"})
    assert one.status_code == 200 and one.json()["name"] == "page-dev-4"
    assert world.admin.get("/api/tenant/devices", params={"pageSize": 0}).status_code == 400
    assert world.admin.get("/api/tenant/devices", params={"pageSize": "x"}).status_code == 400


def test_tenants_are_isolated(world):
    names = {d["name"] for d in world.admin.get("/api/tenant/devices?pageSize=1000&page=0").json()["data"]}
    assert "dev-b" not in names and "dev-a1" in names
    r = world.admin.get(f"/api/device/{did(world, 'dev-b')}")
    assert r.status_code == 403 and r.json()["errorCode"] == 20
    assert world.other_admin.get(f"/api/device/{did(world, 'dev-a1')}").status_code == 403
    assert world.other_admin.delete(f"/api/device/{did(world, 'dev-a1')}").status_code == 403
    assert world.other_admin.get(f"/api/device/{did(world, 'dev-a1')}/credentials").status_code == 403


def test_customer_user_sees_only_its_customers_devices(world):
    a1, a2, tenant_dev = did(world, "dev-a1"), did(world, "dev-a2"), did(world, "dev-tenant")
    assert world.customer.get(f"/api/device/{a1}").status_code == 200
    assert world.customer.get(f"/api/device/{a2}").status_code == 403
    assert world.customer.get(f"/api/device/{tenant_dev}").status_code == 403
    assert world.other_customer.get(f"/api/device/{a2}").status_code == 200
    assert world.other_customer.get(f"/api/device/{a1}").status_code == 403
    # customer users cannot list the tenant, manage devices, or read credentials
    assert world.customer.get("/api/tenant/devices?pageSize=10&page=0").status_code == 403
    assert world.customer.post("/api/device", json={"name": "sneaky"}).status_code == 403
    assert world.customer.delete(f"/api/device/{a1}").status_code == 403
    assert world.customer.get(f"/api/device/{a1}/credentials").status_code == 403
    own = world.customer_ids["Customer A1"]
    page = world.customer.get(f"/api/customer/{own}/devices?pageSize=1000&page=0").json()
    assert only_a1(d["name"] for d in page["data"])
    other = world.customer_ids["Customer A2"]
    assert world.customer.get(f"/api/customer/{other}/devices?pageSize=10&page=0").status_code == 403


def test_customers_create_list_assign_unassign(world):
    r = world.admin.post("/api/customer", json={"title": "Customer Z"})
    assert r.status_code == 200, r.text
    cid = r.json()["id"]["id"]
    assert r.json()["id"]["entityType"] == "CUSTOMER"
    titles = [c["title"] for c in world.admin.get("/api/customers?pageSize=100&page=0").json()["data"]]
    assert "Customer Z" in titles and "Customer A1" in titles
    assert all(
        c["title"] != "Customer Z" for c in world.other_admin.get("/api/customers?pageSize=100&page=0").json()["data"]
    )
    dev_id, _ = world.new_device("assign-me")
    r = world.admin.post(f"/api/customer/{cid}/device/{dev_id}")
    assert r.status_code == 200 and r.json()["customerId"]["id"] == cid
    r = world.admin.delete(f"/api/customer/device/{dev_id}")
    assert r.status_code == 200 and r.json()["customerId"]["id"] != cid
    assert world.admin.delete(f"/api/customer/device/{dev_id}").status_code == 400  # not assigned
    assert world.admin.post("/api/customer", json={"title": ""}).status_code == 400
    assert world.admin.post(f"/api/customer/{uuid.uuid4()}/device/{dev_id}").status_code == 404
    assert world.other_admin.post(f"/api/customer/{cid}/device/{did(world, 'dev-b')}").status_code == 403
    assert world.customer.post("/api/customer", json={"title": "nope"}).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/api/device/{a1}",
        "/api/tenant/devices?pageSize=1&page=0",
        "/api/customers?pageSize=1&page=0",
        "/api/auth/user",
        "/api/plugins/telemetry/DEVICE/{a1}/keys/timeseries",
    ],
)
def test_anonymous_is_401(world, path):
    r = world.anon.get(path.format(a1=did(world, "dev-a1")))
    assert r.status_code == 401 and r.json()["errorCode"] == 10


# ------------------------------------------------------------------ routes tb-rest-client 4.4 calls
def test_device_by_name_info_and_infos(world):
    a1 = did(world, "dev-a1")
    one = world.admin.get("/api/tenant/device", params={"deviceName": "dev-a1"})
    assert one.status_code == 200 and one.json()["id"]["id"] == a1
    assert world.admin.get("/api/tenant/device", params={"deviceName": "no-such"}).status_code == 404
    assert world.admin.get("/api/tenant/device").status_code == 400
    assert world.other_admin.get("/api/tenant/device", params={"deviceName": "dev-a1"}).status_code == 404
    assert world.customer.get("/api/tenant/device", params={"deviceName": "dev-a1"}).status_code == 403
    info = world.customer.get(f"/api/device/info/{a1}").json()
    assert info["customerTitle"] == "Customer A1" and info["deviceProfileName"] == "sensor"
    assert info["deviceProfileId"]["entityType"] == "DEVICE_PROFILE"
    assert world.other_customer.get(f"/api/device/info/{a1}").status_code == 403
    # the whole tenant in one page: the session-wide world holds other tests' devices too
    tenant = world.admin.get("/api/tenant/deviceInfos", params={"pageSize": 10_000, "page": 0}).json()
    titles = {d["name"]: d["customerTitle"] for d in tenant["data"]}
    assert titles["dev-a1"] == "Customer A1" and titles["dev-tenant"] is None and "dev-b" not in titles
    assert world.customer.get("/api/tenant/deviceInfos?pageSize=10&page=0").status_code == 403
    # /api/deviceInfos/all: the tenant for its admin, the customer's devices for a customer user
    assert (
        world.admin.get("/api/deviceInfos/all?pageSize=100&page=0").json()["totalElements"] == tenant["totalElements"]
    )
    own = world.customer.get("/api/deviceInfos/all?pageSize=100&page=0").json()
    assert only_a1(d["name"] for d in own["data"])
    cid = world.customer_ids["Customer A1"]
    cust = world.customer.get(f"/api/customer/{cid}/deviceInfos?pageSize=100&page=0").json()
    assert only_a1(d["name"] for d in cust["data"])
    assert world.other_customer.get(f"/api/customer/{cid}/deviceInfos?pageSize=10&page=0").status_code == 403
    profile = info["deviceProfileId"]["id"]
    by_profile = world.admin.get(
        "/api/tenant/deviceInfos", params={"pageSize": 100, "page": 0, "deviceProfileId": profile}
    )
    assert {d["type"] for d in by_profile.json()["data"]} == {"sensor"}
    assert world.admin.get("/api/tenant/deviceInfos?pageSize=10&page=0&active=true").status_code == 400


def test_devices_by_ids_and_user_devices(world):
    a1, a2, b = did(world, "dev-a1"), did(world, "dev-a2"), did(world, "dev-b")
    ids = ",".join([a1, a2, b, str(uuid.uuid4())])
    assert {d["name"] for d in world.admin.get("/api/devices", params={"deviceIds": ids}).json()} == {
        "dev-a1",
        "dev-a2",
    }
    assert [d["name"] for d in world.customer.get("/api/devices", params={"deviceIds": ids}).json()] == [
        "dev-a1"
    ]  # only ids asked for
    assert [d["name"] for d in world.other_admin.get("/api/devices", params={"deviceIds": ids}).json()] == ["dev-b"]
    assert world.admin.get("/api/devices", params={"deviceIds": "nope"}).status_code == 400
    assert world.admin.get("/api/devices").status_code == 400
    mine = world.customer.get("/api/user/devices?pageSize=100&page=0").json()
    assert only_a1(d["name"] for d in mine["data"])


def test_credentials_update_old_token_stops_working(world):
    dev_id, old = world.new_device("cred-swap")
    assert requests.post(f"{world.url}/api/v1/{old}/telemetry", json={"t": 1}, timeout=30).status_code == 200
    new = f"swapped-{uuid.uuid4().hex[:8]}"
    body = {"deviceId": {"entityType": "DEVICE", "id": dev_id}, "credentialsType": "ACCESS_TOKEN", "credentialsId": new}
    assert world.customer.post("/api/device/credentials", json=body).status_code == 403
    assert world.other_admin.post("/api/device/credentials", json=body).status_code == 403
    r = world.admin.post("/api/device/credentials", json=body)
    assert r.status_code == 200 and r.json()["credentialsId"] == new
    assert requests.post(f"{world.url}/api/v1/{old}/telemetry", json={"t": 1}, timeout=30).status_code == 401
    assert requests.post(f"{world.url}/api/v1/{new}/telemetry", json={"t": 2}, timeout=30).status_code == 200
    taken = dict(body, credentialsId=world.token("dev-a1"))
    assert world.admin.post("/api/device/credentials", json=taken).status_code == 400
    assert (
        world.admin.post("/api/device/credentials", json=dict(body, credentialsType="X509_CERTIFICATE")).status_code
        == 400
    )
    assert world.admin.post("/api/device/credentials", json=dict(body, credentialsId="has space")).status_code == 400
    assert world.admin.post("/api/device/credentials", json={"credentialsId": "x"}).status_code == 400


def test_owner_routes_assign_and_unassign(world):
    dev_id, _ = world.new_device("owner-route")
    cid = world.customer_ids["Customer A1"]
    tenant_id = world.admin.get("/api/auth/user").json()["tenantId"]["id"]
    assert world.admin.post(f"/api/owner/CUSTOMER/{cid}/DEVICE/{dev_id}").status_code == 200
    assert world.admin.get(f"/api/device/{dev_id}").json()["customerId"]["id"] == cid
    assert world.customer.get(f"/api/device/{dev_id}").status_code == 200
    assert world.admin.post(f"/api/owner/TENANT/{tenant_id}/DEVICE/{dev_id}").status_code == 200
    assert world.customer.get(f"/api/device/{dev_id}").status_code == 403
    other_tenant = world.other_admin.get("/api/auth/user").json()["tenantId"]["id"]
    assert world.admin.post(f"/api/owner/TENANT/{other_tenant}/DEVICE/{dev_id}").status_code == 403
    assert world.admin.post(f"/api/owner/CUSTOMER/{cid}/ASSET/{dev_id}").status_code == 400
    assert world.admin.post(f"/api/owner/GROUP/{cid}/DEVICE/{dev_id}").status_code == 400
    assert world.other_admin.post(f"/api/owner/CUSTOMER/{cid}/DEVICE/{dev_id}").status_code == 403
    assert world.customer.post(f"/api/owner/CUSTOMER/{cid}/DEVICE/{dev_id}").status_code == 403


def test_device_type_names_a_profile(world):
    r = world.admin.post("/api/device", json={"name": "typed-new", "type": "brand-new-type"})
    assert r.status_code == 200
    profile = world.admin.get(f"/api/deviceProfileInfo/{r.json()['deviceProfileId']['id']}").json()
    assert profile["name"] == "brand-new-type"
    bad = world.admin.post("/api/device", json={"name": "typed-bad", "deviceProfileId": {"id": "zz"}})
    assert bad.status_code == 400
    missing = world.admin.post("/api/device", json={"name": "typed-bad", "deviceProfileId": str(uuid.uuid4())})
    assert missing.status_code == 404

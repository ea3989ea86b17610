"""Device profiles over REST (ThingsBoard's /api/deviceProfile* routes) on a real server."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.usefixtures("no_server_errors")


def new_profile(world, **fields) -> dict:
    body = {"name": f"prof-{uuid.uuid4().hex[:8]}", **fields}
    r = world.admin.post("/api/deviceProfile", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_default_profile_and_device_profile_ids(world):
    default = world.admin.get("/api/deviceProfileInfo/default").json()
    assert default["name"] == "default" and default["id"]["entityType"] == "DEVICE_PROFILE"
    r = world.admin.post("/api/device", json={"name": "prof-plain"})
    assert r.status_code == 200 and r.json()["type"] == "default"
    assert r.json()["deviceProfileId"] == default["id"]
    # a device of type "sensor" (the world's) has the profile named "sensor"
    sensor = world.devices["dev-a1"]
    info = world.admin.get(f"/api/deviceProfileInfo/{sensor['deviceProfileId']['id']}").json()
    assert info["name"] == "sensor" and set(info) >= {"id", "tenantId", "name", "type", "transportType"}


def test_create_read_update_list(world):
    p = new_profile(world, description="first", profileData={"alarms": [{"id": "a", "alarmType": "hot"}]})
    assert p["type"] == "DEFAULT" and p["transportType"] == "DEFAULT" and p["provisionType"] == "DISABLED"
    assert p["default"] is False and p["profileData"]["alarms"] == [{"id": "a", "alarmType": "hot"}]
    pid = p["id"]["id"]
    assert world.admin.get(f"/api/deviceProfile/{pid}").json() == p
    # a device saved with the profile id gets its name as type
    d = world.admin.post("/api/device", json={"name": f"d-{pid[:8]}", "deviceProfileId": p["id"]}).json()
    assert d["type"] == p["name"] and d["deviceProfileId"] == p["id"]
    renamed = world.admin.post("/api/deviceProfile", json=dict(p, name=p["name"] + "-x")).json()
    assert (
        renamed["id"] == p["id"] and world.admin.get(f"/api/device/{d['id']['id']}").json()["type"] == renamed["name"]
    )
    page = world.admin.get(
        "/api/deviceProfiles", params={"pageSize": 1, "page": 0, "textSearch": renamed["name"]}
    ).json()
    assert page["totalElements"] == 1 and page["data"][0]["id"] == p["id"]
    infos = world.admin.get("/api/deviceProfileInfos", params={"pageSize": 100, "page": 0}).json()
    assert p["id"] in [i["id"] for i in infos["data"]] and all("provisionDeviceKey" not in i for i in infos["data"])
    names = world.admin.get("/api/deviceProfile/names", params={"activeOnly": "true"}).json()
    assert renamed["name"] in [n["name"] for n in names] and "default" in [n["name"] for n in names]
    listed = world.admin.get("/api/deviceProfileInfos/list", params={"deviceProfileIds": pid}).json()
    assert [i["id"] for i in listed] == [p["id"]]
    by_name = world.admin.get(
        "/api/deviceProfiles", params={"pageSize": 100, "page": 0, "sortProperty": "name", "sortOrder": "ASC"}
    ).json()["data"]
    assert [x["name"].lower() for x in by_name] == sorted(x["name"].lower() for x in by_name)


def test_delete_rules_and_set_default(world):
    p = new_profile(world)
    pid = p["id"]["id"]
    d = world.admin.post("/api/device", json={"name": f"del-{pid[:8]}", "type": p["name"]}).json()
    r = world.admin.delete(f"/api/deviceProfile/{pid}")
    assert r.status_code == 400 and "referenced by the devices" in r.json()["message"]
    default = world.admin.get("/api/deviceProfileInfo/default").json()
    r = world.admin.delete(f"/api/deviceProfile/{default['id']['id']}")
    assert r.status_code == 400 and "Default Device Profile" in r.json()["message"]
    assert world.admin.delete(f"/api/device/{d['id']['id']}").status_code == 200
    # make it the default, then back
    r = world.admin.post(f"/api/deviceProfile/{pid}/default")
    assert r.status_code == 200 and r.json()["default"] is True
    assert world.admin.get("/api/deviceProfileInfo/default").json()["id"] == p["id"]
    assert world.admin.post("/api/device", json={"name": f"new-default-{pid[:8]}"}).json()["type"] == p["name"]
    assert world.admin.post(f"/api/deviceProfile/{default['id']['id']}/default").status_code == 200
    world.admin.delete(
        f"/api/device/{world.admin.get('/api/tenant/device', params={'deviceName': f'new-default-{pid[:8]}'}).json()['id']['id']}"
    )
    assert world.admin.delete(f"/api/deviceProfile/{pid}").status_code == 200
    assert world.admin.get(f"/api/deviceProfile/{pid}").status_code == 404


def test_bad_bodies(world):
    for body in (
        {},
        {"name": ""},
        {"name": "x", "type": "SNMP"},
        {"name": "x", "transportType": "CARRIER_PIGEON"},
        {"name": "x", "profileData": "nope"},
        {"name": "x", "provisionType": "ALLOW_CREATE_NEW_DEVICES"},
        {"name": "x", "provisionType": "X509_CERTIFICATE_CHAIN"},
        {"name": "default"},
        {"name": "x", "id": "not-a-uuid"},
        {"name": "x", "id": str(uuid.uuid4())},
    ):
        r = world.admin.post("/api/deviceProfile", json=body)
        assert r.status_code in (400, 404), (body, r.status_code, r.text)
        assert r.json()["message"]
    assert (
        world.admin.get("/api/deviceProfiles", params={"pageSize": 10, "page": 0, "sortProperty": "x"}).status_code
        == 400
    )


def test_who_may_see_what(world):
    p = new_profile(
        world,
        provisionType="CHECK_PRE_PROVISIONED_DEVICES",
        provisionDeviceKey=f"k-{uuid.uuid4().hex}",
        provisionDeviceSecret="who-secret",
    )
    pid = p["id"]["id"]
    # customer users read infos of their tenant's profiles, never the full profile or writes
    assert world.customer.get(f"/api/deviceProfileInfo/{pid}").status_code == 200
    assert "who-secret" not in world.customer.get("/api/deviceProfileInfos?pageSize=100&page=0").text
    assert world.customer.get(f"/api/deviceProfile/{pid}").status_code == 403
    assert world.customer.get("/api/deviceProfiles?pageSize=10&page=0").status_code == 403
    assert world.customer.post("/api/deviceProfile", json={"name": "cust"}).status_code == 403
    assert world.customer.delete(f"/api/deviceProfile/{pid}").status_code == 403
    # another tenant sees nothing of it
    for path in (f"/api/deviceProfileInfo/{pid}", f"/api/deviceProfile/{pid}"):
        assert world.other_admin.get(path).status_code == 403
    assert world.other_admin.post(f"/api/deviceProfile/{pid}/default").status_code == 403
    assert world.other_admin.post("/api/deviceProfile", json=dict(p, name="stolen")).status_code == 403
    assert (
        world.other_admin.post("/api/device", json={"name": "x-profile", "deviceProfileId": p["id"]}).status_code == 403
    )
    other_names = [
        x["name"] for x in world.other_admin.get("/api/deviceProfileInfos?pageSize=100&page=0").json()["data"]
    ]
    assert p["name"] not in other_names
    assert world.anon.get("/api/deviceProfileInfo/default").status_code == 401


def test_tb_rest_client_profiles(world):
    from tb_rest_client.models.device_profile import DeviceProfile
    from tb_rest_client.rest_client import RestClient

    from tests.helpers import ADMIN

    client = RestClient(base_url=world.url)
    client.login(*ADMIN)
    try:
        saved = client.save_device_profile(
            DeviceProfile(name=f"rc-{uuid.uuid4().hex[:8]}", type="DEFAULT", transport_type="DEFAULT")
        )
        assert saved.id.id and saved.name.startswith("rc-")
        got = client.get_device_profile_by_id(saved.id)
        assert got.name == saved.name and got.profile_data is not None
        assert client.get_default_device_profile_info().name == "default"
        assert client.get_device_profile_info_by_id(saved.id).name == saved.name
        page = client.get_device_profiles(page_size=100, page=0)
        assert saved.name in [p.name for p in page.data]
        infos = client.get_device_profile_infos(page_size=100, page=0)
        assert saved.name in [p.name for p in infos.data]
        client.set_default_device_profile(saved.id)
        assert client.get_default_device_profile_info().name == saved.name
        client.set_default_device_profile(
            world.admin.get("/api/deviceProfileInfos?pageSize=100&page=0&textSearch=default").json()["data"][0]["id"][
                "id"
            ]
        )
        client.delete_device_profile(saved.id)
    finally:
        client.stop()

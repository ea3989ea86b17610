"""ThingsBoard's alarm REST API against a real server: every route, filter and error, and who
may see and act on which alarm (tenant isolation, customer isolation)."""

from __future__ import annotations

import uuid

import pytest


def dev(world, name: str) -> str:
    return world.devices[name]["id"]["id"]


def raise_alarm(api, device_id: str, type: str, severity: str = "MAJOR", **extra) -> dict:
    r = api.post(
        "/api/alarm",
        json={"type": type, "originator": {"entityType": "DEVICE", "id": device_id}, "severity": severity, **extra},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_create_get_and_update_active_alarm_of_same_type(world):
    d = dev(world, "dev-tenant")
    a = raise_alarm(world.admin, d, "HighTemp", "MINOR", details={"v": 1}, startTs=1000)
    assert a["id"]["entityType"] == "ALARM" and a["status"] == "ACTIVE_UNACK" and a["severity"] == "MINOR"
    assert a["originator"] == {"entityType": "DEVICE", "id": d} and a["startTs"] == 1000
    assert a["tenantId"]["entityType"] == "TENANT" and a["details"] == {"v": 1}
    got = world.admin.get(f"/api/alarm/{a['id']['id']}").json()
    assert got == a
    # same originator + type while active: updated, not duplicated
    b = raise_alarm(world.admin, d, "HighTemp", "CRITICAL", details={"v": 2})
    assert b["id"] == a["id"] and b["severity"] == "CRITICAL" and b["details"] == {"v": 2}
    page = world.admin.get(f"/api/alarm/DEVICE/{d}", params={"typeList": "HighTemp"}).json()
    assert page["totalElements"] == 1
    # once cleared, the same type raises a new alarm
    assert world.admin.post(f"/api/alarm/{a['id']['id']}/clear").json()["status"] == "CLEARED_UNACK"
    c = raise_alarm(world.admin, d, "HighTemp")
    assert c["id"] != a["id"]
    # update by id
    d2 = raise_alarm(world.admin, d, "HighTemp", "WARNING", id=c["id"])
    assert d2["id"] == c["id"] and d2["severity"] == "WARNING"


def test_ack_clear_delete_and_status(world):
    d = dev(world, "dev-tenant")
    a = raise_alarm(world.admin, d, "AckClear")
    aid = a["id"]["id"]
    acked = world.admin.post(f"/api/alarm/{aid}/ack").json()
    assert acked["status"] == "ACTIVE_ACK" and acked["acknowledged"] and acked["ackTs"] > 0
    again = world.admin.post(f"/api/alarm/{aid}/ack").json()
    assert again["ackTs"] == acked["ackTs"]  # idempotent
    cleared = world.admin.post(f"/api/alarm/{aid}/clear").json()
    assert cleared["status"] == "CLEARED_ACK" and cleared["clearTs"] > 0
    r = world.admin.delete(f"/api/alarm/{aid}")
    assert r.status_code == 200 and r.json() is True
    r = world.admin.get(f"/api/alarm/{aid}")
    assert r.status_code == 404 and r.json()["errorCode"] == 32


def test_queries_filters_sorting_paging(world):
    d = dev(world, "dev-tenant")
    t = "Q" + uuid.uuid4().hex[:6]
    sev = ["WARNING", "MINOR", "MAJOR", "CRITICAL"]
    ids = {}
    for i, s in enumerate(sev):
        a = raise_alarm(world.admin, d, f"{t}-{i}", s, startTs=1_000 * (i + 1))
        ids[s] = a["id"]["id"]
    world.admin.post(f"/api/alarm/{ids['MINOR']}/ack")
    world.admin.post(f"/api/alarm/{ids['MAJOR']}/clear")
    types = ",".join(f"{t}-{i}" for i in range(4))

    def q(**params):
        r = world.admin.get("/api/alarms", params={"typeList": types, **params})
        assert r.status_code == 200, r.text
        return r.json()

    assert q()["totalElements"] == 4
    assert {a["severity"] for a in q(searchStatus="ACTIVE")["data"]} == {"WARNING", "MINOR", "CRITICAL"}
    assert [a["severity"] for a in q(searchStatus="CLEARED")["data"]] == ["MAJOR"]
    assert [a["severity"] for a in q(searchStatus="ACK")["data"]] == ["MINOR"]
    assert q(searchStatus="UNACK")["totalElements"] == 3
    assert [a["severity"] for a in q(status="ACTIVE_ACK")["data"]] == ["MINOR"]
    assert {a["severity"] for a in q(severityList="CRITICAL,MAJOR")["data"]} == {"CRITICAL", "MAJOR"}
    assert [a["severity"] for a in q(sortProperty="severity", sortOrder="DESC")["data"]] == sev[::-1]
    assert [a["severity"] for a in q(sortProperty="startTs", sortOrder="ASC")["data"]] == sev
    assert [
        a["startTs"]
        for a in q(timeProperty="startTs", startTime=2000, endTime=3000, sortProperty="startTs", sortOrder="ASC")[
            "data"
        ]
    ] == [2000, 3000]
    page = q(pageSize=3, page=1, sortProperty="startTs", sortOrder="ASC")
    assert page["totalElements"] == 4 and page["totalPages"] == 2 and not page["hasNext"]
    assert [a["severity"] for a in page["data"]] == ["CRITICAL"]
    assert q(pageSize=3, page=0)["hasNext"]
    assert q(textSearch=f"{t}-2".lower())["totalElements"] == 1
    assert q(textSearch="dev-tenant")["totalElements"] == 4  # originator name
    # createdTime window
    now = world.admin.get(f"/api/alarm/{ids['WARNING']}").json()["createdTime"]
    assert q(startTime=now + 10**9)["totalElements"] == 0
    per_entity = world.admin.get(f"/api/alarm/DEVICE/{d}", params={"typeList": types, "searchStatus": "ACTIVE"}).json()
    assert per_entity["totalElements"] == 3
    hs = world.admin.get(f"/api/alarm/highestSeverity/DEVICE/{d}")
    assert hs.status_code == 200 and hs.json() == "CRITICAL"
    assert t + "-0" in world.admin.get("/api/alarm/types").json()


def test_highest_severity_without_alarms_is_empty(world):
    did, _ = world.new_device("quiet-" + uuid.uuid4().hex[:6])
    r = world.admin.get(f"/api/alarm/highestSeverity/DEVICE/{did}")
    assert r.status_code == 200 and r.text == ""
    raise_alarm(world.admin, did, "X", "MINOR")
    raise_alarm(world.admin, did, "Y", "MAJOR")
    assert world.admin.get(f"/api/alarm/highestSeverity/DEVICE/{did}").json() == "MAJOR"
    assert world.admin.get(f"/api/alarm/highestSeverity/DEVICE/{did}?searchStatus=CLEARED").text == ""


@pytest.mark.parametrize(
    "path,params,needle",
    [
        ("/api/alarms", {"searchStatus": "SOMETIMES"}, "searchStatus"),
        ("/api/alarms", {"status": "HALF"}, "status"),
        ("/api/alarms", {"severityList": "LOUD"}, "severity"),
        ("/api/alarms", {"sortProperty": "colour"}, "sortProperty"),
        ("/api/alarms", {"sortOrder": "UP"}, "sortOrder"),
        ("/api/alarms", {"pageSize": "0"}, "pageSize"),
        ("/api/alarms", {"page": "x"}, "page"),
        ("/api/alarms", {"startTime": "5", "endTime": "1"}, "startTime"),
        ("/api/alarms", {"timeProperty": "clearTs"}, "timeProperty"),
        ("/api/alarm/ASSET/4b1c53b6-0d6f-4a4e-b3a3-2b9e0d1f8e11", {}, "DEVICE"),
        ("/api/alarm/not-a-uuid", {}, "UUID"),
    ],
)
def test_bad_query_parameters_answer_400(world, path, params, needle):
    r = world.admin.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["errorCode"] == 31 and needle in r.json()["message"]


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"originator": {"entityType": "DEVICE", "id": "X"}, "severity": "MAJOR"}, "type"),
        ({"type": "T", "severity": "MAJOR"}, "originator"),
        ({"type": "T", "originator": {"entityType": "ASSET", "id": str(uuid.uuid4())}}, "DEVICE"),
        ({"type": "T", "originator": {"entityType": "DEVICE", "id": "nope"}}, "UUID"),
        ({"type": "T", "originator": "DEV", "severity": "MAJOR"}, "originator"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_bad_alarm_bodies_answer_400(world, body, needle):
    r = world.admin.post("/api/alarm", json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["message"]


def test_bad_alarm_fields_answer_400(world):
    d = dev(world, "dev-tenant")
    base = {"type": "T", "originator": {"entityType": "DEVICE", "id": d}}
    for extra, needle in (
        ({"severity": "LOUD"}, "severity"),
        ({"startTs": "soon"}, "startTs"),
        ({"details": [1]}, "details"),
        ({"propagate": "yes"}, "propagate"),
    ):
        r = world.admin.post("/api/alarm", json={**base, **extra})
        assert r.status_code == 400 and needle in r.json()["message"], r.text
    assert world.admin.post("/api/alarm", data=b"{nope").status_code == 400


def test_unknown_alarm_is_404_everywhere(world):
    missing = str(uuid.uuid4())
    for method, path in (
        ("get", f"/api/alarm/{missing}"),
        ("delete", f"/api/alarm/{missing}"),
        ("post", f"/api/alarm/{missing}/ack"),
        ("post", f"/api/alarm/{missing}/clear"),
    ):
        r = getattr(world.admin, method)(path)
        assert r.status_code == 404 and r.json()["errorCode"] == 32, (method, path, r.text)
    r = world.admin.get(f"/api/alarm/DEVICE/{missing}")
    assert r.status_code == 404


def test_authentication_required(world):
    for method, path in (("get", "/api/alarms"), ("post", "/api/alarm"), ("get", f"/api/alarm/{uuid.uuid4()}")):
        assert getattr(world.anon, method)(path).status_code == 401


def test_tenant_and_customer_isolation(world):
    a1, a2, tenant_dev, b = (dev(world, n) for n in ("dev-a1", "dev-a2", "dev-tenant", "dev-b"))
    t = "Iso" + uuid.uuid4().hex[:6]
    on_a1 = raise_alarm(world.admin, a1, t)["id"]["id"]
    on_a2 = raise_alarm(world.admin, a2, t)["id"]["id"]
    on_tenant = raise_alarm(world.admin, tenant_dev, t)["id"]["id"]
    on_b = raise_alarm(world.other_admin, b, t)["id"]["id"]

    # the customer user sees only its device's alarm, in every query
    mine = world.customer.get("/api/alarms", params={"typeList": t}).json()
    assert [a["id"]["id"] for a in mine["data"]] == [on_a1]
    assert world.customer.get("/api/alarms", params={"typeList": t, "deviceId": a2}).json()["totalElements"] == 0
    assert world.customer.get(f"/api/alarm/{on_a1}").status_code == 200
    for other in (on_a2, on_tenant):
        for method, path in (
            ("get", f"/api/alarm/{other}"),
            ("post", f"/api/alarm/{other}/ack"),
            ("post", f"/api/alarm/{other}/clear"),
            ("delete", f"/api/alarm/{other}"),
        ):
            r = getattr(world.customer, method)(path)
            assert r.status_code == 403 and r.json()["errorCode"] == 20, (method, path, r.text)
    assert world.customer.get(f"/api/alarm/DEVICE/{a2}").status_code == 403
    assert world.customer.get(f"/api/alarm/highestSeverity/DEVICE/{a2}").status_code == 403
    r = world.customer.post("/api/alarm", json={"type": t, "originator": {"entityType": "DEVICE", "id": a2}})
    assert r.status_code == 403
    # … and acts on its own
    assert world.customer.post(f"/api/alarm/{on_a1}/ack").json()["status"] == "ACTIVE_ACK"
    own = raise_alarm(world.customer, a1, t + "-own", "WARNING")
    assert own["customerId"]["id"] == world.customer_ids["Customer A1"]
    assert world.customer.delete(f"/api/alarm/{own['id']['id']}").json() is True

    # the other tenant's alarm: 403 for every operation, absent from lists
    for method, path in (
        ("get", f"/api/alarm/{on_b}"),
        ("post", f"/api/alarm/{on_b}/ack"),
        ("post", f"/api/alarm/{on_b}/clear"),
        ("delete", f"/api/alarm/{on_b}"),
    ):
        r = getattr(world.admin, method)(path)
        assert r.status_code == 403, (method, path, r.text)
    assert world.admin.get(f"/api/alarm/DEVICE/{b}").status_code == 403
    tenant_view = world.admin.get("/api/alarms", params={"typeList": t}).json()
    assert {a["id"]["id"] for a in tenant_view["data"]} == {on_a1, on_a2, on_tenant}
    assert [a["id"]["id"] for a in world.other_admin.get("/api/alarms", params={"typeList": t}).json()["data"]] == [
        on_b
    ]

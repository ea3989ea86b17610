"""ThingsBoard's dashboard routes on the real server (the session's two-tenant world): CRUD
with versions, pages and text search, assignment and what customer users see, alias
resolution per user, export → import, and bad input (400 naming the field, nothing stored).
tb-rest-client's dashboard methods are exercised in test_rest_client_surface.py."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.usefixtures("no_server_errors")


@pytest.fixture
def run() -> str:
    """A unique title prefix: the world is shared, so each test finds its own dashboards."""
    return f"dash-{uuid.uuid4().hex[:8]}"


def create(api, title: str, **fields) -> dict:
    r = api.post("/api/dashboard", json={"title": title, **fields})
    assert r.status_code == 200, r.text
    return r.json()


def titles(page: dict) -> list[str]:
    return [d["title"] for d in page["data"]]


def tenant_page(api, run: str, **params) -> dict:
    r = api.get("/api/tenant/dashboards", params={"pageSize": 100, "page": 0, "textSearch": run, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_crud_and_versions(world, run):
    a = world.admin
    config = {"description": "d", "widgets": {}, "entityAliases": {}, "settings": {"k": [1, 2]}}
    saved = create(a, run, configuration=config)
    did = saved["id"]["id"]
    assert saved["configuration"] == config and saved["version"] == 1 and saved["assignedCustomers"] == []
    assert a.get(f"/api/dashboard/{did}").json() == saved
    info = a.get(f"/api/dashboard/info/{did}").json()
    assert info["title"] == run and "configuration" not in info

    r = a.post("/api/dashboard", json=dict(saved, title=f"{run}-2"))
    assert r.status_code == 200 and r.json()["version"] == 2
    r = a.post("/api/dashboard", json=dict(saved, title=f"{run}-stale"))  # version 1 again
    assert r.status_code == 409 and r.json()["errorCode"] == 35, r.text
    assert a.get(f"/api/dashboard/{did}").json()["title"] == f"{run}-2"

    assert world.customer.post("/api/dashboard", json={"title": "x"}).status_code == 403
    assert world.other_admin.get(f"/api/dashboard/{did}").status_code == 403
    assert world.anon.get(f"/api/dashboard/{did}").status_code == 401
    assert a.get("/api/dashboard/not-a-uuid").status_code == 400
    r = a.post("/api/dashboard", json={"title": "x", "id": {"entityType": "DASHBOARD", "id": str(uuid.uuid4())}})
    assert r.status_code == 404 and r.json()["errorCode"] == 32

    assert a.delete(f"/api/dashboard/{did}").status_code == 200
    r = a.get(f"/api/dashboard/{did}")
    assert r.status_code == 404 and r.json()["message"]
    assert a.delete(f"/api/dashboard/{did}").status_code == 404


def test_pages_text_search_and_sort(world, run):
    a = world.admin
    for i in (3, 1, 4, 0, 2):
        create(a, f"{run}-{i}")
    create(world.other_admin, f"{run}-of-B")
    first = tenant_page(a, run, pageSize=2, sortProperty="title", sortOrder="ASC")
    assert first["totalElements"] == 5 and first["totalPages"] == 3 and first["hasNext"] is True
    assert titles(first) == [f"{run}-0", f"{run}-1"]
    last = tenant_page(a, run, pageSize=2, page=2, sortProperty="title", sortOrder="ASC")
    assert titles(last) == [f"{run}-4"] and last["hasNext"] is False
    assert titles(tenant_page(a, run, sortProperty="title", sortOrder="DESC"))[0] == f"{run}-4"
    newest = tenant_page(a, run, sortProperty="createdTime", sortOrder="DESC")
    assert titles(newest)[-1] == f"{run}-3"
    assert tenant_page(a, run.upper())["totalElements"] == 5  # case-insensitive
    assert titles(tenant_page(world.other_admin, run)) == [f"{run}-of-B"]
    assert all("configuration" not in d for d in first["data"])
    r = a.get("/api/tenant/dashboards", params={"pageSize": 10, "page": 0, "sortProperty": "configuration"})
    assert r.status_code == 400 and "sortProperty" in r.json()["message"]
    assert a.get("/api/tenant/dashboards", params={"pageSize": 0, "page": 0}).status_code == 400
    assert world.customer.get("/api/tenant/dashboards?pageSize=10&page=0").status_code == 403


def test_assignment_and_what_customers_see(world, run):
    a, cust = world.admin, world.customer_ids
    a1, a2 = cust["Customer A1"], cust["Customer A2"]
    d = create(a, f"{run}-for-a1")["id"]["id"]
    shared = create(a, f"{run}-shared")["id"]["id"]
    hidden = create(a, f"{run}-tenant-only", mobileHide=True)["id"]["id"]
    r = a.post(f"/api/customer/{a1}/dashboard/{d}")
    assert r.status_code == 200 and [c["title"] for c in r.json()["assignedCustomers"]] == ["Customer A1"]
    r = a.post(f"/api/dashboard/{shared}/customers/add", json=[a1, a2])
    assert r.status_code == 200 and len(r.json()["assignedCustomers"]) == 2

    c, other = world.customer, world.other_customer
    assert c.get(f"/api/dashboard/{d}").status_code == 200
    assert other.get(f"/api/dashboard/{d}").status_code == 403
    assert c.get(f"/api/dashboard/{hidden}").status_code == 403
    seen = c.get(f"/api/dashboard/{shared}").json()["assignedCustomers"]
    assert [s["customerId"]["id"] for s in seen] == [a1]  # never the other customer
    page = c.get(f"/api/customer/{a1}/dashboards", params={"pageSize": 100, "page": 0, "textSearch": run}).json()
    assert sorted(titles(page)) == [f"{run}-for-a1", f"{run}-shared"]
    assert c.get(f"/api/customer/{a2}/dashboards?pageSize=10&page=0").status_code == 403
    assert world.other_admin.get(f"/api/customer/{a1}/dashboards?pageSize=10&page=0").status_code == 403
    listed = c.get(f"/api/dashboards?dashboardIds={d},{shared},{hidden}").json()
    assert sorted(x["title"] for x in listed) == [f"{run}-for-a1", f"{run}-shared"]
    assert c.post(f"/api/customer/{a1}/dashboard/{hidden}").status_code == 403  # customers never assign

    assert a.post(f"/api/customer/{world.customer_ids['Customer A1']}/dashboard/{hidden}").status_code == 200
    assert tenant_page(a, run, mobile="true")["totalElements"] == 2  # mobileHide left out
    r = a.delete(f"/api/customer/{a1}/dashboard/{d}")
    assert r.status_code == 200 and r.json()["assignedCustomers"] == []
    assert c.get(f"/api/dashboard/{d}").status_code == 403
    r = a.post(f"/api/dashboard/{shared}/customers/remove", json=[a1])
    assert [x["title"] for x in r.json()["assignedCustomers"]] == ["Customer A2"]
    r = a.post(f"/api/dashboard/{shared}/customers", json=[a1])
    assert [x["title"] for x in r.json()["assignedCustomers"]] == ["Customer A1"]
    assert a.post(f"/api/dashboard/{shared}/customers", json=["nope"]).status_code == 400
    other_tenant_customer = world.other_admin.post("/api/customer", json={"title": f"{run}-B"}).json()["id"]["id"]
    assert a.post(f"/api/customer/{other_tenant_customer}/dashboard/{d}").status_code == 403
    # tb-rest-client's owner change: to a customer assigns, back to the tenant unassigns all
    tenant_id = a.get("/api/auth/user").json()["tenantId"]["id"]
    assert a.post(f"/api/owner/CUSTOMER/{a2}/DASHBOARD/{d}").status_code == 200
    assert other.get(f"/api/dashboard/{d}").status_code == 200
    assert a.post(f"/api/owner/TENANT/{tenant_id}/DASHBOARD/{d}").status_code == 200
    assert a.get(f"/api/dashboard/{d}").json()["assignedCustomers"] == []


#: the shared world's own devices: other modules on the session server add devices of their own
#: (to customer A1 too), which the alias filters below may also match
WORLD_DEVICES = {"dev-a1", "dev-a2", "dev-tenant", "dev-b"}


def resolved_names(api, did: str, body=None) -> dict[str, list[str]]:
    r = api.post(f"/api/tbpanel/dashboard/{did}/aliases/resolve", json=body)
    assert r.status_code == 200, r.text
    return {alias: [d["name"] for d in devices if d["name"] in WORLD_DEVICES] for alias, devices in r.json().items()}


def test_alias_resolution_per_user(world, run):
    dev = {name: d["id"]["id"] for name, d in world.devices.items()}
    a2 = world.customer_ids["Customer A2"]

    def alias(flt: dict) -> dict:
        return {"alias": flt["type"], "filter": flt}

    aliases = {
        "single": alias({"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": dev["dev-a1"]}}),
        "list": alias(
            {"type": "entityList", "entityType": "DEVICE", "entityList": [dev["dev-b"], dev["dev-a2"], dev["dev-a1"]]}
        ),
        "type": alias({"type": "deviceType", "deviceTypes": ["sensor"], "deviceNameFilter": "dev-"}),
        "name": alias({"type": "entityName", "entityType": "DEVICE", "entityNameFilter": "dev-a"}),
        "a2": alias({"type": "customerDevices", "customerId": {"entityType": "CUSTOMER", "id": a2}}),
        "b": alias({"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": dev["dev-b"]}}),
    }
    d = create(world.admin, run, configuration={"entityAliases": aliases})["id"]["id"]
    assert world.admin.post(f"/api/dashboard/{d}/customers", json=list(world.customer_ids.values())).status_code == 200

    admin = resolved_names(world.admin, d)
    assert admin["single"] == ["dev-a1"] and admin["list"] == ["dev-a2", "dev-a1"] and admin["b"] == []
    assert {"dev-a1", "dev-a2", "dev-tenant"} <= set(admin["type"]) and "dev-b" not in admin["type"]
    assert admin["name"] == ["dev-a1", "dev-a2"] and admin["a2"] == ["dev-a2"]
    assert resolved_names(world.customer, d) == {
        "single": ["dev-a1"],
        "list": ["dev-a1"],
        "type": ["dev-a1"],
        "name": ["dev-a1"],
        "a2": [],
        "b": [],
    }
    assert resolved_names(world.other_customer, d) == {
        "single": [],
        "list": ["dev-a2"],
        "type": ["dev-a2"],
        "name": ["dev-a2"],
        "a2": ["dev-a2"],
        "b": [],
    }
    # aliases being edited (not stored yet) resolve the same way, for the asking user
    edited = {"entityAliases": {"all": alias({"type": "entityType", "entityType": "DEVICE"})}}
    assert resolved_names(world.customer, d, edited) == {"all": ["dev-a1"]}
    r = world.customer.post(
        f"/api/tbpanel/dashboard/{d}/aliases/resolve", json={"entityAliases": {"x": {"filter": {}}}}
    )
    assert r.status_code == 400 and "configuration.entityAliases.x.filter" in r.json()["message"]
    assert world.other_admin.post(f"/api/tbpanel/dashboard/{d}/aliases/resolve").status_code == 403
    own = create(
        world.other_admin, f"{run}-B", configuration={"entityAliases": {"b": aliases["b"], "a": aliases["single"]}}
    )
    assert resolved_names(world.other_admin, own["id"]["id"]) == {"b": ["dev-b"], "a": []}


def test_export_import_round_trip(world, run):
    a = world.admin
    config = {
        "description": "round trip ✓",
        "widgets": {"w": {"id": "w", "type": "latest", "typeFullFqn": "tbpanel.value", "config": {"datasources": []}}},
        "states": {
            "default": {
                "name": run,
                "root": True,
                "layouts": {"main": {"widgets": {"w": {"row": 0, "col": 0, "sizeX": 4, "sizeY": 3}}}},
            }
        },
        "entityAliases": {},
        "timewindow": {"selectedTab": 1, "history": {"fixedTimewindow": {"startTimeMs": 1, "endTimeMs": 2}}},
        "settings": {},
    }
    original = create(a, run, configuration=config, image="data:image/png;base64,AA==")
    exported = a.get(f"/api/tbpanel/dashboard/{original['id']['id']}/export")
    assert exported.status_code == 200 and "attachment" in exported.headers["Content-Disposition"]
    body = exported.json()
    assert "id" not in body and "tenantId" not in body and body["configuration"] == config
    imported = a.post("/api/tbpanel/dashboard/import", json=body)
    assert imported.status_code == 200, imported.text
    new_id = imported.json()["id"]["id"]
    assert new_id != original["id"]["id"]
    assert a.get(f"/api/tbpanel/dashboard/{new_id}/export").json() == body
    # a full GET answer imports too, as a new dashboard (the id in it never overwrites)
    again = a.post("/api/tbpanel/dashboard/import", json=a.get(f"/api/dashboard/{new_id}").json()).json()
    assert again["id"]["id"] not in (new_id, original["id"]["id"])
    assert world.customer.post("/api/tbpanel/dashboard/import", json=body).status_code == 403


@pytest.mark.parametrize(
    "body,field",
    [
        ({"configuration": {}}, "title"),
        ({"configuration": {"widgets": {"w": {"type": "nope"}}}}, "configuration.widgets.w.type"),
        (
            {"configuration": {"entityAliases": {"a": {"alias": "A", "filter": {"type": "bogus"}}}}},
            "configuration.entityAliases.a.filter.type",
        ),
        (
            {"configuration": {"widgets": {"w": {"config": {"datasources": [{"entityAliasId": "gone"}]}}}}},
            "configuration.widgets.w.config.datasources[0].entityAliasId",
        ),
        (
            {"configuration": {"timewindow": {"aggregation": {"type": "P99"}}}},
            "configuration.timewindow.aggregation.type",
        ),
        ({"configuration": {"settings": {"blob": "x" * (5 * 1024 * 1024)}}}, "configuration is larger than"),
        ({"mobileOrder": "first"}, "mobileOrder"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_stores_nothing(world, run, body, field):
    body = {"title": run, **body} if field != "title" else body
    r = world.admin.post("/api/dashboard", json=body)
    assert r.status_code == 400 and r.json()["errorCode"] == 31, r.text
    assert field in r.json()["message"]
    assert tenant_page(world.admin, run)["totalElements"] == 0
    r = world.admin.post(
        "/api/tbpanel/dashboard/import", json=body if "configuration" in body else dict(body, configuration={})
    )
    assert r.status_code == 400 and field in r.json()["message"]
    assert tenant_page(world.admin, run)["totalElements"] == 0
    assert world.admin.post("/api/dashboard", data=b"{not json").status_code == 400
    assert world.admin.post("/api/dashboard", json=[1]).status_code == 400

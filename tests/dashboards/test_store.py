"""DashboardStore on a real entities.sqlite: save/get/update with versions, pages and text
search, customer assignment and who sees what, export → import, the configuration rules
(InvalidInput naming the field, nothing stored), cascades, and the upgrade of a version-2 file."""

from __future__ import annotations

import copy
import sqlite3
import uuid

import pytest

from tbpanel.dashboards import MAX_CONFIGURATION_BYTES, DashboardStore, validate_configuration
from tbpanel.entities import EntityRegistry, InvalidInput, NotFound, PermissionDenied
from tbpanel.entities.registry import DB_FILE
from tbpanel.entities.tables import MIGRATIONS
from tbpanel.errors import VersionConflict
from tbpanel.sqlite import Database

from .conftest import Fleet


def sample_configuration(device_id: str) -> dict:
    """A dashboard as the contract stores it: one alias, one widget on it, one state."""
    return {
        "description": "Pumps",
        "widgets": {
            "w1": {
                "id": "w1",
                "typeFullFqn": "tbpanel.timeseries",
                "type": "timeseries",
                "config": {
                    "title": "Flow",
                    "datasources": [
                        {
                            "type": "entity",
                            "entityAliasId": "a1",
                            "dataKeys": [{"name": "flow", "type": "timeseries", "label": "Flow", "units": "l/s"}],
                        }
                    ],
                    "useDashboardTimewindow": True,
                    "settings": {"line": "step", "ünïcode": "✓"},
                },
            }
        },
        "states": {
            "default": {
                "name": "Pumps",
                "root": True,
                "layouts": {
                    "main": {
                        "widgets": {"w1": {"row": 0, "col": 0, "sizeX": 12, "sizeY": 6}},
                        "gridSettings": {"columns": 24},
                    }
                },
            }
        },
        "entityAliases": {
            "a1": {
                "id": "a1",
                "alias": "the pump",
                "filter": {
                    "type": "singleEntity",
                    "singleEntity": {"entityType": "DEVICE", "id": device_id},
                    "resolveMultiple": False,
                },
            }
        },
        "timewindow": {
            "selectedTab": 0,
            "realtime": {"timewindowMs": 3_600_000, "interval": 60_000},
            "aggregation": {"type": "AVG", "limit": 500},
            "timezone": "Europe/Berlin",
        },
        "settings": {"showTitle": True},
        "someThingsBoardKey": [1, 2, {"x": None}],
    }


def count(f: Fleet) -> int:
    return f.reg.database.one("SELECT COUNT(*) FROM dashboard")[0]


def test_create_get_update_delete(fleet: Fleet):
    f = fleet
    config = sample_configuration(f.devices["pump-1"])
    saved = f.store.save(f.admin, {"title": "Pumps", "configuration": config})
    assert saved["id"]["entityType"] == "DASHBOARD" and saved["tenantId"]["id"] == f.tenant
    assert saved["title"] == saved["name"] == "Pumps" and saved["assignedCustomers"] == []
    assert saved["configuration"] == config and saved["version"] == 1
    assert list(saved) == [
        "id",
        "createdTime",
        "tenantId",
        "title",
        "name",
        "image",
        "mobileHide",
        "mobileOrder",
        "assignedCustomers",
        "configuration",
        "version",
    ]  # ThingsBoard's field order
    did = saved["id"]["id"]
    assert f.store.get(f.admin, did) == saved
    info = f.store.get_info(f.admin, did)
    assert "configuration" not in info and info["title"] == "Pumps"

    changed = dict(saved, title="Pumps 2", configuration=dict(config, description="new"))
    updated = f.store.save(f.admin, changed)
    assert updated["id"] == saved["id"] and updated["createdTime"] == saved["createdTime"]
    assert updated["version"] == 2 and updated["configuration"]["description"] == "new"
    with pytest.raises(VersionConflict) as err:  # saved in between: the stale copy is refused
        f.store.save(f.admin, dict(changed, title="stale"))
    assert err.value.status == 409 and f.store.get(f.admin, did)["title"] == "Pumps 2"
    without_version = {k: v for k, v in changed.items() if k != "version"}
    assert f.store.save(f.admin, without_version)["version"] == 3

    f.store.delete(f.admin, did)
    with pytest.raises(NotFound):
        f.store.get(f.admin, did)
    with pytest.raises(NotFound):
        f.store.delete(f.admin, did)


def test_new_dashboard_without_configuration_gets_an_empty_one(fleet: Fleet):
    saved = fleet.store.save(fleet.admin, {"title": "Empty"})
    config = saved["configuration"]
    assert config["widgets"] == {} and config["entityAliases"] == {}
    assert config["states"]["default"]["root"] is True
    assert validate_configuration(config) == config


def test_only_tenant_admins_write_and_only_their_tenant(fleet: Fleet):
    f = fleet
    did = f.store.save(f.admin, {"title": "D"})["id"]["id"]
    for who in (f.user1, f.other_admin, f.other_user):
        with pytest.raises(PermissionDenied):
            f.store.save(who, {"title": "mine", "id": {"entityType": "DASHBOARD", "id": did}})
        with pytest.raises(PermissionDenied):
            f.store.delete(who, did)
        with pytest.raises(PermissionDenied):
            f.store.assign(who, f.c1, did)
    with pytest.raises(PermissionDenied):
        f.store.save(f.user1, {"title": "new"})
    with pytest.raises(PermissionDenied):  # another tenant's admin cannot read it either
        f.store.get(f.other_admin, did)
    with pytest.raises(NotFound):  # an unknown id is 404, for anyone
        f.store.get(f.other_admin, str(uuid.uuid4()))
    assert f.store.get(f.admin, did)["title"] == "D" and count(f) == 1


def test_pages_text_search_and_sort(fleet: Fleet):
    f = fleet
    for title in ["beta", "Alpha", "gamma 50%", "alpha_2", "Delta"]:
        f.store.save(f.admin, {"title": title})
    f.store.save(f.other_admin, {"title": "alpha of U"})
    items, total = f.store.list_tenant(f.admin, page=0, page_size=2)
    assert total == 5 and [i["title"] for i in items] == ["Alpha", "alpha_2"]
    items, _ = f.store.list_tenant(f.admin, page=2, page_size=2)
    assert [i["title"] for i in items] == ["gamma 50%"]
    assert f.store.list_tenant(f.admin, page=3, page_size=2) == ([], 5)
    items, total = f.store.list_tenant(f.admin, text_search="ALPHA")
    assert total == 2 and {i["title"] for i in items} == {"Alpha", "alpha_2"}
    assert [i["title"] for i in f.store.list_tenant(f.admin, text_search="_")[0]] == ["alpha_2"]  # literal
    assert [i["title"] for i in f.store.list_tenant(f.admin, text_search="%")[0]] == ["gamma 50%"]
    newest = f.store.list_tenant(f.admin, sort_property="createdTime", sort_order="DESC")[0]
    assert newest[-1]["title"] == "beta"
    desc = [i["title"] for i in f.store.list_tenant(f.admin, sort_order="DESC")[0]]
    assert desc[0] == "gamma 50%"
    assert all("configuration" not in i for i in items)
    with pytest.raises(InvalidInput, match="sortProperty"):
        f.store.list_tenant(f.admin, sort_property="configuration")
    with pytest.raises(InvalidInput, match="pageSize"):
        f.store.list_tenant(f.admin, page_size=0)
    with pytest.raises(PermissionDenied):
        f.store.list_tenant(f.user1)


def test_assignment_and_who_sees_what(fleet: Fleet):
    f = fleet
    d1 = f.store.save(f.admin, {"title": "For C1"})["id"]["id"]
    d2 = f.store.save(f.admin, {"title": "For both"})["id"]["id"]
    d3 = f.store.save(f.admin, {"title": "Tenant only"})["id"]["id"]
    assigned = f.store.assign(f.admin, f.c1, d1)
    assert [c["title"] for c in assigned["assignedCustomers"]] == ["C1"]
    assert f.store.assign(f.admin, f.c1, d1) == f.store.get(f.admin, d1)  # again: no change
    f.store.assign(f.admin, f.c1, d2)
    both = f.store.assign(f.admin, f.c2, d2)
    assert [c["customerId"]["id"] for c in both["assignedCustomers"]] == [f.c1, f.c2]
    assert both["assignedCustomers"][0] == {
        "customerId": {"entityType": "CUSTOMER", "id": f.c1},
        "title": "C1",
        "public": False,
    }

    # a customer user reads what is assigned to its customer, and sees only its customer in it
    assert f.store.get(f.user1, d1)["title"] == "For C1"
    assert [c["title"] for c in f.store.get(f.user1, d2)["assignedCustomers"]] == ["C1"]
    assert [c["title"] for c in f.store.get(f.user2, d2)["assignedCustomers"]] == ["C2"]
    for who, did in [(f.user2, d1), (f.user1, d3), (f.other_user, d2), (f.other_admin, d1)]:
        with pytest.raises(PermissionDenied):
            f.store.get(who, did)
        with pytest.raises(PermissionDenied):
            f.store.get_info(who, did)
        with pytest.raises(PermissionDenied):
            f.store.export_json(who, did)

    items, total = f.store.list_customer(f.user1, f.c1)
    assert total == 2 and [i["title"] for i in items] == ["For both", "For C1"]
    assert [i["title"] for i in f.store.list_customer(f.admin, f.c2)[0]] == ["For both"]
    assert f.store.list_customer(f.admin, f.c1, text_search="c1")[1] == 1
    with pytest.raises(PermissionDenied):
        f.store.list_customer(f.user1, f.c2)  # another customer's list
    with pytest.raises(PermissionDenied):
        f.store.list_customer(f.other_admin, f.c1)
    with pytest.raises(PermissionDenied):
        f.store.assign(f.admin, f.other_customer, d1)  # a customer of another tenant
    with pytest.raises(NotFound):
        f.store.assign(f.admin, str(uuid.uuid4()), d1)
    assert [i["title"] for i in f.store.list_by_ids(f.user1, [d3, d2, d1, str(uuid.uuid4())])] == ["For both", "For C1"]
    assert len(f.store.list_by_ids(f.admin, [d3, d2])) == 2 and f.store.list_by_ids(f.other_admin, [d1]) == []

    unassigned = f.store.unassign(f.admin, f.c1, d2)
    assert [c["title"] for c in unassigned["assignedCustomers"]] == ["C2"]
    assert f.store.unassign(f.admin, f.c1, d2) == unassigned  # not assigned: no change
    with pytest.raises(PermissionDenied):
        f.store.get(f.user1, d2)
    assert f.store.set_customers(f.admin, d3, [f.c1, f.c2])["assignedCustomers"][1]["title"] == "C2"
    with pytest.raises(PermissionDenied):  # one bad customer: nothing of the call is applied
        f.store.set_customers(f.admin, d3, [f.c1, f.other_customer], mode="set")
    assert len(f.store.get(f.admin, d3)["assignedCustomers"]) == 2
    assert f.store.unassign_all(f.admin, d3)["assignedCustomers"] == []


def test_deletes_cascade(fleet: Fleet):
    f = fleet
    did = f.store.save(f.admin, {"title": "D"})["id"]["id"]
    f.store.assign(f.admin, f.c1, did)
    f.store.assign(f.admin, f.c2, did)
    f.reg.delete_customer(f.c2)
    assert [c["title"] for c in f.store.get(f.admin, did)["assignedCustomers"]] == ["C1"]
    f.store.delete(f.admin, did)
    assert f.reg.database.one("SELECT COUNT(*) FROM dashboard_customer")[0] == 0
    f.store.save(f.other_admin, {"title": "U's"})
    with f.reg.transaction():  # no delete_tenant in the registry yet: the cascade itself
        f.reg.database.conn.execute("DELETE FROM tenant WHERE id = ?", (f.other_tenant,))
    assert count(f) == 0


def test_export_import_round_trip(fleet: Fleet):
    f = fleet
    original = f.store.save(
        f.admin,
        {
            "title": "Pumps",
            "image": "data:image/png;base64,AAAA",
            "mobileHide": True,
            "mobileOrder": 3,
            "configuration": sample_configuration(f.devices["pump-1"]),
        },
    )
    f.store.assign(f.admin, f.c1, original["id"]["id"])
    exported = f.store.export_json(f.admin, original["id"]["id"])
    assert set(exported) == {"title", "name", "image", "mobileHide", "mobileOrder", "configuration"}
    assert f.store.export_json(f.user1, original["id"]["id"]) == exported  # what a reader may export
    imported = f.store.import_json(f.admin, copy.deepcopy(exported))
    assert imported["id"] != original["id"] and imported["assignedCustomers"] == [] and imported["version"] == 1
    assert f.store.export_json(f.admin, imported["id"]["id"]) == exported  # identical
    # another tenant imports it: its own new dashboard; the alias names a device it cannot see
    theirs = f.store.import_json(f.other_admin, dict(exported, id=original["id"], tenantId=original["tenantId"]))
    assert theirs["tenantId"]["id"] == f.other_tenant and theirs["id"] != original["id"]
    assert f.store.get(f.admin, original["id"]["id"])["version"] == 1  # never overwritten by an import
    with pytest.raises(InvalidInput, match="configuration is required"):
        f.store.import_json(f.admin, {"title": "no config"})


BAD = [
    ({"configuration": {}}, "title"),
    ({"title": "  "}, "title"),
    ({"title": 5}, "title"),
    ({"title": "x", "mobileHide": "yes"}, "mobileHide"),
    ({"title": "x", "configuration": []}, "configuration must be a JSON object"),
    ({"title": "x", "configuration": {"widgets": []}}, "configuration.widgets must"),
    ({"title": "x", "configuration": {"widgets": {"w": {"id": "v"}}}}, "configuration.widgets.w.id"),
    ({"title": "x", "configuration": {"widgets": {"w": {"type": "chart"}}}}, "configuration.widgets.w.type"),
    (
        {"title": "x", "configuration": {"widgets": {"w": {"config": {"datasources": [{"entityAliasId": "nope"}]}}}}},
        r"configuration.widgets.w.config.datasources\[0\].entityAliasId",
    ),
    (
        {
            "title": "x",
            "configuration": {"widgets": {"w": {"config": {"datasources": [{"dataKeys": [{"type": "timeseries"}]}]}}}},
        },
        r"datasources\[0\].dataKeys\[0\].name",
    ),
    (
        {"title": "x", "configuration": {"states": {"s": {"layouts": {"main": {"widgets": {"ghost": {}}}}}}}},
        "configuration.states.s.layouts.main.widgets.ghost names no widget",
    ),
    (
        {
            "title": "x",
            "configuration": {
                "widgets": {"w": {}},
                "states": {"s": {"layouts": {"m": {"widgets": {"w": {"sizeX": -1}}}}}},
            },
        },
        "configuration.states.s.layouts.m.widgets.w.sizeX",
    ),
    ({"title": "x", "configuration": {"states": {"a": {"root": True}, "b": {"root": True}}}}, "only one state"),
    (
        {"title": "x", "configuration": {"entityAliases": {"a": {"alias": "A", "filter": {"type": "relationsQuery"}}}}},
        "configuration.entityAliases.a.filter.type",
    ),
    (
        {"title": "x", "configuration": {"entityAliases": {"a": {"filter": {"type": "entityList"}}}}},
        "configuration.entityAliases.a.alias",
    ),
    (
        {
            "title": "x",
            "configuration": {
                "entityAliases": {
                    "a": {
                        "alias": "A",
                        "filter": {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": "nope"}},
                    }
                }
            },
        },
        "configuration.entityAliases.a.filter.singleEntity.id",
    ),
    (
        {
            "title": "x",
            "configuration": {
                "entityAliases": {"a": {"alias": "A", "filter": {"type": "customerDevices", "customerId": 7}}}
            },
        },
        "configuration.entityAliases.a.filter.customerId",
    ),
    ({"title": "x", "configuration": {"timewindow": {"selectedTab": 3}}}, "configuration.timewindow.selectedTab"),
    (
        {"title": "x", "configuration": {"timewindow": {"aggregation": {"type": "MEDIAN"}}}},
        "configuration.timewindow.aggregation.type",
    ),
    (
        {"title": "x", "configuration": {"timewindow": {"timezone": "Mars/Olympus"}}},
        "configuration.timewindow.timezone",
    ),
    (
        {"title": "x", "configuration": {"timewindow": {"realtime": {"timewindowMs": 0}}}},
        "configuration.timewindow.realtime.timewindowMs",
    ),
    (
        {
            "title": "x",
            "configuration": {"timewindow": {"history": {"fixedTimewindow": {"startTimeMs": 5, "endTimeMs": 1}}}},
        },
        "startTimeMs is after endTimeMs",
    ),
    ({"title": "x", "configuration": {"description": float("nan")}}, "configuration.description"),
    ({"title": "x", "configuration": {"settings": {"v": float("nan")}}}, "not valid JSON"),
    ({"title": "x", "configuration": {"settings": {"big": "x" * MAX_CONFIGURATION_BYTES}}}, "larger than"),
]


@pytest.mark.parametrize("body,field", BAD, ids=[f for _, f in BAD])
def test_bad_input_names_the_field_and_stores_nothing(fleet: Fleet, body, field):
    f = fleet
    with pytest.raises(InvalidInput, match=field):
        f.store.save(f.admin, body)
    assert count(f) == 0
    # an update with the same body changes nothing either
    saved = f.store.save(f.admin, {"title": "ok"})
    with pytest.raises(InvalidInput, match=field):
        f.store.save(f.admin, dict(body, id=saved["id"]))
    assert f.store.get(f.admin, saved["id"]["id"]) == saved


def test_migration_3_upgrades_a_version_2_file(tmp_path):
    """A file written before dashboards (user_version 2) gets the tables in place."""
    path = tmp_path / DB_FILE
    db = Database(str(path), MIGRATIONS[:2], what="test")
    db.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
    with EntityRegistry(tmp_path) as reg:
        t = reg.create_tenant("T")
        from tests.dashboards.conftest import user

        store = DashboardStore(reg)
        assert store.save(user("TENANT_ADMIN", t.id), {"title": "after upgrade"})["version"] == 1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 3

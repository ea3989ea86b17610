"""Latest values of many devices in one store read, scoped to what a user may see; the
telemetry page's device picker lists search matches, never the whole fleet.

Real store (SQLite files) and registry in ``tmp_path``; nothing is mocked.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tbpanel.entities import EntityRegistry
from tbpanel.store import ValueType, open_store
from tbpanel.views.fleet import Fleet
from tbpanel.views.telemetry import TelemetryQuery

V = ValueType
JAN = 1_704_067_200_000  # 2024-01-01T00:00Z
FAR = 4_102_444_800_000


def test_latest_many_equals_latest_per_entity(store):
    pts = []
    for d in range(700):  # more than one SQL chunk of entities
        for k, (vt, v) in enumerate([(V.DOUBLE, d + 0.5), (V.LONG, 2**62 + d), (V.STR, f"s{d}"), (V.BOOL, d % 2 == 0)]):
            pts.append((f"dev-{d}", f"k{k}", JAN + d, vt, v))
            pts.append((f"dev-{d}", f"k{k}", JAN + d - 10, vt, v))  # older: not the latest
    store.write_points(pts)
    ents = [f"dev-{d}" for d in range(700)] + ["never-written"]
    got = store.latest_many(ents)
    assert list(got) == ents and got["never-written"] == {}
    for e in ents:
        assert got[e] == store.latest(e)
    assert got["dev-3"] == {
        "k0": (JAN + 3, V.DOUBLE, 3.5),
        "k1": (JAN + 3, V.LONG, 2**62 + 3),
        "k2": (JAN + 3, V.STR, "s3"),
        "k3": (JAN + 3, V.BOOL, False),
    }
    assert type(got["dev-3"]["k3"][2]) is bool and type(got["dev-3"]["k0"][2]) is float
    # a key filter; unknown keys are simply absent; the order of keys is sorted
    sub = store.latest_many(["dev-1", "dev-2"], ["k2", "k0", "nope"])
    assert sub == {
        "dev-1": {"k0": (JAN + 1, V.DOUBLE, 1.5), "k2": (JAN + 1, V.STR, "s1")},
        "dev-2": {"k0": (JAN + 2, V.DOUBLE, 2.5), "k2": (JAN + 2, V.STR, "s2")},
    }
    assert list(sub["dev-1"]) == ["k0", "k2"]
    assert store.latest_many(["dev-1"], "k1") == {"dev-1": {"k1": (JAN + 1, V.LONG, 2**62 + 1)}}
    assert store.latest_many(["dev-1"], []) == {"dev-1": {}}
    assert store.latest_many([]) == {}


def test_latest_many_after_delete_compaction_and_from_a_second_instance(store, tmp_path):
    store.write_points(
        [("a", "t", JAN + 1, V.DOUBLE, 1.0), ("a", "h", JAN + 2, V.DOUBLE, 2.0), ("b", "t", JAN + 3, V.DOUBLE, 3.0)]
    )
    store.delete("a", ["h"], 0, FAR)  # deleteLatest: h has no latest value any more
    store.compact(before_ts=FAR)
    assert store.latest_many(["a", "b"]) == {"a": {"t": (JAN + 1, V.DOUBLE, 1.0)}, "b": {"t": (JAN + 3, V.DOUBLE, 3.0)}}
    # another store object on the same directory writes a series this one has never seen
    with open_store(tmp_path / "data", compaction_interval_s=0) as other:
        other.write_points([("c", "x", JAN + 4, V.LONG, 7)])
    assert store.latest_many(["c", "b"], ["x", "t"]) == {
        "c": {"x": (JAN + 4, V.LONG, 7)},
        "b": {"t": (JAN + 3, V.DOUBLE, 3.0)},
    }


@pytest.fixture
def platform(tmp_path, store):
    reg = EntityRegistry(tmp_path / "entities")
    tenant = reg.create_tenant("T")
    other_tenant = reg.create_tenant("U")
    c1, c2 = reg.create_customer(tenant.id, "C1"), reg.create_customer(tenant.id, "C2")
    admin = reg.create_user("admin@t.test", "password1", "TENANT_ADMIN", tenant.id)
    cust = reg.create_user("user@c1.test", "password1", "CUSTOMER_USER", tenant.id, c1.id)
    devs = {}
    for i in range(120):
        cid = c1.id if i % 3 == 0 else c2.id if i % 3 == 1 else None
        devs[i] = reg.save_device(tenant.id, f"pump-{i:03d}", "pump", customer_id=cid)
    foreign = reg.save_device(other_tenant.id, "pump-foreign", "pump")
    store.write_points(
        [(d.id, "p", JAN + i, V.DOUBLE, float(i)) for i, d in devs.items()] + [(foreign.id, "p", JAN, V.DOUBLE, -1.0)]
    )
    yield SimpleNamespace(registry=reg, store=store, admin=admin, customer=cust, devs=devs, foreign=foreign, c1=c1)
    reg.close()


def test_fleet_latest_is_scoped_to_the_users_devices(platform):
    admin = Fleet(platform, platform.admin).latest(["p"])
    assert len(admin) == 120 and platform.foreign.id not in set(admin["id"])
    row = admin[admin["device"] == "pump-007"].iloc[0]
    assert (row["key"], row["value"], row["id"]) == ("p", 7.0, platform.devs[7].id)
    cust = Fleet(platform, platform.customer).latest()
    assert set(cust["id"]) == {d.id for i, d in platform.devs.items() if i % 3 == 0}
    assert list(cust["device"]) == sorted(cust["device"])
    nobody = SimpleNamespace(authority="SYS_ADMIN", tenant_id=None, customer_id=None)
    assert Fleet(platform, nobody).latest().empty


def test_find_devices_pages_and_searches_within_the_users_scope(platform):
    q = TelemetryQuery(platform, platform.admin)
    found, total = q.find_devices("", limit=50)
    assert total == 120 and [d.name for d in found] == [f"pump-{i:03d}" for i in range(50)]
    found, total = q.find_devices("PUMP-11", limit=50)
    assert total == 10 and {d.name for d in found} == {f"pump-{i}" for i in range(110, 120)}
    cq = TelemetryQuery(platform, platform.customer)
    found, total = cq.find_devices("pump-00", limit=50)
    assert total == 4 and [d.name for d in found] == ["pump-000", "pump-003", "pump-006", "pump-009"]
    assert cq.find_devices("foreign")[1] == 0


def test_picker_holds_search_matches_not_the_fleet(platform):
    from tbpanel.ui.telemetry import PICKER_LIMIT, TelemetryView

    q = TelemetryQuery(platform, platform.admin)
    view = TelemetryView(query=q)
    options = view._device.options
    assert len(options) == PICKER_LIMIT + 1  # plus "pick a device"
    assert "50 of 120" in view._matches.object
    view._search.value_input = "pump-11"
    assert sorted(n for n in view._device.options.values() if n) == sorted(platform.devs[i].id for i in range(110, 120))
    assert view._matches.object == ""
    view._search.value_input = "no-such-pump"
    assert list(view._device.options.values()) == [""] and "No device matches" in view._matches.object
    view._search.value_input = "pump-11"
    # a device chosen by URL that is not among the matches stays listed and selected
    q.device = platform.devs[5].id
    assert view._device.value == platform.devs[5].id
    assert platform.devs[5].id in view._device.options.values()
    # a customer user's picker never lists another customer's device, even when searched for
    cview = TelemetryView(query=TelemetryQuery(platform, platform.customer))
    cview._search.value_input = "pump-001"  # a C2 device
    assert [v for v in cview._device.options.values() if v] == []
    cview.query.device = platform.devs[1].id
    assert cview._device.value == "" and cview._current is None

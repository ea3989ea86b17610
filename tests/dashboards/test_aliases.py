"""Entity aliases resolved per user on a real entities.sqlite: every filter type, the order of
the answer, resolveMultiple, and the rule that matters most: a customer user never gets a
device of another customer or tenant (checked on fixed cases and on random fleets)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbpanel.dashboards import resolve_alias, resolve_aliases
from tbpanel.entities import CUSTOMER_USER, SYS_ADMIN, TENANT_ADMIN, EntityRegistry, InvalidInput

from .conftest import Fleet, user


def single(device_id: str, multiple: bool = False) -> dict:
    return {
        "type": "singleEntity",
        "singleEntity": {"entityType": "DEVICE", "id": device_id},
        "resolveMultiple": multiple,
    }


def names(devices) -> list[str]:
    return [d.name for d in devices]


def test_single_entity(fleet: Fleet):
    f = fleet
    alias = {"id": "a", "alias": "A", "filter": single(f.devices["pump-1"])}
    assert names(resolve_alias(f.reg, f.admin, alias)) == ["pump-1"]
    assert names(resolve_alias(f.reg, f.user1, alias)) == ["pump-1"]
    assert resolve_alias(f.reg, f.user2, alias) == []  # c1's device, asked by c2's user
    assert resolve_alias(f.reg, f.other_admin, alias) == []  # another tenant's device
    assert resolve_alias(f.reg, f.admin, single(str(uuid.uuid4()))) == []  # unknown: the same answer
    assert resolve_alias(f.reg, f.admin, single(f.devices["u-pump"])) == []


def test_entity_list_keeps_its_order_and_scope(fleet: Fleet):
    f = fleet
    d = f.devices
    flt = {
        "type": "entityList",
        "entityType": "DEVICE",
        "entityList": [d["meter-1"], d["pump-2"], d["u-pump"], d["pump-1"], d["meter-1"]],
    }
    assert names(resolve_alias(f.reg, f.admin, flt)) == ["meter-1", "pump-2", "pump-1"]
    assert names(resolve_alias(f.reg, f.user1, flt)) == ["meter-1", "pump-1"]
    assert names(resolve_alias(f.reg, f.user2, flt)) == ["pump-2"]
    assert names(resolve_alias(f.reg, f.other_user, flt)) == ["u-pump"]
    assert names(resolve_alias(f.reg, f.admin, dict(flt, resolveMultiple=False))) == ["meter-1"]
    assert resolve_alias(f.reg, f.admin, dict(flt, entityList=[])) == []


def test_device_type_name_filter_and_entity_type(fleet: Fleet):
    f = fleet
    pumps = {"type": "deviceType", "deviceTypes": ["pump"]}
    assert names(resolve_alias(f.reg, f.admin, pumps)) == ["pump-1", "pump-2", "pump-3"]
    assert names(resolve_alias(f.reg, f.user1, pumps)) == ["pump-1"]
    assert names(resolve_alias(f.reg, f.other_admin, pumps)) == ["u-pump"]
    both = {"type": "deviceType", "deviceTypes": ["pump", "meter"], "deviceNameFilter": "p"}
    assert names(resolve_alias(f.reg, f.admin, both)) == ["pump-1", "pump-2", "pump-3"]
    legacy = {"type": "deviceType", "deviceType": "meter"}  # ThingsBoard's older single type
    assert names(resolve_alias(f.reg, f.admin, legacy)) == ["meter-1", "Meter-2"]
    by_name = {"type": "entityName", "entityType": "DEVICE", "entityNameFilter": "METER"}  # prefix, any case
    assert names(resolve_alias(f.reg, f.admin, by_name)) == ["meter-1", "Meter-2"]
    assert names(resolve_alias(f.reg, f.user1, by_name)) == ["meter-1"]
    assert resolve_alias(f.reg, f.user2, by_name) == []
    assert resolve_alias(f.reg, f.admin, dict(by_name, entityNameFilter="ump")) == []  # a prefix, not a substring
    every = {"type": "entityType", "entityType": "DEVICE"}
    assert len(resolve_alias(f.reg, f.admin, every)) == 5 and len(resolve_alias(f.reg, f.user1, every)) == 2
    # aliases of other entity types are stored but select no devices
    assert resolve_alias(f.reg, f.admin, {"type": "entityType", "entityType": "CUSTOMER"}) == []


def test_customer_devices(fleet: Fleet):
    f = fleet
    of_c1 = {"type": "customerDevices", "customerId": {"entityType": "CUSTOMER", "id": f.c1}}
    assert names(resolve_alias(f.reg, f.admin, of_c1)) == ["meter-1", "pump-1"]
    assert names(resolve_alias(f.reg, f.user1, of_c1)) == ["meter-1", "pump-1"]
    assert resolve_alias(f.reg, f.user2, of_c1) == []  # another customer's
    assert resolve_alias(f.reg, f.other_admin, of_c1) == []  # another tenant's customer
    assert names(resolve_alias(f.reg, f.other_admin, {"type": "customerDevices", "customerId": f.other_customer})) == [
        "u-pump"
    ]
    assert resolve_alias(f.reg, f.admin, {"type": "customerDevices", "customerId": f.other_customer}) == []


def test_users_who_see_no_devices(fleet: Fleet):
    f = fleet
    flt = {"type": "entityType", "entityType": "DEVICE"}
    for who in (
        user(SYS_ADMIN, None),
        user(TENANT_ADMIN, f.tenant, enabled=False),
        user(CUSTOMER_USER, f.tenant, None),  # a customer user without a customer
        user(CUSTOMER_USER, f.tenant, f.c1, enabled=False),
    ):
        assert resolve_alias(f.reg, who, flt) == []


def test_malformed_aliases_are_invalid_input(fleet: Fleet):
    f = fleet
    for bad, field in [
        ({"type": "relationsQuery"}, "filter.type"),
        ({"type": "singleEntity"}, "filter.singleEntity"),
        ({"type": "entityList", "entityType": "DEVICE", "entityList": "x"}, "filter.entityList"),
        ({"type": "deviceType", "deviceTypes": [1]}, "filter.deviceTypes"),
        ({"type": "customerDevices"}, "filter.customerId"),
        ({"type": "entityType", "entityType": "DEVICE", "resolveMultiple": "yes"}, "filter.resolveMultiple"),
    ]:
        with pytest.raises(InvalidInput, match=field):
            resolve_alias(f.reg, f.admin, {"id": "a", "alias": "A", "filter": bad})


def test_resolve_aliases_of_a_configuration(fleet: Fleet):
    f = fleet
    config = {
        "entityAliases": {
            "one": {"id": "one", "alias": "One", "filter": single(f.devices["pump-2"])},
            "all": {"id": "all", "alias": "All", "filter": {"type": "entityType", "entityType": "DEVICE"}},
        }
    }
    got = {k: names(v) for k, v in resolve_aliases(f.reg, f.user2, config).items()}
    assert got == {"one": ["pump-2"], "all": ["pump-2"]}
    with pytest.raises(InvalidInput, match="configuration.entityAliases.bad.filter.type"):
        resolve_aliases(f.reg, f.admin, {"entityAliases": {"bad": {"filter": {"type": "nope"}}}})


# --------------------------------------------------------------------------- random fleets
FILTERS = st.sampled_from(["single", "list", "type", "name", "customer", "all"])


@pytest.fixture(scope="module")
def random_reg(tmp_path_factory):
    reg = EntityRegistry(tmp_path_factory.mktemp("random-fleets"))
    yield reg
    reg.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    owners=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 2), st.sampled_from(["pump", "meter"])), min_size=1, max_size=12
    ),
    kind=FILTERS,
    picks=st.lists(st.integers(0, 11), max_size=6),
    asker=st.tuples(st.integers(0, 1), st.integers(0, 2)),
)
def test_a_user_only_ever_gets_devices_it_may_read(random_reg, owners, kind, picks, asker):
    """Random devices over two tenants with two customers each (customer 0: none); every user
    resolving any alias gets exactly the matching devices it may read — never one more."""
    reg = random_reg
    run = uuid.uuid4().hex[:8]
    tenants = [reg.create_tenant(f"T{i}-{run}").id for i in range(2)]
    customers = [[None] + [reg.create_customer(t, f"C{j}").id for j in (1, 2)] for t in tenants]
    devices = []
    for n, (ti, ci, dtype) in enumerate(owners):
        d = reg.save_device(tenants[ti], f"d{n}-{run}", type=dtype)
        if customers[ti][ci]:
            d = reg.assign_device(d.id, customers[ti][ci])
        devices.append(d)
    ti, ci = asker
    who = user(CUSTOMER_USER, tenants[ti], customers[ti][ci]) if ci else user(TENANT_ADMIN, tenants[ti])
    ids = [devices[p % len(devices)].id for p in picks]
    flt = {
        "single": single(ids[0] if ids else str(uuid.uuid4()), multiple=True),
        "list": {"type": "entityList", "entityType": "DEVICE", "entityList": ids},
        "type": {"type": "deviceType", "deviceTypes": ["pump"]},
        "name": {"type": "entityName", "entityType": "DEVICE", "entityNameFilter": "d1"},
        "customer": {
            "type": "customerDevices",
            "customerId": customers[picks[0] % 2][1 + picks[0] % 2] if picks else customers[0][1],
        },
        "all": {"type": "entityType", "entityType": "DEVICE"},
    }[kind]
    got = resolve_alias(reg, who, flt)

    def readable(d) -> bool:
        return reg.can_read(who, d)

    def matches(d) -> bool:
        if kind in ("single", "list"):
            return d.id in (ids[:1] if kind == "single" else ids)
        if kind == "type":
            return d.type == "pump"
        if kind == "name":
            return d.name.startswith("d1")
        if kind == "customer":
            return d.customer_id == flt["customerId"]
        return True

    assert all(readable(d) for d in got)
    assert {d.id for d in got} == {d.id for d in devices if readable(d) and matches(d)}

"""The attribute rules as pure functions: who may read/write/delete which scope
(``access.require_attribute_access``), which devices a gateway may act for, and what a device
request asks for and a shared push carries (``device_attributes``)."""

from __future__ import annotations

import pytest

from tbpanel.entities import CUSTOMER_USER, SYS_ADMIN, TENANT_ADMIN, Device, InvalidInput, PermissionDenied, User
from tbpanel.entities.access import gateway_may_act_for, require_attribute_access
from tbpanel.entities.attributes import AttributeChange
from tbpanel.entities.device_attributes import MAX_REQUEST_KEYS, key_list, shared_update, wanted_scopes

DEVICE = Device(id="d1", name="n", tenant_id="t1", customer_id="c1")
ADMIN = User(id="u1", email="a@x", authority=TENANT_ADMIN, tenant_id="t1")
OTHER_ADMIN = User(id="u2", email="b@x", authority=TENANT_ADMIN, tenant_id="t2")
CUSTOMER = User(id="u3", email="c@x", authority=CUSTOMER_USER, tenant_id="t1", customer_id="c1")
OTHER_CUSTOMER = User(id="u4", email="d@x", authority=CUSTOMER_USER, tenant_id="t1", customer_id="c2")
SYS = User(id="u5", email="s@x", authority=SYS_ADMIN)
DISABLED = User(id="u6", email="e@x", authority=TENANT_ADMIN, tenant_id="t1", enabled=False)

ALLOWED = {
    # (user, action, scope) that may pass; everything else is refused
    (u, action, scope)
    for u in ("admin", "customer")
    for action, scopes in (
        ("read", ("CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE", None)),
        ("write", ("SHARED_SCOPE", "SERVER_SCOPE")),
        ("delete", ("CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE")),
    )
    for scope in scopes
}
USERS = {
    "admin": ADMIN,
    "customer": CUSTOMER,
    "other_admin": OTHER_ADMIN,
    "other_customer": OTHER_CUSTOMER,
    "sys": SYS,
    "disabled": DISABLED,
    "nobody": None,
}


@pytest.mark.parametrize("who", sorted(USERS))
@pytest.mark.parametrize("action", ["read", "write", "delete"])
@pytest.mark.parametrize("scope", ["CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE", None])
def test_attribute_access_matrix(who, action, scope):
    if (who, action, scope) in ALLOWED:
        assert require_attribute_access(USERS[who], DEVICE, scope, action) is DEVICE
    else:
        with pytest.raises(PermissionDenied):
            require_attribute_access(USERS[who], DEVICE, scope, action)


def test_gateway_may_act_for():
    tenant_gw = Device(id="g1", name="gw", tenant_id="t1")
    customer_gw = Device(id="g2", name="gw2", tenant_id="t1", customer_id="c2")
    created = Device(
        id="d2", name="child", tenant_id="t1", customer_id="c1", additional_info={"lastConnectedGateway": "g2"}
    )
    foreign = Device(id="d3", name="x", tenant_id="t2")
    assert gateway_may_act_for(tenant_gw, DEVICE)  # the tenant's own gateway: any device of it
    assert not gateway_may_act_for(customer_gw, DEVICE)  # another customer's device
    assert gateway_may_act_for(customer_gw, created)  # but one it created
    assert gateway_may_act_for(customer_gw, Device(id="d4", name="y", tenant_id="t1", customer_id="c2"))
    assert not gateway_may_act_for(tenant_gw, foreign)


def test_wanted_scopes_follow_thingsboard():
    everything = {"CLIENT_SCOPE": None, "SHARED_SCOPE": None}
    assert wanted_scopes(None, None) == everything
    assert wanted_scopes(["a"], None) == {"CLIENT_SCOPE": ["a"]}
    assert wanted_scopes(None, ["b"]) == {"SHARED_SCOPE": ["b"]}
    assert wanted_scopes(["a"], ["b"]) == {"CLIENT_SCOPE": ["a"], "SHARED_SCOPE": ["b"]}
    assert wanted_scopes(None, ["b"], all_client=True) == {"CLIENT_SCOPE": None, "SHARED_SCOPE": ["b"]}
    assert "SERVER_SCOPE" not in str(wanted_scopes(None, None, all_client=True, all_shared=True))


def test_key_list():
    assert key_list(None, "k") is None and key_list("", "k") is None and key_list(" , ,", "k") is None
    assert key_list("a, b,a", "k") == ["a", "b"]
    assert key_list(["x", " y "], "k") == ["x", "y"]
    for bad in (5, {"a": 1}, [1], True):
        with pytest.raises(InvalidInput):
            key_list(bad, "clientKeys")
    with pytest.raises(InvalidInput, match=str(MAX_REQUEST_KEYS)):
        key_list(",".join(f"k{i}" for i in range(MAX_REQUEST_KEYS + 1)), "sharedKeys")


def test_shared_update_only_for_shared_scope():
    saved = [{"key": "a", "value": 1, "lastUpdateTs": 5}, {"key": "b", "value": "x", "lastUpdateTs": 5}]
    assert shared_update(AttributeChange("d", "SHARED_SCOPE", saved)) == {"a": 1, "b": "x"}
    assert shared_update(AttributeChange("d", "SHARED_SCOPE", deleted=["a"])) == {"deleted": ["a"]}
    for scope in ("CLIENT_SCOPE", "SERVER_SCOPE"):
        assert shared_update(AttributeChange("d", scope, saved)) is None
        assert shared_update(AttributeChange("d", scope, deleted=["a"])) is None

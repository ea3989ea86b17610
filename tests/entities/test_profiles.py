"""Device profiles in the entity registry on a real SQLite file: the default profile of every
tenant, profile-by-type on device save, renames, deletes, provisioning keys, and the upgrade of
a database written before profiles existed (migration 2, in place)."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from tbpanel.entities import Conflict, EntityRegistry, InvalidInput, NotFound, PermissionDenied
from tbpanel.entities.registry import DB_FILE
from tbpanel.entities.tables import MIGRATIONS
from tbpanel.sqlite import Database


@pytest.fixture
def reg(tmp_path):
    with EntityRegistry(tmp_path) as r:
        yield r


def test_every_tenant_has_one_default_profile(reg):
    t = reg.create_tenant("T")
    default = reg.default_device_profile(t.id)
    assert default.name == "default" and default.default and default.tenant_id == t.id
    assert default.to_json()["profileData"]["provisionConfiguration"] == {
        "type": "DISABLED",
        "provisionDeviceSecret": None,
    }
    items, total = reg.list_device_profiles(t.id)
    assert total == 1 and items[0].id == default.id
    other = reg.create_tenant("U")
    assert reg.default_device_profile(other.id).id != default.id


def test_device_type_is_its_profile_name(reg):
    t = reg.create_tenant("T")
    plain = reg.save_device(t.id, "plain", type=None)
    assert plain.type == "default" and plain.device_profile_id == reg.default_device_profile(t.id).id
    meter = reg.save_device(t.id, "m1", type="meter")
    profile = reg.find_device_profile(t.id, "meter")
    assert profile is not None and not profile.default and meter.device_profile_id == profile.id
    assert meter.to_json()["deviceProfileId"] == {"entityType": "DEVICE_PROFILE", "id": profile.id}
    assert reg.save_device(t.id, "m2", type="meter").device_profile_id == profile.id  # no second profile
    assert reg.list_device_profiles(t.id)[1] == 2
    # an explicit profile id wins over the type
    moved = reg.save_device(t.id, "m1", type="ignored", device_id=meter.id, device_profile_id=plain.device_profile_id)
    assert moved.type == "default" and reg.find_device_profile(t.id, "ignored") is None
    other = reg.create_tenant("U")
    with pytest.raises(InvalidInput):
        reg.save_device(other.id, "x", device_profile_id=profile.id)  # another tenant's profile
    with pytest.raises(NotFound):
        reg.save_device(t.id, "x", device_profile_id=str(uuid.uuid4()))


def test_rename_renames_device_types_and_token_cache(reg):
    t = reg.create_tenant("T")
    d = reg.save_device(t.id, "d", type="old", access_token="tok-rename")
    assert reg.device_by_token("tok-rename").type == "old"  # cached
    p = reg.find_device_profile(t.id, "old")
    renamed = reg.save_device_profile(t.id, dict(p.to_json(), name="new"))
    assert renamed.id == p.id and renamed.name == "new"
    assert reg.get_device(d.id).type == "new"
    assert reg.device_by_token("tok-rename").type == "new"
    assert reg.device_types(t.id) == ["new"]


def test_save_errors_and_uniqueness(reg):
    t = reg.create_tenant("T")
    with pytest.raises(InvalidInput):
        reg.save_device_profile(t.id, {"name": ""})
    with pytest.raises(InvalidInput):
        reg.save_device_profile(t.id, {"name": "p", "type": "SNMP_X"})
    with pytest.raises(InvalidInput):
        reg.save_device_profile(t.id, {"name": "p", "profileData": []})
    with pytest.raises(InvalidInput):  # provisioning needs both key and secret
        reg.save_device_profile(t.id, {"name": "p", "provisionType": "ALLOW_CREATE_NEW_DEVICES"})
    with pytest.raises(InvalidInput):
        reg.save_device_profile(t.id, {"name": "p", "provisionType": "X509_CERTIFICATE_CHAIN"})
    with pytest.raises(Conflict):
        reg.save_device_profile(t.id, {"name": "default"})
    a = reg.save_device_profile(
        t.id,
        {
            "name": "prov",
            "provisionType": "ALLOW_CREATE_NEW_DEVICES",
            "provisionDeviceKey": "key-1",
            "profileData": {"provisionConfiguration": {"provisionDeviceSecret": "sec-1"}, "alarms": [{"id": "x"}]},
        },
    )
    assert a.provision_type == "ALLOW_CREATE_NEW_DEVICES" and a.provision_device_secret == "sec-1"
    assert a.to_json()["profileData"]["alarms"] == [{"id": "x"}]  # stored whole
    assert "provisionDeviceKey" not in a.info_json() and "sec-1" not in str(a.info_json())
    assert reg.device_profile_by_provision_key("key-1").id == a.id
    u = reg.create_tenant("U")
    with pytest.raises(Conflict):  # provisioning keys are unique across tenants
        reg.save_device_profile(
            u.id,
            {
                "name": "p",
                "provisionType": "CHECK_PRE_PROVISIONED_DEVICES",
                "provisionDeviceKey": "key-1",
                "provisionDeviceSecret": "s",
            },
        )
    with pytest.raises(PermissionDenied):
        reg.save_device_profile(u.id, dict(a.to_json(), name="stolen"))
    assert reg.get_device_profile(a.id).name == "prov"


def test_delete_and_default(reg):
    t = reg.create_tenant("T")
    default = reg.default_device_profile(t.id)
    with pytest.raises(Conflict, match="Default"):
        reg.delete_device_profile(default.id)
    d = reg.save_device(t.id, "d", type="used")
    used = reg.find_device_profile(t.id, "used")
    with pytest.raises(Conflict, match="referenced by the devices"):
        reg.delete_device_profile(used.id)
    reg.set_default_device_profile(used.id)
    assert reg.default_device_profile(t.id).id == used.id and not reg.get_device_profile(default.id).default
    reg.delete_device_profile(default.id)  # no longer the default, no device uses it
    with pytest.raises(NotFound):
        reg.get_device_profile(default.id)
    assert reg.save_device(t.id, "e").device_profile_id == used.id  # the new default
    reg.delete_device(d.id)
    with pytest.raises(Conflict):
        reg.delete_device_profile(used.id)  # still the default


def test_old_database_upgrades_in_place(tmp_path):
    """A file at schema version 1 (before profiles) gets a default profile per tenant, one
    profile per device type in use, and every device its deviceProfileId, in place."""
    path = tmp_path / DB_FILE
    old = Database(str(path), MIGRATIONS[:1], what="old", foreign_keys=True)
    ta, tb = str(uuid.uuid4()), str(uuid.uuid4())
    with old.transaction():
        for tid, title in ((ta, "A"), (tb, "B")):
            old.conn.execute("INSERT INTO tenant VALUES (?, 1, ?, NULL)", (tid, title))
        rows = [("a1", ta, "default"), ("a2", ta, "meter"), ("a3", ta, "meter"), ("b1", tb, "meter"), ("b2", tb, "x")]
        for name, tid, dtype in rows:
            old.conn.execute(
                "INSERT INTO device (id, created_time, tenant_id, name, type, access_token) VALUES (?, 1, ?, ?, ?, ?)",
                (str(uuid.uuid4()), tid, name, dtype, "tok-" + name),
            )
    old.close()
    with EntityRegistry(tmp_path) as reg:
        version = reg._one("PRAGMA user_version")
        assert version == (len(MIGRATIONS),)
        for tid, names in ((ta, {"default", "meter"}), (tb, {"default", "meter", "x"})):
            items, _ = reg.list_device_profiles(tid, sort_property="name", sort_order="ASC")
            assert {p.name for p in items} == names
            assert [p.name for p in items if p.default] == ["default"]
            assert all(uuid.UUID(p.id).version == 4 for p in items)
            for d in reg.all_devices(tid):
                assert reg.get_device_profile(d.device_profile_id).name == d.type
                assert reg.get_device_profile(d.device_profile_id).tenant_id == tid
        assert reg.device_by_token("tok-b2").type == "x"
        # the upgraded file works like a new one
        assert reg.save_device(ta, "new", type="meter").device_profile_id == reg.find_device_profile(ta, "meter").id
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_provisioning_strategies(reg):
    """The provisioning rules on the registry alone (the routes only carry JSON to them)."""
    from tbpanel.entities.provisioning import FAILURE, NOT_FOUND, provision_device

    t = reg.create_tenant("T")
    allow = reg.save_device_profile(
        t.id,
        {
            "name": "allow",
            "provisionType": "ALLOW_CREATE_NEW_DEVICES",
            "provisionDeviceKey": "ka",
            "provisionDeviceSecret": "sa",
        },
    )
    check = reg.save_device_profile(
        t.id,
        {
            "name": "check",
            "provisionType": "CHECK_PRE_PROVISIONED_DEVICES",
            "provisionDeviceKey": "kc",
            "provisionDeviceSecret": "sc",
        },
    )
    ok = provision_device(reg, {"deviceName": "n1", "provisionDeviceKey": "ka", "provisionDeviceSecret": "sa"})
    device = reg.find_device(t.id, "n1")
    assert ok == {
        "status": "SUCCESS",
        "credentialsType": "ACCESS_TOKEN",
        "credentialsValue": reg.get_credentials(device.id),
    }
    assert device.device_profile_id == allow.id and device.type == "allow"
    assert reg.get_attributes(device.id, "SERVER_SCOPE", ["provisionState"])[0]["value"] == "provisioned"
    assert (
        provision_device(reg, {"deviceName": "n1", "provisionDeviceKey": "ka", "provisionDeviceSecret": "sa"})
        == FAILURE
    )
    assert (
        provision_device(reg, {"deviceName": "n2", "provisionDeviceKey": "ka", "provisionDeviceSecret": "sb"})
        == NOT_FOUND
    )
    assert provision_device(reg, "not a dict") == NOT_FOUND
    assert reg.find_device(t.id, "n2") is None
    # pre-provisioned: only an existing device of that profile, once
    body = {"deviceName": "pre", "provisionDeviceKey": "kc", "provisionDeviceSecret": "sc"}
    assert provision_device(reg, body) == FAILURE
    pre = reg.save_device(t.id, "pre", device_profile_id=check.id)
    assert provision_device(reg, body)["credentialsValue"] == reg.get_credentials(pre.id)
    assert provision_device(reg, body) == FAILURE
    # disabling provisioning makes the keys unknown
    reg.save_device_profile(t.id, dict(allow.to_json(), provisionType="DISABLED", profileData=None))
    assert (
        provision_device(reg, {"deviceName": "n3", "provisionDeviceKey": "ka", "provisionDeviceSecret": "sa"})
        == NOT_FOUND
    )

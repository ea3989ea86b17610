"""The entity registry on a real SQLite file: every method, error path and access rule."""

from __future__ import annotations

import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tbpanel.entities import (
    CUSTOMER_USER,
    NULL_UUID,
    SYS_ADMIN,
    TENANT_ADMIN,
    Conflict,
    Customer,
    Device,
    EntityRegistry,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Tenant,
    User,
    init,
)
from tbpanel.store.payload import parse_attributes
from tbpanel.store.values import ValueType

ROOT = Path(__file__).resolve().parent.parent.parent
PW = "s3cret-Pa55word"  # hashed once per user; keep the number of users small


@pytest.fixture
def reg(tmp_path):
    registry = EntityRegistry(tmp_path / "data")
    yield registry
    registry.close()


@pytest.fixture
def tenant(reg) -> Tenant:
    return reg.create_tenant("Tenant A")


def now_ms() -> int:
    return int(time.time() * 1000)


# =========================================================================================
# database file
# =========================================================================================
def test_database_file_settings(reg, tmp_path):
    path = tmp_path / "data" / "entities.sqlite"
    assert reg.path == path and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # holds password hashes and tokens
    conn = reg._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopen_keeps_data_and_create_false(tmp_path):
    data = tmp_path / "d"
    with pytest.raises(NotFound, match="tbpanel init"):
        EntityRegistry(data, create=False)
    assert not data.exists()
    with EntityRegistry(data) as reg:
        t = reg.create_tenant("T")
    with EntityRegistry(data, create=False) as reg:
        assert reg.get_tenant(t.id).title == "T"


def test_newer_schema_is_refused(tmp_path):
    EntityRegistry(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "entities.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        EntityRegistry(tmp_path)


def test_transaction_is_atomic(reg, tenant):
    with pytest.raises(RuntimeError):
        with reg.transaction():
            reg.create_customer(tenant.id, "kept?")
            reg.save_device(tenant.id, "kept too?")
            raise RuntimeError("boom")
    assert reg.list_customers(tenant.id) == ([], 0)
    assert reg.list_devices(tenant.id) == ([], 0)
    # nested failures roll back to their savepoint only
    with reg.transaction():
        reg.create_customer(tenant.id, "outer")
        with pytest.raises(Conflict):
            with reg.transaction():
                reg.create_customer(tenant.id, "inner")
                reg.create_customer(tenant.id, "inner")
    assert [c.title for c in reg.list_customers(tenant.id)[0]] == ["outer"]


# =========================================================================================
# tenants
# =========================================================================================
def test_tenants(reg):
    t = reg.create_tenant("Acme")
    assert uuid.UUID(t.id) and abs(t.created_time - now_ms()) < 5000
    assert reg.get_tenant(t.id).to_json() == t.to_json()
    assert reg.get_tenant(uuid.UUID(t.id)).title == "Acme"
    assert reg.get_tenant({"entityType": "TENANT", "id": t.id.upper()}).id == t.id
    assert reg.find_tenant("Acme").id == t.id
    assert reg.find_tenant("acme") is None
    assert t.to_json() == {
        "id": {"entityType": "TENANT", "id": t.id},
        "createdTime": t.created_time,
        "title": "Acme",
        "name": "Acme",
        "additionalInfo": None,
    }
    u = reg.create_tenant("Umbrella")
    assert [x.title for x in reg.list_tenants()] == ["Acme", "Umbrella"]
    with pytest.raises(Conflict, match="Acme"):
        reg.create_tenant("Acme")
    for bad in ("", "   ", None, 5, "x" * 256):
        with pytest.raises(InvalidInput):
            reg.create_tenant(bad)
    with pytest.raises(NotFound):
        reg.get_tenant(str(uuid.uuid4()))
    with pytest.raises(InvalidInput, match="not a UUID"):
        reg.get_tenant("nope")
    assert u.id != t.id


# =========================================================================================
# customers
# =========================================================================================
def test_create_and_get_customer(reg, tenant):
    c = reg.create_customer(tenant.id, "Customer A1")
    assert isinstance(c, Customer) and c.tenant_id == tenant.id
    assert reg.get_customer(c.id).to_json() == c.to_json()
    assert reg.find_customer(tenant.id, "Customer A1").id == c.id
    assert reg.find_customer(tenant.id, "nobody") is None
    j = c.to_json()
    assert j["id"] == {"entityType": "CUSTOMER", "id": c.id}
    assert j["tenantId"] == {"entityType": "TENANT", "id": tenant.id}
    assert j["title"] == j["name"] == "Customer A1"
    assert {"createdTime", "email", "phone", "country", "city", "address", "zip", "additionalInfo"} <= set(j)


def test_customer_title_unique_per_tenant(reg, tenant):
    reg.create_customer(tenant.id, "Same")
    with pytest.raises(Conflict, match="already exists"):
        reg.create_customer(tenant.id, "Same")
    other = reg.create_tenant("Tenant B")
    assert reg.create_customer(other.id, "Same").tenant_id == other.id
    with pytest.raises(NotFound):
        reg.create_customer(str(uuid.uuid4()), "x")
    with pytest.raises(InvalidInput):
        reg.create_customer(tenant.id, "")
    with pytest.raises(NotFound):
        reg.get_customer(str(uuid.uuid4()))


def test_save_customer_create_and_update(reg, tenant):
    c = reg.save_customer(
        tenant.id, {"title": "Shop", "email": "shop@x.org", "city": "Oslo", "additionalInfo": {"description": "d"}}
    )
    assert (c.title, c.email, c.city, c.additional_info) == ("Shop", "shop@x.org", "Oslo", {"description": "d"})
    # the same JSON shape comes back in, ThingsBoard-style: update by id, fields replaced
    body = c.to_json()
    body.update(title="Shop 2", city=None, phone="+47")
    u = reg.save_customer(tenant.id, body)
    assert u.id == c.id and u.created_time == c.created_time
    assert (u.title, u.city, u.phone, u.email) == ("Shop 2", None, "+47", "shop@x.org")
    assert reg.get_customer(c.id).to_json() == u.to_json()
    # a NULL id creates
    n = reg.save_customer(tenant.id, {"id": {"entityType": "CUSTOMER", "id": NULL_UUID}, "title": "New"})
    assert n.id not in (c.id, NULL_UUID)
    # errors
    with pytest.raises(Conflict):
        reg.save_customer(tenant.id, {"id": n.id, "title": "Shop 2"})
    with pytest.raises(NotFound):
        reg.save_customer(tenant.id, {"id": str(uuid.uuid4()), "title": "x"})
    other = reg.create_tenant("Tenant B")
    with pytest.raises(PermissionDenied):
        reg.save_customer(other.id, {"id": c.id, "title": "stolen"})
    assert reg.get_customer(c.id).title == "Shop 2"
    for bad in (
        [],
        "x",
        {"title": ""},
        {},
        {"title": "t", "additionalInfo": [1]},
        {"title": "t", "email": 5},
        {"title": "t", "id": "not-a-uuid"},
    ):
        with pytest.raises(InvalidInput):
            reg.save_customer(tenant.id, bad)


def test_list_customers(reg, tenant):
    for title in ["beta", "Alpha", "gamma", "50%_off", "delta"]:
        reg.create_customer(tenant.id, title)
    reg.create_customer(reg.create_tenant("B").id, "Alpha elsewhere")
    items, total = reg.list_customers(tenant.id)
    assert total == 5 and [c.title for c in items] == ["50%_off", "Alpha", "beta", "delta", "gamma"]
    items, total = reg.list_customers(tenant.id, page=1, page_size=2)
    assert total == 5 and [c.title for c in items] == ["beta", "delta"]
    assert reg.list_customers(tenant.id, page=3, page_size=2) == ([], 5)
    items, total = reg.list_customers(tenant.id, text_search="ALP")
    assert total == 1 and items[0].title == "Alpha"
    assert reg.list_customers(tenant.id, text_search="%")[1] == 1  # wildcards are literal
    assert reg.list_customers(tenant.id, text_search="_")[1] == 1
    items, _ = reg.list_customers(tenant.id, sort_property="title", sort_order="desc")
    assert items[0].title == "gamma"
    alpha, gamma = reg.find_customer(tenant.id, "Alpha"), reg.find_customer(tenant.id, "gamma")
    reg.save_customer(tenant.id, {"id": alpha.id, "title": "Alpha", "email": "zz@x.org"})
    reg.save_customer(tenant.id, {"id": gamma.id, "title": "gamma", "email": "aa@x.org", "city": "Bergen"})
    items, _ = reg.list_customers(tenant.id, sort_property="email", sort_order="DESC")
    assert [c.title for c in items[:2]] == ["Alpha", "gamma"]
    items, _ = reg.list_customers(tenant.id, sort_property="city", sort_order="DESC")
    assert items[0].title == "gamma"
    items, _ = reg.list_customers(tenant.id, sort_property="createdTime", sort_order="ASC")
    assert [c.created_time for c in items] == sorted(c.created_time for c in items)
    for kwargs in (
        {"page": -1},
        {"page_size": 0},
        {"page_size": "10"},
        {"sort_property": "password"},
        {"sort_order": "UP"},
    ):
        with pytest.raises(InvalidInput):
            reg.list_customers(tenant.id, **kwargs)


def test_delete_customer(reg, tenant):
    c = reg.create_customer(tenant.id, "Gone")
    keep = reg.create_customer(tenant.id, "Kept")
    user = reg.create_user("cu@x.org", PW, CUSTOMER_USER, tenant.id, c.id)
    dev = reg.save_device(tenant.id, "d1", customer_id=c.id)
    dev2 = reg.save_device(tenant.id, "d2", customer_id=keep.id)
    token = reg.get_credentials(dev.id)
    assert reg.device_by_token(token).customer_id == c.id  # now cached
    reg.save_attributes(c.id, "SERVER_SCOPE", [(1, "k", ValueType.LONG, 1)])
    reg.delete_customer(c.id)
    with pytest.raises(NotFound):
        reg.get_customer(c.id)
    assert reg.find_user("cu@x.org") is None
    with pytest.raises(NotFound):
        reg.get_user(user.id)
    assert reg.get_device(dev.id).customer_id is None  # unassigned, not deleted
    assert reg.device_by_token(token).customer_id is None  # cache invalidated
    assert reg.get_device(dev2.id).customer_id == keep.id
    assert reg.get_attributes(c.id) == []
    with pytest.raises(NotFound):
        reg.delete_customer(c.id)


# =========================================================================================
# users
# =========================================================================================
def test_create_users_and_json(reg, tenant):
    c = reg.create_customer(tenant.id, "C")
    admin = reg.create_user("Admin@Example.org", PW, TENANT_ADMIN, tenant.id, first_name="Ada", last_name="L")
    cu = reg.create_user("cu@example.org", PW, CUSTOMER_USER, tenant.id, customer_id=c.id)
    sa = reg.create_user("root@example.org", PW, SYS_ADMIN, None)
    assert isinstance(admin, User) and admin.enabled
    assert reg.get_user(admin.id).to_json() == admin.to_json()
    j = admin.to_json()
    assert j["id"] == {"entityType": "USER", "id": admin.id}
    assert j["email"] == j["name"] == "Admin@Example.org"  # case kept
    assert j["authority"] == "TENANT_ADMIN" and (j["firstName"], j["lastName"]) == ("Ada", "L")
    assert j["tenantId"] == {"entityType": "TENANT", "id": tenant.id}
    assert j["customerId"] == {"entityType": "CUSTOMER", "id": NULL_UUID}
    assert not any("password" in k.lower() for k in j)
    assert cu.to_json()["customerId"] == {"entityType": "CUSTOMER", "id": c.id}
    assert sa.tenant_id is None and sa.to_json()["tenantId"]["id"] == NULL_UUID
    # lookups are case-insensitive
    assert reg.find_user("admin@example.ORG").id == admin.id
    assert reg.find_user("  admin@example.org ").id == admin.id
    assert reg.find_user("nobody@example.org") is None
    assert reg.find_user(None) is None  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="already exists"):
        reg.create_user("ADMIN@example.org", "other", TENANT_ADMIN, tenant.id)


def test_create_user_validation(reg, tenant):
    c = reg.create_customer(tenant.id, "C")
    other = reg.create_tenant("B")
    other_c = reg.create_customer(other.id, "OC")
    cases = [
        (dict(email="not-an-email"), InvalidInput),
        (dict(email=""), InvalidInput),
        (dict(email=None), InvalidInput),
        (dict(password=""), InvalidInput),
        (dict(password=None), InvalidInput),
        (dict(password="x" * 2000), InvalidInput),
        (dict(authority="ROOT"), InvalidInput),
        (dict(authority=CUSTOMER_USER), InvalidInput),  # no customer
        (dict(authority=CUSTOMER_USER, customer_id=other_c.id), InvalidInput),  # other tenant
        (dict(authority=CUSTOMER_USER, customer_id=str(uuid.uuid4())), NotFound),
        (dict(customer_id=c.id), InvalidInput),  # tenant admin with a customer
        (dict(tenant_id=None), InvalidInput),
        (dict(tenant_id=str(uuid.uuid4())), NotFound),
        (dict(tenant_id="garbage"), InvalidInput),
        (dict(authority=SYS_ADMIN), InvalidInput),  # sys admin with a tenant
    ]
    for overrides, error in cases:
        kwargs = dict(email="new@x.org", password=PW, authority=TENANT_ADMIN, tenant_id=tenant.id, customer_id=None)
        kwargs.update(overrides)
        with pytest.raises(error):
            reg.create_user(**kwargs)
    assert reg.list_users(tenant.id) == ([], 0)


def test_authenticate_and_set_password(reg, tenant):
    user = reg.create_user("a@x.org", PW, TENANT_ADMIN, tenant.id)
    assert reg.authenticate("a@x.org", PW).id == user.id
    assert reg.authenticate(" A@X.ORG", PW).id == user.id
    assert reg.authenticate("a@x.org", PW + "!") is None
    assert reg.authenticate("a@x.org", "") is None
    assert reg.authenticate("nobody@x.org", PW) is None
    assert reg.authenticate(None, PW) is None  # type: ignore[arg-type]
    reg.set_password(user.id, "n3w-password")
    assert reg.authenticate("a@x.org", PW) is None
    assert reg.authenticate("a@x.org", "n3w-password").id == user.id
    with pytest.raises(NotFound):
        reg.set_password(str(uuid.uuid4()), "x")
    with pytest.raises(InvalidInput):
        reg.set_password(user.id, "")
    # disabled accounts cannot log in
    assert reg.set_user_enabled(user.id, False).enabled is False
    assert reg.authenticate("a@x.org", "n3w-password") is None
    assert reg.set_user_enabled(user.id, True).enabled is True
    assert reg.authenticate("a@x.org", "n3w-password") is not None
    with pytest.raises(NotFound):
        reg.set_user_enabled(str(uuid.uuid4()), True)


def test_passwords_are_stored_hashed(tmp_path):
    data = tmp_path / "data"
    plain = "Plain-Text-Canary-8723"
    with EntityRegistry(data) as reg:
        t = reg.create_tenant("T")
        u = reg.create_user("canary@x.org", plain, TENANT_ADMIN, t.id)
        reg.set_password(u.id, plain + "-2")
        stored = reg._conn.execute("SELECT password_hash FROM users").fetchone()[0]
        assert stored.startswith("scrypt$16384$8$1$")
        blob = b"".join(p.read_bytes() for p in data.iterdir())  # db, -wal, -shm
        assert b"canary@x.org" in blob  # sanity: we are reading the right files
    assert plain.encode() not in blob
    assert plain.encode("utf-16-le") not in blob
    after_close = b"".join(p.read_bytes() for p in data.iterdir())
    assert plain.encode() not in after_close


def test_users_list_get_delete(reg, tenant):
    c = reg.create_customer(tenant.id, "C")
    a = reg.create_user("b-admin@x.org", PW, TENANT_ADMIN, tenant.id, first_name="Zed")
    u = reg.create_user("a-user@x.org", PW, CUSTOMER_USER, tenant.id, c.id)
    items, total = reg.list_users(tenant.id)
    assert total == 2 and [x.email for x in items] == ["a-user@x.org", "b-admin@x.org"]
    assert reg.list_users(tenant.id, customer_id=c.id)[0][0].id == u.id
    assert reg.list_users(tenant.id, authority=TENANT_ADMIN)[0][0].id == a.id
    assert reg.list_users(tenant.id, text_search="zed")[0][0].id == a.id
    by_first, _ = reg.list_users(tenant.id, sort_property="firstName", sort_order="DESC")
    assert by_first[0].id == a.id
    assert reg.list_users(tenant.id, page=1, page_size=1)[0][0].id == a.id
    with pytest.raises(InvalidInput):
        reg.list_users(tenant.id, sort_property="password_hash")
    with pytest.raises(InvalidInput):
        reg.list_users(tenant.id, authority="ROOT")
    reg.delete_user(u.id)
    with pytest.raises(NotFound):
        reg.get_user(u.id)
    with pytest.raises(NotFound):
        reg.delete_user(u.id)
    with pytest.raises(InvalidInput):
        reg.get_user("zzz")


# =========================================================================================
# devices
# =========================================================================================
def test_create_device(reg, tenant):
    d = reg.save_device(
        tenant.id,
        "Thermo 1",
        type="thermometer",
        label="Hall",
        additional_info={"description": "first", "gateway": False},
    )
    assert isinstance(d, Device) and uuid.UUID(d.id)
    assert abs(d.created_time - now_ms()) < 5000
    assert d.to_json() == {
        "id": {"entityType": "DEVICE", "id": d.id},
        "createdTime": d.created_time,
        "tenantId": {"entityType": "TENANT", "id": tenant.id},
        "customerId": {"entityType": "CUSTOMER", "id": NULL_UUID},
        "name": "Thermo 1",
        "type": "thermometer",
        "label": "Hall",
        "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": reg.find_device_profile(tenant.id, "thermometer").id},
        "additionalInfo": {"description": "first", "gateway": False},
    }
    assert reg.get_device(d.id).to_json() == d.to_json()
    assert reg.find_device(tenant.id, "Thermo 1").id == d.id
    assert reg.find_device(tenant.id, "thermo 1") is None
    token = reg.get_credentials(d.id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{20}", token)
    d2 = reg.save_device(tenant.id, "Plain", type=None, label=None)
    assert (d2.type, d2.label, d2.additional_info) == ("default", None, None)
    assert reg.save_device(tenant.id, "Empty type", type="").type == "default"
    assert reg.get_credentials(d2.id) != token


def test_create_device_errors(reg, tenant):
    d = reg.save_device(tenant.id, "dup", access_token="TOKEN_1")
    with pytest.raises(Conflict, match="name 'dup' already exists"):
        reg.save_device(tenant.id, "dup")
    with pytest.raises(Conflict, match="credentials"):
        reg.save_device(tenant.id, "other", access_token="TOKEN_1")
    other = reg.create_tenant("B")
    assert reg.save_device(other.id, "dup").tenant_id == other.id  # names are per tenant
    with pytest.raises(Conflict):  # tokens are global
        reg.save_device(other.id, "x", access_token="TOKEN_1")
    for kwargs in (
        {"name": ""},
        {"name": "  "},
        {"name": None},
        {"name": "x" * 256},
        {"type": 7},
        {"label": 7},
        {"additional_info": [1, 2]},
        {"additional_info": {"s": {1, 2}}},
        {"additional_info": {"x": float("nan")}},
        {"access_token": ""},
        {"access_token": "has space"},
        {"access_token": "a/b"},
        {"access_token": "x" * 129},
        {"access_token": 12345},
        {"device_id": "nope"},
        {"customer_id": "nope"},
    ):
        args = {"name": "new", **kwargs}
        with pytest.raises(InvalidInput):
            reg.save_device(tenant.id, **args)
    with pytest.raises(NotFound):
        reg.save_device(str(uuid.uuid4()), "x")
    with pytest.raises(NotFound):
        reg.save_device(tenant.id, "x", customer_id=str(uuid.uuid4()))
    oc = reg.create_customer(other.id, "OC")
    with pytest.raises(InvalidInput, match="another tenant"):
        reg.save_device(tenant.id, "x", customer_id=oc.id)
    assert reg.list_devices(tenant.id)[1] == 1
    assert reg.get_credentials(d.id) == "TOKEN_1"


def test_update_device(reg, tenant):
    c = reg.create_customer(tenant.id, "C")
    d = reg.save_device(tenant.id, "d", type="t1", customer_id=c.id)
    token = reg.get_credentials(d.id)
    u = reg.save_device(tenant.id, "d renamed", type="t2", label="L", additional_info={"a": 1}, device_id=d.id)
    assert (u.id, u.created_time, u.name, u.type, u.label, u.additional_info) == (
        d.id,
        d.created_time,
        "d renamed",
        "t2",
        "L",
        {"a": 1},
    )
    assert u.customer_id == c.id  # customer_id=... keeps the assignment
    assert reg.get_credentials(d.id) == token  # access_token=None keeps the token
    assert reg.get_device(d.id).to_json() == u.to_json()
    assert reg.save_device(tenant.id, "d renamed", device_id=d.id, customer_id=None).customer_id is None
    assert (
        reg.save_device(
            tenant.id, "d renamed", device_id=d.id, customer_id={"entityType": "CUSTOMER", "id": c.id}
        ).customer_id
        == c.id
    )
    assert reg.save_device(tenant.id, "d renamed", device_id=d.id, customer_id=NULL_UUID).customer_id is None
    # saving with the same name and token is not a conflict with itself
    reg.save_device(tenant.id, "d renamed", device_id=d.id, access_token=token)
    reg.save_device(tenant.id, "d renamed", device_id=d.id, access_token="NEW_TOKEN")
    assert reg.get_credentials(d.id) == "NEW_TOKEN"
    assert reg.device_by_token(token) is None


def test_update_device_errors(reg, tenant):
    d = reg.save_device(tenant.id, "d")
    reg.save_device(tenant.id, "taken", access_token="TAKEN")
    with pytest.raises(Conflict):
        reg.save_device(tenant.id, "taken", device_id=d.id)
    with pytest.raises(Conflict):
        reg.save_device(tenant.id, "d", device_id=d.id, access_token="TAKEN")
    with pytest.raises(NotFound):
        reg.save_device(tenant.id, "d", device_id=str(uuid.uuid4()))
    other = reg.create_tenant("B")
    with pytest.raises(PermissionDenied):
        reg.save_device(other.id, "hijack", device_id=d.id)
    assert reg.get_device(d.id).name == "d"


def test_device_lookups(reg, tenant):
    with pytest.raises(NotFound):
        reg.get_device(str(uuid.uuid4()))
    with pytest.raises(InvalidInput):
        reg.get_device("12")
    with pytest.raises(NotFound):
        reg.get_credentials(str(uuid.uuid4()))
    assert reg.find_device(tenant.id, "none") is None


def test_device_by_token_cache(reg, tenant):
    c = reg.create_customer(tenant.id, "C")
    d = reg.save_device(tenant.id, "d", access_token="tok-1")
    first = reg.device_by_token("tok-1")
    assert first.id == d.id
    assert reg.device_by_token("tok-1") is first  # served from the cache
    for bad in ("tok-2", "", None, 5, ["tok-1"], "x" * 10_000):
        assert reg.device_by_token(bad) is None
    # every change is visible through the token
    reg.save_device(tenant.id, "renamed", device_id=d.id)
    assert reg.device_by_token("tok-1").name == "renamed"
    reg.assign_device(d.id, c.id)
    assert reg.device_by_token("tok-1").customer_id == c.id
    reg.unassign_device(d.id)
    assert reg.device_by_token("tok-1").customer_id is None
    reg.set_credentials(d.id, "tok-2")
    assert reg.device_by_token("tok-1") is None
    assert reg.device_by_token("tok-2").id == d.id
    # a rolled-back change does not poison the cache
    with pytest.raises(RuntimeError):
        with reg.transaction():
            reg.set_credentials(d.id, "tok-3")
            assert reg.device_by_token("tok-3").id == d.id  # visible inside the transaction
            raise RuntimeError
    assert reg.device_by_token("tok-3") is None
    assert reg.device_by_token("tok-2").id == d.id
    reg.delete_device(d.id)
    assert reg.device_by_token("tok-2") is None


def test_device_by_token_sees_other_connections_changes_once_uncached(tmp_path):
    # a second registry (e.g. the CLI) creating a device: the server finds it on first use
    with EntityRegistry(tmp_path) as server, EntityRegistry(tmp_path) as cli:
        t = cli.create_tenant("T")
        assert server.device_by_token("from-cli") is None
        cli.save_device(t.id, "d", access_token="from-cli")
        assert server.device_by_token("from-cli").name == "d"


def test_list_devices(reg, tenant):
    c1 = reg.create_customer(tenant.id, "C1")
    c2 = reg.create_customer(tenant.id, "C2")
    specs = [
        ("alpha", "sensor", "Kitchen", c1),
        ("Beta", "sensor", "", c1),
        ("gamma", "meter", "Hall 50%", c2),
        ("delta", "meter", "", None),
        ("epsilon", "gateway", "", None),
    ]
    for name, type_, label, cust in specs:
        reg.save_device(tenant.id, name, type=type_, label=label, customer_id=cust.id if cust else None)
    reg.save_device(reg.create_tenant("B").id, "alpha-other-tenant")
    items, total = reg.list_devices(tenant.id)
    assert total == 5 and {d.name for d in items} == {s[0] for s in specs}
    times = [d.created_time for d in items]
    assert times == sorted(times, reverse=True)  # createdTime DESC by default
    items, total = reg.list_devices(tenant.id, sort_property="name", sort_order="ASC")
    assert [d.name for d in items] == ["alpha", "Beta", "delta", "epsilon", "gamma"]
    items, total = reg.list_devices(tenant.id, sort_property="name", sort_order="DESC", page=1, page_size=2)
    assert total == 5 and [d.name for d in items] == ["delta", "Beta"]
    assert reg.list_devices(tenant.id, page=9)[0] == []
    items, total = reg.list_devices(tenant.id, customer_id=c1.id, sort_property="name", sort_order="ASC")
    assert total == 2 and [d.name for d in items] == ["alpha", "Beta"]
    assert reg.list_devices(tenant.id, customer_id=NULL_UUID)[1] == 5  # NULL id = no filter
    assert reg.list_devices(tenant.id, type="meter")[1] == 2
    assert reg.list_devices(tenant.id, type="meter", customer_id=c2.id)[1] == 1
    assert {d.name for d in reg.list_devices(tenant.id, text_search="ALPH")[0]} == {"alpha"}
    assert {d.name for d in reg.list_devices(tenant.id, text_search="kitchen")[0]} == {"alpha"}
    assert {d.name for d in reg.list_devices(tenant.id, text_search="50%")[0]} == {"gamma"}
    assert reg.list_devices(tenant.id, text_search="a_p")[1] == 0  # '_' is literal
    items, _ = reg.list_devices(tenant.id, sort_property="type", sort_order="asc")
    assert [d.type for d in items][0] == "gateway"
    items, _ = reg.list_devices(tenant.id, sort_property="label", sort_order="DESC")
    assert items[0].label == "Kitchen"
    for kwargs in (
        {"page": -1},
        {"page_size": 0},
        {"page": 1.5},
        {"sort_property": "token"},
        {"sort_property": "access_token"},
        {"sort_order": "sideways"},
        {"customer_id": "x"},
    ):
        with pytest.raises(InvalidInput):
            reg.list_devices(tenant.id, **kwargs)


def test_delete_device(reg, tenant):
    d = reg.save_device(tenant.id, "d", access_token="del-tok")
    reg.save_attributes(d.id, "SERVER_SCOPE", [(1, "k", ValueType.STR, "v")])
    assert reg.device_by_token("del-tok")
    reg.delete_device(d.id)
    with pytest.raises(NotFound):
        reg.get_device(d.id)
    assert reg.device_by_token("del-tok") is None
    assert reg.get_attributes(d.id) == []
    with pytest.raises(NotFound):
        reg.delete_device(d.id)
    # the name and token are free again
    again = reg.save_device(tenant.id, "d", access_token="del-tok")
    assert again.id != d.id


def test_assign_and_unassign(reg, tenant):
    c = reg.create_customer(tenant.id, "C")
    d = reg.save_device(tenant.id, "d")
    a = reg.assign_device(d.id, c.id)
    assert a.customer_id == c.id and reg.get_device(d.id).customer_id == c.id
    assert a.to_json()["customerId"] == {"entityType": "CUSTOMER", "id": c.id}
    assert reg.unassign_device(d.id).customer_id is None
    assert reg.assign_device(d.id, c.id).customer_id == c.id
    assert reg.assign_device(d.id, None).customer_id is None
    oc = reg.create_customer(reg.create_tenant("B").id, "OC")
    with pytest.raises(InvalidInput, match="another tenant"):
        reg.assign_device(d.id, oc.id)
    with pytest.raises(NotFound):
        reg.assign_device(d.id, str(uuid.uuid4()))
    with pytest.raises(NotFound):
        reg.assign_device(str(uuid.uuid4()), c.id)
    with pytest.raises(NotFound):
        reg.unassign_device(str(uuid.uuid4()))
    assert reg.get_device(d.id).customer_id is None


def test_credentials(reg, tenant):
    d = reg.save_device(tenant.id, "d")
    reg.save_device(tenant.id, "e", access_token="E_TOKEN")
    reg.set_credentials(d.id, "D_TOKEN")
    assert reg.get_credentials(d.id) == "D_TOKEN"
    reg.set_credentials(d.id, "D_TOKEN")  # idempotent
    with pytest.raises(Conflict):
        reg.set_credentials(d.id, "E_TOKEN")
    for bad in ("", "a b", "a\nb", "a?b", "a#b", None):
        with pytest.raises(InvalidInput):
            reg.set_credentials(d.id, bad)
    with pytest.raises(NotFound):
        reg.set_credentials(str(uuid.uuid4()), "F_TOKEN")
    assert reg.get_credentials(d.id) == "D_TOKEN"


def test_device_types(reg, tenant):
    assert reg.device_types(tenant.id) == []
    for name, type_ in [("a", "thermo"), ("b", "meter"), ("c", "thermo"), ("d", None)]:
        reg.save_device(tenant.id, name, type=type_)
    reg.save_device(reg.create_tenant("B").id, "x", type="secret-type")
    assert reg.device_types(tenant.id) == ["default", "meter", "thermo"]


def test_generated_tokens_are_unique(reg, tenant):
    with reg.transaction():
        ids = [reg.save_device(tenant.id, f"d{i}").id for i in range(200)]
    tokens = {reg.get_credentials(i) for i in ids}
    assert len(tokens) == 200


# =========================================================================================
# attributes
# =========================================================================================
def test_attributes_keep_types(reg, tenant):
    d = reg.save_device(tenant.id, "d")
    big = 2**63 - 1
    reg.save_attributes(
        d.id,
        "CLIENT_SCOPE",
        [
            (10, "bool", ValueType.BOOL, True),
            (11, "long", ValueType.LONG, big),
            (12, "neg", ValueType.LONG, -(2**63)),
            (13, "double", ValueType.DOUBLE, 3.0),
            (14, "str", ValueType.STR, "42"),
            (15, "json", ValueType.JSON, '{"a":[1,2]}'),
            (16, "false", ValueType.BOOL, False),
        ],
    )
    got = {a["key"]: a for a in reg.get_attributes(d.id)}
    assert got["bool"]["value"] is True and got["false"]["value"] is False
    assert got["long"]["value"] == big and type(got["long"]["value"]) is int
    assert got["neg"]["value"] == -(2**63)
    assert got["double"]["value"] == 3.0 and type(got["double"]["value"]) is float
    assert got["str"]["value"] == "42"
    assert got["json"]["value"] == '{"a":[1,2]}'
    assert got["long"] == {"key": "long", "value": big, "lastUpdateTs": 11, "scope": "CLIENT_SCOPE"}
    assert [a["key"] for a in reg.get_attributes(d.id)] == sorted(got)


def test_attributes_upsert_scopes_and_keys(reg, tenant):
    d = reg.save_device(tenant.id, "d")
    assert reg.save_attributes(d.id, "CLIENT_SCOPE", [(1, "fw", ValueType.STR, "1.0")]) == 1
    reg.save_attributes(d.id, "SERVER_SCOPE", [(2, "fw", ValueType.LONG, 7)])
    reg.save_attributes(d.id, "SHARED_SCOPE", [(3, "mode", ValueType.STR, "eco")])
    reg.save_attributes(d.id, "CLIENT_SCOPE", [(5, "fw", ValueType.DOUBLE, 2.5)])  # upsert
    client = reg.get_attributes(d.id, "CLIENT_SCOPE")
    assert client == [{"key": "fw", "value": 2.5, "lastUpdateTs": 5, "scope": "CLIENT_SCOPE"}]
    assert reg.get_attributes(d.id, "SERVER_SCOPE")[0]["value"] == 7
    assert [a["scope"] for a in reg.get_attributes(d.id)] == ["CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE"]
    assert [a["key"] for a in reg.get_attributes(d.id, keys=["mode", "missing"])] == ["mode"]
    assert reg.get_attributes(d.id, keys="mode")[0]["value"] == "eco"
    assert reg.get_attributes(d.id, keys=[]) == []
    assert reg.get_attributes(str(uuid.uuid4())) == []
    assert reg.save_attributes(d.id, "CLIENT_SCOPE", []) == 0
    assert reg.delete_attributes(d.id, "CLIENT_SCOPE", ["fw", "missing"]) == 1
    assert reg.delete_attributes(d.id, "CLIENT_SCOPE", []) == 0
    assert reg.get_attributes(d.id, "CLIENT_SCOPE") == []
    assert len(reg.get_attributes(d.id)) == 2


def test_attribute_changes_are_announced_once_committed(reg, tenant):
    d = reg.save_device(tenant.id, "d")
    heard = []
    reg.attributes_changed.connect(heard.append)
    with reg.transaction():
        reg.save_attributes(d.id, "SHARED_SCOPE", [(5, "mode", ValueType.STR, "eco"), (5, "on", ValueType.BOOL, True)])
        assert heard == []  # not before the commit
    assert [(c.entity_id, c.scope, c.values, c.deleted) for c in heard] == [
        (
            d.id,
            "SHARED_SCOPE",
            [{"key": "mode", "value": "eco", "lastUpdateTs": 5}, {"key": "on", "value": True, "lastUpdateTs": 5}],
            [],
        )
    ]
    with pytest.raises(RuntimeError), reg.transaction():  # a rolled-back save is never announced
        reg.save_attributes(d.id, "SHARED_SCOPE", [(6, "mode", ValueType.STR, "away")])
        raise RuntimeError
    assert reg.delete_attributes(d.id, "SHARED_SCOPE", ["mode", "missing"]) == 1
    assert heard[-1].deleted == ["mode"] and len(heard) == 2
    assert reg.delete_attributes(d.id, "SHARED_SCOPE", ["missing"]) == 0
    assert len(heard) == 2  # nothing existed: nothing announced


def test_attributes_from_payload_parser(reg, tenant):
    d = reg.save_device(tenant.id, "d")
    points = parse_attributes(
        b'{"fw":"1.2.3","count":"42","ratio":0.5,"on":true,"cfg":{"a":1},"none":null}', 1_700_000_000_000
    )
    reg.save_attributes(d.id, "CLIENT_SCOPE", points)
    got = {a["key"]: a["value"] for a in reg.get_attributes(d.id, "CLIENT_SCOPE")}
    assert got == {"fw": "1.2.3", "count": 42, "ratio": 0.5, "on": True, "cfg": '{"a":1}'}


def test_attribute_errors_store_nothing(reg, tenant):
    d = reg.save_device(tenant.id, "d")
    good = (1, "ok", ValueType.LONG, 1)
    bad_points = [
        (1, "k", ValueType.LONG, "1"),
        (1, "k", ValueType.LONG, True),
        (1, "k", ValueType.LONG, 2**63),
        (1, "k", ValueType.BOOL, 1),
        (1, "k", ValueType.DOUBLE, float("inf")),
        (1, "k", ValueType.STR, 5),
        (1, "k", 9, "x"),
        (-1, "k", ValueType.STR, "x"),
        ("1", "k", ValueType.STR, "x"),
        (1, "", ValueType.STR, "x"),
        (1, "k"),
        "junk",
    ]
    for bad in bad_points:
        with pytest.raises(InvalidInput):
            reg.save_attributes(d.id, "CLIENT_SCOPE", [good, bad])
    with pytest.raises(InvalidInput):
        reg.save_attributes(d.id, "WRONG_SCOPE", [good])
    with pytest.raises(InvalidInput):
        reg.get_attributes(d.id, "WRONG_SCOPE")
    with pytest.raises(InvalidInput):
        reg.delete_attributes(d.id, "WRONG_SCOPE", ["ok"])
    with pytest.raises(InvalidInput):
        reg.save_attributes("not-a-uuid", "CLIENT_SCOPE", [good])
    with pytest.raises(InvalidInput):
        reg.get_attributes(d.id, keys=[{"k": 1}])
    with pytest.raises(InvalidInput):
        reg.delete_attributes(d.id, "CLIENT_SCOPE", [1])
    assert reg.get_attributes(d.id) == []


# =========================================================================================
# access checks: tenant/customer isolation
# =========================================================================================
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    reg = EntityRegistry(tmp_path_factory.mktemp("acl"))
    a, b = reg.create_tenant("A"), reg.create_tenant("B")
    a1, a2 = reg.create_customer(a.id, "A1"), reg.create_customer(a.id, "A2")
    b1 = reg.create_customer(b.id, "B1")
    users = {
        "admin_a": reg.create_user("admin@a.org", PW, TENANT_ADMIN, a.id),
        "user_a1": reg.create_user("u@a1.org", PW, CUSTOMER_USER, a.id, a1.id),
        "user_a2": reg.create_user("u@a2.org", PW, CUSTOMER_USER, a.id, a2.id),
        "admin_b": reg.create_user("admin@b.org", PW, TENANT_ADMIN, b.id),
        "sysadmin": reg.create_user("root@sys.org", PW, SYS_ADMIN, None),
    }
    devices = {
        "dev_a1": reg.save_device(a.id, "a1", customer_id=a1.id),
        "dev_a2": reg.save_device(a.id, "a2", customer_id=a2.id),
        "dev_a": reg.save_device(a.id, "a-unassigned"),
        "dev_b": reg.save_device(b.id, "b", customer_id=b1.id),
    }
    customers = {"A1": a1, "A2": a2, "B1": b1}
    yield reg, users, devices, customers
    reg.close()


READ = {  # user -> devices it may read (and post telemetry to)
    "admin_a": {"dev_a1", "dev_a2", "dev_a"},
    "user_a1": {"dev_a1"},
    "user_a2": {"dev_a2"},
    "admin_b": {"dev_b"},
    "sysadmin": set(),
}
MANAGE = {"admin_a": {"dev_a1", "dev_a2", "dev_a"}, "admin_b": {"dev_b"}}
ALL_DEVICES = ("dev_a1", "dev_a2", "dev_a", "dev_b")


@pytest.mark.parametrize("user_key", list(READ))
@pytest.mark.parametrize("device_key", ALL_DEVICES)
def test_access_matrix(world, user_key, device_key):
    reg, users, devices, _ = world
    user, device = users[user_key], devices[device_key]
    may_read = device_key in READ[user_key]
    may_manage = device_key in MANAGE.get(user_key, set())
    assert reg.can_read(user, device) is may_read
    assert reg.can_write(user, device) is may_read
    assert reg.can_manage(user, device) is may_manage
    for kwargs, allowed in (({}, may_read), ({"write": True}, may_read), ({"manage": True}, may_manage)):
        if allowed:
            assert reg.check_device(user, device.id, **kwargs).id == device.id
        else:
            with pytest.raises(PermissionDenied) as info:
                reg.check_device(user, device.id, **kwargs)
            assert info.value.status == 403 and info.value.error_code == 20


@pytest.mark.parametrize("user_key", list(READ))
def test_check_device_unknown_and_malformed(world, user_key):
    reg, users, _, _ = world
    with pytest.raises(NotFound) as info:
        reg.check_device(users[user_key], str(uuid.uuid4()))
    assert info.value.status == 404
    with pytest.raises(InvalidInput) as bad:
        reg.check_device(users[user_key], "../etc/passwd")
    assert bad.value.status == 400


def test_access_edge_cases(world):
    reg, users, devices, _ = world
    # a disabled user reads nothing, even its own tenant's devices
    disabled = User(**{**users["admin_a"].param.values(), "enabled": False})
    assert not reg.can_read(disabled, devices["dev_a"])
    assert not reg.can_manage(disabled, devices["dev_a"])
    # a customer user without a customer must not match unassigned devices (None == None)
    orphan = User(
        id=str(uuid.uuid4()),
        email="o@a.org",
        authority=CUSTOMER_USER,
        tenant_id=users["admin_a"].tenant_id,
        customer_id=None,
    )
    assert not reg.can_read(orphan, devices["dev_a"])
    # same customer id but another tenant: denied (defence in depth)
    forged = User(
        id=str(uuid.uuid4()),
        email="f@b.org",
        authority=CUSTOMER_USER,
        tenant_id=users["admin_b"].tenant_id,
        customer_id=devices["dev_a1"].customer_id,
    )
    assert not reg.can_read(forged, devices["dev_a1"])
    assert not reg.can_read(None, devices["dev_a"])  # type: ignore[arg-type]


CUSTOMER_READ = {"admin_a": {"A1", "A2"}, "user_a1": {"A1"}, "user_a2": {"A2"}, "admin_b": {"B1"}, "sysadmin": set()}
CUSTOMER_WRITE = {"admin_a": {"A1", "A2"}, "admin_b": {"B1"}}


@pytest.mark.parametrize("user_key", list(CUSTOMER_READ))
@pytest.mark.parametrize("customer_key", ["A1", "A2", "B1"])
def test_customer_access_matrix(world, user_key, customer_key):
    reg, users, _, customers = world
    user, customer = users[user_key], customers[customer_key]
    for write, allowed in (
        (False, customer_key in CUSTOMER_READ[user_key]),
        (True, customer_key in CUSTOMER_WRITE.get(user_key, set())),
    ):
        if allowed:
            assert reg.check_customer(user, customer.id, write=write).id == customer.id
        else:
            with pytest.raises(PermissionDenied):
                reg.check_customer(user, customer.id, write=write)
    with pytest.raises(NotFound):
        reg.check_customer(user, str(uuid.uuid4()))


# =========================================================================================
# threads
# =========================================================================================
def test_concurrent_use_from_threads(reg, tenant):
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for j in range(25):
                d = reg.save_device(tenant.id, f"t{i}-{j}", access_token=f"tok-{i}-{j}")
                assert reg.device_by_token(f"tok-{i}-{j}").id == d.id
                reg.save_attributes(d.id, "CLIENT_SCOPE", [(j, "k", ValueType.LONG, j)])
                reg.list_devices(tenant.id, page_size=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert reg.list_devices(tenant.id)[1] == 200


def test_concurrent_duplicate_names_one_winner(reg, tenant):
    def attempt(_):
        try:
            return reg.save_device(tenant.id, "contested").id
        except Conflict:
            return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(16)))
    assert sum(r is not None for r in results) == 1


# =========================================================================================
# init (used by `tbpanel init`)
# =========================================================================================
def test_init_creates_everything(tmp_path):
    data = tmp_path / "fresh"
    tenant, user = init(data, "Admin@Site.org", PW, tenant_title="Site")
    assert (tenant.title, user.authority, user.tenant_id) == ("Site", TENANT_ADMIN, tenant.id)
    assert stat.S_IMODE((data / "jwt.secret").stat().st_mode) == 0o600
    with EntityRegistry(data, create=False) as reg:
        assert reg.authenticate("admin@site.org", PW).id == user.id
    # re-running with the same email never resets the password
    with pytest.raises(Conflict, match="already exists.*never"):
        init(data, "admin@SITE.org", "another-password", tenant_title="Site")
    with EntityRegistry(data) as reg:
        assert reg.authenticate("admin@site.org", PW) is not None
        assert reg.authenticate("admin@site.org", "another-password") is None
    # another admin: same title reuses the tenant, a new title makes a new tenant
    t2, u2 = init(data, "second@site.org", PW, tenant_title="Site")
    assert t2.id == tenant.id and u2.tenant_id == tenant.id
    t3, _ = init(data, "other@else.org", PW, tenant_title="Elsewhere")
    assert t3.id != tenant.id
    secret = (data / "jwt.secret").read_bytes()
    init(data, "third@else.org", PW, tenant_title="Elsewhere")
    assert (data / "jwt.secret").read_bytes() == secret  # the secret is kept


def test_init_bad_input_changes_nothing(tmp_path):
    for args in (("not-an-email", PW), ("a@b.org", ""), ("a@b.org", PW, "  ")):
        with pytest.raises(InvalidInput):
            init(tmp_path, *args)
    with EntityRegistry(tmp_path) as reg:
        assert reg.list_tenants() == []


# =========================================================================================
# models and packaging
# =========================================================================================
def test_models_standalone():
    d = Device(id="d", name="n", tenant_id="t")
    assert d.to_json()["customerId"]["id"] == NULL_UUID
    assert d.to_json()["type"] == "default"
    assert d.entity_id == {"entityType": "DEVICE", "id": "d"}
    u = User(id="u", email="e@x", authority=CUSTOMER_USER, customer_id="c")
    assert u.scopes == ["CUSTOMER_USER"]
    with pytest.raises(ValueError):
        User(authority="ROOT")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_entities_import_no_panel():
    r = _python(
        "import sys, tbpanel.entities, tbpanel.cli; "
        "bad = [m for m in ('panel', 'bokeh', 'holoviews', 'tbpanel.store', 'xarray') "
        "if m in sys.modules]; print(bad)"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_package_version_and_lazy_open_store():
    r = _python(
        "import sys, tbpanel\n"
        "assert tbpanel.__version__ == '0.1.0'\n"
        "assert 'tbpanel.store' not in sys.modules, 'store imported eagerly'\n"
        "try:\n"
        "    tbpanel.no_such_thing\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_thing' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
        "from tbpanel import cli\n"
        "assert callable(cli.main)\n"
        "assert 'open_store' in dir(tbpanel)\n"
        "try:\n"
        "    import tbpanel.store as store\n"
        "    real = store.open_store\n"
        "except (ImportError, AttributeError):\n"
        "    print('store not ready')\n"
        "else:\n"
        "    assert tbpanel.open_store is real\n"
        "    print('lazy ok')\n"
    )
    assert r.returncode == 0, r.stderr + r.stdout

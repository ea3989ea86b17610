"""Users over REST (ThingsBoard's /api/user*, /api/users, /api/customer/{id}/users,
/api/tenant/{id}/users, /api/auth/changePassword) on a real server."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import ADMIN, CUSTOMER_USER, Api

pytestmark = pytest.mark.usefixtures("no_server_errors")
PW = "new-user-Pa55"


def me(api: Api) -> dict:
    return api.get("/api/auth/user").json()


def create(world, **fields) -> dict:
    body = {"email": f"u-{uuid.uuid4().hex[:8]}@tenant-a.test", "authority": "TENANT_ADMIN", "password": PW, **fields}
    r = world.admin.post("/api/user?sendActivationMail=false", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_create_login_get_update_delete(world):
    cid = world.customer_ids["Customer A1"]
    u = create(world, authority="CUSTOMER_USER", customerId={"entityType": "CUSTOMER", "id": cid}, firstName="Ann")
    assert u["authority"] == "CUSTOMER_USER" and u["customerId"]["id"] == cid and u["firstName"] == "Ann"
    assert "password" not in u and PW not in str(u)
    api = Api.login(world.url, u["email"], PW)
    assert me(api)["id"] == u["id"]
    # the new customer user sees its customer's devices only
    names = {d["name"] for d in api.get(f"/api/customer/{cid}/devices?pageSize=100&page=0").json()["data"]}
    assert "dev-a1" in names and "dev-a2" not in names
    assert world.admin.get(f"/api/user/{u['id']['id']}").json()["email"] == u["email"]
    updated = world.admin.post("/api/user", json=dict(u, lastName="Bee")).json()
    assert updated["lastName"] == "Bee" and updated["firstName"] == "Ann" and updated["id"] == u["id"]
    assert world.admin.post("/api/user", json=dict(u, authority="TENANT_ADMIN")).status_code == 400
    assert world.admin.delete(f"/api/user/{u['id']['id']}").status_code == 200
    assert world.admin.get(f"/api/user/{u['id']['id']}").status_code == 404
    assert api.get("/api/auth/user").status_code == 401  # its token no longer names a user


def test_create_errors(world):
    base = {"email": f"e-{uuid.uuid4().hex[:8]}@t.test", "authority": "TENANT_ADMIN", "password": PW}
    cases = [
        dict(base, password=None),
        dict(base, authority="SYS_ADMIN"),
        dict(base, authority="CUSTOMER_USER"),
        dict(base, authority="CUSTOMER_USER", customerId={"id": world.customer_ids["Customer A1"][:-1] + "0"}),
        dict(base, email="not-an-email"),
        dict(base, email=ADMIN[0]),  # taken
        dict(base, firstName=5),
        dict(base, additionalInfo=[1]),
    ]
    for body in cases:
        r = world.admin.post("/api/user", json=body)
        assert r.status_code in (400, 403, 404), (body, r.status_code, r.text)
        assert r.json()["message"]
    r = world.admin.post("/api/user", json=dict(base, password=None))
    assert "password" in r.json()["message"]


def test_lists(world):
    tenant_id = me(world.admin)["tenantId"]["id"]
    users = world.admin.get("/api/users?pageSize=100&page=0").json()
    emails = {u["email"] for u in users["data"]}
    assert {ADMIN[0], CUSTOMER_USER[0]} <= emails and "admin@tenant-b.test" not in emails
    assert world.admin.get("/api/user/users?pageSize=100&page=0").json()["totalElements"] == users["totalElements"]
    cust = world.admin.get(f"/api/customer/{world.customer_ids['Customer A1']}/users?pageSize=100&page=0").json()
    assert CUSTOMER_USER[0] in {u["email"] for u in cust["data"]}
    assert all(u["authority"] == "CUSTOMER_USER" for u in cust["data"])
    admins = world.admin.get(f"/api/tenant/{tenant_id}/users?pageSize=100&page=0").json()
    assert ADMIN[0] in {u["email"] for u in admins["data"]} and all(
        u["authority"] == "TENANT_ADMIN" for u in admins["data"]
    )
    paged = world.admin.get("/api/users?pageSize=1&page=0&sortProperty=email&sortOrder=ASC").json()
    assert len(paged["data"]) == 1 and paged["hasNext"] is True
    assert world.admin.get("/api/users?pageSize=1&page=0&sortProperty=password").status_code == 400


def test_isolation(world):
    admin_id = me(world.admin)["id"]["id"]
    customer = me(world.customer)
    tenant_id = me(world.admin)["tenantId"]["id"]
    assert world.customer.get(f"/api/user/{customer['id']['id']}").status_code == 200  # itself
    assert world.customer.get(f"/api/user/{admin_id}").status_code == 403
    assert world.other_customer.get(f"/api/user/{customer['id']['id']}").status_code == 403
    assert world.other_admin.get(f"/api/user/{admin_id}").status_code == 403
    assert world.other_admin.get(f"/api/tenant/{tenant_id}/users?pageSize=10&page=0").status_code == 403
    assert (
        world.other_admin.get(f"/api/customer/{world.customer_ids['Customer A1']}/users?pageSize=10&page=0").status_code
        == 403
    )
    assert world.customer.get("/api/users?pageSize=10&page=0").status_code == 403
    assert (
        world.customer.post(
            "/api/user", json={"email": "x@y.z", "authority": "TENANT_ADMIN", "password": PW}
        ).status_code
        == 403
    )
    assert world.other_admin.delete(f"/api/user/{customer['id']['id']}").status_code == 403
    assert world.admin.delete(f"/api/user/{admin_id}").status_code == 400  # not itself


def test_change_password(world):
    u = create(world)
    api = Api.login(world.url, u["email"], PW)
    r = api.post("/api/auth/changePassword", json={"currentPassword": "wrong", "newPassword": "x-new-Pa55"})
    assert r.status_code == 400 and "doesn't match" in r.json()["message"]
    assert api.post("/api/auth/changePassword", json={"currentPassword": PW}).status_code == 400
    r = api.post("/api/auth/changePassword", json={"currentPassword": PW, "newPassword": "x-new-Pa55"})
    assert r.status_code == 200 and {"token", "refreshToken"} <= set(r.json())
    assert Api.login(world.url, u["email"], "x-new-Pa55").get("/api/auth/user").status_code == 200
    r = world.anon.post("/api/auth/changePassword", json={"currentPassword": PW, "newPassword": "y"})
    assert r.status_code == 401
    world.admin.delete(f"/api/user/{u['id']['id']}")


def test_tb_rest_client_users(world):
    from tb_rest_client.models.change_password_request import ChangePasswordRequest
    from tb_rest_client.rest_client import RestClient

    u = create(world)
    client = RestClient(base_url=world.url)
    client.login(*ADMIN)
    try:
        assert client.get_user_by_id(u["id"]["id"]).email == u["email"]
        assert u["email"] in [x.email for x in client.get_users(page_size=100, page=0).data]
        cid = world.customer_ids["Customer A1"]
        assert CUSTOMER_USER[0] in [x.email for x in client.get_customer_users(cid, page_size=100, page=0).data]
        email = f"rc-{uuid.uuid4().hex[:8]}@tenant-a.test"
        created = client.save_user(
            body={"email": email, "authority": "TENANT_ADMIN", "password": PW}, send_activation_mail=False
        )
        assert created.email == email
        own = RestClient(base_url=world.url)
        own.login(email, PW)
        own.change_password(ChangePasswordRequest(current_password=PW, new_password="rc-new-Pa55"))
        own.stop()
        client.delete_user(created.id)
    finally:
        client.stop()
    world.admin.delete(f"/api/user/{u['id']['id']}")

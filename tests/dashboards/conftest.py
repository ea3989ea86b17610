"""A real entities.sqlite with two tenants, their customers and devices, and the users that
look at them (User objects as the registry returns them; no passwords hashed: fast)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tbpanel.dashboards import DashboardStore
from tbpanel.entities import CUSTOMER_USER, TENANT_ADMIN, EntityRegistry, User


@dataclass
class Fleet:
    reg: EntityRegistry
    store: DashboardStore
    tenant: str
    other_tenant: str
    c1: str
    c2: str
    other_customer: str  # of the other tenant
    admin: User
    user1: User  # customer user of c1
    user2: User  # customer user of c2
    other_admin: User
    other_user: User  # customer user of the other tenant's customer
    devices: dict[str, str]  # name -> id (names unique across both tenants here)


def user(authority: str, tenant: str | None, customer: str | None = None, enabled: bool = True) -> User:
    return User(authority=authority, tenant_id=tenant, customer_id=customer, enabled=enabled, email="x@y.z")


@pytest.fixture
def fleet(tmp_path) -> Fleet:
    reg = EntityRegistry(tmp_path)
    t, u = reg.create_tenant("T"), reg.create_tenant("U")
    c1, c2 = reg.create_customer(t.id, "C1"), reg.create_customer(t.id, "C2")
    cu = reg.create_customer(u.id, "CU")
    devices = {}
    for name, tenant, customer, dtype in [
        ("pump-1", t.id, c1.id, "pump"),
        ("pump-2", t.id, c2.id, "pump"),
        ("pump-3", t.id, None, "pump"),
        ("meter-1", t.id, c1.id, "meter"),
        ("Meter-2", t.id, None, "meter"),
        ("u-pump", u.id, cu.id, "pump"),
    ]:
        d = reg.save_device(tenant, name, type=dtype)
        if customer:
            reg.assign_device(d.id, customer)
        devices[name] = d.id
    f = Fleet(
        reg,
        DashboardStore(reg),
        t.id,
        u.id,
        c1.id,
        c2.id,
        cu.id,
        user(TENANT_ADMIN, t.id),
        user(CUSTOMER_USER, t.id, c1.id),
        user(CUSTOMER_USER, t.id, c2.id),
        user(TENANT_ADMIN, u.id),
        user(CUSTOMER_USER, u.id, cu.id),
        devices,
    )
    yield f
    reg.close()

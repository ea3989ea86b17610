"""Tenants: the top of the ownership tree (every customer, device and non-SYS_ADMIN user
belongs to exactly one); titles are unique in an installation."""

from __future__ import annotations

import uuid
from typing import Any

from ..clock import now_ms
from ..errors import Conflict, NotFound
from . import fields
from .models import Tenant
from .profiles import insert_default_profile
from .tables import Tables

_TENANT_COLS = "id, created_time, title, additional_info"


def tenant_from_row(row: tuple[Any, ...]) -> Tenant:
    return Tenant(  # type: ignore[no-untyped-call]  # param's constructors are untyped
        id=row[0], created_time=row[1], title=row[2], name=row[2], additional_info=fields.load_info(row[3])
    )


class Tenants(Tables):
    """The registry's tenant methods (mixin of :class:`EntityRegistry`)."""

    def create_tenant(self, title: str) -> Tenant:
        title = fields.text(title, "tenant title")
        row = (str(uuid.uuid4()), now_ms(), title, None)
        with self.transaction():
            if self._one("SELECT 1 FROM tenant WHERE title = ?", (title,)):
                raise Conflict(f"A tenant titled {title!r} already exists")
            self._conn.execute("INSERT INTO tenant VALUES (?, ?, ?, ?)", row)
            insert_default_profile(self._conn, row[0])
        return tenant_from_row(row)

    def get_tenant(self, tenant_id: Any) -> Tenant:
        tid = fields.canonical_id(tenant_id, "tenant")
        row = self._one(f"SELECT {_TENANT_COLS} FROM tenant WHERE id = ?", (tid,))
        if row is None:
            raise NotFound(f"Tenant {tid} not found")
        return tenant_from_row(row)

    def find_tenant(self, title: str) -> Tenant | None:
        row = self._one(f"SELECT {_TENANT_COLS} FROM tenant WHERE title = ?", (title,))
        return None if row is None else tenant_from_row(row)

    def list_tenants(self) -> list[Tenant]:
        rows = self._all(
            f"SELECT {_TENANT_COLS} FROM tenant ORDER BY created_time, rowid"
        )  # rowid: creation order within one ms
        return [tenant_from_row(r) for r in rows]

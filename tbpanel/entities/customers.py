"""Customers: groups of devices and users inside a tenant (titles unique per tenant), with
ThingsBoard's contact fields kept as one JSON object."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..clock import now_ms
from ..errors import Conflict, InvalidInput, NotFound, PermissionDenied
from . import fields
from .models import CUSTOMER_CONTACT_FIELDS, Customer
from .tables import Tables

_CUSTOMER_COLS = "id, created_time, tenant_id, title, contact, additional_info"
_CUSTOMER_SORT = {
    "createdTime": "created_time",
    "title": "title COLLATE NOCASE",
    "email": "json_extract(contact, '$.email') COLLATE NOCASE",
    "country": "json_extract(contact, '$.country') COLLATE NOCASE",
    "city": "json_extract(contact, '$.city') COLLATE NOCASE",
}


def customer_from_row(row: tuple[Any, ...]) -> Customer:
    contact = json.loads(row[4]) if row[4] else {}
    contact_fields = {attr: contact.get(key) for key, attr in CUSTOMER_CONTACT_FIELDS.items()}
    return Customer(  # type: ignore[no-untyped-call]  # param's constructors are untyped
        id=row[0],
        created_time=row[1],
        tenant_id=row[2],
        title=row[3],
        name=row[3],
        additional_info=fields.load_info(row[5]),
        **contact_fields,
    )


class Customers(Tables):
    """The registry's customer methods (mixin of :class:`EntityRegistry`)."""

    def create_customer(self, tenant_id: Any, title: str) -> Customer:
        """A new customer of ``tenant_id``; the title is unique per tenant (else Conflict)."""
        return self.save_customer(tenant_id, {"title": title})

    def save_customer(self, tenant_id: Any, data: dict[str, Any]) -> Customer:
        """Create or update a customer from ThingsBoard's ``POST /api/customer`` JSON.

        With an ``id`` in ``data`` the customer is updated (it must belong to the tenant,
        else PermissionDenied; unknown id → NotFound) and all its fields are replaced by
        ``data``'s; without one it is created.
        """
        if not isinstance(data, dict):
            raise InvalidInput(f"customer must be a JSON object, got {type(data).__name__}")
        title = fields.text(data.get("title"), "customer title")
        contact = {}
        for key in CUSTOMER_CONTACT_FIELDS:
            value = fields.optional_text(data.get(key), f"customer {key}")
            if value is not None:
                contact[key] = value
        contact_json = json.dumps(contact, separators=(",", ":"))
        info = fields.info_json(data.get("additionalInfo"))
        raw_id = data.get("id")
        customer_id = None if raw_id is None else fields.optional_customer(raw_id)
        with self.transaction():
            tid = self._require_tenant(tenant_id)
            if customer_id is None:
                cid = str(uuid.uuid4())
                row: tuple[Any, ...] = (cid, now_ms(), tid, title, contact_json, info)
                self._check_customer_title(tid, title, None)
                self._conn.execute(f"INSERT INTO customer ({_CUSTOMER_COLS}) VALUES (?, ?, ?, ?, ?, ?)", row)
            else:
                old = self._one(f"SELECT {_CUSTOMER_COLS} FROM customer WHERE id = ?", (customer_id,))
                if old is None:
                    raise NotFound(f"Customer {customer_id} not found")
                if old[2] != tid:
                    raise PermissionDenied(f"Customer {customer_id} belongs to another tenant")
                self._check_customer_title(tid, title, customer_id)
                row = (customer_id, old[1], tid, title, contact_json, info)
                self._conn.execute(
                    "UPDATE customer SET title = ?, contact = ?, additional_info = ? WHERE id = ?",
                    (title, contact_json, info, customer_id),
                )
        return customer_from_row(row)

    def _check_customer_title(self, tid: str, title: str, own_id: str | None) -> None:
        row = self._one("SELECT id FROM customer WHERE tenant_id = ? AND title = ?", (tid, title))
        if row is not None and row[0] != own_id:
            raise Conflict(f"Customer with title {title!r} already exists")

    def get_customer(self, customer_id: Any) -> Customer:
        cid = fields.canonical_id(customer_id, "customer")
        row = self._one(f"SELECT {_CUSTOMER_COLS} FROM customer WHERE id = ?", (cid,))
        if row is None:
            raise NotFound(f"Customer {cid} not found")
        return customer_from_row(row)

    def find_customer(self, tenant_id: Any, title: str) -> Customer | None:
        tid = fields.canonical_id(tenant_id, "tenant")
        row = self._one(f"SELECT {_CUSTOMER_COLS} FROM customer WHERE tenant_id = ? AND title = ?", (tid, title))
        return None if row is None else customer_from_row(row)

    def list_customers(
        self,
        tenant_id: Any,
        page: int = 0,
        page_size: int = 100,
        text_search: str | None = None,
        sort_property: str = "title",
        sort_order: str = "ASC",
    ) -> tuple[list[Customer], int]:
        """One page of the tenant's customers (``text_search``: case-insensitive substring of
        the title) and the total number matching."""
        tid = fields.canonical_id(tenant_id, "tenant")
        page, page_size = fields.paging(page, page_size)
        order = fields.order(sort_property, sort_order, _CUSTOMER_SORT)
        where, params = "tenant_id = ?", [tid]
        if text_search:
            where += " AND title LIKE ? ESCAPE '\\'"
            params.append(fields.like(text_search))
        with self._lock:
            total = self._count("customer", where, params)
            rows = self._all(
                f"SELECT {_CUSTOMER_COLS} FROM customer WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, page_size, page * page_size],
            )
        return [customer_from_row(r) for r in rows], total

    def delete_customer(self, customer_id: Any) -> None:
        """Delete a customer: its devices become unassigned, its users are deleted."""
        cid = fields.canonical_id(customer_id, "customer")
        with self.transaction():
            if not self._one("SELECT 1 FROM customer WHERE id = ?", (cid,)):
                raise NotFound(f"Customer {cid} not found")
            for (device_id,) in self._all("SELECT id FROM device WHERE customer_id = ?", (cid,)):
                self._forget_device(device_id)
            self._conn.execute("UPDATE device SET customer_id = NULL WHERE customer_id = ?", (cid,))
            self._conn.execute(
                "DELETE FROM attribute WHERE entity_id IN (SELECT id FROM users WHERE customer_id = ?)", (cid,)
            )
            self._conn.execute("DELETE FROM users WHERE customer_id = ?", (cid,))
            self._conn.execute("DELETE FROM attribute WHERE entity_id = ?", (cid,))
            self._conn.execute("DELETE FROM customer WHERE id = ?", (cid,))

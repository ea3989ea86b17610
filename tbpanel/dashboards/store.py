"""Dashboards: tenant-owned ThingsBoard dashboard JSON, assignable to the tenant's customers.

The tables (``dashboard``, ``dashboard_customer``) are in ``entities.sqlite`` (entities
migration 3, :mod:`tbpanel.entities.tables`), not a file of their own, because a dashboard is
an entity among entities: its tenant and its customers are rows of the same file, so the
foreign keys delete a tenant's dashboards with it and an assignment with its customer, and
"is this customer the tenant's?" is checked in the same transaction as the assignment.
Dashboard writes are rare and small, so they cost the device tables nothing.

Who may do what is ThingsBoard's ``DashboardController``: a tenant administrator creates,
changes, assigns and deletes its tenant's dashboards; a customer user reads the dashboards
assigned to its customer (and sees only its own customer among ``assignedCustomers``); nobody
reads another tenant's dashboard (PermissionDenied, 403; NotFound, 404, for an unknown id).
Every method takes the asking user and makes these checks itself, so the REST routes, the
pages and notebooks cannot forget one.

The stored form is ThingsBoard's ``Dashboard`` JSON (``GET /api/dashboard/{id}``); the
configuration is kept as given once checked (:mod:`.configuration`), so
``import_json(export_json(d))`` is ``d`` but for the id, times, tenant and assignments.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from ..clock import now_ms
from ..entities import CUSTOMER_USER, TENANT_ADMIN, EntityRegistry, User, entity_id_json, fields
from ..entities.access import DENIED
from ..errors import InvalidInput, NotFound, PermissionDenied, VersionConflict
from .configuration import configuration_json, empty_configuration, validate_configuration

_COLS = "id, created_time, tenant_id, title, image, mobile_hide, mobile_order, version"
_SORT = {"createdTime": "created_time", "title": "title COLLATE NOCASE"}
#: largest ``image`` (ThingsBoard keeps thumbnails as data URLs)
MAX_IMAGE_LENGTH = 1_000_000
#: fields that identify one stored copy; an export drops them (ThingsBoard's UI export does too)
INSTANCE_FIELDS = ("id", "createdTime", "tenantId", "assignedCustomers", "version", "externalId", "customerId")
#: ``set_customers`` modes (ThingsBoard's /api/dashboard/{id}/customers[/add|/remove])
CUSTOMER_MODES = ("set", "add", "remove")


def _tenant_admin(user: User) -> str:
    """The tenant of a tenant administrator; PermissionDenied for anyone else."""
    if user is None or not user.enabled or user.authority != TENANT_ADMIN or not user.tenant_id:
        raise PermissionDenied(DENIED)
    return user.tenant_id


def _reader(user: User) -> tuple[str, str | None]:
    """(tenant, customer or None) whose dashboards ``user`` may read; PermissionDenied otherwise."""
    if user is None or not user.enabled or not user.tenant_id:
        raise PermissionDenied(DENIED)
    if user.authority == TENANT_ADMIN:
        return user.tenant_id, None
    if user.authority == CUSTOMER_USER and user.customer_id:
        return user.tenant_id, user.customer_id
    raise PermissionDenied(DENIED)


def _title(body: dict[str, Any]) -> str:
    return fields.text(body.get("title"), "title").strip()


def _optional_bool(value: Any, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be true or false, got {value!r}"[:120])
    return value


def _optional_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise InvalidInput(f"{what} must be an integer, got {value!r}"[:120])
    return value


class DashboardStore:
    """The dashboards of one data directory (see the module docstring). Every method checks
    that ``user`` may do what it asks."""

    def __init__(self, registry: EntityRegistry) -> None:
        self.registry = registry
        self._db = registry.database

    # ------------------------------------------------------------------ reading
    def _row(self, dashboard_id: Any) -> tuple[Any, ...]:
        did = fields.canonical_id(dashboard_id, "dashboard")
        row = self._db.one(f"SELECT {_COLS} FROM dashboard WHERE id = ?", (did,))
        if row is None:
            raise NotFound(f"Dashboard with id [{did}] is not found")
        return row

    def _readable_row(self, user: User, dashboard_id: Any) -> tuple[Any, ...]:
        tenant_id, customer_id = _reader(user)
        row = self._row(dashboard_id)
        if row[2] != tenant_id:
            raise PermissionDenied(DENIED)
        if customer_id is not None and not self._db.one(
            "SELECT 1 FROM dashboard_customer WHERE dashboard_id = ? AND customer_id = ?", (row[0], customer_id)
        ):
            raise PermissionDenied(DENIED)
        return row

    def _managed_row(self, user: User, dashboard_id: Any) -> tuple[Any, ...]:
        tenant_id = _tenant_admin(user)
        row = self._row(dashboard_id)
        if row[2] != tenant_id:
            raise PermissionDenied(DENIED)
        return row

    def _assigned(self, dashboard_ids: list[str], only_customer: str | None) -> dict[str, list[dict[str, Any]]]:
        """``{dashboard id: ShortCustomerInfo list}`` (only ``only_customer``'s when given)."""
        out: dict[str, list[dict[str, Any]]] = {d: [] for d in dashboard_ids}
        for i in range(0, len(dashboard_ids), 500):  # SQLite's bound-parameter limit
            chunk = dashboard_ids[i : i + 500]
            sql = (
                "SELECT dc.dashboard_id, c.id, c.title FROM dashboard_customer dc JOIN customer c ON c.id = dc.customer_id"
                f" WHERE dc.dashboard_id IN ({', '.join('?' * len(chunk))})"
            )
            params: list[Any] = list(chunk)
            if only_customer is not None:
                sql += " AND dc.customer_id = ?"
                params.append(only_customer)
            for dashboard_id, cid, title in self._db.all(sql + " ORDER BY c.title COLLATE NOCASE, c.id", params):
                out[dashboard_id].append(
                    {"customerId": entity_id_json("CUSTOMER", cid), "title": title, "public": False}
                )
        return out

    def _infos(self, rows: list[tuple[Any, ...]], user: User) -> list[dict[str, Any]]:
        """ThingsBoard's DashboardInfo of each row, in ThingsBoard's field order."""
        only = user.customer_id if user.authority == CUSTOMER_USER else None
        assigned = self._assigned([r[0] for r in rows], only)
        return [
            {
                "id": entity_id_json("DASHBOARD", r[0]),
                "createdTime": r[1],
                "tenantId": entity_id_json("TENANT", r[2]),
                "title": r[3],
                "name": r[3],
                "image": r[4],
                "mobileHide": bool(r[5]),
                "mobileOrder": r[6],
                "assignedCustomers": assigned[r[0]],
                "version": r[7],
            }
            for r in rows
        ]

    def _dashboard(self, row: tuple[Any, ...], user: User) -> dict[str, Any]:
        (info,) = self._infos([row], user)
        text = self._db.one("SELECT configuration FROM dashboard WHERE id = ?", (row[0],))
        assert text is not None  # the row was just read under the same lock or transaction
        info["configuration"] = json.loads(text[0])
        info["version"] = info.pop("version")  # ThingsBoard's order: ..., configuration, version
        return info

    def get(self, user: User, dashboard_id: Any) -> dict[str, Any]:
        """ThingsBoard's Dashboard JSON, configuration included (``GET /api/dashboard/{id}``)."""
        with self._db.reading():
            return self._dashboard(self._readable_row(user, dashboard_id), user)

    def get_info(self, user: User, dashboard_id: Any) -> dict[str, Any]:
        """ThingsBoard's DashboardInfo: the dashboard without its configuration."""
        with self._db.reading():
            return self._infos([self._readable_row(user, dashboard_id)], user)[0]

    def _page(
        self,
        user: User,
        join: str,
        where: str,
        params: list[Any],
        page: int,
        page_size: int,
        text_search: str | None,
        sort_property: str,
        sort_order: str,
    ) -> tuple[list[dict[str, Any]], int]:
        page, page_size = fields.paging(page, page_size)
        order = fields.order(sort_property, sort_order, _SORT)
        if text_search:
            where += " AND title LIKE ? ESCAPE '\\'"
            params = [*params, fields.like(text_search)]
        with self._db.reading():
            total_row = self._db.one(f"SELECT COUNT(*) FROM dashboard {join} WHERE {where}", params)
            rows = self._db.all(
                f"SELECT {_COLS} FROM dashboard {join} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, page_size, page * page_size],
            )
            assert total_row is not None
            return self._infos(rows, user), int(total_row[0])

    def list_tenant(
        self,
        user: User,
        page: int = 0,
        page_size: int = 100,
        text_search: str | None = None,
        sort_property: str = "title",
        sort_order: str = "ASC",
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the tenant's DashboardInfos and the total (tenant administrators);
        ``text_search``: a case-insensitive substring of the title."""
        tenant_id = _tenant_admin(user)
        return self._page(
            user, "", "tenant_id = ?", [tenant_id], page, page_size, text_search, sort_property, sort_order
        )

    def list_customer(
        self,
        user: User,
        customer_id: Any,
        page: int = 0,
        page_size: int = 100,
        text_search: str | None = None,
        sort_property: str = "title",
        sort_order: str = "ASC",
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the DashboardInfos assigned to ``customer_id``: a tenant administrator
        for any customer of its tenant, a customer user for its own customer only."""
        _reader(user)
        customer = self.registry.check_customer(user, fields.canonical_id(customer_id, "customer"))
        return self._page(
            user,
            "JOIN dashboard_customer dc ON dc.dashboard_id = dashboard.id",
            "dashboard.tenant_id = ? AND dc.customer_id = ?",
            [customer.tenant_id, customer.id],
            page,
            page_size,
            text_search,
            sort_property,
            sort_order,
        )

    def list_by_ids(self, user: User, dashboard_ids: Iterable[Any]) -> list[dict[str, Any]]:
        """The DashboardInfos among ``dashboard_ids`` that ``user`` may read (the others are left
        out, as ThingsBoard's ``GET /api/dashboards?dashboardIds=``)."""
        tenant_id, customer_id = _reader(user)
        ids = list(dict.fromkeys(fields.canonical_id(i, "dashboard") for i in dashboard_ids))
        rows: list[tuple[Any, ...]] = []
        with self._db.reading():
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                where, params = f"tenant_id = ? AND id IN ({', '.join('?' * len(chunk))})", [tenant_id, *chunk]
                if customer_id is not None:
                    where += " AND id IN (SELECT dashboard_id FROM dashboard_customer WHERE customer_id = ?)"
                    params.append(customer_id)
                rows += self._db.all(f"SELECT {_COLS} FROM dashboard WHERE {where}", params)
            rows.sort(key=lambda r: ids.index(r[0]))
            return self._infos(rows, user)

    # ------------------------------------------------------------------ writing
    def save(self, user: User, body: dict[str, Any]) -> dict[str, Any]:
        """Create (no ``id``) or update (``id`` of a dashboard of the user's tenant) a dashboard
        from ThingsBoard's Dashboard JSON (tenant administrators). The tenant is the user's;
        ``assignedCustomers`` in ``body`` is ignored (the assign calls change it). A ``version``
        older than the stored one is a VersionConflict (409). Nothing is stored on error."""
        tenant_id = _tenant_admin(user)
        if not isinstance(body, dict):
            raise InvalidInput(f"dashboard must be a JSON object, got {type(body).__name__}")
        title = _title(body)
        image = fields.optional_text(body.get("image"), "image", max_len=MAX_IMAGE_LENGTH)
        mobile_hide = _optional_bool(body.get("mobileHide"), "mobileHide")
        mobile_order = _optional_int(body.get("mobileOrder"), "mobileOrder")
        raw = body.get("configuration")
        config = empty_configuration(title) if raw is None else validate_configuration(raw)
        text = configuration_json(config)
        version = _optional_int(body.get("version"), "version")
        raw_id = body.get("id")
        with self._db.transaction() as conn:
            if raw_id is None:
                did = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO dashboard (id, created_time, tenant_id, title, image, mobile_hide, mobile_order,"
                    " configuration, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (did, now_ms(), tenant_id, title, image, int(mobile_hide), mobile_order, text),
                )
            else:
                old = self._managed_row(user, raw_id)
                did = old[0]
                if version is not None and version != old[7]:
                    raise VersionConflict(
                        f"Dashboard {did} was changed by someone else (version {old[7]}, the update has {version})"
                    )
                conn.execute(
                    "UPDATE dashboard SET title = ?, image = ?, mobile_hide = ?, mobile_order = ?, configuration = ?,"
                    " version = version + 1 WHERE id = ?",
                    (title, image, int(mobile_hide), mobile_order, text, did),
                )
            return self._dashboard(self._row(did), user)

    def delete(self, user: User, dashboard_id: Any) -> None:
        """Delete a dashboard of the user's tenant (tenant administrators); its assignments go too."""
        with self._db.transaction() as conn:
            row = self._managed_row(user, dashboard_id)
            conn.execute("DELETE FROM dashboard WHERE id = ?", (row[0],))

    def _customer_of_tenant(self, user: User, customer_id: Any) -> str:
        """The id of a customer of the user's tenant (NotFound / PermissionDenied otherwise)."""
        return self.registry.check_customer(user, fields.canonical_id(customer_id, "customer"), write=True).id

    def assign(self, user: User, customer_id: Any, dashboard_id: Any) -> dict[str, Any]:
        """Assign the dashboard to a customer of the tenant (again: no change); the Dashboard."""
        return self.set_customers(user, dashboard_id, [customer_id], mode="add")

    def unassign(self, user: User, customer_id: Any, dashboard_id: Any) -> dict[str, Any]:
        """Take the dashboard from a customer (not assigned: no change); the Dashboard."""
        return self.set_customers(user, dashboard_id, [customer_id], mode="remove")

    def unassign_all(self, user: User, dashboard_id: Any) -> dict[str, Any]:
        """Take the dashboard from every customer (tb-rest-client's owner change to the tenant)."""
        return self.set_customers(user, dashboard_id, [], mode="set")

    def set_customers(
        self, user: User, dashboard_id: Any, customer_ids: Iterable[Any], mode: str = "set"
    ) -> dict[str, Any]:
        """Make the dashboard's customers exactly ``customer_ids`` (``set``), add them
        (``add``) or take them away (``remove``); every one must be a customer of the tenant.
        One transaction: a bad id changes nothing."""
        if mode not in CUSTOMER_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(CUSTOMER_MODES)}, got {mode!r}")
        with self._db.transaction() as conn:
            row = self._managed_row(user, dashboard_id)
            wanted = list(dict.fromkeys(self._customer_of_tenant(user, c) for c in customer_ids))
            if mode == "set":
                conn.execute("DELETE FROM dashboard_customer WHERE dashboard_id = ?", (row[0],))
            if mode == "remove":
                conn.executemany(
                    "DELETE FROM dashboard_customer WHERE dashboard_id = ? AND customer_id = ?",
                    [(row[0], c) for c in wanted],
                )
            else:
                conn.executemany(
                    "INSERT OR IGNORE INTO dashboard_customer (dashboard_id, customer_id) VALUES (?, ?)",
                    [(row[0], c) for c in wanted],
                )
            return self._dashboard(row, user)

    # ------------------------------------------------------------------ export / import
    def export_json(self, user: User, dashboard_id: Any) -> dict[str, Any]:
        """The dashboard as ThingsBoard's UI exports it: the Dashboard JSON without what names
        this copy (id, times, tenant, assignments, version). Any reader of the dashboard may."""
        dashboard = self.get(user, dashboard_id)
        return {k: v for k, v in dashboard.items() if k not in INSTANCE_FIELDS}

    def import_json(self, user: User, body: dict[str, Any]) -> dict[str, Any]:
        """A new dashboard of the user's tenant from an export (or any Dashboard JSON: its id,
        tenant and assignments are ignored, so an import never overwrites or reaches another
        tenant's dashboard). Checked as :meth:`save`; the stored Dashboard."""
        if not isinstance(body, dict):
            raise InvalidInput(f"dashboard must be a JSON object, got {type(body).__name__}")
        if body.get("configuration") is None:
            raise InvalidInput("configuration is required in an imported dashboard")
        return self.save(user, {k: v for k, v in body.items() if k not in INSTANCE_FIELDS})

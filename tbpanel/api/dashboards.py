"""Dashboards: ThingsBoard's ``DashboardController`` routes, plus tbpanel's export, import and
alias resolution for the dashboard page.

Every rule about who may do what is in :class:`~tbpanel.dashboards.DashboardStore`; the
handlers here add ThingsBoard's role gate (``@PreAuthorize``) in front of it, read the URL and
the body, and run the store on the pool. A tenant administrator creates, changes, assigns and
deletes its tenant's dashboards; a customer user reads the ones assigned to its customer and
lists them through ``/api/customer/{its own id}/dashboards``; anything else is 403 (404 for an
unknown id), as in ThingsBoard.
"""

from __future__ import annotations

from typing import Any

from ..dashboards import resolve_aliases
from ..entities import User
from ..platform import Platform
from .base import DENIED, ID, ApiError, ApiHandler, Route, page_data
from .entities import CUSTOMER_USER, TENANT_ADMIN, PagedHandler, entity_uuid

#: the most ids one by-ids request may carry
MAX_IDS = 1000


def _dashboard_id(raw: Any) -> str:
    return entity_uuid(raw, "dashboardId")


def _customer_id(raw: Any) -> str:
    return entity_uuid(raw, "customerId")


class DashboardHandler(ApiHandler):
    """Base: the asking user, gated by role."""

    def user_of(self, *roles: str) -> User:
        user = self.require_user()
        self.require_role(user, *roles)
        return user


class DashboardSaveHandler(DashboardHandler):
    """``POST /api/dashboard``: create, or update when the body has an id (tenant admins)."""

    async def post(self) -> None:
        user = self.user_of(TENANT_ADMIN)
        body = self.json_object("dashboard")
        if body.get("id") is not None:
            body["id"] = _dashboard_id(body["id"])
        self.write_json(await self.in_thread(self.platform.dashboards.save, user, body))


class DashboardByIdHandler(DashboardHandler):
    """``GET /api/dashboard/{id}`` (tenant admins, customer users it is assigned to) and
    ``DELETE /api/dashboard/{id}`` (tenant admins)."""

    async def get(self, dashboard_id: str) -> None:
        user = self.user_of(TENANT_ADMIN, CUSTOMER_USER)
        self.write_json(await self.in_thread(self.platform.dashboards.get, user, _dashboard_id(dashboard_id)))

    async def delete(self, dashboard_id: str) -> None:
        user = self.user_of(TENANT_ADMIN)
        await self.in_thread(self.platform.dashboards.delete, user, _dashboard_id(dashboard_id))
        self.set_status(200)
        self.finish()


class DashboardInfoHandler(DashboardHandler):
    """``GET /api/dashboard/info/{id}``: the DashboardInfo (no configuration)."""

    async def get(self, dashboard_id: str) -> None:
        user = self.require_user()  # ThingsBoard lets SYS_ADMIN ask; the store answers 403
        self.write_json(await self.in_thread(self.platform.dashboards.get_info, user, _dashboard_id(dashboard_id)))


class DashboardPageHandler(PagedHandler, DashboardHandler):
    def dashboard_page_args(self) -> dict[str, Any]:
        page, size, text, sort_prop, sort_order = self.page_args()
        return {
            "page": page,
            "page_size": size,
            "text_search": text,
            "sort_property": sort_prop,
            "sort_order": sort_order,
            "mobile": self.bool_arg("mobile", False),
        }

    def write_page(self, answer: tuple[list[dict[str, Any]], int], args: dict[str, Any]) -> None:
        items, total = answer
        self.write_json(page_data(items, total, args["page"], args["page_size"]))


class TenantDashboardsHandler(DashboardPageHandler):
    """``GET /api/tenant/dashboards?pageSize&page[&textSearch&sortProperty&sortOrder&mobile]``:
    PageData of the tenant's DashboardInfos (tenant admins)."""

    async def get(self) -> None:
        user = self.user_of(TENANT_ADMIN)
        args = self.dashboard_page_args()
        self.write_page(await self.in_thread(lambda: self.platform.dashboards.list_tenant(user, **args)), args)


class CustomerDashboardsHandler(DashboardPageHandler):
    """``GET /api/customer/{customerId}/dashboards?pageSize&page[&...]``: the DashboardInfos
    assigned to the customer (tenant admins: any customer of the tenant; customer users: their own)."""

    async def get(self, customer_id: str) -> None:
        user = self.user_of(TENANT_ADMIN, CUSTOMER_USER)
        cid = _customer_id(customer_id)
        args = self.dashboard_page_args()
        answer = await self.in_thread(lambda: self.platform.dashboards.list_customer(user, cid, **args))
        self.write_page(answer, args)


class DashboardsByIdsHandler(DashboardHandler):
    """``GET /api/dashboards?dashboardIds=a,b`` and ``/api/dashboards/list?dashboardIds=``:
    the DashboardInfos among those ids that the user may read."""

    async def get(self) -> None:
        user = self.user_of(TENANT_ADMIN, CUSTOMER_USER)
        raw = self.get_query_argument("dashboardIds", None)
        if raw is None:
            raise ApiError(400, "parameter 'dashboardIds' is required")
        ids = [_dashboard_id(i.strip()) for i in raw.split(",") if i.strip()]
        if len(ids) > MAX_IDS:
            raise ApiError(400, f"dashboardIds: at most {MAX_IDS} ids")
        self.write_json(await self.in_thread(self.platform.dashboards.list_by_ids, user, ids))


class AssignDashboardHandler(DashboardHandler):
    """``POST`` (assign) / ``DELETE`` (unassign) ``/api/customer/{customerId}/dashboard/{dashboardId}``
    (tenant admins): the Dashboard afterwards."""

    async def post(self, customer_id: str, dashboard_id: str) -> None:
        user = self.user_of(TENANT_ADMIN)
        store = self.platform.dashboards
        args = (user, _customer_id(customer_id), _dashboard_id(dashboard_id))
        self.write_json(await self.in_thread(store.assign, *args))

    async def delete(self, customer_id: str, dashboard_id: str) -> None:
        user = self.user_of(TENANT_ADMIN)
        store = self.platform.dashboards
        args = (user, _customer_id(customer_id), _dashboard_id(dashboard_id))
        self.write_json(await self.in_thread(store.unassign, *args))


class DashboardCustomersHandler(DashboardHandler):
    """``POST /api/dashboard/{id}/customers`` (exactly these), ``/customers/add`` and
    ``/customers/remove`` with a JSON array of customer ids (tenant admins): the Dashboard."""

    def initialize(self, platform: Platform, mode: str = "set") -> None:
        super().initialize(platform)
        self.mode = mode

    async def post(self, dashboard_id: str) -> None:
        user = self.user_of(TENANT_ADMIN)
        did = _dashboard_id(dashboard_id)
        body = self.json_body() if self.request.body or self.mode != "set" else []
        if not isinstance(body, list) or len(body) > MAX_IDS:
            raise ApiError(400, f"the body must be a JSON array of at most {MAX_IDS} customer ids")
        customers = [_customer_id(c) for c in body]
        answer = await self.in_thread(self.platform.dashboards.set_customers, user, did, customers, self.mode)
        self.write_json(answer)


class DashboardOwnerHandler(DashboardHandler):
    """``POST /api/owner/{CUSTOMER|TENANT}/{ownerId}/DASHBOARD/{id}`` (a ThingsBoard PE route):
    how tb-rest-client's ``assign_dashboard_to_customer`` / ``unassign_dashboard_from_customer``
    assign. To a customer is an assignment; back to the tenant takes the dashboard from every
    customer (tenant admins). Mounted before ``api.entities.OwnerHandler`` (devices)."""

    async def post(self, owner_type: str, owner_id: str, dashboard_id: str) -> None:
        user = self.user_of(TENANT_ADMIN)
        store, did = self.platform.dashboards, _dashboard_id(dashboard_id)
        if owner_type == "CUSTOMER":
            await self.in_thread(store.assign, user, _customer_id(owner_id), did)
        elif owner_type == "TENANT":
            if entity_uuid(owner_id, "owner id") != user.tenant_id:
                raise ApiError(403, DENIED)
            await self.in_thread(store.unassign_all, user, did)
        else:
            raise ApiError(400, f"owner type must be CUSTOMER or TENANT, got {owner_type[:40]!r}")
        self.set_status(200)
        self.finish()


class ExportDashboardHandler(DashboardHandler):
    """``GET /api/tbpanel/dashboard/{id}/export``: the dashboard as ThingsBoard's UI exports
    it (no id, times, tenant or assignments); anyone who may read it."""

    async def get(self, dashboard_id: str) -> None:
        user = self.user_of(TENANT_ADMIN, CUSTOMER_USER)
        did = _dashboard_id(dashboard_id)
        self.set_header("Content-Disposition", f'attachment; filename="dashboard-{did}.json"')
        self.write_json(await self.in_thread(self.platform.dashboards.export_json, user, did))


class ImportDashboardHandler(DashboardHandler):
    """``POST /api/tbpanel/dashboard/import``: a new dashboard of the tenant from an export
    (or any ThingsBoard dashboard JSON; its id is ignored) (tenant admins)."""

    async def post(self) -> None:
        user = self.user_of(TENANT_ADMIN)
        body = self.json_object("dashboard")
        self.write_json(await self.in_thread(self.platform.dashboards.import_json, user, body))


class ResolveAliasesHandler(DashboardHandler):
    """``POST /api/tbpanel/dashboard/{id}/aliases/resolve``: ``{aliasId: [Device]}`` for the
    asking user (a customer user only ever gets its own customer's devices). The body may carry
    ``{"entityAliases": {...}}`` to resolve aliases being edited instead of the stored ones;
    the user must be able to read the dashboard either way."""

    async def post(self, dashboard_id: str) -> None:
        user = self.user_of(TENANT_ADMIN, CUSTOMER_USER)
        did = _dashboard_id(dashboard_id)
        body = self.json_object("aliases") if self.request.body else {}
        self.write_json(await self.in_thread(self._resolve, user, did, body.get("entityAliases")))

    def _resolve(self, user: User, dashboard_id: str, aliases: Any) -> dict[str, list[dict[str, Any]]]:
        dashboard = self.platform.dashboards.get(user, dashboard_id)
        config = dashboard["configuration"] if aliases is None else {"entityAliases": aliases}
        resolved = resolve_aliases(self.platform.registry, user, config)
        return {alias_id: [d.to_json() for d in devices] for alias_id, devices in resolved.items()}


def dashboard_patterns(platform: Platform) -> list[Route]:
    """The dashboard routes (mounted by :func:`tbpanel.api.routes.api_patterns` before the
    ``/api/customer/{id}`` and ``/api/owner/...`` routes)."""
    p: dict[str, Any] = {"platform": platform}
    return [
        (r"/api/dashboard/?", DashboardSaveHandler, p),
        (rf"/api/dashboard/info/{ID}/?", DashboardInfoHandler, p),
        (rf"/api/dashboard/{ID}/customers/?", DashboardCustomersHandler, dict(p, mode="set")),
        (rf"/api/dashboard/{ID}/customers/add/?", DashboardCustomersHandler, dict(p, mode="add")),
        (rf"/api/dashboard/{ID}/customers/remove/?", DashboardCustomersHandler, dict(p, mode="remove")),
        (rf"/api/dashboard/{ID}/?", DashboardByIdHandler, p),
        (r"/api/tenant/dashboards/?", TenantDashboardsHandler, p),
        (r"/api/dashboards/?", DashboardsByIdsHandler, p),
        (r"/api/dashboards/list/?", DashboardsByIdsHandler, p),
        (rf"/api/customer/{ID}/dashboards/?", CustomerDashboardsHandler, p),
        (rf"/api/customer/{ID}/dashboard/{ID}/?", AssignDashboardHandler, p),
        (rf"/api/owner/([A-Z_]+)/{ID}/DASHBOARD/{ID}/?", DashboardOwnerHandler, p),
        (rf"/api/tbpanel/dashboard/{ID}/export/?", ExportDashboardHandler, p),
        (r"/api/tbpanel/dashboard/import/?", ImportDashboardHandler, p),
        (rf"/api/tbpanel/dashboard/{ID}/aliases/resolve/?", ResolveAliasesHandler, p),
    ]

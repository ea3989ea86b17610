"""ThingsBoard's server-side RPC REST API: send one-way / two-way requests (both route
families) and read, list and delete persistent ones.

Who may send: a TENANT_ADMIN of the device's tenant or a CUSTOMER_USER for a device assigned
to its customer (the device read rule of ``entities/access.py``); the same rule guards the
persistent requests of a device. The handler never blocks the loop: the registry lookup runs on
the pool, and the request's progress is a future of the RPC service's thread, awaited with
``asyncio.wrap_future``.
"""

from __future__ import annotations

import asyncio

from ..clock import now_ms
from ..platform import Platform
from ..rpc import DELIVERED, STATUSES, SUCCESSFUL, TIMEOUT, parse_request
from ..rpc.repository import SORT
from .base import ID, ApiError, ApiHandler, Route, page_data
from .entities import PagedHandler, entity_uuid


class RpcSendHandler(ApiHandler):
    """``POST /api/rpc/{oneway|twoway}/{deviceId}`` and ``/api/plugins/rpc/...``.

    One-way: 200 (empty) once written to the device; two-way: 200 with the device's answer;
    408 when it did not come in time; 409 when no session of the device takes RPC;
    persistent: ``{"rpcId": uuid}`` as soon as the request is stored."""

    def initialize(self, platform: Platform, oneway: bool) -> None:  # type: ignore[override]
        super().initialize(platform)
        self.oneway = oneway

    async def post(self, device_id: str) -> None:
        user = self.require_user()
        device_id = entity_uuid(device_id, "deviceId")
        device = await self.in_thread(self.platform.registry.check_device, user, device_id)
        body = self.json_body()
        request = parse_request(body, tenant_id=device.tenant_id, device_id=device.id, oneway=self.oneway, now=now_ms())
        call = self.platform.rpc.submit(request)
        accepted = await asyncio.wrap_future(call.accepted)
        if accepted.persistent:
            self.write_json({"rpcId": accepted.id})
            return
        done = await asyncio.wrap_future(call.finished)
        if done.status == TIMEOUT:
            raise ApiError(408, f"RPC {request.method!r}: the device did not answer within {request.timeout_ms} ms")
        if done.status == SUCCESSFUL:
            self.write_json(done.response)
        elif done.status == DELIVERED:
            self.set_status(200)
            self.finish()
        else:
            raise ApiError(504, f"RPC {request.method!r} ended {done.status}")


class PersistentRpcHandler(ApiHandler):
    """``GET`` / ``DELETE /api/rpc/persistent/{rpcId}``."""

    async def get(self, rpc_id: str) -> None:
        user = self.require_user()
        request = await self.in_thread(self.platform.rpc.get, user, entity_uuid(rpc_id, "rpcId"))
        self.write_json(request.to_json())

    async def delete(self, rpc_id: str) -> None:
        user = self.require_user()
        await self.in_thread(self.platform.rpc.delete, user, entity_uuid(rpc_id, "rpcId"))
        self.set_status(200)
        self.finish()


class DeviceRpcListHandler(PagedHandler):
    """``GET /api/rpc/persistent/device/{deviceId}?pageSize=&page=[&rpcStatus=&textSearch=
    &sortProperty=&sortOrder=]``: PageData of the device's persistent requests."""

    async def get(self, device_id: str) -> None:
        user = self.require_user()
        page, page_size, text, sort_property, sort_order = self.page_args()
        if sort_property not in SORT:
            raise ApiError(400, f"sortProperty must be one of {', '.join(SORT)}, got {sort_property[:40]!r}")
        status = (self.get_query_argument("rpcStatus", "") or "").upper() or None
        if status is not None and status not in STATUSES:
            raise ApiError(400, f"rpcStatus must be one of {', '.join(STATUSES)}, got {status[:40]!r}")
        rows, total = await self.in_thread(
            lambda: self.platform.rpc.list(
                user,
                entity_uuid(device_id, "deviceId"),
                status=status,
                page=page,
                page_size=page_size,
                text=text,
                sort_property=sort_property,
                sort_order=sort_order,
            )
        )
        self.write_json(page_data([r.to_json() for r in rows], total, page, page_size))


def rpc_patterns(platform: Platform) -> list[Route]:
    p = {"platform": platform}
    return [
        (rf"/api/rpc/oneway/{ID}/?", RpcSendHandler, dict(p, oneway=True)),
        (rf"/api/rpc/twoway/{ID}/?", RpcSendHandler, dict(p, oneway=False)),
        (rf"/api/plugins/rpc/oneway/{ID}/?", RpcSendHandler, dict(p, oneway=True)),
        (rf"/api/plugins/rpc/twoway/{ID}/?", RpcSendHandler, dict(p, oneway=False)),
        (rf"/api/rpc/persistent/device/{ID}/?", DeviceRpcListHandler, p),
        (rf"/api/rpc/persistent/{ID}/?", PersistentRpcHandler, p),
    ]

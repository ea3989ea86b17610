"""Devices and customers: ThingsBoard's ``/api/device``, ``/api/tenant/devices``, ``/api/customer``."""

from __future__ import annotations

import uuid
from typing import Any

from .base import MAX_PAGE, ApiError, ApiHandler, page_data

TENANT_ADMIN = "TENANT_ADMIN"
CUSTOMER_USER = "CUSTOMER_USER"


def entity_uuid(raw: Any, what: str) -> str:
    """Accept ``"<uuid>"`` or ``{"id": "<uuid>"}``; 400 with a message otherwise."""
    if isinstance(raw, dict):
        raw = raw.get("id")
    try:
        return str(uuid.UUID(str(raw)))
    except (ValueError, TypeError, AttributeError):
        raise ApiError(400, f"{what} must be a UUID, got {raw!r}") from None


class PagedHandler(ApiHandler):
    def page_args(self) -> tuple[int, int, str | None, str, str]:
        page_size = self.int_arg("pageSize", 100, minimum=1, maximum=10_000)
        page = self.int_arg("page", 0, minimum=0, maximum=MAX_PAGE)
        sort_order = (self.get_query_argument("sortOrder", "DESC") or "DESC").upper()
        if sort_order not in ("ASC", "DESC"):
            raise ApiError(400, f"sortOrder must be ASC or DESC, got {sort_order!r}")
        return (
            page,
            page_size,
            self.get_query_argument("textSearch", None) or None,
            self.get_query_argument("sortProperty", "createdTime") or "createdTime",
            sort_order,
        )


class DeviceSaveHandler(ApiHandler):
    """``POST /api/device[?accessToken=T]``: create, or update when the body carries an id."""

    async def post(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        body = self.json_object("device")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "device 'name' is required and must be a non-empty string")
        dtype = body.get("type") or "default"
        if not isinstance(dtype, str):
            raise ApiError(400, "device 'type' must be a string")
        label = body.get("label") or ""
        if not isinstance(label, str):
            raise ApiError(400, "device 'label' must be a string")
        info = body.get("additionalInfo")
        device_id = entity_uuid(body["id"], "device id") if body.get("id") else None
        if device_id is not None:
            self.platform.registry.check_device(user, device_id, manage=True)
        device = await self.in_thread(
            lambda: self.platform.registry.save_device(
                user.tenant_id,
                name.strip(),
                type=dtype,
                label=label,
                additional_info=info,
                device_id=device_id,
                access_token=self.get_query_argument("accessToken", None) or None,
            )
        )
        self.write_json(device.to_json())


class DeviceHandler(ApiHandler):
    """``GET`` / ``DELETE /api/device/{id}``."""

    def get(self, device_id: str) -> None:
        user = self.require_user()
        device = self.platform.registry.check_device(user, entity_uuid(device_id, "device id"))
        self.write_json(device.to_json())

    async def delete(self, device_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        device = self.platform.registry.check_device(user, entity_uuid(device_id, "device id"), manage=True)
        await self.in_thread(self.platform.registry.delete_device, device.id)
        await self.in_thread(self.platform.store.delete_entity, device.id)
        self.set_status(200)
        self.finish()


class DeviceCredentialsHandler(ApiHandler):
    """``GET /api/device/{id}/credentials`` → the access token (tenant admins only)."""

    def get(self, device_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        device = self.platform.registry.check_device(user, entity_uuid(device_id, "device id"))
        token = self.platform.registry.get_credentials(device.id)
        self.write_json(
            {
                "id": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "credentials:" + device.id))},
                "createdTime": device.created_time,
                "deviceId": {"entityType": "DEVICE", "id": device.id},
                "credentialsType": "ACCESS_TOKEN",
                "credentialsId": token,
                "credentialsValue": None,
            }
        )


class TenantDevicesHandler(PagedHandler):
    """``GET /api/tenant/devices?pageSize&page[&type&textSearch]`` or ``?deviceName=N``."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        name = self.get_query_argument("deviceName", None)
        if name is not None:
            device = self.platform.registry.find_device(user.tenant_id, name)
            if device is None:
                raise ApiError(404, f"Device with name {name!r} is not found")
            self.write_json(device.to_json())
            return
        page, size, text, sort_prop, sort_order = self.page_args()
        items, total = self.platform.registry.list_devices(
            user.tenant_id,
            page=page,
            page_size=size,
            text_search=text,
            type=self.get_query_argument("type", None) or None,
            sort_property=sort_prop,
            sort_order=sort_order,
        )
        self.write_json(page_data([d.to_json() for d in items], total, page, size))


class CustomerDevicesHandler(PagedHandler):
    """``GET /api/customer/{customerId}/devices``: a customer's devices (its users, or the tenant)."""

    def get(self, customer_id: str) -> None:
        user = self.require_user()
        customer = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"))
        page, size, text, sort_prop, sort_order = self.page_args()
        items, total = self.platform.registry.list_devices(
            user.tenant_id,
            customer_id=customer.id,
            page=page,
            page_size=size,
            text_search=text,
            type=self.get_query_argument("type", None) or None,
            sort_property=sort_prop,
            sort_order=sort_order,
        )
        self.write_json(page_data([d.to_json() for d in items], total, page, size))


class CustomerSaveHandler(ApiHandler):
    """``POST /api/customer``: create, or update when the body has an id."""

    async def post(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        body = self.json_object("customer")
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ApiError(400, "customer 'title' is required and must be a non-empty string")
        data = dict(body, title=title.strip())
        if body.get("id"):
            data["id"] = self.platform.registry.check_customer(
                user, entity_uuid(body["id"], "customer id"), write=True
            ).id
        customer = await self.in_thread(self.platform.registry.save_customer, user.tenant_id, data)
        self.write_json(customer.to_json())


class CustomerHandler(ApiHandler):
    """``GET`` / ``DELETE /api/customer/{id}``."""

    def get(self, customer_id: str) -> None:
        user = self.require_user()
        self.write_json(self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id")).to_json())

    async def delete(self, customer_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        customer = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"), write=True)
        await self.in_thread(self.platform.registry.delete_customer, customer.id)
        self.set_status(200)
        self.finish()


class CustomersHandler(PagedHandler):
    """``GET /api/customers?pageSize&page[&textSearch]``."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        page, size, text, _, _ = self.page_args()
        items, total = self.platform.registry.list_customers(
            user.tenant_id, page=page, page_size=size, text_search=text
        )
        self.write_json(page_data([c.to_json() for c in items], total, page, size))


class AssignDeviceHandler(ApiHandler):
    """``POST /api/customer/{cid}/device/{did}`` assigns; ``DELETE /api/customer/device/{did}`` unassigns."""

    async def post(self, customer_id: str, device_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        customer = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"), write=True)
        device = self.platform.registry.check_device(user, entity_uuid(device_id, "device id"), manage=True)
        await self.in_thread(self.platform.registry.assign_device, device.id, customer.id)
        self.write_json(self.platform.registry.get_device(device.id).to_json())


class UnassignDeviceHandler(ApiHandler):
    async def delete(self, device_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        device = self.platform.registry.check_device(user, entity_uuid(device_id, "device id"), manage=True)
        if not device.customer_id:
            raise ApiError(400, "Device isn't assigned to any customer!")
        await self.in_thread(self.platform.registry.unassign_device, device.id)
        self.write_json(self.platform.registry.get_device(device.id).to_json())


class DeviceTypesHandler(ApiHandler):
    """``GET /api/device/types``: the tenant's device types (profiles)."""

    def get(self) -> None:
        user = self.require_user()
        types = self.platform.registry.device_types(user.tenant_id)
        self.write_json(
            [
                {"tenantId": {"entityType": "TENANT", "id": user.tenant_id}, "entityType": "DEVICE", "type": t}
                for t in types
            ]
        )

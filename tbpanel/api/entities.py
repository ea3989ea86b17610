"""Devices and customers: ThingsBoard's ``/api/device``, ``/api/tenant/devices``, ``/api/customer``."""

from __future__ import annotations

import uuid
from typing import Any

from ..entities import Device, EntityError, User
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
    def write_device_page(self, tenant_id: Any, customer_id: Any = None) -> None:
        """One page of the tenant's (or one customer's) devices, by the request's paging,
        ``textSearch``, ``type`` and sort arguments, as PageData of device JSON."""
        page, size, text, sort_prop, sort_order = self.page_args()
        items, total = self.platform.registry.list_devices(
            tenant_id,
            customer_id=customer_id,
            page=page,
            page_size=size,
            text_search=text,
            type=self.get_query_argument("type", None) or None,
            sort_property=sort_prop,
            sort_order=sort_order,
        )
        self.write_json(page_data([d.to_json() for d in items], total, page, size))

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
    """``POST /api/device[?accessToken=T]``: create, or update when the body carries an id.
    ``deviceProfileId`` picks the profile; otherwise ``type`` names it (created if new)."""

    async def post(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        body = self.json_object("device")
        device = await self.save(self, user, body, self.get_query_argument("accessToken", None) or None)
        self.write_json(device.to_json())

    @staticmethod
    async def save(handler: ApiHandler, user: User, body: dict[str, Any], token: str | None) -> Device:
        """Check a ThingsBoard device JSON and save it (shared with ``/api/device-with-credentials``)."""
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "device 'name' is required and must be a non-empty string")
        dtype = body.get("type") or None
        if dtype is not None and not isinstance(dtype, str):
            raise ApiError(400, "device 'type' must be a string")
        label = body.get("label") or ""
        if not isinstance(label, str):
            raise ApiError(400, "device 'label' must be a string")
        info = body.get("additionalInfo")
        registry = handler.platform.registry
        device_id = entity_uuid(body["id"], "device id") if body.get("id") else None
        if device_id is not None:
            registry.check_device(user, device_id, manage=True)
        raw_profile = body.get("deviceProfileId")
        profile_id = None
        if raw_profile is not None:
            profile_id = registry.check_device_profile(user, entity_uuid(raw_profile, "deviceProfileId")).id
        return await handler.in_thread(
            lambda: registry.save_device(
                user.tenant_id,
                name.strip(),
                type=dtype,
                label=label,
                additional_info=info,
                device_id=device_id,
                access_token=token,
                device_profile_id=profile_id,
            )
        )


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


def credentials_json(device: Device, token: str) -> dict[str, Any]:
    """ThingsBoard's DeviceCredentials of an access-token device."""
    return {
        "id": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "credentials:" + device.id))},
        "createdTime": device.created_time,
        "deviceId": {"entityType": "DEVICE", "id": device.id},
        "credentialsType": "ACCESS_TOKEN",
        "credentialsId": token,
        "credentialsValue": None,
    }


class DeviceCredentialsHandler(ApiHandler):
    """``GET /api/device/{id}/credentials`` → the access token (tenant admins only)."""

    def get(self, device_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        device = self.platform.registry.check_device(user, entity_uuid(device_id, "device id"))
        self.write_json(credentials_json(device, self.platform.registry.get_credentials(device.id)))


class UpdateCredentialsHandler(ApiHandler):
    """``POST /api/device/credentials`` ``{"deviceId": {"id"}, "credentialsType": "ACCESS_TOKEN",
    "credentialsId": token}``: replace the device's token (tenant admins); the old token stops
    working at once (the token cache forgets it)."""

    async def post(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        body = self.json_object("device credentials")
        if body.get("deviceId") is None:
            raise ApiError(400, "device credentials need a 'deviceId'")
        device = self.platform.registry.check_device(user, entity_uuid(body["deviceId"], "deviceId"), manage=True)
        ctype = body.get("credentialsType") or "ACCESS_TOKEN"
        if ctype != "ACCESS_TOKEN":
            raise ApiError(
                400, f"credentialsType {str(ctype)[:40]!r} is not supported: tbpanel devices use ACCESS_TOKEN"
            )
        token = body.get("credentialsId")
        if not isinstance(token, str) or not token:
            raise ApiError(400, "'credentialsId' (the new access token) must be a non-empty string")
        await self.in_thread(self.platform.registry.set_credentials, device.id, token)
        self.write_json(credentials_json(device, token))


class TenantDeviceByNameHandler(ApiHandler):
    """``GET /api/tenant/device?deviceName=N`` (tb-rest-client 4.4's ``get_tenant_device``)."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        name = self.get_query_argument("deviceName", None)
        if not name:
            raise ApiError(400, "parameter 'deviceName' is required")
        self.write_json(tenant_device_named(self.platform, user, name))


def tenant_device_named(platform: Any, user: User, name: str) -> dict[str, Any]:
    """The JSON of the user's tenant's device called ``name`` (ThingsBoard's 404 otherwise)."""
    device = platform.registry.find_device(user.tenant_id, name)
    if device is None:
        raise ApiError(404, f"Device with name {name!r} is not found")
    return device.to_json()


class TenantDevicesHandler(PagedHandler):
    """``GET /api/tenant/devices?pageSize&page[&type&textSearch]`` or ``?deviceName=N``."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        name = self.get_query_argument("deviceName", None)
        if name is not None:
            self.write_json(tenant_device_named(self.platform, user, name))
            return
        self.write_device_page(user.tenant_id)


class CustomerDevicesHandler(PagedHandler):
    """``GET /api/customer/{customerId}/devices``: a customer's devices (its users, or the tenant)."""

    def get(self, customer_id: str) -> None:
        user = self.require_user()
        customer = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"))
        self.write_device_page(user.tenant_id, customer.id)


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


# ---------------------------------------------------------------------------- device infos
def device_info_json(device: Device, customers: dict[str, str], tenant_title: str) -> dict[str, Any]:
    """ThingsBoard's DeviceInfo: the device plus its customer's title and its profile's name
    (CE's fields), and its owner (PE's and tb-rest-client 4.4's: ``ownerId``/``ownerName``)."""
    data = device.to_json()
    title = customers.get(device.customer_id or "")
    data["customerTitle"] = title
    data["customerIsPublic"] = False
    data["deviceProfileName"] = device.type
    if device.customer_id:
        data["ownerId"], data["ownerName"] = {"entityType": "CUSTOMER", "id": device.customer_id}, title
    else:
        data["ownerId"], data["ownerName"] = {"entityType": "TENANT", "id": device.tenant_id}, tenant_title
    data["groups"] = []
    return data


class DeviceInfoMixin(PagedHandler):
    def infos(self, devices: list[Device]) -> list[dict[str, Any]]:
        registry = self.platform.registry
        customers = {}
        for cid in {d.customer_id for d in devices if d.customer_id}:
            customers[cid] = registry.get_customer(cid).title
        titles = {t: registry.get_tenant(t).title for t in {d.tenant_id for d in devices}}
        return [device_info_json(d, customers, titles.get(d.tenant_id, "")) for d in devices]

    def info_page(self, tenant_id: str | None, customer_id: str | None) -> None:
        if self.get_query_argument("active", None) not in (None, ""):
            raise ApiError(400, "parameter 'active' is not supported: tbpanel does not track device activity")
        self.bool_arg("includeCustomers", True)
        dtype = self.get_query_argument("type", None) or None
        raw_profile = self.get_query_argument("deviceProfileId", None)
        if raw_profile:
            profile = self.platform.registry.check_device_profile(
                self.require_user(), entity_uuid(raw_profile, "deviceProfileId")
            )
            dtype = profile.name
        page, size, text, sort_prop, sort_order = self.page_args()
        items, total = self.platform.registry.list_devices(
            tenant_id,
            customer_id=customer_id,
            page=page,
            page_size=size,
            text_search=text,
            type=dtype,
            sort_property=sort_prop,
            sort_order=sort_order,
        )
        self.write_json(page_data(self.infos(items), total, page, size))


class DeviceInfoHandler(DeviceInfoMixin):
    """``GET /api/device/info/{id}``: one DeviceInfo (who may read the device)."""

    def get(self, device_id: str) -> None:
        user = self.require_user()
        device = self.platform.registry.check_device(user, entity_uuid(device_id, "device id"))
        self.write_json(self.infos([device])[0])


class TenantDeviceInfosHandler(DeviceInfoMixin):
    """``GET /api/tenant/deviceInfos`` (tenant admins) and ``/api/deviceInfos/all`` (tb-rest-client
    4.4's ``get_tenant_device_infos``; a customer user gets its customer's devices)."""

    def get(self) -> None:
        user = self.require_user()
        if self.request.path.rstrip("/").endswith("/all") and user.authority == CUSTOMER_USER:
            self.info_page(user.tenant_id, user.customer_id)
            return
        self.require_role(user, TENANT_ADMIN)
        self.info_page(user.tenant_id, None)


class CustomerDeviceInfosHandler(DeviceInfoMixin):
    """``GET /api/customer/{customerId}/deviceInfos`` (its users, or the tenant's admins)."""

    def get(self, customer_id: str) -> None:
        user = self.require_user()
        customer = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"))
        self.info_page(user.tenant_id, customer.id)


class DevicesByIdsHandler(ApiHandler):
    """``GET /api/devices?deviceIds=a,b``: those of the devices the user may read (others are
    left out, as in ThingsBoard)."""

    def get(self) -> None:
        user = self.require_user()
        raw = self.get_query_argument("deviceIds", None)
        if not raw:
            raise ApiError(400, "parameter 'deviceIds' is required")
        ids = list(dict.fromkeys(entity_uuid(i.strip(), "device id") for i in raw.split(",") if i.strip()))
        if len(ids) > 1000:
            raise ApiError(400, "deviceIds: at most 1000 ids")
        registry = self.platform.registry
        customer = user.customer_id if user.authority == CUSTOMER_USER else None
        if user.authority not in (TENANT_ADMIN, CUSTOMER_USER):
            raise ApiError(403, "You don't have permission to perform this operation!")
        rows = registry.find_devices(user.tenant_id, customer_id=customer, ids=ids)
        found = {r.id for r in rows}
        self.write_json([registry.get_device(i).to_json() for i in ids if i in found])


class UserDevicesHandler(PagedHandler):
    """``GET /api/user/devices``: the devices the user may see (tenant admin: the tenant's;
    customer user: its customer's), paged."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN, CUSTOMER_USER)
        self.write_device_page(user.tenant_id, user.customer_id if user.authority == CUSTOMER_USER else None)


class OwnerHandler(ApiHandler):
    """``POST /api/owner/{CUSTOMER|TENANT}/{ownerId}/DEVICE/{deviceId}``: how tb-rest-client 4.4
    assigns a device to a customer (``assign_device_to_customer``) or back to its tenant
    (``unassign_device_from_customer``). Only devices have owners here."""

    async def post(self, owner_type: str, owner_id: str, entity_type: str, entity_id: str) -> None:
        user: User = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        if entity_type != "DEVICE":
            raise ApiError(400, f"changing the owner of {entity_type[:40]!r} is not supported: only DEVICE")
        device = self.platform.registry.check_device(user, entity_uuid(entity_id, "device id"), manage=True)
        oid = entity_uuid(owner_id, "owner id")
        if owner_type == "CUSTOMER":
            customer = self.platform.registry.check_customer(user, oid, write=True)
            await self.in_thread(self.platform.registry.assign_device, device.id, customer.id)
        elif owner_type == "TENANT":
            if oid != user.tenant_id:
                raise ApiError(403, "You don't have permission to perform this operation!")
            await self.in_thread(self.platform.registry.unassign_device, device.id)
        else:
            raise ApiError(400, f"owner type must be CUSTOMER or TENANT, got {owner_type[:40]!r}")
        self.set_status(200)
        self.finish()


class DeviceWithCredentialsHandler(ApiHandler):
    """``POST /api/device-with-credentials`` ``{"device": {...}, "credentials": {"credentialsType":
    "ACCESS_TOKEN", "credentialsId": token}}``: create or update a device and set its token in
    one transaction (tenant admins)."""

    async def post(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        body = self.json_object("device with credentials")
        device, creds = body.get("device"), body.get("credentials")
        if not isinstance(device, dict) or not isinstance(creds, dict):
            raise ApiError(400, "body must have 'device' and 'credentials' objects")
        if (creds.get("credentialsType") or "ACCESS_TOKEN") != "ACCESS_TOKEN":
            raise ApiError(400, "only ACCESS_TOKEN credentials are supported")
        token = creds.get("credentialsId")
        if token is not None and not isinstance(token, str):
            raise ApiError(400, "'credentialsId' must be a string")
        saved = await DeviceSaveHandler.save(self, user, device, token or None)
        self.write_json(saved.to_json())


# ---------------------------------------------------------------------------- customer extras
class CustomerTitleHandler(ApiHandler):
    """``GET /api/customer/{id}/title`` (the title as a JSON string) and ``/shortInfo``."""

    def initialize(self, platform: Any, short: bool = False) -> None:
        super().initialize(platform)
        self.short = short

    def get(self, customer_id: str) -> None:
        user = self.require_user()
        customer = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"))
        self.write_json({"title": customer.title, "isPublic": False} if self.short else customer.title)


class CustomerInfoHandler(ApiHandler):
    """``GET /api/customer/info/{id}``: the customer with ThingsBoard's CustomerInfo fields."""

    def get(self, customer_id: str) -> None:
        user = self.require_user()
        customer = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"))
        tenant = self.platform.registry.get_tenant(customer.tenant_id)
        self.write_json(dict(customer.to_json(), ownerName=tenant.title, ownerId=tenant.entity_id, groups=[]))


class TenantCustomerByTitleHandler(ApiHandler):
    """``GET /api/tenant/customers?customerTitle=T`` (tenant admins)."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        title = self.get_query_argument("customerTitle", None)
        if not title:
            raise ApiError(400, "parameter 'customerTitle' is required")
        customer = self.platform.registry.find_customer(user.tenant_id, title)
        if customer is None:
            raise ApiError(404, f"Customer with title {title!r} is not found")
        self.write_json(customer.to_json())


class CustomersByIdsHandler(ApiHandler):
    """``GET /api/customers/list?customerIds=a,b``: those the user may read."""

    def get(self) -> None:
        user = self.require_user()
        raw = self.get_query_argument("customerIds", None)
        if not raw:
            raise ApiError(400, "parameter 'customerIds' is required")
        ids = list(dict.fromkeys(entity_uuid(i.strip(), "customer id") for i in raw.split(",") if i.strip()))[:1000]
        registry, out = self.platform.registry, []
        for cid in ids:
            try:
                customer = registry.get_customer(cid)
            except EntityError:
                continue
            if registry.can_read_customer(user, customer):
                out.append(customer.to_json())
        self.write_json(out)


class UserCustomersHandler(PagedHandler):
    """``GET /api/customerInfos/all`` and ``/api/user/customers``: the customers the user may see
    (tenant admin: all of the tenant's; customer user: its own), paged."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN, CUSTOMER_USER)
        page, size, text, _, _ = self.page_args()
        self.bool_arg("includeCustomers", True)
        if user.authority == CUSTOMER_USER:
            own = self.platform.registry.get_customer(user.customer_id)
            items = [own] if not text or text.lower() in own.title.lower() else []
            self.write_json(
                page_data([c.to_json() for c in items[page * size : (page + 1) * size]], len(items), page, size)
            )
            return
        customers, total = self.platform.registry.list_customers(
            user.tenant_id, page=page, page_size=size, text_search=text
        )
        self.write_json(page_data([c.to_json() for c in customers], total, page, size))

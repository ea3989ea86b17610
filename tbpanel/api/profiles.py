"""Device profiles: ThingsBoard's ``/api/deviceProfile*`` routes.

Who may do what follows ThingsBoard's ``DeviceProfileController``: the full profile (it carries
the provisioning key and secret) and every write are for tenant administrators; the infos
(id, name, type, transport type: no secrets) and the default profile's info are readable by
any user of the tenant, customer users included, as in ThingsBoard, where customer users need
them to show and filter their devices. Nobody sees another tenant's profiles (403).
"""

from __future__ import annotations

from typing import Any

from ..entities import DeviceProfile, User
from ..platform import Platform
from ..rules.alarm_rules import parse_alarms
from .base import ID, ApiError, ApiHandler, Route, page_data
from .entities import CUSTOMER_USER, TENANT_ADMIN, PagedHandler, entity_uuid


def _tenant_user(handler: ApiHandler, *roles: str) -> User:
    user = handler.require_user()
    handler.require_role(user, *roles)
    return user


class ProfilePagedHandler(PagedHandler):
    def profile_page(self, tenant_id: str | None) -> tuple[list[DeviceProfile], int, int, int]:
        page, size, text, sort_prop, sort_order = self.page_args()
        items, total = self.platform.registry.list_device_profiles(
            tenant_id,
            page=page,
            page_size=size,
            text_search=text,
            sort_property=sort_prop,
            sort_order=sort_order,
            transport_type=self.get_query_argument("transportType", None) or None,
        )
        return items, total, page, size


class DeviceProfilesHandler(ProfilePagedHandler):
    """``GET /api/deviceProfiles?pageSize&page[&textSearch&sortProperty&sortOrder]`` (tenant admins)."""

    def get(self) -> None:
        user = _tenant_user(self, TENANT_ADMIN)
        items, total, page, size = self.profile_page(user.tenant_id)
        self.write_json(page_data([p.to_json() for p in items], total, page, size))


def _profile_ids(raw: str) -> list[str]:
    ids = [entity_uuid(i.strip(), "device profile id") for i in raw.split(",") if i.strip()]
    if len(ids) > 1000:
        raise ApiError(400, "deviceProfileIds: at most 1000 ids")
    return ids


class DeviceProfileInfosHandler(ProfilePagedHandler):
    """``GET /api/deviceProfileInfos?pageSize&page[&textSearch&sortProperty&sortOrder&transportType]``
    (any user of the tenant); with ``deviceProfileIds=a,b`` the list of those (tenant admins)."""

    def get(self) -> None:
        ids = self.get_query_argument("deviceProfileIds", None)
        if ids is not None:
            user = _tenant_user(self, TENANT_ADMIN)
            items, _ = self.platform.registry.list_device_profiles(
                user.tenant_id, page_size=1000, ids=_profile_ids(ids)
            )
            self.write_json([p.info_json() for p in items])
            return
        user = _tenant_user(self, TENANT_ADMIN, CUSTOMER_USER)
        items, total, page, size = self.profile_page(user.tenant_id)
        self.write_json(page_data([p.info_json() for p in items], total, page, size))


class DeviceProfileInfoListHandler(ApiHandler):
    """``GET /api/deviceProfileInfos/list?deviceProfileIds=a,b`` (tenant admins; tb-rest-client 4.4)."""

    def get(self) -> None:
        user = _tenant_user(self, TENANT_ADMIN)
        raw = self.get_query_argument("deviceProfileIds", None)
        if raw is None:
            raise ApiError(400, "parameter 'deviceProfileIds' is required")
        items, _ = self.platform.registry.list_device_profiles(user.tenant_id, page_size=1000, ids=_profile_ids(raw))
        self.write_json([p.info_json() for p in items])


class DefaultProfileInfoHandler(ApiHandler):
    """``GET /api/deviceProfileInfo/default`` (any user of the tenant)."""

    async def get(self) -> None:
        user = _tenant_user(self, TENANT_ADMIN, CUSTOMER_USER)
        profile = await self.in_thread(self.platform.registry.default_device_profile, user.tenant_id)
        self.write_json(profile.info_json())


class ProfileInfoHandler(ApiHandler):
    """``GET /api/deviceProfileInfo/{id}`` (any user of the profile's tenant)."""

    def get(self, profile_id: str) -> None:
        user = _tenant_user(self, TENANT_ADMIN, CUSTOMER_USER)
        profile = self.platform.registry.check_device_profile(user, entity_uuid(profile_id, "device profile id"))
        self.write_json(profile.info_json())


class ProfileNamesHandler(ApiHandler):
    """``GET /api/deviceProfile/names[?activeOnly=]``: ``[{"id", "name"}]`` of the tenant's
    profiles (``activeOnly``: only those some device uses)."""

    def get(self) -> None:
        user = _tenant_user(self, TENANT_ADMIN, CUSTOMER_USER)
        active_only = self.bool_arg("activeOnly", False)
        items, _ = self.platform.registry.list_device_profiles(
            user.tenant_id, page_size=10_000, sort_property="name", sort_order="ASC"
        )
        used = set(self.platform.registry.device_types(user.tenant_id)) if active_only else None
        self.write_json([{"id": p.entity_id, "name": p.name} for p in items if used is None or p.name in used])


class ProfileSaveHandler(ApiHandler):
    """``POST /api/deviceProfile``: create, or update when the body has an id (tenant admins)."""

    async def post(self) -> None:
        user = _tenant_user(self, TENANT_ADMIN)
        body = self.json_object("device profile")
        if isinstance(body.get("profileData"), dict):
            parse_alarms(body["profileData"])  # alarm rules that cannot run: 400 naming the field
        if body.get("id"):
            body["id"] = self.platform.registry.check_device_profile(
                user, entity_uuid(body["id"], "device profile id")
            ).id
        profile = await self.in_thread(self.platform.registry.save_device_profile, user.tenant_id, body)
        self.write_json(profile.to_json())


class ProfileHandler(ApiHandler):
    """``GET`` / ``DELETE /api/deviceProfile/{id}`` (tenant admins). Deleting the default
    profile, or one that devices use, is refused with 400 and ThingsBoard's message."""

    def get(self, profile_id: str) -> None:
        user = _tenant_user(self, TENANT_ADMIN)
        profile = self.platform.registry.check_device_profile(user, entity_uuid(profile_id, "device profile id"))
        self.write_json(profile.to_json())

    async def delete(self, profile_id: str) -> None:
        user = _tenant_user(self, TENANT_ADMIN)
        profile = self.platform.registry.check_device_profile(user, entity_uuid(profile_id, "device profile id"))
        await self.in_thread(self.platform.registry.delete_device_profile, profile.id)
        self.set_status(200)
        self.finish()


class SetDefaultProfileHandler(ApiHandler):
    """``POST /api/deviceProfile/{id}/default`` (tenant admins): make it the tenant's default."""

    async def post(self, profile_id: str) -> None:
        user = _tenant_user(self, TENANT_ADMIN)
        profile = self.platform.registry.check_device_profile(user, entity_uuid(profile_id, "device profile id"))
        profile = await self.in_thread(self.platform.registry.set_default_device_profile, profile.id)
        self.write_json(profile.to_json())


class ProfileDeviceKeysHandler(ApiHandler):
    """``GET /api/deviceProfile/devices/keys/{timeseries|attributes}[?deviceProfileId=]``: the
    sorted keys that the devices of a profile (or of all the tenant's profiles) have (tenant
    admins)."""

    def initialize(self, platform: Platform, kind: str = "timeseries") -> None:
        super().initialize(platform)
        self.kind = kind

    async def get(self) -> None:
        user = _tenant_user(self, TENANT_ADMIN)
        raw = self.get_query_argument("deviceProfileId", None)
        dtype = None
        if raw:
            dtype = self.platform.registry.check_device_profile(user, entity_uuid(raw, "deviceProfileId")).name
        self.write_json(await self.in_thread(self._keys, user.tenant_id, dtype))

    def _keys(self, tenant_id: str, dtype: str | None) -> list[str]:
        devices = self.platform.registry.all_devices(tenant_id, type=dtype)
        keys: set[str] = set()
        if self.kind == "timeseries":
            for d in devices:
                keys.update(self.platform.store.keys(d.id))
        else:
            many = self.platform.registry.get_attributes_many([d.id for d in devices])
            for scopes in many.values():
                for attrs in scopes.values():
                    keys.update(attrs)
        return sorted(keys)


def profile_patterns(platform: Platform) -> list[Route]:
    """The device-profile routes (mounted by :func:`tbpanel.api.routes.api_patterns`)."""
    p: dict[str, Any] = {"platform": platform}
    return [
        (r"/api/deviceProfiles/?", DeviceProfilesHandler, p),
        (r"/api/deviceProfileInfos/list/?", DeviceProfileInfoListHandler, p),
        (r"/api/deviceProfileInfos/?", DeviceProfileInfosHandler, p),
        (r"/api/deviceProfileInfo/default/?", DefaultProfileInfoHandler, p),
        (rf"/api/deviceProfileInfo/{ID}/?", ProfileInfoHandler, p),
        (r"/api/deviceProfile/?", ProfileSaveHandler, p),
        (r"/api/deviceProfile/names/?", ProfileNamesHandler, p),
        (r"/api/deviceProfile/devices/keys/timeseries/?", ProfileDeviceKeysHandler, dict(p, kind="timeseries")),
        (r"/api/deviceProfile/devices/keys/attributes/?", ProfileDeviceKeysHandler, dict(p, kind="attributes")),
        (rf"/api/deviceProfile/{ID}/default/?", SetDefaultProfileHandler, p),
        (rf"/api/deviceProfile/{ID}/?", ProfileHandler, p),
    ]

"""``/api/plugins/telemetry/...`` attributes: keys, values, save and delete in ThingsBoard's
three scopes (CLIENT_SCOPE, SHARED_SCOPE, SERVER_SCOPE), every route form ``tb-rest-client``
4.4 calls.

Who may do what is :mod:`tbpanel.entities.access` (``require_attribute_access``): reading any
scope of a device the user may read; saving SERVER_SCOPE and SHARED_SCOPE (a CLIENT_SCOPE
save is 400, as ThingsBoard: the device reports those) and deleting keys of any scope of a
device the user may write. A save is one transaction (all keys or none) and notifies live
subscribers (MQTT sessions, long polls, WebSockets) through ``registry.attributes_changed``.
"""

from __future__ import annotations

from typing import Any

from ..clock import now_ms
from ..entities import Device, User
from ..entities.access import USER_WRITABLE_SCOPES, require_attribute_access
from ..entities.attributes import ATTRIBUTE_SCOPES
from ..store.payload import parse_attributes
from .base import ApiError, ApiHandler
from .entities import entity_uuid

#: a scope path segment (``tb-rest-client`` sends the scope names as they are); anything
#: ending in ``_SCOPE`` reaches the handler, so a misspelt scope gets a 400 that names the three
SCOPE = r"([A-Za-z_]*_SCOPE)"


def scope_arg(raw: str | None) -> str | None:
    """A scope from the path, or 400 naming the valid ones (``None`` stays every scope)."""
    if raw is None:
        return None
    if raw not in ATTRIBUTE_SCOPES:
        raise ApiError(400, f"Invalid attribute scope: {raw!r} (one of {', '.join(ATTRIBUTE_SCOPES)})")
    return raw


class AttributeHandler(ApiHandler):
    """Common argument handling for attribute routes addressed by ``{entityType}/{entityId}``."""

    def device_for(self, entity_type: str, entity_id: str, user: User, scope: str | None, action: str) -> Device:
        """The device the path names, if ``user`` may ``action`` its ``scope`` attributes."""
        if entity_type.upper() != "DEVICE":
            raise ApiError(400, f"tbpanel keeps attributes for DEVICE entities; got entity type {entity_type!r}")
        device = self.platform.registry.get_device(entity_uuid(entity_id, "entity id"))
        return require_attribute_access(user, device, scope, action)


def wire(attrs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Registry rows → ThingsBoard's AttributeData ``[{"lastUpdateTs", "key", "value"}]``."""
    return [{"lastUpdateTs": a["lastUpdateTs"], "key": a["key"], "value": a["value"]} for a in attrs]


class AttributeKeysHandler(AttributeHandler):
    """``GET .../keys/attributes[/{scope}]``: the keys, sorted, without repeats."""

    async def get(self, entity_type: str, entity_id: str, scope: str | None = None) -> None:
        user = self.require_user()
        scope = scope_arg(scope)
        device = self.device_for(entity_type, entity_id, user, scope, "read")
        attrs = await self.in_thread(self.platform.registry.get_attributes, device.id, scope)
        self.write_json(sorted({a["key"] for a in attrs}))


class AttributeValuesHandler(AttributeHandler):
    """``GET .../values/attributes[/{scope}][?keys=a,b]``: AttributeData, values in their type."""

    async def get(self, entity_type: str, entity_id: str, scope: str | None = None) -> None:
        user = self.require_user()
        scope = scope_arg(scope)
        device = self.device_for(entity_type, entity_id, user, scope, "read")
        keys = self.keys_arg(required=False)
        attrs = await self.in_thread(self.platform.registry.get_attributes, device.id, scope, keys)
        self.write_json(wire(attrs))


class SaveAttributesHandler(AttributeHandler):
    """``POST .../{entityType}/{entityId}/attributes/{scope}``: a flat JSON object of
    SERVER_SCOPE or SHARED_SCOPE values, all saved in one transaction or none."""

    def target(self, args: tuple[str, ...]) -> tuple[str, str, str]:
        """(entityType, entityId, scope) of the path; the ``{deviceId}/{scope}`` form is a DEVICE."""
        entity_type, entity_id, scope = ("DEVICE", *args) if len(args) == 2 else args
        checked = scope_arg(scope)
        assert checked is not None
        return entity_type, entity_id, checked

    async def post(self, *args: str) -> None:
        user = self.require_user()
        entity_type, entity_id, scope = self.target(args)
        if scope not in USER_WRITABLE_SCOPES:
            raise ApiError(
                400,
                f"Invalid attribute scope: {scope} (the device reports CLIENT_SCOPE; "
                f"save {' or '.join(USER_WRITABLE_SCOPES)})",
            )
        device = self.device_for(entity_type, entity_id, user, scope, "write")
        if not self.request.body.strip():
            raise ApiError(400, "Invalid JSON body: the request body is empty")
        points = parse_attributes(self.request.body, now_ms())
        if not points:
            raise ApiError(400, "No attributes data found in request body")
        ingress = self.platform.rules.ingress

        def save() -> None:  # saved, then ATTRIBUTES_UPDATED into the tenant's root chain (ThingsBoard's order)
            self.platform.registry.save_attributes(device.id, scope, points)
            ingress.attributes_updated(device, scope, points, user)

        await self.in_thread(save)
        self.set_status(200)
        self.finish()


class ScopeAttributesHandler(SaveAttributesHandler):
    """The older ``.../{entityType}/{entityId}/{scope}`` and ``.../{deviceId}/{scope}`` forms:
    ``POST`` saves as above; ``DELETE ?keys=a,b`` deletes those keys of the scope (200 whether
    or not they existed, as ThingsBoard)."""

    async def delete(self, *args: str) -> None:
        user = self.require_user()
        entity_type, entity_id, scope = self.target(args)
        device = self.device_for(entity_type, entity_id, user, scope, "delete")
        keys = self.keys_arg(required=True)
        assert keys is not None
        ingress = self.platform.rules.ingress

        def delete() -> None:
            if self.platform.registry.delete_attributes(device.id, scope, keys):
                ingress.attributes_deleted(device, scope, keys, user)

        await self.in_thread(delete)
        self.set_status(200)
        self.finish()

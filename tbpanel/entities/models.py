"""Domain objects of the entity registry: tenants, customers, users and devices.

Plain ``param.Parameterized`` data models (no Panel import) so that views can take them as
parameters and notebooks can use them directly. Objects returned by
:class:`~tbpanel.entities.registry.EntityRegistry` are snapshots: changing one does not
change the database (use the registry's methods), and ``device_by_token`` hands out a cached
object shared between callers, so treat registry results as read-only.

``to_json()`` gives ThingsBoard's JSON shape: ids as ``{"entityType": ..., "id": uuid}``,
``createdTime`` in epoch ms, and ThingsBoard's NULL id for "no customer"/"no tenant".
"""

from __future__ import annotations

from typing import Any

import param

#: ThingsBoard's NULL UUID, used on the wire for "no customer" (and "no tenant" for SYS_ADMIN).
NULL_UUID = "13814000-1dd2-11b2-8080-808080808080"

SYS_ADMIN = "SYS_ADMIN"
TENANT_ADMIN = "TENANT_ADMIN"
CUSTOMER_USER = "CUSTOMER_USER"
AUTHORITIES = (SYS_ADMIN, TENANT_ADMIN, CUSTOMER_USER)


def entity_id_json(entity_type: str, entity_id: str | None) -> dict[str, str]:
    """``{"entityType": T, "id": uuid}``; a missing id becomes ThingsBoard's NULL UUID."""
    return {"entityType": entity_type, "id": entity_id or NULL_UUID}


class Entity(param.Parameterized):
    """Fields every entity has."""

    entity_type = "ENTITY"  # class constant, overridden below (not a parameter)

    id = param.String(default="", doc="Entity UUID (canonical lower-case string).")
    created_time = param.Integer(default=0, doc="Creation time, epoch milliseconds.")
    additional_info = param.Dict(
        default=None, allow_None=True, doc="Free-form JSON object (ThingsBoard's additionalInfo)."
    )

    @property
    def entity_id(self) -> dict[str, str]:
        return entity_id_json(self.entity_type, self.id)

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError


class Tenant(Entity):
    entity_type = "TENANT"

    title = param.String(default="", doc="Tenant title (unique in a tbpanel installation).")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.entity_id,
            "createdTime": self.created_time,
            "title": self.title,
            "name": self.title,
            "additionalInfo": self.additional_info,
        }


#: Contact fields of a customer, ThingsBoard JSON name -> parameter name.
CUSTOMER_CONTACT_FIELDS = {
    "country": "country",
    "state": "state",
    "city": "city",
    "address": "address",
    "address2": "address2",
    "zip": "zip",
    "phone": "phone",
    "email": "email",
}


class Customer(Entity):
    entity_type = "CUSTOMER"

    tenant_id = param.String(default="", doc="Owning tenant's UUID.")
    title = param.String(default="", doc="Customer title (unique per tenant).")
    country = param.String(default=None, allow_None=True)
    state = param.String(default=None, allow_None=True)
    city = param.String(default=None, allow_None=True)
    address = param.String(default=None, allow_None=True)
    address2 = param.String(default=None, allow_None=True)
    zip = param.String(default=None, allow_None=True)
    phone = param.String(default=None, allow_None=True)
    email = param.String(default=None, allow_None=True)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.entity_id,
            "createdTime": self.created_time,
            "tenantId": entity_id_json("TENANT", self.tenant_id),
            "title": self.title,
            "name": self.title,
        }
        for key, attr in CUSTOMER_CONTACT_FIELDS.items():
            data[key] = getattr(self, attr)
        data["additionalInfo"] = self.additional_info
        return data


class User(Entity):
    entity_type = "USER"

    tenant_id = param.String(default=None, allow_None=True, doc="Tenant UUID; None for SYS_ADMIN.")
    customer_id = param.String(default=None, allow_None=True, doc="Customer UUID for CUSTOMER_USER, otherwise None.")
    email = param.String(default="", doc="Login name (unique, case-insensitive).")
    authority: param.Selector[str] = param.Selector(default=TENANT_ADMIN, objects=list(AUTHORITIES))
    first_name = param.String(default="")
    last_name = param.String(default="")
    enabled = param.Boolean(default=True, doc="Disabled users cannot log in.")

    @property
    def scopes(self) -> list[str]:
        return [self.authority]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.entity_id,
            "createdTime": self.created_time,
            "tenantId": entity_id_json("TENANT", self.tenant_id),
            "customerId": entity_id_json("CUSTOMER", self.customer_id),
            "email": self.email,
            "name": self.email,
            "authority": self.authority,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "additionalInfo": self.additional_info,
        }


class Device(Entity):
    entity_type = "DEVICE"

    # ``name`` is param's own built-in parameter; for a device it is the device name
    # (unique per tenant), always passed explicitly by the registry.
    tenant_id = param.String(default="", doc="Owning tenant's UUID.")
    customer_id = param.String(default=None, allow_None=True, doc="Assigned customer's UUID, or None.")
    type = param.String(default="default", doc="Device type (ThingsBoard device profile name).")
    label = param.String(default="", allow_None=True)
    device_profile_id = param.String(default=None, allow_None=True, doc="The device profile's UUID.")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.entity_id,
            "createdTime": self.created_time,
            "tenantId": entity_id_json("TENANT", self.tenant_id),
            "customerId": entity_id_json("CUSTOMER", self.customer_id),
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "deviceProfileId": entity_id_json("DEVICE_PROFILE", self.device_profile_id),
            "additionalInfo": self.additional_info,
        }

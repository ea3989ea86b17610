"""Entity aliases: the named device sets a dashboard's widgets draw (ThingsBoard's
``configuration.entityAliases``), and what each one is for the user looking at the dashboard.

An alias is stored with the dashboard and shared by everyone it is assigned to, so it is
resolved per user, every time: the user's scope (a tenant administrator: the tenant's devices;
a customer user: its own customer's devices) is part of the one SQL query that reads the
devices (:meth:`~tbpanel.entities.devices.Devices.find_devices`). An alias that names a device
of another tenant or customer therefore resolves to nothing, exactly as an alias naming a
device that does not exist: the answer never tells the two apart.

The filters are ThingsBoard's (read by :func:`tbpanel.queries.entity_data.parse_entity_filter`,
the entity data query's reader) plus one of tbpanel's, ``customerDevices``: all the devices
of one customer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..entities import CUSTOMER_USER, TENANT_ADMIN, Device, EntityRegistry, User
from ..entities.devices import device_from_row
from ..entities.fields import canonical_id
from ..errors import InvalidInput
from ..queries.entity_data import EntityFilter, parse_entity_filter

#: tbpanel's filter type: every device of one customer
CUSTOMER_DEVICES = "customerDevices"
#: the filter types an alias may have
ALIAS_FILTER_TYPES = ("singleEntity", "entityList", "entityName", "entityType", "deviceType", CUSTOMER_DEVICES)


@dataclass(frozen=True)
class AliasFilter:
    """What an alias selects: ThingsBoard's entity filter (``customer_id`` None), or all the
    devices of ``customer_id`` (``customerDevices``); ``multiple`` False keeps only the first."""

    entity: EntityFilter
    customer_id: str | None = None
    multiple: bool = True


def alias_filter(raw: Any) -> AliasFilter:
    """An alias's ``filter`` object read and checked (InvalidInput naming the field)."""
    if not isinstance(raw, dict):
        raise InvalidInput("filter must be a JSON object")
    multiple = raw.get("resolveMultiple", True)
    if not isinstance(multiple, bool):
        raise InvalidInput(f"filter.resolveMultiple must be true or false, got {multiple!r}"[:120])
    ftype = raw.get("type")
    if ftype == CUSTOMER_DEVICES:
        ref = raw.get("customerId")
        cid = ref.get("id") if isinstance(ref, dict) else ref
        try:
            customer = canonical_id(cid, "filter.customerId")
        except InvalidInput:
            raise InvalidInput("filter.customerId must be a customer UUID (or {entityType, id})") from None
        return AliasFilter(EntityFilter(ftype, "DEVICE"), customer_id=customer, multiple=multiple)
    if ftype not in ALIAS_FILTER_TYPES:
        raise InvalidInput(f"filter.type must be one of {', '.join(ALIAS_FILTER_TYPES)}, got {ftype!r}"[:200])
    try:
        entity = parse_entity_filter(raw)
    except InvalidInput as exc:  # its messages say "entityFilter."; here the field is "filter."
        raise InvalidInput(str(exc).replace("entityFilter.", "filter.")) from None
    return AliasFilter(entity, multiple=multiple)


def _filter_of(alias: Mapping[str, Any]) -> AliasFilter:
    """The filter of an alias entry ``{"id", "alias", "filter"}``, or of a bare filter."""
    raw = alias.get("filter") if "filter" in alias else alias
    return alias_filter(raw)


def _scope(user: User) -> tuple[str, str | None] | None:
    """(tenant, the customer the user is confined to or None); None: the user sees no devices."""
    if user is None or not user.enabled or not user.tenant_id:
        return None
    if user.authority == TENANT_ADMIN:
        return user.tenant_id, None
    if user.authority == CUSTOMER_USER and user.customer_id:
        return user.tenant_id, user.customer_id
    return None


def resolve_alias(registry: EntityRegistry, user: User, alias: Mapping[str, Any]) -> list[Device]:
    """The devices ``alias`` selects among those ``user`` may see: a customer user only ever
    gets its own customer's devices. Listed ids keep their order; the other filters answer by
    name. Raises InvalidInput for a malformed alias (never for one naming what the user may not
    see: that is an empty list)."""
    flt = _filter_of(alias)
    scope = _scope(user)
    if scope is None or flt.entity.entity_type != "DEVICE":
        return []
    tenant_id, own_customer = scope
    customer = own_customer
    if flt.customer_id is not None:
        if own_customer is not None and flt.customer_id != own_customer:
            return []
        customer = flt.customer_id  # find_devices keeps it inside the tenant
    rows = registry.find_devices(
        tenant_id,
        customer_id=customer,
        ids=flt.entity.ids,
        name_prefix=flt.entity.name_prefix,
        types=flt.entity.device_types,
    )
    if flt.entity.ids is not None:
        position = {device_id: i for i, device_id in reversed(list(enumerate(flt.entity.ids)))}
        rows.sort(key=lambda r: position[r.id])
    else:
        rows.sort(key=lambda r: (r.name.lower(), r.name, r.id))
    devices = [device_from_row(tuple(r)) for r in rows]
    return devices if flt.multiple else devices[:1]


def resolve_aliases(registry: EntityRegistry, user: User, configuration: Mapping[str, Any]) -> dict[str, list[Device]]:
    """``{alias id: devices}`` for every alias of a dashboard ``configuration``, for ``user``."""
    aliases = configuration.get("entityAliases") or {}
    if not isinstance(aliases, dict):
        raise InvalidInput("configuration.entityAliases must be a JSON object")
    out: dict[str, list[Device]] = {}
    for alias_id, alias in aliases.items():
        if not isinstance(alias, dict):
            raise InvalidInput(f"configuration.entityAliases.{alias_id} must be a JSON object")
        try:
            out[alias_id] = resolve_alias(registry, user, alias)
        except InvalidInput as exc:
            raise InvalidInput(f"configuration.entityAliases.{alias_id}.{exc}") from None
    return out

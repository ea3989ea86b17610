"""ThingsBoard's entity data query (``/api/entitiesQuery/find``, ``/count``, the WebSocket
``ENTITY_DATA`` / ``ENTITY_COUNT`` commands and the entity side of ``alarmsQuery``): read the
query, select the entities, filter, sort, page and assemble their latest values.

Why it is shaped like this:

- **Scope first, in SQL.** The candidate set is read with the asker's scope as part of the
  query (a tenant administrator: the tenant's entities; a customer user: its customer's
  devices, its customer, itself), and the entity filter (ids, name prefix, device types) is
  part of the same SQL. Key filters, text search, sorting and counting then only ever see
  what the user may see, so a count cannot leak another customer's entities.
- **Latest values in one pass.** The values a query needs are read for the whole candidate
  set at once — telemetry from the store's in-memory latest copy
  (:meth:`TelemetryStore.latest_many`), attributes with one registry read
  (:meth:`~tbpanel.entities.attributes.Attributes.get_attributes_many`) — first only the
  keys that filter and sort, then the page's ``latestValues``: never one read per entity.
- The answer has ThingsBoard's shape (``EntityDataAdapter``): every value is a string,
  a missing one ``{"ts": 0, "value": ""}``, entity fields carry the time of the answer.

Pure functions over the registry and the store: no tornado, no HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import InvalidInput
from ..store.values import ValueType, format_double
from .key_filters import (
    EntityKey,
    KeyFilter,
    Value,
    matches,
    parse_key,
    parse_key_filters,
    parse_keys,
    parse_operation,
)

if TYPE_CHECKING:
    from ..entities import EntityRegistry, User
    from ..entities.devices import DeviceRow
    from ..store import TelemetryStore

#: the entity types tbpanel keeps
ENTITY_TYPES = ("DEVICE", "CUSTOMER", "USER", "TENANT")
FILTER_TYPES = ("singleEntity", "entityList", "entityName", "entityType", "deviceType")
ATTRIBUTE_SCOPE_OF = {
    "CLIENT_ATTRIBUTE": "CLIENT_SCOPE",
    "SHARED_ATTRIBUTE": "SHARED_SCOPE",
    "SERVER_ATTRIBUTE": "SERVER_SCOPE",
}
ATTRIBUTE_TYPES = ("ATTRIBUTE", *ATTRIBUTE_SCOPE_OF)
#: largest page (as the other list routes)
MAX_PAGE_SIZE = 10_000
MAX_PAGE = 2**31 - 1
MAX_IDS = 10_000

#: ``(ts, vtype, value)``: one latest value or attribute
Latest = tuple[int, int, Any]
EMPTY = {"ts": 0, "value": ""}


# ------------------------------------------------------------------------------ the query
@dataclass(frozen=True)
class EntityFilter:
    """What ``entityFilter`` selects (before scoping and key filters)."""

    type: str
    entity_type: str
    ids: list[str] | None = None
    name_prefix: str | None = None
    device_types: list[str] | None = None


@dataclass(frozen=True)
class SortOrder:
    key: EntityKey
    direction: str = "ASC"


@dataclass(frozen=True)
class PageLink:
    page_size: int
    page: int = 0
    text_search: str | None = None
    sort: SortOrder | None = None


@dataclass(frozen=True)
class EntityQuery:
    """An EntityDataQuery (``page_link`` None: an EntityCountQuery)."""

    entity_filter: EntityFilter
    key_filters: list[KeyFilter] = field(default_factory=list)
    key_filters_operation: str = "AND"
    page_link: PageLink | None = None
    entity_fields: list[EntityKey] = field(default_factory=list)
    latest_values: list[EntityKey] = field(default_factory=list)

    def with_latest(self, keys: Iterable[EntityKey]) -> EntityQuery:
        """The same query also answering ``keys`` (a WebSocket latestCmd)."""
        extra = [k for k in keys if k.type == "ENTITY_FIELD"]
        rest = [k for k in keys if k.type != "ENTITY_FIELD"]
        return replace(
            self,
            entity_fields=list(dict.fromkeys([*self.entity_fields, *extra])),
            latest_values=list(dict.fromkeys([*self.latest_values, *rest])),
        )


def _int(raw: Any, what: str, default: int | None, minimum: int, maximum: int) -> int:
    if raw is None:
        if default is None:
            raise InvalidInput(f"{what} is required")
        return default
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidInput(f"{what} must be an integer, got {raw!r}"[:120])
    if not minimum <= raw <= maximum:
        raise InvalidInput(f"{what} must be in {minimum}..{maximum}, got {raw}")
    return raw


def _uuid(raw: Any, what: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(str(raw))) if isinstance(raw, str) else str(uuid.UUID(str(raw["id"])))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InvalidInput(f"{what} must be a UUID, got {raw!r}"[:120]) from None


def _entity_type(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or raw.upper() not in ENTITY_TYPES:
        raise InvalidInput(
            f"{what} must be one of {', '.join(ENTITY_TYPES)} (the entities tbpanel keeps), got {raw!r}"[:160]
        )
    return raw.upper()


def _text(raw: Any, what: str) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > 255:
        raise InvalidInput(f"{what} must be a string of at most 255 characters")
    return raw


def parse_entity_filter(raw: Any) -> EntityFilter:
    """``entityFilter`` → :class:`EntityFilter` (InvalidInput naming the field otherwise)."""
    if not isinstance(raw, dict):
        raise InvalidInput("entityFilter is required and must be an object")
    ftype = raw.get("type")
    if ftype == "singleEntity":
        ref = raw.get("singleEntity")
        if not isinstance(ref, dict):
            raise InvalidInput('entityFilter.singleEntity must be {"entityType": ..., "id": ...}')
        etype = _entity_type(ref.get("entityType"), "entityFilter.singleEntity.entityType")
        return EntityFilter(ftype, etype, ids=[_uuid(ref.get("id"), "entityFilter.singleEntity.id")])
    if ftype == "entityList":
        etype = _entity_type(raw.get("entityType"), "entityFilter.entityType")
        ids = raw.get("entityList")
        if not isinstance(ids, list) or len(ids) > MAX_IDS:
            raise InvalidInput(f"entityFilter.entityList must be a list of at most {MAX_IDS} ids")
        return EntityFilter(ftype, etype, ids=[_uuid(i, "entityFilter.entityList item") for i in ids])
    if ftype == "entityName":
        etype = _entity_type(raw.get("entityType"), "entityFilter.entityType")
        return EntityFilter(ftype, etype, name_prefix=_text(raw.get("entityNameFilter"), "entityNameFilter"))
    if ftype == "entityType":
        return EntityFilter(ftype, _entity_type(raw.get("entityType"), "entityFilter.entityType"))
    if ftype == "deviceType":
        types = raw.get("deviceTypes")
        if types is None:
            legacy = raw.get("deviceType")
            types = [legacy] if legacy not in (None, "") else None
        if types is not None and (
            not isinstance(types, list)
            or len(types) > 1000
            or not all(isinstance(t, str) and 0 < len(t) <= 255 for t in types)
        ):
            raise InvalidInput("entityFilter.deviceTypes must be a list of device type names")
        return EntityFilter(
            ftype, "DEVICE", device_types=types, name_prefix=_text(raw.get("deviceNameFilter"), "deviceNameFilter")
        )
    raise InvalidInput(f"entityFilter.type must be one of {', '.join(FILTER_TYPES)}, got {ftype!r}"[:160])


def parse_page_link(raw: Any, *, default_size: int | None = None) -> PageLink:
    if raw is None and default_size is not None:
        return PageLink(default_size)
    if not isinstance(raw, dict):
        raise InvalidInput("pageLink is required and must be an object")
    size = _int(raw.get("pageSize"), "pageLink.pageSize", default_size, 1, MAX_PAGE_SIZE)
    page = _int(raw.get("page"), "pageLink.page", 0, 0, MAX_PAGE)
    text = raw.get("textSearch")
    if text is not None and (not isinstance(text, str) or len(text) > 255):
        raise InvalidInput("pageLink.textSearch must be a string of at most 255 characters")
    order = raw.get("sortOrder")
    sort = None
    if order is not None:
        if not isinstance(order, dict):
            raise InvalidInput('pageLink.sortOrder must be {"key": {"type", "key"}, "direction": "ASC"|"DESC"}')
        direction = order.get("direction") or "ASC"
        if not isinstance(direction, str) or direction.upper() not in ("ASC", "DESC"):
            raise InvalidInput(f"pageLink.sortOrder.direction must be ASC or DESC, got {direction!r}"[:120])
        sort = SortOrder(parse_key(order.get("key"), "pageLink.sortOrder.key"), direction.upper())
    return PageLink(size, page, text or None, sort)


def parse_query(raw: Any, *, paged: bool = True, default_size: int | None = None) -> EntityQuery:
    """An EntityDataQuery (``paged``) or EntityCountQuery body → :class:`EntityQuery`."""
    if not isinstance(raw, dict):
        raise InvalidInput("the query must be a JSON object")
    return EntityQuery(
        parse_entity_filter(raw.get("entityFilter")),
        parse_key_filters(raw.get("keyFilters")),
        parse_operation(raw.get("keyFiltersOperation")),
        parse_page_link(raw.get("pageLink"), default_size=default_size) if paged else None,
        parse_keys(raw.get("entityFields"), "entityFields"),
        parse_keys(raw.get("latestValues"), "latestValues"),
    )


# ------------------------------------------------------------------------------ entities
Getters = dict[str, Callable[[Any], Value]]


@dataclass(frozen=True)
class Entity:
    """One candidate: its id, type and where its entity fields come from. Fields are read on
    demand (``field``): a query over 10,000 devices builds no per-device dictionaries."""

    id: str
    entity_type: str
    source: Any  # the registry's row or model object
    getters: Getters

    def field(self, name: str) -> Value:
        """The entity field ``name`` (ThingsBoard's name) as ``(vtype, value)``, or None."""
        get = self.getters.get(name)
        return None if get is None else get(self.source)

    def id_json(self) -> dict[str, str]:
        return {"entityType": self.entity_type, "id": self.id}


_STR, _LONG, _JSON = ValueType.STR, ValueType.LONG, ValueType.JSON


def _s(value: Any) -> Value:
    return None if value is None else (_STR, str(value))


def _info(info: Any) -> Value:
    return None if info is None else (_JSON, orjson.dumps(info).decode())


def _const(value: str) -> Callable[[Any], Value]:
    return lambda _: (_STR, value)


def _attr(name: str) -> Callable[[Any], Value]:
    return lambda o: _s(getattr(o, name, None))


def _created(o: Any) -> Value:
    return (_LONG, o.created_time)


def _titled(entity_type: str) -> Getters:
    """Fields of an entity whose name is its title (customers, tenants)."""
    title = _attr("title")
    return {
        "createdTime": _created,
        "entityType": _const(entity_type),
        "title": title,
        "name": title,
        "label": title,
        "displayName": title,
        "additionalInfo": lambda o: _info(o.additional_info),
    }


DEVICE_FIELDS: Getters = {
    "createdTime": _created,
    "entityType": _const("DEVICE"),
    "name": lambda d: (_STR, d.name),
    "title": lambda d: (_STR, d.name),
    "type": lambda d: (_STR, d.type),
    "label": lambda d: _s(d.label),
    "displayName": lambda d: (_STR, d.label if (d.label or "").strip() else d.name),
    "ownerType": lambda d: (_STR, "CUSTOMER" if d.customer_id else "TENANT"),
    "additionalInfo": lambda d: None if d.additional_info is None else (_JSON, d.additional_info),
}
CUSTOMER_FIELDS: Getters = {
    **_titled("CUSTOMER"),
    **{k: _attr(k) for k in ("email", "country", "state", "city", "address", "address2", "zip", "phone")},
}
TENANT_FIELDS: Getters = _titled("TENANT")


def _user_display(u: Any) -> Value:
    full = f"{u.first_name or ''} {u.last_name or ''}".strip()
    return (_STR, full or u.email)


USER_FIELDS: Getters = {
    "createdTime": _created,
    "entityType": _const("USER"),
    **{k: _attr("email") for k in ("email", "name", "title", "label")},
    "firstName": _attr("first_name"),
    "lastName": _attr("last_name"),
    "displayName": _user_display,
    "authority": _attr("authority"),
    "additionalInfo": lambda u: _info(u.additional_info),
}


def device_entity(d: DeviceRow) -> Entity:
    return Entity(d.id, "DEVICE", d, DEVICE_FIELDS)


def customer_entity(c: Any) -> Entity:
    return Entity(c.id, "CUSTOMER", c, CUSTOMER_FIELDS)


def user_entity(u: Any) -> Entity:
    return Entity(u.id, "USER", u, USER_FIELDS)


def tenant_entity(t: Any) -> Entity:
    return Entity(t.id, "TENANT", t, TENANT_FIELDS)


def candidates(registry: EntityRegistry, user: User, flt: EntityFilter) -> list[Entity]:
    """The entities ``flt`` selects among those ``user`` may see (the scope is part of the SQL
    for devices; customers, users and the tenant are read only within the user's own scope)."""
    scope = _scope(user)
    if scope is None:
        return []
    tid, customer = scope
    if flt.entity_type == "DEVICE":
        devices = registry.find_devices(
            tid, customer_id=customer, ids=flt.ids, name_prefix=flt.name_prefix, types=flt.device_types
        )
        return [device_entity(d) for d in devices]
    out: list[Entity]
    if flt.entity_type == "CUSTOMER":
        if customer is not None:
            out = [customer_entity(registry.get_customer(customer))]
        else:
            out = [customer_entity(c) for c in registry.list_customers(tid, page_size=MAX_PAGE)[0]]
    elif flt.entity_type == "USER":
        if customer is not None:
            out = [user_entity(user)]
        else:
            out = [user_entity(u) for u in registry.list_users(tid, page_size=MAX_PAGE)[0]]
    else:
        out = [tenant_entity(registry.get_tenant(tid))] if customer is None else []
    if flt.ids is not None:
        wanted = set(flt.ids)
        out = [e for e in out if e.id in wanted]
    if flt.name_prefix:
        prefix = flt.name_prefix.lower()
        out = [e for e in out if str((e.field("name") or (0, ""))[1]).lower().startswith(prefix)]
    return out


# -------------------------------------------------------------------------------- values
class Values:
    """The latest telemetry and attributes of a set of entities for a set of keys, read once
    (one in-memory latest read, one registry read)."""

    def __init__(
        self, registry: EntityRegistry, store: TelemetryStore, ids: Sequence[str], keys: Iterable[EntityKey]
    ) -> None:
        ts_keys = sorted({k.key for k in keys if k.type == "TIME_SERIES"})
        attr_keys = sorted({k.key for k in keys if k.type in ATTRIBUTE_TYPES})
        self.ts: dict[str, dict[str, Latest]] = store.latest_many(ids, ts_keys) if ts_keys and ids else {}
        self.attrs: dict[str, dict[str, dict[str, Latest]]] = (
            registry.get_attributes_many(ids, None, attr_keys) if attr_keys and ids else {}
        )

    def latest(self, entity: Entity, key: EntityKey) -> Latest | None:
        """``(ts, vtype, value)`` of a TIME_SERIES or attribute key, or None."""
        if key.type == "TIME_SERIES":
            return self.ts.get(entity.id, {}).get(key.key)
        scopes = self.attrs.get(entity.id)
        if not scopes:
            return None
        scope = ATTRIBUTE_SCOPE_OF.get(key.type)
        if scope is not None:
            return scopes.get(scope, {}).get(key.key)
        found = [v for sc in scopes.values() if (v := sc.get(key.key)) is not None]
        return max(found, key=lambda v: v[0]) if found else None  # ATTRIBUTE: the newest of any scope

    def value(self, entity: Entity, key: EntityKey) -> Value:
        """``(vtype, value)`` of any key, or None: what key filters and sorting compare."""
        if key.type == "ENTITY_FIELD":
            return entity.field(key.key)
        found = self.latest(entity, key)
        return None if found is None else (found[1], found[2])


def value_string(vtype: int, value: Any) -> str:
    """A value as ThingsBoard's entity query sends it (``EntityDataAdapter.convertValue``):
    a whole double without its ``.0``, booleans in lower case, JSON as its text."""
    if value is None:
        return ""
    if vtype == ValueType.BOOL:
        return "true" if value else "false"
    if vtype == ValueType.LONG:
        return str(int(value))
    if vtype == ValueType.DOUBLE:
        x = float(value)
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return format_double(x)
    return str(value)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _sort_key(v: Value) -> tuple[bool, float, str, str]:
    """ThingsBoard's order (numbers before text ascending, as PostgreSQL's NULLS LAST puts
    the text values, whose numeric part is null, after the numbers); text case-insensitively
    in ASCII, then exactly (as the SQL page: SQLite's NOCASE)."""
    if v is None:
        return (True, 0.0, "", "")
    vtype, x = v
    if vtype in (ValueType.LONG, ValueType.DOUBLE):
        return (False, float(x), "", "")
    if vtype == ValueType.BOOL:
        return (False, 1.0 if x else 0.0, "", "")
    text = str(x)
    return (True, 0.0, text.translate(_ASCII_LOWER), text)


# ------------------------------------------------------------------------------- answers
def _selected(entities: list[Entity], values: Values | None, q: EntityQuery) -> list[Entity]:
    if not q.key_filters:
        return entities

    def passes(e: Entity) -> bool:
        def value_of(k: EntityKey) -> Value:
            return values.value(e, k) if values is not None else e.field(k.key)

        return matches(q.key_filters, q.key_filters_operation, value_of)

    return [e for e in entities if passes(e)]


def _needs_values(keys: Iterable[EntityKey]) -> bool:
    return any(k.type != "ENTITY_FIELD" for k in keys)


def select(registry: EntityRegistry, store: TelemetryStore, user: User, q: EntityQuery) -> list[Entity]:
    """Every entity the query selects for ``user``, sorted as its pageLink asks (unpaged)."""
    entities = candidates(registry, user, q.entity_filter)
    link = q.page_link
    keys = [f.key for f in q.key_filters]
    if link is not None and link.sort is not None:
        keys.append(link.sort.key)
    if link is not None and link.text_search:
        keys += q.entity_fields + q.latest_values
    values = Values(registry, store, [e.id for e in entities], keys) if _needs_values(keys) else None
    entities = _selected(entities, values, q)
    if link is None:
        return entities
    if link.text_search:
        needle = link.text_search.lower()
        search_keys = q.entity_fields + q.latest_values

        def text_of(e: Entity) -> str:
            parts = []
            for k in search_keys:
                v = values.value(e, k) if values is not None else e.field(k.key)
                parts.append("" if v is None else value_string(*v))
            return "".join(parts).lower()

        entities = [e for e in entities if needle in text_of(e)]
    if link.sort is not None:
        sort = link.sort.key

        def key_of(e: Entity) -> tuple[tuple[bool, float, str, str], str]:
            v = values.value(e, sort) if values is not None else e.field(sort.key)
            return (_sort_key(v), e.id)

        entities.sort(key=key_of, reverse=link.sort.direction == "DESC")
    else:  # ThingsBoard leaves the order open; newest first, stable across pages
        entities.sort(key=lambda e: (_sort_key(e.field("createdTime")), e.id), reverse=True)
    return entities


def count(registry: EntityRegistry, store: TelemetryStore, user: User, q: EntityQuery) -> int:
    """``/api/entitiesQuery/count``: how many entities the filter and key filters select
    (an SQL COUNT when only device columns select)."""
    fast = device_page(registry, user, replace(q, page_link=PageLink(1)))
    if fast is not None:
        return fast[1]
    return len(select(registry, store, user, replace(q, page_link=None)))


def latest_json(
    entities: Sequence[Entity],
    values: Values,
    entity_fields: Sequence[EntityKey],
    latest_values: Sequence[EntityKey],
    now: int,
) -> list[dict[str, dict[str, dict[str, Any]]]]:
    """Each entity's ``latest``: ``{keyType: {key: {"ts", "value"}}}`` (entity fields at
    ``now``; a value the entity lacks is ``{"ts": 0, "value": ""}``)."""
    out = []
    for e in entities:
        latest: dict[str, dict[str, dict[str, Any]]] = {}
        for k in entity_fields:
            v = e.field(k.key)
            latest.setdefault("ENTITY_FIELD", {})[k.key] = {"ts": now, "value": "" if v is None else value_string(*v)}
        for k in latest_values:
            if k.type == "ENTITY_FIELD":
                v = e.field(k.key)
                entry = {"ts": now, "value": "" if v is None else value_string(*v)}
            else:
                found = values.latest(e, k)
                entry = dict(EMPTY) if found is None else {"ts": found[0], "value": value_string(found[1], found[2])}
            latest.setdefault(k.type, {})[k.key] = entry
        out.append(latest)
    return out


def page_of(items: list[Any], total: int, page: int, page_size: int) -> dict[str, Any]:
    """ThingsBoard's PageData (``EntityDataAdapter.createEntityData``)."""
    pages = -(-total // page_size)
    return {
        "data": items,
        "totalPages": pages,
        "totalElements": total,
        "hasNext": total > page * page_size + len(items),
    }


def entity_data(
    registry: EntityRegistry, store: TelemetryStore, entities: Sequence[Entity], q: EntityQuery, now: int
) -> list[dict[str, Any]]:
    """EntityData of ``entities``: id, ``latest`` of the query's fields and values (read in
    one pass), empty ``timeseries``."""
    values = Values(registry, store, [e.id for e in entities], q.latest_values)
    latest = latest_json(entities, values, q.entity_fields, q.latest_values, now)
    return [{"entityId": e.id_json(), "latest": lat, "timeseries": {}} for e, lat in zip(entities, latest)]


#: entity fields a device page can be sorted by in SQL (``title`` is the name's alias)
SQL_SORT = {"name": "name", "title": "name", "createdTime": "createdTime", "type": "type"}


def _scope(user: User) -> tuple[str, str | None] | None:
    """(tenant, customer or None) whose entities ``user`` may see; None: nothing."""
    if not user.enabled or not user.tenant_id or user.authority not in ("TENANT_ADMIN", "CUSTOMER_USER"):
        return None
    if user.authority == "CUSTOMER_USER":
        return (user.tenant_id, user.customer_id) if user.customer_id else None
    return user.tenant_id, None


def device_page(registry: EntityRegistry, user: User, q: EntityQuery) -> tuple[list[Entity], int] | None:
    """The page and total straight from SQL when the query needs nothing but device columns
    to select and order (no key filters, no text search, sorted by name, type or creation
    time): a dashboard's 1,000-device page of a 10,000-device tenant reads 1,000 rows.
    None when the query needs the general path (:func:`select`)."""
    link, flt = q.page_link, q.entity_filter
    if link is None or flt.entity_type != "DEVICE" or flt.ids is not None or q.key_filters or link.text_search:
        return None
    if link.sort is None:
        prop, direction = "createdTime", "DESC"
    elif link.sort.key.type == "ENTITY_FIELD" and link.sort.key.key in SQL_SORT:
        prop, direction = SQL_SORT[link.sort.key.key], link.sort.direction
    else:
        return None
    scope = _scope(user)
    if scope is None:
        return [], 0
    rows, total = registry.find_devices_page(
        scope[0],
        customer_id=scope[1],
        name_prefix=flt.name_prefix,
        types=flt.device_types,
        sort_property=prop,
        sort_order=direction,
        page=link.page,
        page_size=link.page_size,
    )
    return [device_entity(r) for r in rows], total


def find(
    registry: EntityRegistry, store: TelemetryStore, user: User, q: EntityQuery, now: int
) -> tuple[dict[str, Any], list[Entity]]:
    """``/api/entitiesQuery/find``: the PageData answer and the page's entities."""
    link = q.page_link or PageLink(10)
    fast = device_page(registry, user, q)
    if fast is not None:
        page, total = fast
    else:
        selected = select(registry, store, user, q)
        start = link.page * link.page_size
        page, total = (selected[start : start + link.page_size] if start < len(selected) else []), len(selected)
    return page_of(entity_data(registry, store, page, q, now), total, link.page, link.page_size), page

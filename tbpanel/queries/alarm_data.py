"""The entity side of ThingsBoard's alarm data query (``/api/alarmsQuery/find``, ``/count``):
which originators the entity filter and key filters select, and each alarm's ``entityId`` and
``latest`` — the alarm query itself is :class:`tbpanel.alarms.AlarmQuery`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .entity_data import EntityQuery, Values, device_entity, latest_json, select
from .key_filters import EntityKey

if TYPE_CHECKING:
    from ..alarms import Alarm
    from ..entities import EntityRegistry, User
    from ..store import TelemetryStore


def originators(registry: EntityRegistry, store: TelemetryStore, user: User, q: EntityQuery | None) -> list[str] | None:
    """Device ids the query's entity filter and key filters select for ``user`` (None: the
    query has no entity filter, so every alarm the user may see). Alarms are kept for
    devices only, so a filter of other entity types selects none."""
    if q is None:
        return None
    return [e.id for e in select(registry, store, user, q) if e.entity_type == "DEVICE"]


def alarm_data(
    registry: EntityRegistry,
    store: TelemetryStore,
    user: User,
    alarms: Sequence[Alarm],
    entity_fields: Sequence[EntityKey],
    latest_values: Sequence[EntityKey],
    now: int,
) -> list[dict[str, Any]]:
    """AlarmData: each alarm's JSON plus ``entityId`` (its originator) and ``latest`` (the
    originator's entity fields and latest values, read for the whole page in one pass)."""
    ids = list(dict.fromkeys(a.originator_id for a in alarms))
    devices = {}
    if ids and user.tenant_id:
        devices = {d.id: device_entity(d) for d in registry.find_devices(user.tenant_id, ids=ids)}
    entities = [devices.get(a.originator_id) for a in alarms]
    present = [e for e in entities if e is not None]
    values = Values(registry, store, [e.id for e in present], latest_values)
    latest = dict(zip([e.id for e in present], latest_json(present, values, entity_fields, latest_values, now)))
    out = []
    for alarm in alarms:
        data = alarm.to_json()
        data["entityId"] = {"entityType": alarm.originator_type, "id": alarm.originator_id}
        data["latest"] = latest.get(alarm.originator_id, {})
        out.append(data)
    return out

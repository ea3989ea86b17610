"""ThingsBoard's alarm API: ``/api/alarm``, ``/api/alarms``, ``/api/alarm/highestSeverity``.

Handlers parse and validate; :class:`~tbpanel.alarms.AlarmService` decides who may do what.
"""

from __future__ import annotations

from ..alarms import SEARCH_STATUSES, SORT, STATUSES, AlarmQuery
from ..alarms.service import parse_severity
from ..entities.registry import MAX_NAME_LENGTH
from ..platform import Platform
from ..store.payload import TS_MAX
from .base import ID, ApiError, ApiHandler, Route, page_data
from .entities import PagedHandler, entity_uuid


def _list_arg(handler: ApiHandler, *names: str) -> list[str]:
    """Comma-separated values of the first of ``names`` given (repeatable)."""
    out: list[str] = []
    for name in names:
        for raw in handler.get_query_arguments(name):
            out += [v.strip() for v in raw.split(",") if v.strip()]
    return out


class AlarmQueryHandler(PagedHandler):
    """Shared parsing of ThingsBoard's alarm query parameters."""

    def alarm_query(self, user, originators: list[str] | None) -> AlarmQuery:
        page, page_size, text, sort_prop, sort_order = self.page_args()
        if sort_prop not in SORT:
            raise ApiError(400, f"sortProperty must be one of {', '.join(SORT)}, got {sort_prop!r}")
        search = (self.get_query_argument("searchStatus", "ANY") or "ANY").upper()
        if search not in SEARCH_STATUSES:
            raise ApiError(400, f"searchStatus must be one of {', '.join(SEARCH_STATUSES)}, got {search!r}")
        statuses = [s.upper() for s in _list_arg(self, "status", "statusList")]
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise ApiError(400, f"status must be one of {', '.join(STATUSES)}, got {bad[0]!r}")
        severities = [parse_severity(s) for s in _list_arg(self, "severity", "severityList")]
        start, end = self.int_arg("startTime"), self.int_arg("endTime")
        if start is not None and end is not None and start > end:
            raise ApiError(400, f"startTime ({start}) must not be after endTime ({end})")
        time_prop = self.get_query_argument("timeProperty", "createdTime") or "createdTime"
        if time_prop not in ("createdTime", "startTs"):
            raise ApiError(400, f"timeProperty must be createdTime or startTs, got {time_prop!r}")
        model_id = self.get_query_argument("modelId", None)
        return AlarmQuery(
            user.tenant_id,
            originators=originators,
            search_status=search,
            statuses=statuses,
            severities=severities,
            types=_list_arg(self, "type", "typeList"),
            model_id=entity_uuid(model_id, "modelId") if model_id else None,
            start_time=start,
            end_time=end,
            time_property=time_prop,
            text=text,
            sort_property=sort_prop,
            sort_order=sort_order,
            page=page,
            page_size=page_size,
        )

    async def answer(self, user, q: AlarmQuery) -> None:
        alarms, total = await self.in_thread(self.platform.alarms.query, user, q)
        self.write_json(page_data([a.to_json() for a in alarms], total, q.page, q.page_size))


def _entity(handler: ApiHandler, user, entity_type: str, entity_id: str) -> str:
    if entity_type.upper() != "DEVICE":
        raise ApiError(400, f"alarms are kept for DEVICE originators only, got entity type {entity_type!r}")
    return handler.platform.registry.check_device(user, entity_uuid(entity_id, "entity id")).id


class AlarmSaveHandler(ApiHandler):
    """``POST /api/alarm``: create, or update the active alarm of the same originator and type."""

    async def post(self) -> None:
        user = self.require_user()
        body = self.json_object("alarm")
        atype = body.get("type")
        if not isinstance(atype, str) or not atype.strip():
            raise ApiError(400, "alarm 'type' is required and must be a non-empty string")
        if len(atype) > MAX_NAME_LENGTH:
            raise ApiError(400, f"alarm 'type' is longer than {MAX_NAME_LENGTH} characters")
        originator = body.get("originator")
        if not isinstance(originator, dict):
            raise ApiError(400, 'alarm \'originator\' is required: {"entityType": "DEVICE", "id": ...}')
        if (originator.get("entityType") or "DEVICE").upper() != "DEVICE":
            raise ApiError(400, f"alarms are kept for DEVICE originators only, got {originator.get('entityType')!r}")
        data = {
            "type": atype.strip(),
            "originator_id": entity_uuid(originator, "originator id"),
            "severity": parse_severity(body.get("severity", "INDETERMINATE")),
            "id": entity_uuid(body["id"], "alarm id") if body.get("id") else None,
        }
        for key, name in (("startTs", "start_ts"), ("endTs", "end_ts")):
            if body.get(key) is not None:
                if not isinstance(body[key], int) or isinstance(body[key], bool) or not 0 <= body[key] <= TS_MAX:
                    raise ApiError(400, f"alarm '{key}' must be an epoch-ms integer in 0..{TS_MAX}, got {body[key]!r}")
                data[name] = body[key]
        if body.get("details") is not None and not isinstance(body["details"], dict):
            raise ApiError(400, "alarm 'details' must be a JSON object")
        data["details"] = body.get("details")
        for key in ("propagate", "acknowledged", "cleared"):
            if key in body:
                if not isinstance(body[key], bool):
                    raise ApiError(400, f"alarm '{key}' must be true or false")
                data[key] = body[key]
        alarm = await self.in_thread(self.platform.alarms.save, user, data)
        self.write_json(alarm.to_json())


class AlarmHandler(ApiHandler):
    """``GET`` / ``DELETE /api/alarm/{id}``."""

    async def get(self, alarm_id: str) -> None:
        user = self.require_user()
        alarm = await self.in_thread(self.platform.alarms.get, user, entity_uuid(alarm_id, "alarm id"))
        self.write_json(alarm.to_json())

    async def delete(self, alarm_id: str) -> None:
        user = self.require_user()
        await self.in_thread(self.platform.alarms.delete, user, entity_uuid(alarm_id, "alarm id"))
        self.write_json(True)


class AlarmActionHandler(ApiHandler):
    """``POST /api/alarm/{id}/ack`` and ``/clear``: the alarm after the change."""

    def initialize(self, platform, action: str) -> None:  # type: ignore[override]
        super().initialize(platform)
        self.action = action

    async def post(self, alarm_id: str) -> None:
        user = self.require_user()
        fn = self.platform.alarms.ack if self.action == "ack" else self.platform.alarms.clear
        alarm = await self.in_thread(fn, user, entity_uuid(alarm_id, "alarm id"))
        self.write_json(alarm.to_json())


class EntityAlarmsHandler(AlarmQueryHandler):
    """``GET /api/alarm/{entityType}/{entityId}?pageSize&page&searchStatus…`` → PageData."""

    async def get(self, entity_type: str, entity_id: str) -> None:
        user = self.require_user()
        device_id = _entity(self, user, entity_type, entity_id)
        await self.answer(user, self.alarm_query(user, [device_id]))


class AllAlarmsHandler(AlarmQueryHandler):
    """``GET /api/alarms?…``: the tenant's alarms (a customer user's: its devices' only)."""

    async def get(self) -> None:
        user = self.require_user()
        devices = [entity_uuid(d, "device id") for d in _list_arg(self, "deviceId", "originatorId")] or None
        await self.answer(user, self.alarm_query(user, devices))


class AlarmTypesHandler(PagedHandler):
    """``GET /api/alarm/types``: the alarm types of the tenant (a customer user's: of its devices).
    With ``pageSize`` (ThingsBoard 3.5+, tb-rest-client 4.4): a PageData of EntitySubtype."""

    async def get(self) -> None:
        user = self.require_user()
        types = await self.in_thread(self.platform.alarms.types, user)
        if self.get_query_argument("pageSize", None) is None:
            self.write_json(types)
            return
        page, size, text, _, _ = self.page_args()
        types = [t for t in types if not text or text.lower() in t.lower()]
        tenant = {"entityType": "TENANT", "id": user.tenant_id}
        items = [{"tenantId": tenant, "entityType": "ALARM", "type": t} for t in types[page * size : (page + 1) * size]]
        self.write_json(page_data(items, len(types), page, size))


class HighestSeverityHandler(ApiHandler):
    """``GET /api/alarm/highestSeverity/{entityType}/{entityId}[?searchStatus&status]`` → a
    severity string, or an empty body when the entity has no matching alarm (as ThingsBoard)."""

    async def get(self, entity_type: str, entity_id: str) -> None:
        user = self.require_user()
        device_id = _entity(self, user, entity_type, entity_id)
        search = (self.get_query_argument("searchStatus", "ANY") or "ANY").upper()
        if search not in SEARCH_STATUSES:
            raise ApiError(400, f"searchStatus must be one of {', '.join(SEARCH_STATUSES)}, got {search!r}")
        statuses = [s.upper() for s in _list_arg(self, "status")]
        if any(s not in STATUSES for s in statuses):
            raise ApiError(400, f"status must be one of {', '.join(STATUSES)}")
        sev = await self.in_thread(self.platform.alarms.highest_severity, user, device_id, search, statuses)
        if sev is None:
            self.set_status(200)
            self.finish()
        else:
            self.write_json(sev)


def alarm_patterns(platform: Platform) -> list[Route]:
    p = {"platform": platform}
    return [
        (r"/api/alarm/?", AlarmSaveHandler, p),
        (r"/api/alarms/?", AllAlarmsHandler, p),
        (r"/api/alarm/types/?", AlarmTypesHandler, p),
        (rf"/api/alarm/highestSeverity/{ID}/{ID}/?", HighestSeverityHandler, p),
        (rf"/api/alarm/{ID}/ack/?", AlarmActionHandler, dict(p, action="ack")),
        (rf"/api/alarm/{ID}/clear/?", AlarmActionHandler, dict(p, action="clear")),
        (rf"/api/alarm/{ID}/{ID}/?", EntityAlarmsHandler, p),
        (rf"/api/alarm/{ID}/?", AlarmHandler, p),
    ]

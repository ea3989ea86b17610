"""ThingsBoard's entity data query API: ``POST /api/entitiesQuery/find`` and ``/count``,
``POST /api/alarmsQuery/find`` and ``/count``.

Handlers read the body and who is asking; :mod:`tbpanel.queries` selects (within the
user's scope), filters, sorts, pages and assembles the latest values.
"""

from __future__ import annotations

from typing import Any

from ..alarms import AlarmQuery
from ..clock import now_ms
from ..entities import User
from ..errors import InvalidInput
from ..platform import Platform
from ..queries import EntityQuery, count, find, parse_query
from ..queries.alarm_data import alarm_data, originators
from ..queries.key_filters import parse_keys
from .base import ApiError, ApiHandler, Route, page_data
from .ws.alarms import alarm_query_of
from .ws.protocol import CmdError


class EntitiesFindHandler(ApiHandler):
    """``POST /api/entitiesQuery/find`` (EntityDataQuery) → PageData of EntityData."""

    async def post(self) -> None:
        user = self.require_user()
        q = parse_query(self.json_object("entity data query"))
        answer, _ = await self.in_thread(find, self.platform.registry, self.platform.store, user, q, now_ms())
        self.write_json(answer)


class EntitiesCountHandler(ApiHandler):
    """``POST /api/entitiesQuery/count`` (EntityCountQuery) → a number."""

    async def post(self) -> None:
        user = self.require_user()
        q = parse_query(self.json_object("entity count query"), paged=False)
        self.write_json(await self.in_thread(count, self.platform.registry, self.platform.store, user, q))


def alarm_entity_query(body: dict[str, Any]) -> EntityQuery | None:
    """The entity part of an alarm query (None without an entityFilter: every visible alarm)."""
    if body.get("entityFilter") is None:
        if body.get("keyFilters"):
            raise InvalidInput("keyFilters need an entityFilter")
        return None
    return parse_query(body, paged=False)


def alarm_query(user: User, body: dict[str, Any], link: Any, ids: list[str] | None) -> AlarmQuery:
    """The pageLink (or a count query's fields) as the one :class:`AlarmQuery`."""
    try:
        return alarm_query_of(user, {"pageLink": link}, ids)
    except CmdError as e:
        raise ApiError(400, e.message) from None


class AlarmsFindHandler(ApiHandler):
    """``POST /api/alarmsQuery/find`` (AlarmDataQuery) → PageData of AlarmData."""

    async def post(self) -> None:
        user = self.require_user()
        body = self.json_object("alarm data query")
        eq = alarm_entity_query(body)
        link = body.get("pageLink")
        if not isinstance(link, dict):
            raise ApiError(400, "pageLink is required and must be an object")
        fields = parse_keys(body.get("entityFields"), "entityFields")
        latest = parse_keys(body.get("latestValues"), "latestValues")
        parse_keys(body.get("alarmFields"), "alarmFields")  # every alarm field is answered
        alarm_query(user, body, link, None)  # a bad pageLink is refused before any work
        p = self.platform

        def run() -> dict[str, Any]:
            q = alarm_query(user, body, link, originators(p.registry, p.store, user, eq))
            alarms, total = p.alarms.query(user, q)
            items = alarm_data(p.registry, p.store, user, alarms, fields, latest, now_ms())
            return page_data(items, total, q.page, q.page_size)

        self.write_json(await self.in_thread(run))


class AlarmsCountHandler(ApiHandler):
    """``POST /api/alarmsQuery/count`` (AlarmCountQuery) → a number."""

    async def post(self) -> None:
        user = self.require_user()
        body = self.json_object("alarm count query")
        eq = alarm_entity_query(body)
        link = {k: body.get(k) for k in ("startTs", "endTs", "timeWindow", "typeList", "statusList", "severityList")}
        link["pageSize"] = 1
        alarm_query(user, body, link, None)
        p = self.platform

        def run() -> int:
            q = alarm_query(user, body, link, originators(p.registry, p.store, user, eq))
            return p.alarms.query(user, q)[1]

        self.write_json(await self.in_thread(run))


def entity_query_patterns(platform: Platform) -> list[Route]:
    p = {"platform": platform}
    return [
        (r"/api/entitiesQuery/find/?", EntitiesFindHandler, p),
        (r"/api/entitiesQuery/count/?", EntitiesCountHandler, p),
        (r"/api/alarmsQuery/find/?", AlarmsFindHandler, p),
        (r"/api/alarmsQuery/count/?", AlarmsCountHandler, p),
    ]

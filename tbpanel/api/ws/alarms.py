"""ThingsBoard's ``ALARM_DATA`` command on ``/api/ws``: a page of alarms, then every committed
change of an alarm of the filtered entities.

The pageLink is read into the one :class:`~tbpanel.alarms.AlarmQuery` (with
:data:`~tbpanel.alarms.SORT` and :data:`~tbpanel.alarms.SEARCH_TO_STATUSES`, as the REST API
and the alarms page read theirs). A subscription listens to ``AlarmService.changed`` *before*
it reads the first page, holding what it hears until that page is sent, so a change committed
meanwhile is pushed, never lost. Changes are announced against the filter without its status
and time conditions: an alarm that leaves the filter (say, cleared while the page shows ACTIVE)
is still pushed once, so clients can drop it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.websocket
from tornado.ioloop import IOLoop

from ...alarms import SEARCH_TO_STATUSES, SEVERITIES, SORT, STATUSES, Alarm, AlarmQuery
from ...clock import now_ms
from ...entities import User
from ...errors import EntityError, PermissionDenied
from ...platform import Platform
from ..base import in_pool, page_data
from .protocol import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    NO_ERROR,
    UNAUTHORIZED,
    CmdError,
    Connection,
    cmd_id_of,
    device_of,
    int_field,
)

log = logging.getLogger("tbpanel.api.ws")


def alarm_update(
    cmd_id: int,
    *,
    data: dict[str, Any] | None = None,
    update: list[Any] | None = None,
    deleted: list[Any] | None = None,
    error: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """ThingsBoard's AlarmDataUpdate (``deleted``: tbpanel's addition for removed alarms)."""
    out = {
        "cmdId": cmd_id,
        "cmdUpdateType": "ALARM_DATA",
        "data": data,
        "update": update,
        "errorCode": error[0] if error else NO_ERROR,
        "errorMsg": error[1] if error else None,
        "allowedEntities": None,
        "totalEntities": None,
    }
    if deleted is not None:
        out["deleted"] = deleted
    return out


def _entity_ref(ref: Any) -> dict[str, Any]:
    if not isinstance(ref, dict):
        raise CmdError(BAD_REQUEST, '\'singleEntity\' must be {"entityType": "DEVICE", "id": ...}')
    return {"entityType": ref.get("entityType"), "entityId": ref.get("id")}


def _list(link: dict[str, Any], name: str) -> list[Any]:
    value = link.get(name) or []
    if not isinstance(value, list):
        raise CmdError(BAD_REQUEST, f"'{name}' must be a list")
    return value


def alarm_query_of(user: User, query: dict[str, Any], originators: list[str] | None) -> AlarmQuery:
    """ThingsBoard's AlarmDataQuery ``pageLink`` → :class:`AlarmQuery` (the documented subset)."""
    if not isinstance(query, dict):
        raise CmdError(BAD_REQUEST, "'query' must be an object")
    link = query.get("pageLink") or {}
    if not isinstance(link, dict):
        raise CmdError(BAD_REQUEST, "'pageLink' must be an object")
    page_size = int_field(link, "pageSize", 10, minimum=1, maximum=10_000)  # as the REST API
    page = int_field(link, "page", 0, maximum=2**31 - 1)
    statuses: set[str] = set()
    for s in _list(link, "statusList"):
        if not isinstance(s, str) or s.upper() not in SEARCH_TO_STATUSES:
            raise CmdError(BAD_REQUEST, f"statusList items must be one of {', '.join(SEARCH_TO_STATUSES)}, got {s!r}")
        statuses |= set(SEARCH_TO_STATUSES[s.upper()])
    severities = []
    for s in _list(link, "severityList"):
        if not isinstance(s, str) or s.upper() not in SEVERITIES:
            raise CmdError(BAD_REQUEST, f"severityList items must be one of {', '.join(SEVERITIES)}, got {s!r}")
        severities.append(s.upper())
    types = link.get("typeList") or []
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise CmdError(BAD_REQUEST, "'typeList' must be a list of strings")
    window = int_field(link, "timeWindow", 0)
    start = int_field(link, "startTs") or (now_ms() - window if window else None)
    end = int_field(link, "endTs")
    order = link.get("sortOrder") or {}
    sort_key = (order.get("key") or {}) if isinstance(order, dict) else None
    key = (sort_key.get("key") if isinstance(sort_key, dict) else None) or "createdTime"
    direction = (order.get("direction") if isinstance(order, dict) else None) or "DESC"
    if (
        not isinstance(sort_key, dict)
        or not isinstance(key, str)
        or key not in SORT
        or not isinstance(direction, str)
        or direction.upper() not in ("ASC", "DESC")
    ):
        raise CmdError(
            BAD_REQUEST, 'sortOrder must be {"key": {"key": one of ' + ", ".join(SORT) + '}, "direction": ASC or DESC}'
        )
    text = link.get("textSearch")
    if text is not None and not isinstance(text, str):
        raise CmdError(BAD_REQUEST, "'textSearch' must be a string")
    # a system administrator's tenant_id is None, which AlarmService compares as it is
    return AlarmQuery(
        user.tenant_id,  # type: ignore[arg-type]
        originators=originators,
        statuses=[s for s in STATUSES if s in statuses] if statuses and statuses != set(STATUSES) else [],
        severities=severities,
        types=list(types),
        start_time=start,
        end_time=end,
        text=text or None,
        sort_property=key,
        sort_order=direction.upper(),
        page=page,
        page_size=page_size,
    )


@dataclass(eq=False)
class _AlarmWatch:
    """One ALARM_DATA subscription: the filter its pushes are checked against and how to stop
    listening."""

    loose: AlarmQuery  # the query without status and time conditions
    off: Callable[[], None]  # disconnects its listener from AlarmService.changed


class AlarmCommands:
    """The ALARM_DATA subscriptions of one authenticated ``/api/ws`` socket."""

    KINDS = ("ALARM_DATA", "ALARM_DATA_UNSUBSCRIBE")

    def __init__(self, socket: Connection, platform: Platform, user: User) -> None:
        self.socket = socket
        self.platform = platform
        self.user = user
        self._watches: dict[int, _AlarmWatch] = {}
        self._held: dict[int, list[tuple[str, Alarm]]] = {}

    async def run(self, kind: str, cmd: Any) -> None:
        """One command of :attr:`KINDS`; its errors are answered in AlarmDataUpdate's shape."""
        cmd_id = 0
        try:
            cmd_id = cmd_id_of(cmd)
            if kind == "ALARM_DATA":
                await self._subscribe(cmd_id, cmd)
            else:
                self._cancel(cmd_id)
        except CmdError as e:
            self.socket.send(alarm_update(cmd_id, error=(e.code, e.message)))
        except EntityError as e:
            code = UNAUTHORIZED if isinstance(e, PermissionDenied) else BAD_REQUEST
            self.socket.send(alarm_update(cmd_id, error=(code, str(e))))
        except tornado.websocket.WebSocketClosedError:
            pass
        except Exception:
            log.exception("alarm command failed: %r", cmd)
            self.socket.send(alarm_update(cmd_id, error=(INTERNAL_ERROR, "Failed to fetch data!")))

    def close(self) -> None:
        """The socket closed: stop listening for every subscription."""
        for cmd_id in list(self._watches):
            self._cancel(cmd_id)

    async def _subscribe(self, cmd_id: int, cmd: dict[str, Any]) -> None:
        query = cmd.get("query") or {}
        if not isinstance(query, dict):
            raise CmdError(BAD_REQUEST, "'query' must be an object")
        q = alarm_query_of(self.user, query, self._entities(query))
        self._cancel(cmd_id)
        loop = IOLoop.current()
        service = self.platform.alarms

        def heard(kind: str, alarm: Alarm) -> None:  # any thread, after the commit
            loop.add_callback(self._on_alarm, cmd_id, kind, alarm)

        # subscribe before reading: a change committed meanwhile is pushed, never lost
        self._held[cmd_id] = []
        off = service.changed.connect(heard)
        loose = dataclasses.replace(q, statuses=[], search_status="ANY", start_time=None, end_time=None)
        watch = self._watches[cmd_id] = _AlarmWatch(loose, off)
        alarms, total = await in_pool(self.platform, service.query, self.user, q)
        if self._watches.get(cmd_id) is not watch:  # replaced or cancelled meanwhile
            return
        data = page_data([a.to_json() for a in alarms], total, q.page, q.page_size)
        self.socket.send(alarm_update(cmd_id, data=data))
        held = self._held.pop(cmd_id, [])
        for kind, alarm in held:  # changes committed while the page was read, in order
            self._on_alarm(cmd_id, kind, alarm)

    def _entities(self, query: dict[str, Any]) -> list[str] | None:
        f = query.get("entityFilter")
        if not f:
            return None
        if not isinstance(f, dict):
            raise CmdError(BAD_REQUEST, "'entityFilter' must be an object")
        registry = self.platform.registry
        if f.get("type") == "singleEntity":
            return [device_of(registry, self.user, _entity_ref(f.get("singleEntity"))).id]
        if f.get("type") == "entityList":
            if str(f.get("entityType", "")).upper() != "DEVICE" or not isinstance(f.get("entityList"), list):
                raise CmdError(BAD_REQUEST, "entityList filters need entityType DEVICE and an entityList")
            return [device_of(registry, self.user, {"entityType": "DEVICE", "entityId": i}).id for i in f["entityList"]]
        raise CmdError(
            BAD_REQUEST,
            f"entityFilter type {f.get('type')!r} is not supported (supported: singleEntity, entityList of devices)",
        )

    def _on_alarm(self, cmd_id: int, kind: str, alarm: Alarm) -> None:
        watch = self._watches.get(cmd_id)
        if watch is None or self.socket.closed:
            return
        if cmd_id in self._held:  # the first answer is not out yet
            self._held[cmd_id].append((kind, alarm))
            return
        if alarm.tenant_id != self.user.tenant_id or not self.platform.alarms.may_see(self.user, alarm):
            return
        # a change that moves an alarm out of the status filter is still announced, so clients drop it
        if not watch.loose.matches(alarm):
            return
        if kind == "DELETED":
            self.socket.send(alarm_update(cmd_id, deleted=[alarm.to_json()["id"]]))
        else:
            self.socket.send(alarm_update(cmd_id, update=[alarm.to_json()]))

    def _cancel(self, cmd_id: int) -> None:
        watch = self._watches.pop(cmd_id, None)
        self._held.pop(cmd_id, None)
        if watch is not None:
            watch.off()

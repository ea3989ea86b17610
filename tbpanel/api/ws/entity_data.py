"""ThingsBoard's entity data commands on ``/api/ws``: ``ENTITY_DATA`` (a page of the entity
data query, then live updates of its latest values and time series), ``ENTITY_COUNT`` and
``ALARM_COUNT`` (a number, then the new number whenever it changes), and their
``*_UNSUBSCRIBE`` commands.

The query is the one :mod:`tbpanel.queries` answers over REST, with the same scoping. An
ENTITY_DATA subscription selects its page, then listens — the live hub for the page's
telemetry, ``registry.attributes_changed`` for its attributes — *before* it reads the page's
values, holding what it hears until the page is sent; held points already in the page are
dropped, so nothing is lost or sent twice. The page's entity set is fixed when it is
subscribed (no periodic re-query of ``dynamic`` pages). Counts are recomputed shortly after a
change that may move them (a telemetry commit of a candidate entity when the key filters read
telemetry, any attribute change of the tenant when they read attributes, any alarm change for
ALARM_COUNT) and every ``RECOUNT_S`` seconds (new, deleted or reassigned entities); an update
is sent only when the number changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import tornado.websocket
from tornado.ioloop import IOLoop, PeriodicCallback

from ...clock import now_ms
from ...entities import User
from ...entities.attributes import AttributeChange
from ...errors import EntityError, PermissionDenied
from ...live import LiveHub, Subscription
from ...platform import Platform
from ...queries import EntityQuery, count, parse_query
from ...queries.alarm_data import originators
from ...queries.entity_data import ATTRIBUTE_SCOPE_OF, Entity, entity_data, select
from ...queries.key_filters import EntityKey, parse_keys
from ...store.validate import Point
from ...store.values import format_double, to_wire_string
from ..base import in_pool
from .alarms import alarm_query_of
from .protocol import (
    BAD_REQUEST,
    CLOSE_POLICY,
    INTERNAL_ERROR,
    NO_ERROR,
    UNAUTHORIZED,
    CmdError,
    Connection,
    agg_of,
    cmd_id_of,
    int_field,
)

log = logging.getLogger("tbpanel.api.ws")

MAX_COMMANDS = 100  # entity data and count subscriptions per socket
MAX_PENDING_UPDATES = 100_000  # entity updates queued for one slow socket before it is closed
RECOUNT_S = 10.0
RECOUNT_DELAY_S = 0.2
DEFAULT_LIMIT = 100


def data_update(
    cmd_id: int,
    *,
    data: dict[str, Any] | None = None,
    update: list[Any] | None = None,
    error: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """ThingsBoard's EntityDataUpdate."""
    return {
        "cmdId": cmd_id,
        "cmdUpdateType": "ENTITY_DATA",
        "data": data,
        "update": update,
        "errorCode": error[0] if error else NO_ERROR,
        "errorMsg": error[1] if error else None,
        "allowedEntities": MAX_PAGE_ENTITIES,
    }


MAX_PAGE_ENTITIES = 10_000


def count_update(cmd_id: int, kind: str, n: int = 0, error: tuple[int, str] | None = None) -> dict[str, Any]:
    """ThingsBoard's EntityCountUpdate (``COUNT_DATA``) or AlarmCountUpdate (``ALARM_COUNT_DATA``)."""
    return {
        "cmdId": cmd_id,
        "cmdUpdateType": kind,
        "count": n,
        "errorCode": error[0] if error else NO_ERROR,
        "errorMsg": error[1] if error else None,
    }


def attribute_string(value: Any) -> str:
    """An attribute value as ThingsBoard pushes it (``getValueAsString``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_double(value)
    return str(value)


@dataclass
class _TsCmd:
    keys: list[str]
    start: int
    end: int
    limit: int
    agg: str
    interval: int
    live: bool  # tsCmd (then live points) or historyCmd


def _ts_cmd(raw: Any, name: str) -> _TsCmd | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise CmdError(BAD_REQUEST, f"'{name}' must be an object")
    keys = raw.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys) or len(keys) > 100:
        raise CmdError(BAD_REQUEST, f"'{name}.keys' must be a non-empty list of time series keys")
    agg, interval = agg_of(raw)
    limit = int_field(raw, "limit", 0, maximum=100_000) or DEFAULT_LIMIT
    if name == "tsCmd":
        window = int_field(raw, "timeWindow", 0)
        if not window:
            raise CmdError(BAD_REQUEST, "'tsCmd.timeWindow' must be a positive number of milliseconds")
        start = int_field(raw, "startTs", 0) or now_ms() - window
        end = start + window
    else:
        start_ts, end_ts = int_field(raw, "startTs"), int_field(raw, "endTs")
        if start_ts is None or end_ts is None:
            raise CmdError(BAD_REQUEST, "'historyCmd' needs 'startTs' and 'endTs' (epoch ms)")
        start, end = start_ts, end_ts
    if start >= end:
        raise CmdError(BAD_REQUEST, f"{name}: startTs ({start}) must be less than the end ({end})")
    return _TsCmd(list(dict.fromkeys(keys)), start, end, limit, agg, interval, name == "tsCmd")


@dataclass(eq=False)
class _DataWatch:
    """One ENTITY_DATA subscription: its page, the keys it pushes and how to stop listening."""

    cmd_id: int
    ids: frozenset[str] = frozenset()
    query: EntityQuery | None = None
    types: dict[str, str] = field(default_factory=dict)  # entity id -> entity type
    latest: list[EntityKey] = field(default_factory=list)
    ts_live: list[str] = field(default_factory=list)  # tsCmd keys: pushed as timeseries
    sub: Subscription | None = None
    off: Callable[[], None] | None = None
    holding: bool = True
    held: list[Callable[[], None]] = field(default_factory=list)
    sent: dict[tuple[str, str], int] = field(default_factory=dict)  # (entity, key) -> newest ts sent


@dataclass(eq=False)
class _CountWatch:
    cmd_id: int
    kind: str  # COUNT_DATA | ALARM_COUNT_DATA
    recount: Callable[[], Any]
    last: int | None = None
    timer: PeriodicCallback | None = None
    offs: list[Callable[[], None]] = field(default_factory=list)
    scheduled: bool = False
    running: bool = False


class EntityDataCommands:
    """The ENTITY_DATA, ENTITY_COUNT and ALARM_COUNT subscriptions of one ``/api/ws`` socket."""

    KINDS = (
        "ENTITY_DATA",
        "ENTITY_DATA_UNSUBSCRIBE",
        "ENTITY_COUNT",
        "ENTITY_COUNT_UNSUBSCRIBE",
        "ALARM_COUNT",
        "ALARM_COUNT_UNSUBSCRIBE",
    )

    def __init__(self, socket: Connection, platform: Platform, live: LiveHub, user: User) -> None:
        self.socket = socket
        self.platform = platform
        self.live = live
        self.user = user
        self._data: dict[int, _DataWatch] = {}
        self._counts: dict[int, _CountWatch] = {}
        self._pending: dict[int, dict[str, dict[str, Any]]] = {}
        self._pending_n = 0
        self._sending = False

    # ---------------------------------------------------------------------------- commands
    async def run(self, kind: str, cmd: Any) -> None:
        """One command of :attr:`KINDS`; errors are answered in the kind's update shape."""
        cmd_id = 0
        try:
            cmd_id = cmd_id_of(cmd)
            if kind == "ENTITY_DATA":
                await self._subscribe_data(cmd_id, cmd)
            elif kind == "ENTITY_COUNT":
                await self._subscribe_count(cmd_id, cmd, "COUNT_DATA")
            elif kind == "ALARM_COUNT":
                await self._subscribe_count(cmd_id, cmd, "ALARM_COUNT_DATA")
            elif kind == "ENTITY_DATA_UNSUBSCRIBE":
                self._cancel_data(cmd_id)
            else:
                self._cancel_count(cmd_id)
        except tornado.websocket.WebSocketClosedError:
            pass
        except Exception as e:
            error = self._error_of(e, cmd)
            if kind.startswith("ENTITY_DATA"):
                self.socket.send(data_update(cmd_id, error=error))
            else:
                self.socket.send(
                    count_update(cmd_id, "COUNT_DATA" if kind.startswith("ENTITY") else "ALARM_COUNT_DATA", error=error)
                )

    @staticmethod
    def _error_of(e: Exception, cmd: Any) -> tuple[int, str]:
        if isinstance(e, CmdError):
            return e.code, e.message
        if isinstance(e, PermissionDenied):
            return UNAUTHORIZED, str(e)
        if isinstance(e, (EntityError, ValueError)):
            return BAD_REQUEST, str(e)
        log.exception("entity data command failed: %r", cmd, exc_info=e)
        return INTERNAL_ERROR, "Failed to fetch data!"

    def close(self) -> None:
        """The socket closed: stop every subscription."""
        for cmd_id in list(self._data):
            self._cancel_data(cmd_id)
        for cmd_id in list(self._counts):
            self._cancel_count(cmd_id)

    def _check_room(self, cmd_id: int) -> None:
        if (
            len(self._data) + len(self._counts) >= MAX_COMMANDS
            and cmd_id not in self._data
            and cmd_id not in self._counts
        ):
            raise CmdError(BAD_REQUEST, f"at most {MAX_COMMANDS} entity data and count subscriptions per socket")

    # ------------------------------------------------------------------------- ENTITY_DATA
    async def _subscribe_data(self, cmd_id: int, cmd: dict[str, Any]) -> None:
        query = cmd.get("query")
        previous = self._data.get(cmd_id)
        if query is None and previous is not None and previous.query is not None:
            q = previous.query  # ThingsBoard's dashboards add tsCmd/latestCmd to a running command
        elif not isinstance(query, dict):
            raise CmdError(BAD_REQUEST, "'query' is required and must be an EntityDataQuery object")
        else:
            q = parse_query(query)
        latest_cmd = cmd.get("latestCmd")
        if latest_cmd is not None:
            if not isinstance(latest_cmd, dict):
                raise CmdError(BAD_REQUEST, "'latestCmd' must be an object")
            q = q.with_latest(parse_keys(latest_cmd.get("keys"), "latestCmd.keys"))
        history = _ts_cmd(cmd.get("historyCmd"), "historyCmd")
        ts = _ts_cmd(cmd.get("tsCmd"), "tsCmd")
        self._cancel_data(cmd_id)
        self._check_room(cmd_id)
        p = self.platform
        link = q.page_link
        assert link is not None  # parse_query(paged=True) always reads one
        entities = await in_pool(p, select, p.registry, p.store, self.user, q)
        start = link.page * link.page_size
        page = entities[start : start + link.page_size]
        watch = _DataWatch(
            cmd_id, frozenset(e.id for e in page), latest=[k for k in q.latest_values if k.type != "ENTITY_FIELD"]
        )
        watch.ts_live = ts.keys if ts is not None else []
        watch.types = {e.id: e.entity_type for e in page}
        watch.query = q
        self._data[cmd_id] = watch
        loop = IOLoop.current()
        # listen before reading the values: what commits meanwhile is held, then pushed
        ts_keys = {k.key for k in watch.latest if k.type == "TIME_SERIES"} | set(watch.ts_live)
        if ts_keys and watch.ids:
            watch.sub = self.live.subscribe(
                watch.ids, ts_keys, partial(self._on_points, watch), tenant=self.user.tenant_id or "", kind="ws"
            )
        if any(k.type in ATTRIBUTE_SCOPE_OF or k.type == "ATTRIBUTE" for k in watch.latest) and watch.ids:

            def heard(change: AttributeChange) -> None:  # any thread, after the commit
                if change.entity_id in watch.ids:
                    loop.add_callback(self._on_attributes, watch, change)

            watch.off = p.registry.attributes_changed.connect(heard)
        try:
            now = now_ms()
            items = await in_pool(p, entity_data, p.registry, p.store, page, q, now)
            for cmd_ts in (history, ts):
                if cmd_ts is not None:
                    await self._fill_history(items, page, cmd_ts)
        except BaseException:
            self._cancel_data(cmd_id)
            raise
        if self._data.get(cmd_id) is not watch:  # replaced or cancelled meanwhile
            return
        total = len(entities)
        pages = -(-total // link.page_size)
        data = {"data": items, "totalPages": pages, "totalElements": total, "hasNext": total > start + len(items)}
        self.socket.send(data_update(cmd_id, data=data))
        for item in items:
            eid = item["entityId"]["id"]
            for values in item["latest"].values():
                for key, v in values.items():
                    watch.sent[(eid, key)] = max(watch.sent.get((eid, key), 0), v["ts"])
            for key, pts in item["timeseries"].items():
                for v in pts:
                    watch.sent[(eid, key)] = max(watch.sent.get((eid, key), 0), v["ts"])
        held, watch.held, watch.holding = watch.held, [], False
        for replay in held:
            replay()

    async def _fill_history(self, items: list[dict[str, Any]], page: list[Entity], c: _TsCmd) -> None:
        store, p = self.platform.store, self.platform
        for item, e in zip(items, page):
            if c.agg == "NONE":
                series = await in_pool(p, store.query_raw, e.id, c.keys, c.start, c.end, c.limit, "DESC")
            else:
                series = await in_pool(p, store.query_agg, e.id, c.keys, c.start, c.end, c.agg, c.interval)
            for key, pts in series.items():
                item["timeseries"][key] = [{"ts": t, "value": to_wire_string(vt, v)} for t, vt, v in pts]

    def _on_points(self, watch: _DataWatch, points: list[Point]) -> None:
        """From the hub, on the IOLoop: the page's new telemetry as entity updates."""
        if self.socket.closed or self._data.get(watch.cmd_id) is not watch:
            return
        if watch.holding:
            watch.held.append(partial(self._on_points, watch, points))
            return
        latest_keys = {k.key for k in watch.latest if k.type == "TIME_SERIES"}
        ts_keys = set(watch.ts_live)
        for entity, key, ts, vtype, value in points:
            if ts <= watch.sent.get((entity, key), -1):
                continue  # already in the first page
            entry = {"ts": ts, "value": to_wire_string(vtype, value)}
            upd = self._pending_entity(watch, entity)
            if key in latest_keys:
                cur = upd["latest"].setdefault("TIME_SERIES", {}).get(key)
                if cur is None or ts >= cur["ts"]:
                    upd["latest"]["TIME_SERIES"][key] = entry
            if key in ts_keys:
                upd["timeseries"].setdefault(key, []).append(entry)
        self._flush_soon()

    def _on_attributes(self, watch: _DataWatch, change: AttributeChange) -> None:
        """On the IOLoop: a committed attribute save or delete of one of the page's entities."""
        if self.socket.closed or self._data.get(watch.cmd_id) is not watch:
            return
        if watch.holding:
            watch.held.append(partial(self._on_attributes, watch, change))
            return
        saved = {v["key"]: v for v in change.values}
        for k in watch.latest:
            scope = ATTRIBUTE_SCOPE_OF.get(k.type)
            if k.type == "TIME_SERIES" or (scope is not None and scope != change.scope):
                continue
            if k.key in saved:
                v = saved[k.key]
                if v["lastUpdateTs"] < watch.sent.get((change.entity_id, k.key), -1):
                    continue
                entry = {"ts": v["lastUpdateTs"], "value": attribute_string(v["value"])}
            elif k.key in change.deleted and scope is not None:
                entry = {"ts": 0, "value": ""}
            else:
                continue
            self._pending_entity(watch, change.entity_id)["latest"].setdefault(k.type, {})[k.key] = entry
        self._flush_soon()

    def _pending_entity(self, watch: _DataWatch, entity: str) -> dict[str, Any]:
        per_cmd = self._pending.setdefault(watch.cmd_id, {})
        upd = per_cmd.get(entity)
        if upd is None:
            ref = {"entityType": watch.types.get(entity, "DEVICE"), "id": entity}
            upd = per_cmd[entity] = {"entityId": ref, "latest": {}, "timeseries": {}}
            self._pending_n += 1
        return upd

    def _flush_soon(self) -> None:
        if self._pending_n > MAX_PENDING_UPDATES:
            log.info("closing a websocket that does not keep up (%d entity updates pending)", self._pending_n)
            self._pending.clear()
            self.socket.close(CLOSE_POLICY, "Max pending updates limit reached!")
            return
        if self._pending and not self._sending:
            self._sending = True
            IOLoop.current().spawn_callback(self._send_pending)

    async def _send_pending(self) -> None:
        """One message per subscription with what is pending, each write drained before the
        next; what arrives meanwhile is merged into the next round."""
        try:
            while self._pending and not self.socket.closed:
                pending, self._pending = self._pending, {}
                self._pending_n = 0
                for cmd_id, updates in pending.items():
                    if cmd_id not in self._data:
                        continue
                    for upd in updates.values():
                        for pts in upd["timeseries"].values():
                            pts.sort(key=lambda v: v["ts"])
                    msg = data_update(cmd_id, update=list(updates.values()))
                    await self.socket.write_message(orjson.dumps(msg).decode())
        except tornado.websocket.WebSocketClosedError:
            pass
        finally:
            self._sending = False

    def _cancel_data(self, cmd_id: int) -> None:
        watch = self._data.pop(cmd_id, None)
        self._pending.pop(cmd_id, None)
        if watch is not None:
            self.live.unsubscribe(watch.sub)
            if watch.off is not None:
                watch.off()

    # ------------------------------------------------------------------- ENTITY/ALARM_COUNT
    async def _subscribe_count(self, cmd_id: int, cmd: dict[str, Any], kind: str) -> None:
        query = cmd.get("query")
        if not isinstance(query, dict):
            raise CmdError(BAD_REQUEST, "'query' is required and must be an object")
        p, user = self.platform, self.user
        recount: Callable[[], int]
        filtered: EntityQuery | None
        if kind == "COUNT_DATA":
            q = parse_query(query, paged=False)
            filtered = q

            def entity_count() -> int:
                return count(p.registry, p.store, user, q)

            recount = entity_count
        else:
            eq = None if query.get("entityFilter") is None else parse_query(query, paged=False)
            filtered = eq
            names = ("startTs", "endTs", "timeWindow", "typeList", "statusList", "severityList")
            link: dict[str, Any] = {k: query.get(k) for k in names}
            link["pageSize"] = 1
            alarm_query_of(user, {"pageLink": link}, None)  # a bad query is refused now

            def alarm_count() -> int:
                aq = alarm_query_of(user, {"pageLink": link}, originators(p.registry, p.store, user, eq))
                return p.alarms.query(user, aq)[1]

            recount = alarm_count
        self._cancel_count(cmd_id)
        self._check_room(cmd_id)
        watch = _CountWatch(cmd_id, kind, recount)
        self._counts[cmd_id] = watch
        loop = IOLoop.current()

        def changed(*_: Any) -> None:  # any thread
            loop.add_callback(self._recount_soon, watch)

        if kind == "ALARM_COUNT_DATA":
            watch.offs.append(p.alarms.changed.connect(changed))
        if filtered is not None:
            filter_keys = {f.key.type for f in filtered.key_filters}
            if filter_keys & {"ATTRIBUTE", *ATTRIBUTE_SCOPE_OF}:
                watch.offs.append(p.registry.attributes_changed.connect(changed))
            if "TIME_SERIES" in filter_keys:
                plain = EntityQuery(filtered.entity_filter)
                ids = [e.id for e in await in_pool(p, select, p.registry, p.store, user, plain)]
                keys = {f.key.key for f in filtered.key_filters if f.key.type == "TIME_SERIES"}
                if self._counts.get(cmd_id) is not watch:  # replaced or cancelled meanwhile
                    for off in watch.offs:
                        off()
                    return
                if ids:
                    sub = self.live.subscribe(ids, keys, changed, tenant=user.tenant_id or "", kind="ws")

                    def unsubscribe() -> None:
                        self.live.unsubscribe(sub)

                    watch.offs.append(unsubscribe)
        watch.timer = PeriodicCallback(partial(self._recount_soon, watch), RECOUNT_S * 1000)
        watch.timer.start()
        await self._recount(watch)

    def _recount_soon(self, watch: _CountWatch) -> None:
        if watch.scheduled or self._counts.get(watch.cmd_id) is not watch:
            return
        watch.scheduled = True
        IOLoop.current().call_later(RECOUNT_DELAY_S, lambda: IOLoop.current().spawn_callback(self._recount, watch))

    async def _recount(self, watch: _CountWatch) -> None:
        watch.scheduled = False
        if watch.running or self._counts.get(watch.cmd_id) is not watch or self.socket.closed:
            return
        watch.running = True
        try:
            n = await in_pool(self.platform, watch.recount)
        except Exception as e:
            if watch.last is None:
                self._cancel_count(watch.cmd_id)
                self.socket.send(count_update(watch.cmd_id, watch.kind, error=self._error_of(e, None)))
            else:
                log.warning("recount of %s %d failed: %s", watch.kind, watch.cmd_id, e)
            return
        finally:
            watch.running = False
        if self._counts.get(watch.cmd_id) is watch and n != watch.last:
            watch.last = n
            self.socket.send(count_update(watch.cmd_id, watch.kind, n))

    def _cancel_count(self, cmd_id: int) -> None:
        watch = self._counts.pop(cmd_id, None)
        if watch is None:
            return
        if watch.timer is not None:
            watch.timer.stop()
        for off in watch.offs:
            off()


__all__ = ["EntityDataCommands"]

"""ThingsBoard's WebSocket telemetry API, fed by the one live hub (:mod:`tbpanel.live`).

Endpoints
---------
* ``/api/ws/plugins/telemetry?token=JWT`` (legacy): messages
  ``{"tsSubCmds": [...], "historyCmds": [...]}``. Without ``?token=`` the first message must
  carry ``authCmd`` as below (as newer ThingsBoard allows).
* ``/api/ws``: the first message is ``{"authCmd": {"cmdId": 0, "token": JWT}, "cmds": [...]}``
  and must arrive within 10 s; each cmd has a ``type``.

Supported subset
----------------
* ``tsSubCmds`` / ``type: "TIMESERIES"``: ``cmdId, entityType ("DEVICE"), entityId,
  keys ("a,b"; empty = every key), startTs, timeWindow, interval, limit, agg, unsubscribe``.
  Without ``timeWindow``: the latest value of each key first (a key without data is sent as
  ``[now, null]``, as ThingsBoard does), then every newly stored point. With ``timeWindow``:
  the history of ``[startTs, startTs + timeWindow)`` first (``startTs`` defaults to now −
  timeWindow; raw newest-first up to ``limit``, default 100, or aggregated with ``agg`` and
  ``interval``), then every newly stored point (raw, as ThingsBoard pushes).
  ``"unsubscribe": true`` ends the subscription ``cmdId`` (without ``entityId``: all of
  this socket's subscriptions). Sending a ``cmdId`` again replaces its subscription.
* ``historyCmds`` / ``type: "TIMESERIES_HISTORY"``: ``cmdId, entityType, entityId, keys,
  startTs, endTs, interval, limit, agg``; one answer, no subscription.
* ``type: "ALARM_DATA"`` (``/api/ws`` only): ``cmdId, query: {entityFilter?, pageLink}``.
  ``entityFilter``: absent (every alarm the user may see), ``{"type": "singleEntity",
  "singleEntity": {"entityType": "DEVICE", "id"}}`` or ``{"type": "entityList", "entityType":
  "DEVICE", "entityList": [ids]}``. ``pageLink``: ``page, pageSize (10), statusList (ANY |
  ACTIVE | CLEARED | ACK | UNACK, any of), severityList, typeList, startTs, endTs, timeWindow,
  textSearch, sortOrder: {key: {key: createdTime|startTs|severity|…}, direction}`` (times on
  createdTime). First answer ``{"cmdId", "cmdUpdateType": "ALARM_DATA", "data": PageData of
  alarms, "update": null, "errorCode", "errorMsg"}``; then, for every committed change of an
  alarm of the filtered entities, ``{"data": null, "update": [alarm]}`` (also when the change
  makes it leave the filter, so clients can drop it) and, tbpanel's addition, ``"deleted":
  [alarm id]`` for deleted alarms. ``{"type": "ALARM_DATA_UNSUBSCRIBE", "cmdId"}`` ends it.
  No ``latestValues``/entity fields, no propagated alarms.
* Not supported (answered with errorCode 2 and a message, the socket stays open):
  ``attrSubCmds`` / ATTRIBUTES, ENTITY_DATA, notifications, RPC.

Answers have ThingsBoard's shape ``{"subscriptionId", "errorCode", "errorMsg", "data":
{"key": [[ts, "value as string"], ...]}, "latestValues": {"key": ts}}``; pushes carry only
the keys that changed. ``latestValues`` is the newest ts per key in ``data``. Error codes:
1 internal error, 2 bad request (bad JSON, missing or malformed fields, unknown device),
3 unauthorized (another tenant's or customer's device; checked exactly like the REST API).
A message that is not JSON is answered with subscriptionId 0 (ThingsBoard uses 1, which can
collide with a real cmdId). Authentication failures close the socket: 1007 bad token (1011 on
the legacy ``?token=``, as ThingsBoard), 1008 missing ``authCmd`` or none within 10 s, each
with a reason. A socket whose client reads too slowly is closed with 1008 once more than
``MAX_PENDING_POINTS`` points wait for it (ThingsBoard's "Max pending updates limit
reached!"), so it never holds memory or other subscribers back.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import tornado.websocket
from tornado.ioloop import IOLoop

from ..clock import now_ms
from ..alarms import SEVERITIES as ALARM_SEVERITIES
from ..alarms import SEARCH_TO_STATUSES, STATUSES, AlarmQuery
from ..alarms import SORT as ALARM_SORT
from ..errors import EntityError, NotFound, PermissionDenied
from ..live import LiveHub, Point, Subscription
from ..platform import Platform
from ..store import QueryError
from ..store.payload import TS_MAX
from ..store.values import to_wire_string
from .base import ApiHandler
from .entities import entity_uuid
from .telemetry import AGGS

log = logging.getLogger("tbpanel.api.ws")

NO_ERROR, INTERNAL_ERROR, BAD_REQUEST, UNAUTHORIZED = 0, 1, 2, 3
AUTH_TIMEOUT_S = 10
DEFAULT_LIMIT = 100
MAX_SUBSCRIPTIONS = 1000           # per socket
MAX_PENDING_POINTS = 100_000       # queued for one slow socket before it is closed
CLOSE_POLICY, CLOSE_BAD_DATA, CLOSE_SERVER_ERROR = 1008, 1007, 1011


class CmdError(Exception):
    """A command that gets an error update (the socket stays open)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def update(cmd_id: int, data: dict[str, list[list]]) -> dict:
    """A ThingsBoard TelemetrySubscriptionUpdate with data (keys sorted, as its TreeMap)."""
    data = {k: data[k] for k in sorted(data)}
    return {"subscriptionId": cmd_id, "errorCode": NO_ERROR, "errorMsg": None, "data": data,
            "latestValues": {k: max(p[0] for p in v) for k, v in data.items() if v}}


def error_update(cmd_id: int, code: int, message: str) -> dict:
    return {"subscriptionId": cmd_id, "errorCode": code, "errorMsg": message, "data": None,
            "latestValues": {}}


def _render(series: dict[str, list[tuple[int, int, Any]]]) -> dict[str, list[list]]:
    return {k: [[ts, to_wire_string(t, v)] for ts, t, v in pts] for k, pts in series.items()}


# --------------------------------------------------------------------------- argument parsing
def _int(cmd: dict, name: str, default: int | None = None, *, minimum: int = 0,
         maximum: int = TS_MAX + 1) -> int | None:
    """An integer field; the default bounds fit every timestamp, count and window (and SQLite)."""
    raw = cmd.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise CmdError(BAD_REQUEST, f"'{name}' must be an integer, got {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise CmdError(BAD_REQUEST, f"'{name}' must be an integer, got {raw!r}") from None
    if isinstance(raw, float) and raw != value:
        raise CmdError(BAD_REQUEST, f"'{name}' must be an integer, got {raw!r}")
    if value < minimum:
        raise CmdError(BAD_REQUEST, f"'{name}' must be at least {minimum}, got {value}")
    if value > maximum:
        raise CmdError(BAD_REQUEST, f"'{name}' must be at most {maximum}, got {value}")
    return value


def cmd_id_of(cmd: Any) -> int:
    if not isinstance(cmd, dict):
        raise CmdError(BAD_REQUEST, f"a command must be a JSON object, got {type(cmd).__name__}")
    if "cmdId" not in cmd:
        raise CmdError(BAD_REQUEST, "'cmdId' is required")
    value = _int(cmd, "cmdId", minimum=-(2**31), maximum=2**31 - 1)  # a Java int, as ThingsBoard
    if value is None:
        raise CmdError(BAD_REQUEST, "'cmdId' is required")
    if value < 0:
        raise CmdError(BAD_REQUEST, "Cmd id is negative value!")
    return value


def keys_of(cmd: dict, required: bool) -> list[str] | None:
    raw = cmd.get("keys")
    if isinstance(raw, list):  # tolerated: the v2 API's list form
        keys = [str(k).strip() for k in raw]
    elif isinstance(raw, str):
        keys = [k.strip() for k in raw.split(",")]
    elif raw is None:
        keys = []
    else:
        raise CmdError(BAD_REQUEST, f"'keys' must be a comma-separated string, got {raw!r}")
    keys = list(dict.fromkeys(k for k in keys if k))
    if not keys:
        if required:
            raise CmdError(BAD_REQUEST, "Keys are empty!")
        return None
    return keys


def agg_of(cmd: dict) -> tuple[str, int | None]:
    agg = cmd.get("agg") or "NONE"
    if not isinstance(agg, str) or agg.upper() not in AGGS:
        raise CmdError(BAD_REQUEST, f"'agg' must be one of {', '.join(AGGS)}; got {agg!r}")
    agg = agg.upper()
    interval = _int(cmd, "interval", 0)
    if agg != "NONE" and not interval:
        raise CmdError(BAD_REQUEST, f"'interval' must be a positive number of milliseconds when agg={agg}")
    return agg, interval


@dataclass(eq=False)
class _Watch:
    """One tsSubCmd of one socket: its hub subscription and points held until the first answer."""

    cmd_id: int
    sub: Subscription | None = None
    holding: bool = True
    held: list[Point] = field(default_factory=list)


class TelemetryWebSocket(tornado.websocket.WebSocketHandler):
    """``/api/ws/plugins/telemetry``: the legacy command wrapper (see the module docstring)."""

    legacy = True

    def initialize(self, platform: Platform, live: LiveHub) -> None:
        self.platform = platform
        self.live = live

    # ------------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self.user = None
        self._watches: dict[int, _Watch] = {}
        self._pending: dict[int, dict[str, list[list]]] = {}
        self._pending_points = 0
        self._sending = False
        self._closed = False
        self._auth_timer = None
        token = self.get_query_argument("token", None) if self.legacy else None
        if token:
            try:
                self._authenticate(token)
            except CmdError as e:
                self.close(CLOSE_SERVER_ERROR, e.message)
            return
        self._auth_timer = IOLoop.current().call_later(AUTH_TIMEOUT_S, self._auth_timeout)

    def on_close(self) -> None:
        self._closed = True
        if self._auth_timer is not None:
            IOLoop.current().remove_timeout(self._auth_timer)
            self._auth_timer = None
        self._cancel_all()

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self.user is None and not self._closed:
            self.close(CLOSE_POLICY, f"No authCmd within {AUTH_TIMEOUT_S} s")

    def _authenticate(self, token: Any) -> None:
        """Who this socket acts for, with the same checks as a REST request's JWT."""
        if not isinstance(token, str) or not token:
            raise CmdError(UNAUTHORIZED, "Authentication failed: the token is missing")
        try:
            claims = self.platform.tokens.verify(token)
            user = self.platform.registry.get_user(claims["userId"])
        except NotFound:
            raise CmdError(UNAUTHORIZED, "Authentication failed: the token's user no longer exists") from None
        except EntityError as e:
            raise CmdError(UNAUTHORIZED, f"Authentication failed: {e}") from None
        if not user.enabled:
            raise CmdError(UNAUTHORIZED, "Authentication failed: the user is disabled")
        self.user = user
        if self._auth_timer is not None:
            IOLoop.current().remove_timeout(self._auth_timer)
            self._auth_timer = None

    # ------------------------------------------------------------------------- messages
    async def on_message(self, message: str | bytes) -> None:
        # a coroutine: tornado reads the next message only after this one is handled, so
        # commands are answered in the order they were sent, as in ThingsBoard
        try:
            msg = orjson.loads(message)
            if not isinstance(msg, dict):
                raise ValueError(f"expected a JSON object, got {type(msg).__name__}")
        except (orjson.JSONDecodeError, ValueError) as e:
            if self.user is None:
                self.close(CLOSE_BAD_DATA, "Failed to parse the payload")
            else:
                self._send(error_update(0, BAD_REQUEST, f"Failed to parse the payload: {e}"))
            return
        if self.user is None:
            auth = msg.get("authCmd")
            if not isinstance(auth, dict):
                self.close(CLOSE_POLICY, "Auth cmd is missing")
                return
            try:
                self._authenticate(auth.get("token"))
            except CmdError as e:
                self.close(CLOSE_BAD_DATA, e.message)
                return
        for kind, cmd in self._commands(msg):
            if self._closed:
                return
            await self._run(kind, cmd)

    def _commands(self, msg: dict) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for name, kind in (("tsSubCmds", "TIMESERIES"), ("historyCmds", "TIMESERIES_HISTORY"),
                           ("attrSubCmds", "ATTRIBUTES")):
            cmds = msg.get(name)
            if cmds is None:
                continue
            if not isinstance(cmds, list):
                out.append(("INVALID", f"'{name}' must be a list of commands"))
                continue
            out.extend((kind, c) for c in cmds)
        return out

    async def _run(self, kind: str, cmd: Any) -> None:
        cmd_id = 0
        try:
            if kind == "INVALID":
                raise CmdError(BAD_REQUEST, cmd)
            cmd_id = cmd_id_of(cmd)
            if kind == "TIMESERIES":
                await self._ts_sub(cmd_id, cmd)
            elif kind == "TIMESERIES_HISTORY":
                await self._history(cmd_id, cmd)
            else:
                raise CmdError(BAD_REQUEST, f"{kind} commands are not supported by tbpanel "
                                            "(supported: TIMESERIES, TIMESERIES_HISTORY, ALARM_DATA)")
        except CmdError as e:
            self._send(error_update(cmd_id, e.code, e.message))
        except QueryError as e:
            self._send(error_update(cmd_id, BAD_REQUEST, str(e)))
        except tornado.websocket.WebSocketClosedError:
            pass
        except Exception:
            log.exception("websocket command failed: %r", cmd)
            self._send(error_update(cmd_id, INTERNAL_ERROR, "Failed to fetch data!"))

    # ------------------------------------------------------------------------- commands
    def _device(self, cmd: dict):
        """The device a command names, if this socket's user may read it (as the REST API)."""
        entity_type, entity_id = cmd.get("entityType"), cmd.get("entityId")
        if not entity_id:
            raise CmdError(BAD_REQUEST, "Device id is empty!")
        if not entity_type:
            raise CmdError(BAD_REQUEST, "Entity type is empty!")
        if not isinstance(entity_type, str) or entity_type.upper() != "DEVICE":
            raise CmdError(BAD_REQUEST, f"tbpanel keeps telemetry for DEVICE entities; got entity type {entity_type!r}")
        try:
            device_id = entity_uuid(entity_id, "entityId")
        except Exception as e:
            raise CmdError(BAD_REQUEST, getattr(e, "message", str(e))) from None
        try:
            return self.platform.registry.check_device(self.user, device_id)
        except NotFound:
            raise CmdError(BAD_REQUEST, f"Device with id [{device_id}] is not found") from None
        except PermissionDenied:
            raise CmdError(UNAUTHORIZED, "You don't have permission to perform this operation!") from None
        except EntityError as e:
            raise CmdError(BAD_REQUEST, str(e)) from None

    async def _in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.platform.executor, fn, *args)

    async def _query(self, device_id: str, keys: list[str], start: int, end: int, cmd: dict) -> dict:
        agg, interval = agg_of(cmd)
        limit = _int(cmd, "limit", 0) or DEFAULT_LIMIT
        if start >= end:
            raise CmdError(BAD_REQUEST, f"startTs ({start}) must be less than endTs ({end})")
        store = self.platform.store
        if agg == "NONE":
            series = await self._in_thread(store.query_raw, device_id, keys, start, end, limit, "DESC")
        else:
            series = await self._in_thread(store.query_agg, device_id, keys, start, end, agg, interval)
        return _render(series)

    async def _history(self, cmd_id: int, cmd: dict) -> None:
        device = self._device(cmd)
        keys = keys_of(cmd, required=True)
        start, end = _int(cmd, "startTs"), _int(cmd, "endTs")
        if start is None or end is None:
            raise CmdError(BAD_REQUEST, "'startTs' and 'endTs' are required (epoch ms)")
        self._send(update(cmd_id, await self._query(device.id, keys, start, end, cmd)))

    async def _ts_sub(self, cmd_id: int, cmd: dict) -> None:
        if cmd.get("unsubscribe"):
            if cmd.get("entityId"):
                self._cancel(cmd_id)
            else:
                self._cancel_all()
            return
        device = self._device(cmd)
        keys = keys_of(cmd, required=False)
        window = _int(cmd, "timeWindow", 0)
        if window:
            agg_of(cmd)  # reject a bad agg before subscribing
        self._cancel(cmd_id)
        if len(self._watches) >= MAX_SUBSCRIPTIONS:
            raise CmdError(BAD_REQUEST, f"at most {MAX_SUBSCRIPTIONS} subscriptions per socket")
        # Subscribe before reading, holding pushes: nothing stored after the read is missed,
        # and what the read already returned is not pushed twice.
        watch = _Watch(cmd_id)
        watch.sub = self.live.subscribe([device.id], keys, partial(self._on_points, watch),
                                        tenant=self.user.tenant_id or "", kind="ws")
        self._watches[cmd_id] = watch
        try:
            if window:
                start = _int(cmd, "startTs", 0) or now_ms() - window
                data = await self._query(device.id, keys or await self._in_thread(
                    self.platform.store.keys, device.id), start, start + window, cmd)
            else:
                latest = await self._in_thread(self.platform.store.latest, device.id, keys)
                data = _render({k: [v] for k, v in latest.items()})
                for k in keys or ():
                    data.setdefault(k, [[now_ms(), None]])
        except BaseException:
            self._cancel(cmd_id)
            raise
        if self._watches.get(cmd_id) is not watch:  # replaced or cancelled meanwhile
            return
        self._send(update(cmd_id, data))
        sent = {(k, p[0]) for k, pts in data.items() for p in pts}
        held, watch.held, watch.holding = watch.held, [], False
        fresh = [p for p in held if (p[1], p[2]) not in sent]
        if fresh:
            self._on_points(watch, fresh)

    def _cancel(self, cmd_id: int) -> None:
        watch = self._watches.pop(cmd_id, None)
        if watch is not None:
            self.live.unsubscribe(watch.sub)
        self._pending.pop(cmd_id, None)

    def _cancel_all(self) -> None:
        for cmd_id in list(self._watches):
            self._cancel(cmd_id)

    # ---------------------------------------------------------------------------- pushes
    def _on_points(self, watch: _Watch, points: list[Point]) -> None:
        """From the hub, on the IOLoop: merge into this socket's pending pushes."""
        if self._closed or self._watches.get(watch.cmd_id) is not watch:
            return
        if watch.holding:
            watch.held.extend(points)
            return
        data = self._pending.setdefault(watch.cmd_id, {})
        for _e, key, ts, vtype, value in points:
            data.setdefault(key, []).append([ts, to_wire_string(vtype, value)])
        self._pending_points += len(points)
        if self._pending_points > MAX_PENDING_POINTS:
            log.info("closing a websocket that does not keep up (%d points pending)", self._pending_points)
            self._pending.clear()
            self.close(CLOSE_POLICY, "Max pending updates limit reached!")
            return
        if not self._sending:
            self._sending = True
            IOLoop.current().spawn_callback(self._send_pending)

    async def _send_pending(self) -> None:
        """Send what is pending, one message per subscription, waiting for each write to
        drain; whatever arrives meanwhile is merged into the next round."""
        try:
            while self._pending and not self._closed:
                pending, self._pending = self._pending, {}
                self._pending_points = 0
                for cmd_id, data in pending.items():
                    for pts in data.values():
                        pts.sort(key=lambda p: p[0])
                    await self.write_message(orjson.dumps(update(cmd_id, data)).decode())
        except tornado.websocket.WebSocketClosedError:
            pass
        finally:
            self._sending = False

    def _send(self, msg: dict) -> None:
        if self._closed:
            return
        try:
            sent = self.write_message(orjson.dumps(msg).decode())
        except tornado.websocket.WebSocketClosedError:
            return
        # not awaited: a socket that closes mid-write fails this future, which is expected —
        # retrieve the error so asyncio does not log "Task exception was never retrieved"
        sent.add_done_callback(lambda f: f.cancelled() or f.exception())


class WsApiWebSocket(TelemetryWebSocket):
    """``/api/ws``: ``authCmd`` first, then ``cmds`` with a ``type`` each."""

    legacy = False

    def _commands(self, msg: dict) -> list[tuple[str, Any]]:
        cmds = msg.get("cmds")
        if cmds is None:
            return []
        if not isinstance(cmds, list):
            return [("INVALID", "'cmds' must be a list of commands")]
        out: list[tuple[str, Any]] = []
        for c in cmds:
            kind = c.get("type") if isinstance(c, dict) else None
            if not isinstance(kind, str) or not kind:
                out.append(("MISSING_TYPE", c))
            else:
                out.append((kind.upper(), c))
        return out

    def open(self) -> None:
        super().open()
        self._alarm_subs: dict[int, tuple[AlarmQuery, Any]] = {}
        self._alarm_held: dict[int, list] = {}

    def on_close(self) -> None:
        super().on_close()
        for cmd_id in list(getattr(self, "_alarm_subs", {})):
            self._alarm_cancel(cmd_id)

    async def _run(self, kind: str, cmd: Any) -> None:
        if kind == "MISSING_TYPE":
            cmd_id = cmd.get("cmdId") if isinstance(cmd, dict) else 0
            self._send(error_update(cmd_id if isinstance(cmd_id, int) else 0, BAD_REQUEST,
                                    "'type' is required (TIMESERIES, TIMESERIES_HISTORY or ALARM_DATA)"))
            return
        if kind in ("ALARM_DATA", "ALARM_DATA_UNSUBSCRIBE"):
            cmd_id = 0
            try:
                cmd_id = cmd_id_of(cmd)
                if kind == "ALARM_DATA":
                    await self._alarm_sub(cmd_id, cmd)
                else:
                    self._alarm_cancel(cmd_id)
            except CmdError as e:
                self._send(alarm_update(cmd_id, error=(e.code, e.message)))
            except EntityError as e:
                code = UNAUTHORIZED if isinstance(e, PermissionDenied) else BAD_REQUEST
                self._send(alarm_update(cmd_id, error=(code, str(e))))
            except tornado.websocket.WebSocketClosedError:
                pass
            except Exception:
                log.exception("alarm command failed: %r", cmd)
                self._send(alarm_update(cmd_id, error=(INTERNAL_ERROR, "Failed to fetch data!")))
            return
        await super()._run(kind, cmd)

    # ------------------------------------------------------------------------ ALARM_DATA
    async def _alarm_sub(self, cmd_id: int, cmd: dict) -> None:
        query = cmd.get("query") or {}
        if not isinstance(query, dict):
            raise CmdError(BAD_REQUEST, "'query' must be an object")
        q = alarm_query_of(self.user, query, self._alarm_entities(query))
        self._alarm_cancel(cmd_id)
        loop = IOLoop.current()
        service = self.platform.alarms

        def heard(kind: str, alarm) -> None:  # any thread, after the commit
            loop.add_callback(self._on_alarm, cmd_id, kind, alarm)
        # subscribe before reading: a change committed meanwhile is pushed, never lost
        self._alarm_held[cmd_id] = []
        service.changed.connect(heard)
        loose = dataclasses.replace(q, statuses=[], search_status="ANY", start_time=None, end_time=None)
        self._alarm_subs[cmd_id] = (loose, heard)
        alarms, total = await self._in_thread(service.query, self.user, q)
        pages = (total + q.page_size - 1) // q.page_size
        data = {"data": [a.to_json() for a in alarms], "totalPages": pages, "totalElements": total,
                "hasNext": (q.page + 1) * q.page_size < total}
        if self._alarm_subs.get(cmd_id, (None, None))[1] is not heard:  # replaced or cancelled meanwhile
            return
        self._send(alarm_update(cmd_id, data=data))
        held = self._alarm_held.pop(cmd_id, [])
        for kind, alarm in held:  # changes committed while the page was read, in order
            self._on_alarm(cmd_id, kind, alarm)

    def _alarm_entities(self, query: dict) -> list[str] | None:
        f = query.get("entityFilter")
        if not f:
            return None
        if not isinstance(f, dict):
            raise CmdError(BAD_REQUEST, "'entityFilter' must be an object")
        if f.get("type") == "singleEntity":
            return [self._device(_entity_ref(f.get("singleEntity"))).id]
        if f.get("type") == "entityList":
            if str(f.get("entityType", "")).upper() != "DEVICE" or not isinstance(f.get("entityList"), list):
                raise CmdError(BAD_REQUEST, "entityList filters need entityType DEVICE and an entityList")
            return [self._device({"entityType": "DEVICE", "entityId": i}).id for i in f["entityList"]]
        raise CmdError(BAD_REQUEST, f"entityFilter type {f.get('type')!r} is not supported "
                                    "(supported: singleEntity, entityList of devices)")

    def _on_alarm(self, cmd_id: int, kind: str, alarm) -> None:
        sub = self._alarm_subs.get(cmd_id)
        if sub is None or self._closed:
            return
        if cmd_id in self._alarm_held:  # the first answer is not out yet
            self._alarm_held[cmd_id].append((kind, alarm))
            return
        if alarm.tenant_id != self.user.tenant_id or not self.platform.alarms.may_see(self.user, alarm):
            return
        loose = sub[0]  # the filter without status and time: a change that moves an alarm out
        if not loose.matches(alarm):  # of the status filter is still announced, so clients drop it
            return
        if kind == "DELETED":
            self._send(alarm_update(cmd_id, deleted=[alarm.to_json()["id"]]))
        else:
            self._send(alarm_update(cmd_id, update=[alarm.to_json()]))

    def _alarm_cancel(self, cmd_id: int) -> None:
        sub = self._alarm_subs.pop(cmd_id, None)
        self._alarm_held.pop(cmd_id, None)
        if sub is not None:
            self.platform.alarms.changed.disconnect(sub[1])


def _entity_ref(ref: Any) -> dict:
    if not isinstance(ref, dict):
        raise CmdError(BAD_REQUEST, "'singleEntity' must be {\"entityType\": \"DEVICE\", \"id\": ...}")
    return {"entityType": ref.get("entityType"), "entityId": ref.get("id")}


def _list(link: dict, name: str) -> list:
    value = link.get(name) or []
    if not isinstance(value, list):
        raise CmdError(BAD_REQUEST, f"'{name}' must be a list")
    return value


def alarm_query_of(user, query: dict, originators: list[str] | None) -> AlarmQuery:
    """ThingsBoard's AlarmDataQuery ``pageLink`` → :class:`AlarmQuery` (the documented subset)."""
    if not isinstance(query, dict):
        raise CmdError(BAD_REQUEST, "'query' must be an object")
    link = query.get("pageLink") or {}
    if not isinstance(link, dict):
        raise CmdError(BAD_REQUEST, "'pageLink' must be an object")
    page_size = _int(link, "pageSize", 10, minimum=1, maximum=10_000)  # as the REST API
    page = _int(link, "page", 0, maximum=2**31 - 1)
    statuses: set[str] = set()
    for s in _list(link, "statusList"):
        if not isinstance(s, str) or s.upper() not in SEARCH_TO_STATUSES:
            raise CmdError(BAD_REQUEST, f"statusList items must be one of {', '.join(SEARCH_TO_STATUSES)}, got {s!r}")
        statuses |= set(SEARCH_TO_STATUSES[s.upper()])
    severities = []
    for s in _list(link, "severityList"):
        if not isinstance(s, str) or s.upper() not in ALARM_SEVERITIES:
            raise CmdError(BAD_REQUEST, f"severityList items must be one of {', '.join(ALARM_SEVERITIES)}, got {s!r}")
        severities.append(s.upper())
    types = link.get("typeList") or []
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise CmdError(BAD_REQUEST, "'typeList' must be a list of strings")
    window = _int(link, "timeWindow", 0)
    start = _int(link, "startTs") or (now_ms() - window if window else None)
    end = _int(link, "endTs")
    order = link.get("sortOrder") or {}
    sort_key = (order.get("key") or {}) if isinstance(order, dict) else None
    key = (sort_key.get("key") if isinstance(sort_key, dict) else None) or "createdTime"
    direction = (order.get("direction") if isinstance(order, dict) else None) or "DESC"
    if (not isinstance(sort_key, dict) or not isinstance(key, str) or key not in ALARM_SORT
            or not isinstance(direction, str) or direction.upper() not in ("ASC", "DESC")):
        raise CmdError(BAD_REQUEST, "sortOrder must be {\"key\": {\"key\": one of " + ", ".join(ALARM_SORT)
                       + "}, \"direction\": ASC or DESC}")
    text = link.get("textSearch")
    if text is not None and not isinstance(text, str):
        raise CmdError(BAD_REQUEST, "'textSearch' must be a string")
    return AlarmQuery(user.tenant_id, originators=originators,
                      statuses=[s for s in STATUSES if s in statuses] if statuses and statuses != set(STATUSES) else [],
                      severities=severities, types=list(types), start_time=start, end_time=end,
                      text=text or None, sort_property=key, sort_order=direction.upper(), page=page, page_size=page_size)


def alarm_update(cmd_id: int, *, data: dict | None = None, update: list | None = None,
                 deleted: list | None = None, error: tuple[int, str] | None = None) -> dict:
    """ThingsBoard's AlarmDataUpdate (``deleted``: tbpanel's addition for removed alarms)."""
    out = {"cmdId": cmd_id, "cmdUpdateType": "ALARM_DATA", "data": data, "update": update,
           "errorCode": error[0] if error else NO_ERROR, "errorMsg": error[1] if error else None,
           "allowedEntities": None, "totalEntities": None}
    if deleted is not None:
        out["deleted"] = deleted
    return out


class LiveStatsHandler(ApiHandler):
    """``GET /api/tbpanel/live/stats`` (tenant admins): the tenant's live subscriptions.

    tbpanel's own endpoint: lets tests and operators see that closed sockets and pages leave
    nothing behind. Counts are per tenant, so they reveal nothing about other tenants.
    """

    def initialize(self, platform: Platform, live: LiveHub) -> None:  # type: ignore[override]
        super().initialize(platform)
        self.live = live

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, "TENANT_ADMIN")
        self.write_json(self.live.stats(user.tenant_id))


def websocket_patterns(platform: Platform, live: LiveHub) -> list[tuple]:
    p = {"platform": platform, "live": live}
    return [
        (r"/api/ws/plugins/telemetry/?", TelemetryWebSocket, p),
        (r"/api/ws/?", WsApiWebSocket, p),
        (r"/api/tbpanel/live/stats/?", LiveStatsHandler, p),
    ]

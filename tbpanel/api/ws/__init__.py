"""ThingsBoard's WebSocket API: telemetry fed by the one live hub (:mod:`tbpanel.live`), and alarms.

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
* ``type: "ENTITY_DATA"`` (``/api/ws`` only): ``cmdId, query`` (an EntityDataQuery, as
  ``POST /api/entitiesQuery/find``), ``latestCmd: {keys: [EntityKey]}``, ``tsCmd: {keys,
  startTs, timeWindow, interval, limit, agg}``, ``historyCmd: {keys, startTs, endTs, interval,
  limit, agg}``. First ``{"cmdId", "cmdUpdateType": "ENTITY_DATA", "data": PageData of
  EntityData (latest of the query's and latestCmd's keys; ``timeseries`` of historyCmd/tsCmd),
  "update": null, "errorCode", "errorMsg"}``; then ``{"data": null, "update": [{"entityId",
  "latest": {keyType: {key: {ts, value}}}, "timeseries": {key: [{ts, value}]}}]}`` for every
  committed telemetry point or attribute change of the page's entities.
  ``ENTITY_COUNT`` (``query``: an EntityCountQuery) → ``{"cmdId", "cmdUpdateType":
  "COUNT_DATA", "count"}`` and ``ALARM_COUNT`` (an AlarmCountQuery) → ``"ALARM_COUNT_DATA"``,
  then the new count whenever it changes. ``ENTITY_DATA_UNSUBSCRIBE``,
  ``ENTITY_COUNT_UNSUBSCRIBE``, ``ALARM_COUNT_UNSUBSCRIBE`` end them (see ``entity_data.py``).
* ``attrSubCmds`` / ``type: "ATTRIBUTES"`` (both endpoints): ``cmdId, entityType ("DEVICE"),
  entityId, scope (CLIENT_SCOPE | SHARED_SCOPE | SERVER_SCOPE; absent: every scope), keys
  ("a,b"; empty = every key), unsubscribe``. First the current value of each existing key
  (``[[lastUpdateTs, "value"]]``), then every committed save, a deleted key as ``[[0, ""]]``
  (see ``attributes.py``). Customer users subscribe to their own customer's devices only.
* Not supported (answered with errorCode 2 and a message, the socket stays open):
  notifications, RPC.

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

Modules
-------
``protocol.py`` the codes, message shapes and command-reading functions both endpoints share;
``sockets.py`` the two endpoints (authentication, the message loop, dispatch);
``telemetry.py`` TIMESERIES / TIMESERIES_HISTORY; ``attributes.py`` ATTRIBUTES; ``alarms.py`` ALARM_DATA and its pageLink;
``entity_data.py`` ENTITY_DATA, ENTITY_COUNT and ALARM_COUNT (the query is :mod:`tbpanel.queries`).
"""

from __future__ import annotations

from ...live import LiveHub
from ...platform import Platform
from ..base import Route
from .sockets import TelemetryWebSocket, WsApiWebSocket

__all__ = ["TelemetryWebSocket", "WsApiWebSocket", "websocket_patterns"]


def websocket_patterns(platform: Platform, live: LiveHub) -> list[Route]:
    """The two WebSocket routes (the live stats route is :mod:`tbpanel.api.live_stats`)."""
    p = {"platform": platform, "live": live}
    return [
        (r"/api/ws/plugins/telemetry/?", TelemetryWebSocket, p),
        (r"/api/ws/?", WsApiWebSocket, p),
    ]

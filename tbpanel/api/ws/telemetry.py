"""ThingsBoard's telemetry commands on a WebSocket: ``TIMESERIES`` subscriptions (``tsSubCmds``)
and ``TIMESERIES_HISTORY`` reads (``historyCmds``), fed by the one live hub (:mod:`tbpanel.live`).

A subscription subscribes to the hub *before* it reads, holding the pushes until its first
answer is out: nothing stored after the read is missed, and what the read returned is not
pushed twice. Pushes arrive on the IOLoop and are merged per subscription while a write is
draining, so a slow client gets fewer, larger messages; past ``MAX_PENDING_POINTS`` waiting
points the socket is closed (ThingsBoard's "Max pending updates limit reached!") so it never
holds memory or other subscribers back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import tornado.websocket
from tornado.ioloop import IOLoop

from ...clock import now_ms
from ...entities import User
from ...live import LiveHub, Subscription
from ...platform import Platform
from ...store.validate import Point
from ...store.values import to_wire_string
from ..base import in_pool
from .protocol import (
    BAD_REQUEST,
    CLOSE_POLICY,
    CmdError,
    Connection,
    Data,
    agg_of,
    device_of,
    int_field,
    keys_of,
    render,
    update,
)

log = logging.getLogger("tbpanel.api.ws")

DEFAULT_LIMIT = 100
MAX_SUBSCRIPTIONS = 1000  # per socket
MAX_PENDING_POINTS = 100_000  # queued for one slow socket before it is closed


@dataclass(eq=False)
class _Watch:
    """One tsSubCmd of one socket: its hub subscription and points held until the first answer."""

    cmd_id: int
    sub: Subscription | None = None
    holding: bool = True
    held: list[Point] = field(default_factory=list)


class TelemetryCommands:
    """The telemetry commands of one authenticated socket, and the pushes of its subscriptions."""

    KINDS = ("TIMESERIES", "TIMESERIES_HISTORY")

    def __init__(self, socket: Connection, platform: Platform, live: LiveHub, user: User) -> None:
        self.socket = socket
        self.platform = platform
        self.live = live
        self.user = user
        self._watches: dict[int, _Watch] = {}
        self._pending: dict[int, Data] = {}
        self._pending_points = 0
        self._sending = False

    async def run(self, kind: str, cmd_id: int, cmd: dict[str, Any]) -> None:
        """One command of :attr:`KINDS` (errors propagate to the socket, which answers them)."""
        if kind == "TIMESERIES":
            await self._subscribe(cmd_id, cmd)
        else:
            await self._history(cmd_id, cmd)

    def close(self) -> None:
        """The socket closed: end every subscription."""
        self._cancel_all()

    # ------------------------------------------------------------------------- commands
    async def _query(self, device_id: str, keys: list[str], start: int, end: int, cmd: dict[str, Any]) -> Data:
        agg, interval = agg_of(cmd)
        limit = int_field(cmd, "limit", 0) or DEFAULT_LIMIT
        if start >= end:
            raise CmdError(BAD_REQUEST, f"startTs ({start}) must be less than endTs ({end})")
        store = self.platform.store
        if agg == "NONE":
            series = await in_pool(self.platform, store.query_raw, device_id, keys, start, end, limit, "DESC")
        else:
            series = await in_pool(self.platform, store.query_agg, device_id, keys, start, end, agg, interval)
        return render(series)

    async def _history(self, cmd_id: int, cmd: dict[str, Any]) -> None:
        device = device_of(self.platform.registry, self.user, cmd)
        keys = keys_of(cmd, required=True)
        start, end = int_field(cmd, "startTs"), int_field(cmd, "endTs")
        if start is None or end is None:
            raise CmdError(BAD_REQUEST, "'startTs' and 'endTs' are required (epoch ms)")
        self.socket.send(update(cmd_id, await self._query(device.id, keys, start, end, cmd)))

    async def _subscribe(self, cmd_id: int, cmd: dict[str, Any]) -> None:
        if cmd.get("unsubscribe"):
            if cmd.get("entityId"):
                self._cancel(cmd_id)
            else:
                self._cancel_all()
            return
        device = device_of(self.platform.registry, self.user, cmd)
        keys = keys_of(cmd, required=False)
        window = int_field(cmd, "timeWindow", 0)
        if window:
            agg_of(cmd)  # reject a bad agg before subscribing
        self._cancel(cmd_id)
        if len(self._watches) >= MAX_SUBSCRIPTIONS:
            raise CmdError(BAD_REQUEST, f"at most {MAX_SUBSCRIPTIONS} subscriptions per socket")
        # Subscribe before reading, holding pushes: nothing stored after the read is missed,
        # and what the read already returned is not pushed twice.
        watch = _Watch(cmd_id)
        watch.sub = self.live.subscribe(
            [device.id], keys, partial(self._on_points, watch), tenant=self.user.tenant_id or "", kind="ws"
        )
        self._watches[cmd_id] = watch
        try:
            if window:
                start = int_field(cmd, "startTs", 0) or now_ms() - window
                wanted = keys
                if not wanted:  # every key the device has
                    wanted = await in_pool(self.platform, self.platform.store.keys, device.id)
                data = await self._query(device.id, wanted, start, start + window, cmd)
            else:
                latest = await in_pool(self.platform, self.platform.store.latest, device.id, keys)
                data = render({k: [v] for k, v in latest.items()})
                for k in keys or ():
                    data.setdefault(k, [[now_ms(), None]])
        except BaseException:
            self._cancel(cmd_id)
            raise
        if self._watches.get(cmd_id) is not watch:  # replaced or cancelled meanwhile
            return
        self.socket.send(update(cmd_id, data))
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
        if self.socket.closed or self._watches.get(watch.cmd_id) is not watch:
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
            self.socket.close(CLOSE_POLICY, "Max pending updates limit reached!")
            return
        if not self._sending:
            self._sending = True
            IOLoop.current().spawn_callback(self._send_pending)

    async def _send_pending(self) -> None:
        """Send what is pending, one message per subscription, waiting for each write to
        drain; whatever arrives meanwhile is merged into the next round."""
        try:
            while self._pending and not self.socket.closed:
                pending, self._pending = self._pending, {}
                self._pending_points = 0
                for cmd_id, data in pending.items():
                    for pts in data.values():
                        pts.sort(key=lambda p: p[0])
                    await self.socket.write_message(orjson.dumps(update(cmd_id, data)).decode())
        except tornado.websocket.WebSocketClosedError:
            pass
        finally:
            self._sending = False

"""ThingsBoard's attribute subscriptions on a WebSocket: legacy ``attrSubCmds`` and the
``/api/ws`` cmd type ``ATTRIBUTES`` — ``{cmdId, entityType, entityId, scope, keys,
unsubscribe}`` — in the telemetry update shape.

The first answer is the current value of each asked key that exists (``[[lastUpdateTs,
"value"]]``; without ``keys`` every key, without ``scope`` every scope, the newest when a key
is in several); then every committed save of those keys, and a deleted key as ``[[0, ""]]``
(what ThingsBoard pushes for a deletion). Reading is checked as the REST API checks it
(:func:`~tbpanel.entities.access.require_attribute_access` through ``device_of``): a customer
user subscribes only to its own customer's devices.

A socket has one listener on ``registry.attributes_changed`` while it has attribute
subscriptions. Like ``telemetry.py``, a subscription listens before it reads, holding what
commits meanwhile until the first answer is out; what that answer already carried (same key
and lastUpdateTs) is not pushed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tornado.ioloop import IOLoop

from ...entities import User
from ...entities.attributes import ATTRIBUTE_SCOPES, AttributeChange
from ...platform import Platform
from ..base import in_pool
from .entity_data import attribute_string
from .protocol import BAD_REQUEST, CmdError, Connection, Data, device_of, keys_of, update
from .telemetry import MAX_SUBSCRIPTIONS


@dataclass(eq=False)
class _AttrWatch:
    """One attribute subscription: what it watches and the changes held until its first answer."""

    cmd_id: int
    device_id: str
    scope: str | None
    keys: frozenset[str] | None
    holding: bool = True
    held: list[AttributeChange] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # key -> lastUpdateTs already sent


def scope_of(cmd: dict[str, Any]) -> str | None:
    """``scope`` of a command: one of the three, or absent/empty for every scope."""
    raw = cmd.get("scope")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or raw.upper() not in ATTRIBUTE_SCOPES:
        raise CmdError(BAD_REQUEST, f"'scope' must be one of {', '.join(ATTRIBUTE_SCOPES)}, got {raw!r}")
    return raw.upper()


class AttributeCommands:
    """The attribute subscriptions of one authenticated socket and their pushes."""

    KINDS = ("ATTRIBUTES",)

    def __init__(self, socket: Connection, platform: Platform, user: User) -> None:
        self.socket = socket
        self.platform = platform
        self.user = user
        self._watches: dict[int, _AttrWatch] = {}
        self._devices: frozenset[str] = frozenset()  # read by the committing thread
        self._off: Any = None
        self._loop: IOLoop | None = None

    async def run(self, kind: str, cmd_id: int, cmd: dict[str, Any]) -> None:
        """One ATTRIBUTES command (errors propagate to the socket, which answers them)."""
        if cmd.get("unsubscribe"):
            if cmd.get("entityId"):
                self._cancel(cmd_id)
            else:
                for other in list(self._watches):
                    self._cancel(other)
            return
        device = device_of(self.platform.registry, self.user, cmd)
        scope = scope_of(cmd)
        keys = keys_of(cmd, required=False)
        self._cancel(cmd_id)
        if len(self._watches) >= MAX_SUBSCRIPTIONS:
            raise CmdError(BAD_REQUEST, f"at most {MAX_SUBSCRIPTIONS} subscriptions per socket")
        watch = _AttrWatch(cmd_id, device.id, scope, frozenset(keys) if keys else None)
        self._watches[cmd_id] = watch
        self._listen()
        try:
            attrs = await in_pool(self.platform, self.platform.registry.get_attributes, device.id, scope, keys)
        except BaseException:
            self._cancel(cmd_id)
            raise
        if self._watches.get(cmd_id) is not watch:  # replaced or cancelled meanwhile
            return
        newest: dict[str, dict[str, Any]] = {}
        for a in attrs:
            if a["key"] not in newest or a["lastUpdateTs"] > newest[a["key"]]["lastUpdateTs"]:
                newest[a["key"]] = a
        data: Data = {k: [[a["lastUpdateTs"], attribute_string(a["value"])]] for k, a in newest.items()}
        watch.sent = {k: a["lastUpdateTs"] for k, a in newest.items()}
        self.socket.send(update(cmd_id, data))
        held, watch.held, watch.holding = watch.held, [], False
        for change in held:
            self._on_change(change, only=watch)

    def close(self) -> None:
        """The socket closed: end every subscription and the listener."""
        self._watches.clear()
        self._devices = frozenset()
        if self._off is not None:
            self._off()
            self._off = None

    # ------------------------------------------------------------------------ internals
    def _listen(self) -> None:
        self._devices = frozenset(w.device_id for w in self._watches.values())
        if self._off is None:
            loop = self._loop = IOLoop.current()

            def heard(change: AttributeChange) -> None:  # the committing thread, after the commit
                if change.entity_id in self._devices:
                    loop.add_callback(self._on_change, change)

            self._off = self.platform.registry.attributes_changed.connect(heard)

    def _cancel(self, cmd_id: int) -> None:
        if self._watches.pop(cmd_id, None) is not None:
            self._devices = frozenset(w.device_id for w in self._watches.values())
            if not self._watches and self._off is not None:
                self._off()
                self._off = None

    def _on_change(self, change: AttributeChange, only: _AttrWatch | None = None) -> None:
        """On the IOLoop: push the change to each subscription of its device, scope and keys."""
        if self.socket.closed:
            return
        for watch in [only] if only is not None else list(self._watches.values()):
            if self._watches.get(watch.cmd_id) is not watch or watch.device_id != change.entity_id:
                continue
            if watch.scope is not None and watch.scope != change.scope:
                continue
            if watch.holding:
                watch.held.append(change)
                continue
            data: Data = {}
            for v in change.values:
                key, ts = v["key"], v["lastUpdateTs"]
                if (watch.keys is None or key in watch.keys) and watch.sent.get(key, -1) < ts:
                    data[key] = [[ts, attribute_string(v["value"])]]
                    watch.sent[key] = ts
            for key in change.deleted:
                if watch.keys is None or key in watch.keys:
                    data[key] = [[0, ""]]
                    watch.sent.pop(key, None)
            if data:
                self.socket.send(update(watch.cmd_id, data))

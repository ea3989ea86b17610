"""Attributes over MQTT: device requests, gateway requests and shared-attribute pushes.

* ``v1/devices/me/attributes/request/{n}`` (``v2/a/req/{n}``) ``{"clientKeys": "a,b",
  "sharedKeys": "c"}`` → ``.../attributes/response/{n}`` ``{"client": {..}, "shared": {..}}``
  (no keys: every client and shared attribute; never SERVER_SCOPE).
* ``v1/gateway/attributes/request`` ``{"id", "device", "client": bool, "key" | "keys"}`` →
  ``v1/gateway/attributes/response`` ``{"id", "device", "value"}`` for one attribute found,
  ``{"id", "device", "values": {..}}`` for several (ThingsBoard's shape). ``client`` false (the
  default) reads SHARED_SCOPE.
* Every committed SHARED_SCOPE change goes to each session of the device that subscribed to
  ``v1/devices/me/attributes`` (or ``v2/a``) as ``{"key": value}`` or ``{"deleted": [keys]}``,
  and to each gateway session that has spoken for the device, subscribed to
  ``v1/gateway/attributes``, as ``{"device": name, "data": {...}}``. Pushes are QoS 0.
* A gateway reads (and hears) only devices it may act for (``access.gateway_may_act_for``):
  those it created, and those of its own owner — a customer's gateway never another customer's.

:class:`AttributePushes` is the transport's one listener on ``registry.attributes_changed``
(not one per session): the committing thread only looks the device up in a dict and, when a
session of it is connected, schedules the delivery on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

import orjson

from ..entities.access import gateway_may_act_for
from ..entities.attributes import AttributeChange
from ..entities.device_attributes import key_list, request_attributes, shared_update, wanted_scopes
from ..store.payload import PayloadError
from .mqtt_topics import DEVICE_ATTRIBUTES

GATEWAY_ATTRIBUTES = "v1/gateway/attributes"
GATEWAY_ATTRIBUTE_REQUEST = "v1/gateway/attributes/request"
GATEWAY_ATTRIBUTE_RESPONSE = "v1/gateway/attributes/response"


class PushTarget(Protocol):
    """What a push needs of a session: publish ``payload`` on ``canonical`` if subscribed."""

    def push(self, canonical: str, payload: bytes) -> None: ...


# --------------------------------------------------------------------------- requests
def parse_request(request: Any) -> dict[str, list[str] | None]:
    """A device's ``attributes/request`` body → the scopes and keys it asks for (an empty
    body asks for everything); PayloadError for anything but such an object."""
    if request is None:
        request = {}
    if not isinstance(request, dict):
        raise PayloadError('attribute request must be an object {"clientKeys": "a,b", "sharedKeys": "c"}')
    try:
        return wanted_scopes(
            key_list(request.get("clientKeys"), "clientKeys"), key_list(request.get("sharedKeys"), "sharedKeys")
        )
    except ValueError as exc:
        raise PayloadError(str(exc)) from None


def answer_request(registry: Any, device_id: str, wanted: dict[str, list[str] | None]) -> bytes:
    """The response body of a device request (blocking: run it off the loop)."""
    return orjson.dumps(request_attributes(registry, device_id, wanted))


def parse_gateway_request(request: Any) -> tuple[Any, str, str, list[str]]:
    """``{"id", "device", "client", "key" | "keys"}`` → (id, device name, scope, keys)."""
    if not isinstance(request, dict):
        raise PayloadError('gateway attribute request must be an object {"id", "device", "client", "key"|"keys"}')
    name = request.get("device")
    if not isinstance(name, str) or not name.strip():
        raise PayloadError("gateway attribute request needs 'device' (the device name)")
    request_id = request.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
        raise PayloadError("gateway attribute request needs 'id' (a number)")
    client = request.get("client", False)
    if not isinstance(client, bool):
        raise PayloadError("'client' must be true (client attributes) or false (shared attributes)")
    raw = request["keys"] if "keys" in request else request.get("key")
    try:
        keys = key_list(raw, "keys" if "keys" in request else "key")
    except ValueError as exc:
        raise PayloadError(str(exc)) from None
    if not keys:
        raise PayloadError("gateway attribute request needs 'key' or 'keys'")
    return request_id, name.strip(), "CLIENT_SCOPE" if client else "SHARED_SCOPE", keys


def gateway_may_read(registry: Any, gateway_id: str, device_id: str) -> bool:
    """Whether the gateway may read the device's attributes (``access.gateway_may_act_for``; blocking)."""
    return gateway_may_act_for(registry.get_device(gateway_id), registry.get_device(device_id))


def gateway_answer(
    registry: Any, gateway_id: str, request_id: Any, name: str, device_id: str, scope: str, keys: list[str]
) -> bytes:
    """The ``v1/gateway/attributes/response`` body (blocking); PayloadError for a device the
    gateway may not act for (another customer's)."""
    if not gateway_may_read(registry, gateway_id, device_id):
        raise PayloadError(f"device {name!r} is not a device this gateway may read")
    attrs = registry.get_attributes(device_id, scope, keys)
    body: dict[str, Any] = {"id": request_id, "device": name}
    if len(attrs) == 1:
        body["value"] = attrs[0]["value"]
    elif attrs:
        body["values"] = {a["key"]: a["value"] for a in attrs}
    return orjson.dumps(body)


# --------------------------------------------------------------------------- pushes
class AttributePushes:
    """Shared-attribute changes → the connected sessions of each device and its gateways."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._devices: dict[str, set[PushTarget]] = {}  # device id -> its own sessions
        self._gateways: dict[str, dict[PushTarget, str]] = {}  # sub-device id -> gateway session -> name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._off: Any = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen to committed attribute changes, delivering on ``loop``."""
        if self._off is None:
            self._loop = loop
            self._off = self.registry.attributes_changed.connect(self._heard)

    def close(self) -> None:
        if self._off is not None:
            self._off()
            self._off = None

    def add(self, device_id: str, session: PushTarget) -> None:
        self._devices.setdefault(device_id, set()).add(session)

    def add_gateway_device(self, device_id: str, name: str, session: PushTarget) -> None:
        """``session`` (a gateway) speaks for ``device_id`` under ``name`` from now on."""
        self._gateways.setdefault(device_id, {})[session] = name

    def remove(self, session: PushTarget, device_ids: Iterable[str]) -> None:
        """The session ended: forget it for its device and the gateway devices it spoke for."""
        for device_id in device_ids:
            own = self._devices.get(device_id)
            if own is not None:
                own.discard(session)
                if not own:
                    del self._devices[device_id]
            gateways = self._gateways.get(device_id)
            if gateways is not None:
                gateways.pop(session, None)
                if not gateways:
                    del self._gateways[device_id]

    def _heard(self, change: AttributeChange) -> None:
        """The committing thread: only a dict lookup unless a session of the device is connected."""
        if change.scope != "SHARED_SCOPE" or self._loop is None:
            return
        if change.entity_id in self._devices or change.entity_id in self._gateways:
            try:
                self._loop.call_soon_threadsafe(self._deliver, change)
            except RuntimeError:  # the loop has closed (shutdown)
                pass

    def _deliver(self, change: AttributeChange) -> None:
        """On the loop: publish to every subscribed session of the device and its gateways."""
        body = shared_update(change)
        if body is None:
            return
        sessions = list(self._devices.get(change.entity_id, ()))
        if sessions:
            payload = orjson.dumps(body)
            for session in sessions:
                session.push(DEVICE_ATTRIBUTES, payload)
        for session, name in list(self._gateways.get(change.entity_id, {}).items()):
            session.push(GATEWAY_ATTRIBUTES, orjson.dumps({"device": name, "data": body}))

"""CoAP device transport (aiocoap, UDP only): ThingsBoard's CoAP device API.

- ``POST /api/v1/{token}/telemetry`` and ``/attributes``: through the same payload rules and
  durable write path as HTTP and MQTT: 2.01 Created only once the data is on disk, 4.00 with
  the reason for a bad payload, 4.13 over the payload limit or the points-per-message limit
  (4.00 over the keys-per-device limit, see :mod:`tbpanel.store.limits`).
- ``GET /api/v1/{token}/attributes?clientKeys=a,b&sharedKeys=c`` → ``{"client": {..},
  "shared": {..}}``; the same GET with Observe=0 (no keys needed) answers the shared attributes
  and then notifies every shared change as ``{"key": value}``, deletions as ``{"deleted": [..]}``.
- ``GET /api/v1/{token}/rpc`` with Observe=0: the device's RPC session; each server → device
  request is one notification ``{"id", "method", "params"}``. The answer is
  ``POST /api/v1/{token}/rpc/{id}`` (2.04, 4.04 when no request of this device waits under that
  id); a device → server request is ``POST /api/v1/{token}/rpc`` (2.05 with the answer).

4.01 for an unknown token, 4.04 for any other path, 4.05 for a wrong method. A datagram whose
text options (Uri-Path, Uri-Query) are not UTF-8 gets 4.00 and one DEBUG line (aiocoap would
log an ERROR traceback for every such datagram and answer nothing).

Both observations use one mechanism, :class:`_Observation`: a queue of notification payloads
that the observation renders one per notification, in order (aiocoap's own trigger is lossy:
two triggers before a render send one notification), fed from any thread through the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import aiocoap
import orjson
from aiocoap import interfaces, resource

from ..clock import now_ms
from ..entities.attributes import AttributeChange
from ..rpc import RpcRequest
from ..store.limits import LimitExceeded, telemetry_points
from ..store.payload import PayloadError, parse_attributes

log = logging.getLogger("tbpanel.coap")

Code = aiocoap.numbers.codes.Code
JSON = 50  # CoAP content format application/json


def _reply(code: aiocoap.numbers.codes.Code, text: str = "") -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=text.encode(), content_format=0 if text else None)


def _json(data: Any, code: aiocoap.numbers.codes.Code = Code.CONTENT) -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=orjson.dumps(data), content_format=JSON)


def _query(request: aiocoap.Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in request.opt.uri_query:
        name, _, value = item.partition("=")
        out[name] = value
    return out


def _keys(raw: str | None) -> list[str]:
    return [k.strip() for k in (raw or "").split(",") if k.strip()]


class _Observation:
    """One accepted observation: notification payloads queued in order, rendered one by one.

    ``push`` runs on the loop; every payload may carry ``sent`` (called when it is rendered into
    a notification) and ``unsent`` (called instead if the observation ends first)."""

    def __init__(self, servobs: Any, initial: Callable[[], Any]):
        self.servobs = servobs
        self.initial = initial  # async: the first response
        self.started = False
        self.ended = False
        self.queue: deque[tuple[bytes, Callable[[], None] | None, Callable[[], None] | None]] = deque()
        self.on_end: list[Callable[[], None]] = []
        self.loop = asyncio.get_running_loop()

    def push(self, payload: bytes, sent: Callable[[], None] | None = None, unsent: Callable[[], None] | None = None):
        if self.ended:
            if unsent:
                unsent()
            return
        self.queue.append((payload, sent, unsent))
        if len(self.queue) == 1:
            self.servobs.trigger()

    def push_threadsafe(self, payload: bytes) -> None:
        self.loop.call_soon_threadsafe(self.push, payload)

    def next_notification(self) -> aiocoap.Message:
        if not self.queue:  # a render nobody asked for: repeat nothing, say nothing new
            return aiocoap.Message(code=Code.CONTENT, payload=b"", content_format=JSON)
        payload, sent, _ = self.queue.popleft()
        if sent:
            sent()
        if self.queue:
            self.loop.call_soon(self.servobs.trigger)
        return aiocoap.Message(code=Code.CONTENT, payload=payload, content_format=JSON)

    def end(self) -> None:
        self.ended = True
        for off in self.on_end:
            off()
        while self.queue:
            _, _, unsent = self.queue.popleft()
            if unsent:
                unsent()


class _CoapRpcSession:
    """An observation of ``/rpc`` as the device's :class:`~tbpanel.rpc.RpcSession`."""

    def __init__(self, obs: _Observation, service: Any, device_id: str):
        self.obs, self.service, self.device_id = obs, service, device_id

    def send_rpc(self, request: RpcRequest) -> None:  # the RPC service's thread
        self.obs.loop.call_soon_threadsafe(self._push, request)

    def _push(self, request: RpcRequest) -> None:
        rid = request.request_id
        self.obs.push(
            orjson.dumps({"id": rid, "method": request.method, "params": request.params}),
            lambda: self.service.delivered(self.device_id, rid),
            lambda: self.service.undelivered(self.device_id, rid, "the CoAP observation ended"),
        )


class DeviceApi(resource.Resource, interfaces.ObservableResource):
    """The whole CoAP site: one resource that routes on the full URI path."""

    def __init__(self, platform: Any):
        super().__init__()
        self.platform = platform
        self._observations: dict[int, _Observation] = {}  # id(request) -> its observation

    # ------------------------------------------------------------------ observe
    async def add_observation(self, request: aiocoap.Message, serverobservation: Any) -> None:
        path = tuple(request.opt.uri_path)
        if request.code != Code.GET or len(path) != 4 or path[:2] != ("api", "v1"):
            return
        if path[3] not in ("rpc", "attributes"):
            return
        device = self.platform.registry.device_by_token(path[2])
        if device is None:
            return  # not accepted: render answers 4.01
        key = id(request)
        obs = _Observation(serverobservation, lambda: None)
        if path[3] == "rpc":
            service = self.platform.rpc
            obs.on_end.append(service.sessions.announce(device.id, _CoapRpcSession(obs, service, device.id)))
            obs.initial = lambda: self._empty()
        else:

            def heard(change: AttributeChange, device_id: str = device.id) -> None:  # any thread
                if change.entity_id != device_id or change.scope != "SHARED_SCOPE":
                    return
                if change.values:
                    obs.push_threadsafe(orjson.dumps({v["key"]: v["value"] for v in change.values}))
                if change.deleted:
                    obs.push_threadsafe(orjson.dumps({"deleted": change.deleted}))

            obs.on_end.append(self.platform.registry.attributes_changed.connect(heard))
            obs.initial = lambda: self._shared(device.id)

        def ended() -> None:
            self._observations.pop(key, None)
            obs.end()

        self._observations[key] = obs
        serverobservation.accept(ended)

    async def _empty(self) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CONTENT, payload=b"", content_format=JSON)

    async def _shared(self, device_id: str) -> aiocoap.Message:
        attrs = await self._in_pool(self.platform.registry.get_attributes, device_id, "SHARED_SCOPE")
        return _json({a["key"]: a["value"] for a in attrs})

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.platform.executor, fn, *args)

    # ------------------------------------------------------------------ requests
    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        obs = self._observations.get(id(request))
        if obs is not None:
            if obs.started:
                return obs.next_notification()
            obs.started = True
            first: aiocoap.Message = await obs.initial()
            return first
        path = tuple(request.opt.uri_path)
        if path[-1:] == ("claim",):  # claiming: see coap_claiming
            from .coap_claiming import render_claim

            return await render_claim(self.platform, request, path)
        if len(path) == 5 and path[:2] == ("api", "v1") and path[3] == "rpc":
            return await self._rpc_answer(request, path)
        if len(path) != 4 or path[:2] != ("api", "v1") or path[3] not in ("telemetry", "attributes", "rpc"):
            return _reply(Code.NOT_FOUND, "unknown path; use /api/v1/{token}/telemetry, /attributes or /rpc")
        allowed = {"telemetry": (Code.POST,), "attributes": (Code.POST, Code.GET), "rpc": (Code.POST, Code.GET)}
        if request.code not in allowed[path[3]]:
            return _reply(Code.METHOD_NOT_ALLOWED, f"use {' or '.join(str(c.name) for c in allowed[path[3]])}")
        device = self.platform.registry.device_by_token(path[2])
        if device is None:
            log.info("CoAP: refused: unknown access token")
            return _reply(Code.UNAUTHORIZED, "unknown device access token")
        if request.code == Code.GET:
            if path[3] == "rpc":
                return _reply(Code.BAD_REQUEST, "observe /api/v1/{token}/rpc (Observe: 0) to receive RPC requests")
            return await self._attributes(device.id, request)
        body = request.payload
        limit = self.platform.max_body_bytes
        if len(body) > limit:
            return _reply(
                Code.REQUEST_ENTITY_TOO_LARGE, f"payload of {len(body)} bytes exceeds the limit of {limit} bytes"
            )
        if path[3] == "rpc":
            return await self._device_rpc(device.id, body)
        now = now_ms()
        try:
            if not body.strip():
                raise PayloadError("Invalid JSON body: the request body is empty")
            if path[3] == "telemetry":
                rows = telemetry_points(device.id, body, now, self.platform.max_points_per_message)
                if rows:  # the tenant's root chain (tbpanel/rules/ingress.py)
                    await self.platform.rules.ingress.telemetry(device.tenant_id, rows)
            else:
                points = parse_attributes(body, now)
                if points:
                    await self.platform.rules.ingress.attributes(device, points)
        except PayloadError as exc:
            log.info("CoAP device %s: rejected %s: %s", device.id, path[3], exc)
            too_large = isinstance(exc, LimitExceeded) and exc.status == 413  # 4.13, else 4.00
            return _reply(Code.REQUEST_ENTITY_TOO_LARGE if too_large else Code.BAD_REQUEST, str(exc)[:1000])
        return _reply(Code.CREATED)

    async def _attributes(self, device_id: str, request: aiocoap.Message) -> aiocoap.Message:
        """``{"client": {..}, "shared": {..}}`` of the keys asked for (all of a scope when none)."""
        query = _query(request)
        answer: dict[str, dict[str, Any]] = {}
        for field, scope, name in (("clientKeys", "CLIENT_SCOPE", "client"), ("sharedKeys", "SHARED_SCOPE", "shared")):
            keys = _keys(query.get(field))
            attrs = await self._in_pool(self.platform.registry.get_attributes, device_id, scope, keys or None)
            values = {a["key"]: a["value"] for a in attrs}
            if values:
                answer[name] = values
        return _json(answer)

    async def _device_rpc(self, device_id: str, body: bytes) -> aiocoap.Message:
        from ..api.device_rpc import http_session_limits  # the same limits as an HTTP device

        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _reply(Code.BAD_REQUEST, f"Invalid JSON body: {exc}")
        answer = self.platform.rpc.device_request(device_id, request, http_session_limits(self.platform))
        return _json(await self.platform.rules.ingress.rpc_answer(answer, request))

    async def _rpc_answer(self, request: aiocoap.Message, path: tuple[str, ...]) -> aiocoap.Message:
        if request.code != Code.POST:
            return _reply(Code.METHOD_NOT_ALLOWED, "use POST")
        device = self.platform.registry.device_by_token(path[2])
        if device is None:
            return _reply(Code.UNAUTHORIZED, "unknown device access token")
        if not path[4].isdigit() or len(path[4]) > 18:
            return _reply(Code.BAD_REQUEST, f"RPC request id must be a positive integer, got {path[4][:40]!r}")
        body = request.payload
        if len(body) > self.platform.max_body_bytes:
            return _reply(Code.REQUEST_ENTITY_TOO_LARGE, "payload exceeds the limit")
        try:
            answer = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError as exc:
            return _reply(Code.BAD_REQUEST, f"Invalid JSON body: {exc}")
        matched = await asyncio.wrap_future(self.platform.rpc.reply(device.id, int(path[4]), answer))
        if not matched:
            return _reply(Code.NOT_FOUND, f"no two-way RPC request {path[4]} of this device waits for an answer")
        return _reply(Code.CHANGED)


# ---------------------------------------------------------------------- undecodable datagrams
_NOT_UTF8 = b"a text option (Uri-Path, Uri-Query...) is not valid UTF-8"


def bad_request_for(data: bytes) -> bytes | None:
    """The raw 4.00 answer to a CoAP request datagram that could not be decoded: piggybacked on
    an ACK for a confirmable request, a NON for a non-confirmable one; None for anything that is
    not a request (no answer at all)."""
    if len(data) < 4 or data[0] >> 6 != 1:
        return None
    mtype, tkl, code = (data[0] >> 4) & 0x03, data[0] & 0x0F, data[1]
    if mtype > 1 or tkl > 8 or len(data) < 4 + tkl or not 1 <= code <= 31:
        return None
    rtype, mid = (2, data[2:4]) if mtype == 0 else (1, os.urandom(2))
    return bytes([0x40 | rtype << 4 | tkl, 0x80]) + mid + data[4 : 4 + tkl] + b"\xff" + _NOT_UTF8


def _guard_undecodable(context: aiocoap.Context) -> None:
    """Wrap the UDP endpoint's datagram callback: a datagram aiocoap cannot decode as text
    gets 4.00 and one DEBUG line instead of an ERROR traceback from the event loop."""
    for interface in context.request_interfaces:
        endpoint = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        original = getattr(endpoint, "datagram_msg_received", None)
        if endpoint is None or original is None:
            continue

        def guarded(data: bytes, ancdata: Any, flags: int, address: Any, _original=original, _endpoint=endpoint):
            try:
                _original(data, ancdata, flags, address)
            except UnicodeDecodeError:
                log.debug("CoAP %s: 4.00 for a datagram whose text options are not UTF-8", address[:2])
                answer = bad_request_for(data)
                if answer is not None and _endpoint.transport is not None:
                    try:
                        _endpoint.transport.sendmsg(answer, [], 0, address)
                    except OSError as exc:
                        log.debug("CoAP %s: 4.00 not sent: %s", address[:2], exc)

        endpoint.datagram_msg_received = guarded


class CoapTransport:
    """The UDP endpoint; lives on the server's asyncio loop."""

    def __init__(self, platform: Any):
        self.platform = platform
        self.context: aiocoap.Context | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 5683) -> int:
        """Bind explicitly (UDP only); ``port=0`` picks a free port. Returns the port."""
        if port == 0:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.context = await aiocoap.Context.create_server_context(
            DeviceApi(self.platform), bind=(host, port), transports=["udp6"], loggername="tbpanel.coap.aiocoap"
        )
        _guard_undecodable(self.context)
        return port

    async def close(self) -> None:
        if self.context is not None:
            await self.context.shutdown()

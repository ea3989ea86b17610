"""RPC over the HTTP device API: the long poll ``GET /api/v1/{token}/rpc?timeout=ms`` (the
next server → device request as ``{"id", "method", "params"}``, or 408), the answer
``POST /api/v1/{token}/rpc/{id}`` and device → server requests ``POST /api/v1/{token}/rpc``.

A waiting poll is the device's RPC session: it announces the device to the RPC service while
it waits and withdraws when it answers, times out or the client goes away. A request handed
to a poll that has just ended goes back to the service (``undelivered``) and waits for the
next session, so none is lost between two polls.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ..platform import Platform
from ..rpc import RpcRequest
from .base import ApiError, ApiHandler
from .device_attributes import DEFAULT_TIMEOUT_MS, MAX_POLLS_PER_DEVICE, MAX_TIMEOUT_MS

#: the same long-poll rules as the attribute updates poll: no ``timeout`` (or 0) is the
#: default, a longer one is shortened to the maximum (ThingsBoard's ``http.max_request_timeout``)
DEFAULT_POLL_MS, MAX_POLL_MS = DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS
#: open RPC polls per device id (the loop's thread only); more than MAX_POLLS_PER_DEVICE is 429
_open_polls: dict[str, int] = {}


def http_session_limits(platform: Platform) -> dict[str, Any]:
    """``getSessionLimits`` for HTTP and CoAP devices (ThingsBoard's shape, no rate limits)."""
    return {"maxPayloadSize": platform.max_body_bytes, "maxInflightMessages": 1, "rateLimits": {}}


class _PollSession:
    """One waiting poll as an :class:`~tbpanel.rpc.RpcSession`."""

    def __init__(self, platform: Platform, device_id: str):
        self.platform, self.device_id = platform, device_id
        self.loop = asyncio.get_running_loop()
        self.request: asyncio.Future[RpcRequest] = self.loop.create_future()
        self.closed = False
        self.gone = False  # the client went away

    def send_rpc(self, request: RpcRequest) -> None:  # the RPC service's thread
        self.loop.call_soon_threadsafe(self._take, request)

    def _take(self, request: RpcRequest) -> None:
        if self.closed or self.request.done():
            self.platform.rpc.undelivered(self.device_id, request.request_id, "the long poll had ended")
            return
        self.request.set_result(request)

    def end(self) -> None:
        self.closed = self.gone = True
        if not self.request.done():
            self.request.cancel()


class DeviceRpcHandler(ApiHandler):
    """``GET /api/v1/{token}/rpc`` (long poll) and ``POST /api/v1/{token}/rpc`` (device → server)."""

    session: _PollSession | None = None

    async def get(self, token: str) -> None:
        device = self.device_of_token(token)
        timeout_ms = min(self.int_arg("timeout", 0, minimum=0) or DEFAULT_POLL_MS, MAX_POLL_MS)
        if _open_polls.get(device.id, 0) >= MAX_POLLS_PER_DEVICE:
            raise ApiError(429, f"this device already has {MAX_POLLS_PER_DEVICE} RPC long polls open")
        _open_polls[device.id] = _open_polls.get(device.id, 0) + 1
        session = self.session = _PollSession(self.platform, device.id)
        withdraw = self.platform.rpc.sessions.announce(device.id, session)
        try:
            request = await asyncio.wait_for(asyncio.shield(session.request), timeout_ms / 1000)
        except (TimeoutError, asyncio.CancelledError):
            request = None
        finally:
            withdraw()
            session.closed = True
            _open_polls[device.id] -= 1
            if not _open_polls[device.id]:
                del _open_polls[device.id]
        if session.gone:
            if request is not None:
                self.platform.rpc.undelivered(device.id, request.request_id, "the long poll's client went away")
            return
        if request is None:
            raise ApiError(408, f"no RPC request for this device within {timeout_ms} ms")
        self.write_json({"id": request.request_id, "method": request.method, "params": request.params})
        self.platform.rpc.delivered(device.id, request.request_id)

    def on_connection_close(self) -> None:
        if self.session is not None:
            self.session.end()

    async def post(self, token: str) -> None:
        device = self.device_of_token(token)
        body = self.json_body()
        answer = self.platform.rpc.device_request(device.id, body, http_session_limits(self.platform))
        self.write_json(await self.platform.rules.ingress.rpc_answer(answer, body))


class DeviceRpcReplyHandler(ApiHandler):
    """``POST /api/v1/{token}/rpc/{id}``: the device's answer to request ``id``."""

    async def post(self, token: str, request_id: str) -> None:
        device = self.device_of_token(token)
        if not request_id.isdigit() or len(request_id) > 18:
            raise ApiError(400, f"RPC request id must be a positive integer, got {request_id[:40]!r}")
        if len(self.request.body) > self.platform.max_body_bytes:
            raise ApiError(413, f"Payload exceeds the limit of {self.platform.max_body_bytes} bytes")
        try:
            answer = orjson.loads(self.request.body) if self.request.body.strip() else None
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"Invalid JSON body: {exc}") from None
        matched = await asyncio.wrap_future(self.platform.rpc.reply(device.id, int(request_id), answer))
        if not matched:
            raise ApiError(404, f"no two-way RPC request {request_id} of this device waits for an answer")
        self.set_status(200)
        self.finish()

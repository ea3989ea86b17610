"""CoAP device transport (aiocoap, UDP only): ``POST /api/v1/{token}/telemetry`` and ``/attributes``.

ThingsBoard's CoAP device API, through the same payload rules and durable write path as HTTP
and MQTT: 2.01 Created only once the data is on disk, 4.00 with the reason for a bad payload,
4.01 for an unknown token, 4.04 for any other path, 4.13 over the payload limit or the
points-per-message limit (4.00 over the keys-per-device limit, see :mod:`tbpanel.store.limits`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiocoap
from aiocoap import resource

from ..clock import now_ms
from ..store.limits import LimitExceeded, telemetry_points
from ..store.payload import PayloadError, parse_attributes

log = logging.getLogger("tbpanel.coap")


def _reply(code: aiocoap.numbers.codes.Code, text: str = "") -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=text.encode(), content_format=0 if text else None)


class DeviceApi(resource.Resource):
    """The whole CoAP site: one resource that routes on the full URI path."""

    def __init__(self, platform: Any):
        super().__init__()
        self.platform = platform

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        codes = aiocoap.numbers.codes.Code
        path = tuple(request.opt.uri_path)
        if path[-1:] == ("claim",):  # claiming: see coap_claiming
            from .coap_claiming import render_claim

            return await render_claim(self.platform, request, path)
        if len(path) != 4 or path[:2] != ("api", "v1") or path[3] not in ("telemetry", "attributes"):
            return _reply(codes.NOT_FOUND, "unknown path; use /api/v1/{token}/telemetry or /attributes")
        if request.code != codes.POST:
            return _reply(codes.METHOD_NOT_ALLOWED, "use POST")
        device = self.platform.registry.device_by_token(path[2])
        if device is None:
            log.info("CoAP: refused: unknown access token")
            return _reply(codes.UNAUTHORIZED, "unknown device access token")
        body = request.payload
        limit = self.platform.max_body_bytes
        if len(body) > limit:
            return _reply(
                codes.REQUEST_ENTITY_TOO_LARGE, f"payload of {len(body)} bytes exceeds the limit of {limit} bytes"
            )
        now = now_ms()
        try:
            if not body.strip():
                raise PayloadError("Invalid JSON body: the request body is empty")
            if path[3] == "telemetry":
                rows = telemetry_points(device.id, body, now, self.platform.max_points_per_message)
                if rows:
                    await self.platform.store.submit_async(rows)
            else:
                points = parse_attributes(body, now)
                if points:
                    await asyncio.get_running_loop().run_in_executor(
                        self.platform.executor,
                        self.platform.registry.save_attributes,
                        device.id,
                        "CLIENT_SCOPE",
                        points,
                    )
        except PayloadError as exc:
            log.info("CoAP device %s: rejected %s: %s", device.id, path[3], exc)
            too_large = isinstance(exc, LimitExceeded) and exc.status == 413  # 4.13, else 4.00
            return _reply(codes.REQUEST_ENTITY_TOO_LARGE if too_large else codes.BAD_REQUEST, str(exc)[:1000])
        return _reply(codes.CREATED)


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
        return port

    async def close(self) -> None:
        if self.context is not None:
            await self.context.shutdown()

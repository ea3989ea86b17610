"""Claiming over CoAP: ``POST coap://host/api/v1/{token}/claim`` with ``{"secretKey",
"durationMs"}`` (rules in :mod:`tbpanel.entities.claiming`): 2.01 Created once the claim is
stored, 4.00 for a bad payload or a device that already belongs to a customer, 4.01 for an
unknown token, 4.05 for another method, 4.13 over the payload limit."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiocoap

from ..clock import now_ms
from ..entities import claiming
from ..errors import EntityError
from ..store.payload import PayloadError

log = logging.getLogger("tbpanel.coap")


def _reply(code: aiocoap.numbers.codes.Code, text: str = "") -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=text.encode(), content_format=0 if text else None)


async def render_claim(platform: Any, request: aiocoap.Message, path: tuple[str, ...]) -> aiocoap.Message:
    """The answer to a request whose Uri-Path ends in ``claim``."""
    codes = aiocoap.numbers.codes.Code
    if len(path) != 4 or path[:2] != ("api", "v1"):
        return _reply(codes.NOT_FOUND, "unknown path; use /api/v1/{token}/claim")
    token = path[2]
    if request.code != codes.POST:
        return _reply(codes.METHOD_NOT_ALLOWED, "use POST")
    device = platform.registry.device_by_token(token)
    if device is None:
        log.info("CoAP: claim refused: unknown access token")
        return _reply(codes.UNAUTHORIZED, "unknown device access token")
    body = request.payload
    if len(body) > platform.max_body_bytes:
        return _reply(
            codes.REQUEST_ENTITY_TOO_LARGE,
            f"payload of {len(body)} bytes exceeds the limit of {platform.max_body_bytes} bytes",
        )
    try:
        secret, duration = claiming.device_claim_request(body)
        await asyncio.get_running_loop().run_in_executor(
            platform.executor, claiming.register_claim, platform.registry, device.id, secret, duration, now_ms()
        )
    except (PayloadError, EntityError) as exc:
        if isinstance(exc, EntityError) and exc.status >= 500:
            raise
        log.info("CoAP device %s: claim refused: %s", device.id, exc)
        return _reply(codes.BAD_REQUEST, str(exc)[:1000])
    log.info("CoAP device %s: claim registered", device.id)
    return _reply(codes.CREATED)

"""Claiming over MQTT: a device publishes ``{"secretKey", "durationMs"}`` on
``v1/devices/me/claim`` (the rules are in :mod:`tbpanel.entities.claiming`).

The payload is checked when it arrives (malformed JSON or shapes are refused like any bad
payload: v5 PUBACK 0x99, 3.1.1 session closed); the claim is stored before the PUBACK. A claim
by a device that already belongs to a customer is acknowledged and only logged, as ThingsBoard
does: a device that re-sends its claim on every boot must not lose its session over it (HTTP
and CoAP, which can answer per request, say 400 / 4.00).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import now_ms
from ..entities import claiming
from ..errors import Conflict, InvalidInput
from ..store.payload import PayloadError

log = logging.getLogger("tbpanel.mqtt")

CLAIM_TOPIC = "v1/devices/me/claim"


def claim(platform: Any, device_id: str, payload: bytes) -> Callable[[], Awaitable[None]]:
    """Parse now (PayloadError for a bad payload); the returned work stores the claim."""
    try:
        secret, duration = claiming.device_claim_request(payload)
    except InvalidInput as exc:
        raise PayloadError(str(exc)) from None
    now = now_ms()

    async def store() -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                platform.executor, claiming.register_claim, platform.registry, device_id, secret, duration, now
            )
        except Conflict as exc:
            log.info("MQTT device %s: claim ignored: %s", device_id, exc)
            return
        except InvalidInput as exc:
            raise PayloadError(str(exc)) from None
        log.info("MQTT device %s: claim registered", device_id)

    return store

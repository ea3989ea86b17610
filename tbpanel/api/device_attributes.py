"""The HTTP device's shared-attribute long poll: ``GET /api/v1/{token}/attributes/updates?timeout=ms``.

The request waits (on the event loop, holding no thread) for the next committed change of the
device's SHARED_SCOPE attributes and answers it as ThingsBoard does — ``{"key": value, ...}``
for saved keys, ``{"deleted": ["key", ...]}`` for deleted ones — or 408 when ``timeout`` passes
first. A client that hangs up stops the wait at once (its listener is removed). Changes between
two polls are not queued (ThingsBoard's behaviour too): a device reads the current values with
``GET /api/v1/{token}/attributes`` after subscribing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..entities.attributes import AttributeChange
from ..entities.device_attributes import shared_update
from .base import ApiError, ApiHandler

#: ``timeout`` when none is given, and the longest honoured (longer ones are shortened to it,
#: as ThingsBoard's ``http.max_request_timeout``)
DEFAULT_TIMEOUT_MS = 60_000
MAX_TIMEOUT_MS = 300_000
#: open polls one device may hold (each is a listener on every attribute change)
MAX_POLLS_PER_DEVICE = 16

_open_polls: dict[str, int] = {}


class AttributeUpdatesHandler(ApiHandler):
    """Answers the next shared-attribute change of the token's device, or 408 at ``timeout``."""

    _waiter: asyncio.Future[dict[str, Any] | None] | None = None

    def prepare(self) -> None:
        token = self.path_args[0] if self.path_args else ""
        device = self.device_of_token(token)
        self.device = device

    async def get(self, token: str) -> None:
        timeout = self.int_arg("timeout", 0, minimum=0) or DEFAULT_TIMEOUT_MS
        timeout = min(timeout, MAX_TIMEOUT_MS)
        device_id = self.device.id
        if _open_polls.get(device_id, 0) >= MAX_POLLS_PER_DEVICE:
            raise ApiError(429, f"device already has {MAX_POLLS_PER_DEVICE} open attribute update polls (the limit)")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self._waiter = waiter

        def resolve(body: dict[str, Any]) -> None:
            if not waiter.done():
                waiter.set_result(body)

        def heard(change: AttributeChange) -> None:  # the committing thread, after the commit
            if change.entity_id == device_id:
                body = shared_update(change)
                if body is not None:
                    loop.call_soon_threadsafe(resolve, body)

        _open_polls[device_id] = _open_polls.get(device_id, 0) + 1
        off = self.platform.registry.attributes_changed.connect(heard)
        try:
            body = await asyncio.wait_for(waiter, timeout / 1000)
        except TimeoutError:
            raise ApiError(408, f"No shared attribute update within {timeout} ms") from None
        finally:
            off()
            left = _open_polls.get(device_id, 1) - 1
            if left:
                _open_polls[device_id] = left
            else:
                _open_polls.pop(device_id, None)
        if body is None:  # the client hung up: nobody to answer
            return
        self.write_json(body)

    def on_connection_close(self) -> None:
        """The client hung up: stop waiting now (not at the timeout) and drop the listener."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

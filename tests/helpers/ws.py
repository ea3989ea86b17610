"""WebSocket test helpers: read one JSON message with a deadline."""

from __future__ import annotations

import asyncio
import json


async def recv(conn, timeout: float = 20) -> dict:
    """The next message of ``conn`` as JSON; fails if the socket closed or nothing came in time."""
    msg = await asyncio.wait_for(conn.read_message(), timeout)
    assert msg is not None, "socket closed"
    return json.loads(msg)

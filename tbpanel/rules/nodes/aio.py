"""One background asyncio loop for the external nodes whose clients are asyncio-only
(Kafka, RabbitMQ): the engine is synchronous (it runs on the queue's worker thread) and
waits for each send's acknowledgement on this loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new = asyncio.new_event_loop()
            threading.Thread(target=new.run_forever, name="tbpanel-rules-io", daemon=True).start()
            _loop = new
        return _loop


def run(coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Run ``coro`` on the background loop and wait for it (``TimeoutError`` after ``timeout_s``)."""
    fut = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return fut.result(timeout_s)
    except TimeoutError:
        fut.cancel()
        raise TimeoutError(f"no answer within {timeout_s:g} s") from None

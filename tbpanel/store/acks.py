"""Durable-write acknowledgements delivered to an asyncio loop, one wake-up per commit group.

A request handler that awaits ``asyncio.wrap_future(store.submit(points))`` pays, per request,
for a ``concurrent.futures.Future`` (with its lock and condition), the chaining of two futures
and one ``call_soon_threadsafe`` (a write to the loop's self-pipe and a wake-up) when the
writer resolves it. Profiles of small-message HTTP ingest showed about a third of the
server's Python time there. :class:`LoopAcks` instead gets a plain callback from the writer
thread after COMMIT, queues it, and wakes the loop once for everything the same group
committed; the loop then resolves the plain asyncio futures. The guarantee is unchanged: a
future resolves only after the transaction holding its points has committed (and, with
``synchronous=FULL``, been fsynced).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable


class LoopAcks:
    """Resolves asyncio futures of one loop from the store's writer thread, in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[int], int, BaseException | None]] = []
        self._scheduled = False

    def waiter(self) -> tuple[asyncio.Future[int], Callable[[int, BaseException | None], None]]:
        """A future of this loop, and the ``done(count, exc)`` callback that resolves it."""
        fut = self._loop.create_future()
        return fut, lambda count, exc: self._ready_one(fut, count, exc)

    def _ready_one(self, fut: asyncio.Future[int], count: int, exc: BaseException | None) -> None:
        # writer thread: queue, and wake the loop only if no wake-up is pending yet
        with self._lock:
            self._ready.append((fut, count, exc))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _resolve(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for fut, count, exc in ready:
            if fut.done():  # cancelled: the client went away
                continue
            if exc is None:
                fut.set_result(count)
            else:
                fut.set_exception(exc)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopAcks] = weakref.WeakKeyDictionary()
_by_loop_lock = threading.Lock()


def loop_acks(loop: asyncio.AbstractEventLoop | None = None) -> LoopAcks:
    """The :class:`LoopAcks` of ``loop`` (default: the running loop), made on first use."""
    loop = loop or asyncio.get_running_loop()
    acks = _by_loop.get(loop)
    if acks is None:
        with _by_loop_lock:
            acks = _by_loop.setdefault(loop, LoopAcks(loop))
    return acks

"""One fan-out from the store's write path to everyone watching live: WebSockets and pages.

Why it is shaped like this:

* The store calls :meth:`LiveHub._on_commit` from its single writer thread after every
  durable commit. That thread must never wait on a subscriber, so it only appends the batch
  to a queue and, if no dispatch is pending yet, schedules one with ``IOLoop.add_callback``
  (thread-safe, non-blocking). With nobody subscribed it returns at once. Ingest therefore
  costs the same whether 0 or 1,000 clients watch, and however slow they are.
* Dispatch runs on the server's IOLoop, the thread that owns every WebSocket and every Bokeh
  session, so subscribers are called there and need no locks of their own. Each subscriber
  receives only the points of its entities (and keys), never a whole series.
* Each subscriber buffers and coalesces on its own: a Panel page through a
  :class:`tbpanel.ui.live_sink.DocumentSink` (one next-tick callback on *its* document at a
  time, deferred while its browser socket is still busy), a WebSocket through its handler's
  send loop. A slow browser or socket therefore only grows (bounded) its own buffer; it does
  not delay ingest or any other subscriber.
* Subscriptions are removed when a socket closes and when a Bokeh session is destroyed, and
  :meth:`LiveHub.count` lets tests (and ``GET /api/tbpanel/live/stats``) prove nothing leaks.

Nothing here knows Panel or Bokeh: the hub is shared by the API and the pages, and a
subscriber is only a ``deliver(points)`` callable. Everything that touches a Bokeh document or
session is in ``tbpanel/ui/live_sink.py``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tornado.ioloop import IOLoop

from .store.validate import Point

log = logging.getLogger("tbpanel.live")

Deliver = Callable[[list[Point]], None]


@dataclass(eq=False)
class Subscription:
    """Interest of one subscriber in some entities (and keys; ``None`` = every key).

    ``deliver`` is called on the hub's IOLoop with the matching points of one dispatch, in
    commit order. ``tenant`` and ``kind`` only label it for :meth:`LiveHub.stats`.
    """

    entities: frozenset[str]
    keys: frozenset[str] | None
    deliver: Deliver
    tenant: str = ""
    kind: str = "ws"
    id: int = field(default=0)


class LiveHub:
    """Process-wide fan-out of committed telemetry to live subscribers (see module docstring)."""

    def __init__(self, store, loop: IOLoop | None = None) -> None:
        self.store = store
        self._loop: IOLoop | None = None
        self._lock = threading.Lock()
        self._by_entity: dict[str, tuple[Subscription, ...]] = {}
        self._subs: dict[int, Subscription] = {}
        self._ids = itertools.count(1)
        self._pending: list[list[Point]] = []
        self._scheduled = False
        self._closed = False
        store.committed.connect(self._on_commit)
        if loop is not None:
            self.bind(loop)

    # ------------------------------------------------------------------------- lifecycle
    def bind(self, loop: IOLoop) -> None:
        """Deliver on ``loop`` (the Bokeh/tornado server's loop); the first binding wins."""
        with self._lock:
            if self._loop is None:
                self._loop = loop

    def close(self) -> None:
        """Stop listening to the store and drop every subscription."""
        self._closed = True
        self.store.committed.disconnect(self._on_commit)
        with self._lock:
            self._by_entity.clear()
            self._subs.clear()
            self._pending.clear()

    # --------------------------------------------------------------------- subscriptions
    def subscribe(
        self,
        entities: Iterable[str],
        keys: Iterable[str] | None,
        deliver: Deliver,
        *,
        tenant: str = "",
        kind: str = "ws",
    ) -> Subscription:
        """Register interest; call on the IOLoop (the loop is adopted if none is bound yet)."""
        if self._loop is None:
            self.bind(IOLoop.current())
        sub = Subscription(
            frozenset(entities), None if keys is None else frozenset(keys), deliver, tenant, kind, next(self._ids)
        )
        with self._lock:
            self._subs[sub.id] = sub
            for e in sub.entities:
                self._by_entity[e] = self._by_entity.get(e, ()) + (sub,)
        return sub

    def unsubscribe(self, sub: Subscription | None) -> bool:
        """Remove a subscription; ``False`` if it was already gone (idempotent)."""
        if sub is None:
            return False
        with self._lock:
            if self._subs.pop(sub.id, None) is None:
                return False
            for e in sub.entities:
                rest = tuple(s for s in self._by_entity.get(e, ()) if s is not sub)
                if rest:
                    self._by_entity[e] = rest
                else:
                    self._by_entity.pop(e, None)
        return True

    def count(self, tenant: str | None = None, kind: str | None = None) -> int:
        """Live subscriptions, optionally only one tenant's and/or one kind ("ws", "page")."""
        with self._lock:
            subs = list(self._subs.values())
        return sum(1 for s in subs if (tenant is None or s.tenant == tenant) and (kind is None or s.kind == kind))

    def stats(self, tenant: str | None = None) -> dict[str, int]:
        return {
            "subscriptions": self.count(tenant),
            "websocketSubscriptions": self.count(tenant, "ws"),
            "pageSubscriptions": self.count(tenant, "page"),
        }

    # ------------------------------------------------------------------ write-path side
    def _on_commit(self, points: list[Point]) -> None:
        """Writer thread: O(1), never blocks, never calls a subscriber."""
        if not self._by_entity or self._closed:
            return
        loop = self._loop
        if loop is None:
            return
        with self._lock:
            self._pending.append(points)
            if self._scheduled:
                return
            self._scheduled = True
        loop.add_callback(self._dispatch)

    def _dispatch(self) -> None:
        """IOLoop: route every queued point to the subscribers of its entity."""
        with self._lock:
            batches, self._pending = self._pending, []
            self._scheduled = False
            by_entity = self._by_entity
        out: dict[int, tuple[Subscription, list[Point]]] = {}
        for points in batches:
            for p in points:
                subs = by_entity.get(p[0])
                if not subs:
                    continue
                for s in subs:
                    if s.keys is not None and p[1] not in s.keys:
                        continue
                    slot = out.get(s.id)
                    if slot is None:
                        out[s.id] = (s, [p])
                    else:
                        slot[1].append(p)
        for sub, pts in out.values():
            if sub.id not in self._subs:  # unsubscribed meanwhile
                continue
            try:
                sub.deliver(pts)
            except Exception:
                log.exception("live subscriber %s failed", sub.kind)

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
  :class:`DocumentSink` (one next-tick callback on *its* document at a time, deferred while
  its browser socket is still busy), a WebSocket through its handler's send loop. A slow
  browser or socket therefore only grows (bounded) its own buffer; it does not delay ingest
  or any other subscriber.
* Subscriptions are removed when a socket closes and when a Bokeh session is destroyed, and
  :meth:`LiveHub.count` lets tests (and ``GET /api/tbpanel/live/stats``) prove nothing leaks.

No Panel import here: the hub is shared by the API and the pages, and a :class:`DocumentSink`
only needs a Bokeh ``Document``.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tornado.ioloop import IOLoop

log = logging.getLogger("tbpanel.live")

Point = tuple[str, str, int, int, Any]  # (entity, key, ts, vtype, value), as the store writes them
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
    def subscribe(self, entities: Iterable[str], keys: Iterable[str] | None, deliver: Deliver, *,
                  tenant: str = "", kind: str = "ws") -> Subscription:
        """Register interest; call on the IOLoop (the loop is adopted if none is bound yet)."""
        if self._loop is None:
            self.bind(IOLoop.current())
        sub = Subscription(frozenset(entities), None if keys is None else frozenset(keys),
                           deliver, tenant, kind, next(self._ids))
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
        return sum(1 for s in subs if (tenant is None or s.tenant == tenant)
                   and (kind is None or s.kind == kind))

    def stats(self, tenant: str | None = None) -> dict[str, int]:
        return {"subscriptions": self.count(tenant),
                "websocketSubscriptions": self.count(tenant, "ws"),
                "pageSubscriptions": self.count(tenant, "page")}

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


def _socket_busy(doc) -> bool:
    """True while a browser socket of ``doc``'s session still has unsent data.

    Bokeh keeps no public handle on it, so this looks through the session's connections
    defensively; anything unexpected means "not busy" (then we just send).
    """
    try:
        session = doc.session_context._session
        for conn in session._subscribed_connections:
            ws = getattr(conn._socket, "ws_connection", None)
            stream = getattr(ws, "stream", None)
            if stream is not None and stream.writing():
                return True
    except Exception:
        return False
    return False


class DocumentSink:
    """Live points for one Bokeh document (one Panel page session), applied on that document.

    ``apply(points)`` runs in a ``doc.add_next_tick_callback`` (Bokeh's one thread-safe entry
    into a session), at most one pending at a time: points that arrive meanwhile are merged
    into the same call. While the page's browser socket is still sending earlier updates the
    flush is postponed (``retry_ms``), so a slow browser gets fewer, larger updates instead
    of an unbounded queue; beyond ``max_pending`` points the oldest are dropped and counted
    in :attr:`dropped`. The subscription ends when the session is destroyed.
    """

    def __init__(self, hub: LiveHub, doc, apply: Deliver, *, tenant: str = "",
                 max_pending: int = 50_000, retry_ms: int = 50, min_interval_ms: int = 0) -> None:
        self.hub = hub
        self.doc = doc
        self.apply = apply
        self.tenant = tenant
        self.max_pending = max_pending
        self.retry_ms = retry_ms
        self.min_interval_ms = min_interval_ms
        self.dropped = 0
        self._sub: Subscription | None = None
        self._buffer: list[Point] = []
        self._scheduled = False
        self._closed = False
        self._last_flush = 0.0
        if doc is not None and doc.session_context is not None:
            doc.on_session_destroyed(self._on_destroyed)

    @property
    def subscribed(self) -> bool:
        return self._sub is not None

    def follow(self, entities: Iterable[str], keys: Iterable[str] | None = None) -> None:
        """Watch these entities (replacing what was watched); buffered points are discarded."""
        self.hub.unsubscribe(self._sub)
        self._sub = None
        self._buffer = []
        entities = list(entities)
        if self._closed or not entities:
            return
        self._sub = self.hub.subscribe(entities, keys, self._deliver, tenant=self.tenant, kind="page")

    def close(self) -> None:
        self._closed = True
        self.hub.unsubscribe(self._sub)
        self._sub = None
        self._buffer = []

    def _on_destroyed(self, session_context) -> None:
        self.close()

    # IOLoop side
    def _deliver(self, points: list[Point]) -> None:
        if self._closed:
            return
        self._buffer.extend(points)
        if len(self._buffer) > self.max_pending:
            drop = len(self._buffer) - self.max_pending
            del self._buffer[:drop]
            self.dropped += drop
        if not self._scheduled:
            self._scheduled = True
            self._schedule(0)

    def _schedule(self, delay_ms: float) -> None:
        try:
            if delay_ms > 0:
                self.doc.add_timeout_callback(self._flush, delay_ms)
            else:
                self.doc.add_next_tick_callback(self._flush)
        except Exception:  # the document left its session (it is being destroyed)
            self.close()

    def _flush(self) -> None:
        if self._closed:
            self._scheduled = False
            return
        wait = self.min_interval_ms - (time.monotonic() - self._last_flush) * 1000
        if wait > 0:
            self._schedule(wait)
            return
        if _socket_busy(self.doc):
            self._schedule(self.retry_ms)
            return
        self._scheduled = False
        points, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        if points:
            self.apply(points)

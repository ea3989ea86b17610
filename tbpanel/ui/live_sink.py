"""Live telemetry for a Panel page: the hub's subscriptions applied on one Bokeh document.

:class:`~tbpanel.live.LiveHub` knows nothing of Panel or Bokeh; this module is where the two
meet, and the only page code that touches Bokeh internals (:func:`socket_busy`). A page
uses it through a small interface:

* ``sink = DocumentSink(hub, doc, apply, tenant=...)`` once the browser is connected (in
  ``pn.state.onload``), with ``apply(points)`` the page's drawing function;
* ``sink.follow(entities, keys=None)`` whenever what the page shows changes (before the read
  it will draw, so nothing falls between read and push), ``sink.follow([])`` to pause;
* nothing at the end: the subscription ends with the Bokeh session (``sink.close()`` ends it
  earlier); ``sink.dropped`` counts points dropped for a browser too far behind.

``apply`` runs on the server loop in the session's next-tick callback, the one thread-safe
entry into a Bokeh document. This is for telemetry point streams (many points, per key, at
ingest rate); pages that follow other domain changes use ``Background.follow``
(``ui/background.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..live import Deliver, LiveHub, Point, Subscription

if TYPE_CHECKING:
    from bokeh.document import Document


def socket_busy(doc: Document) -> bool:
    """True while a browser socket of ``doc``'s session still has unsent data.

    The one use of Bokeh internals in the pages: Bokeh keeps no public handle on a session's
    sockets, so this looks through ``session_context._session._subscribed_connections`` and
    each connection's ``_socket`` defensively; anything unexpected means "not busy" (then we
    just send). When Bokeh changes, this function is what to fix.
    """
    try:
        context: Any = doc.session_context  # internals: not in Bokeh's types
        session = context._session
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

    def __init__(
        self,
        hub: LiveHub,
        doc: Document,
        apply: Deliver,
        *,
        tenant: str = "",
        max_pending: int = 50_000,
        retry_ms: int = 50,
        min_interval_ms: int = 0,
    ) -> None:
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
                self.doc.add_timeout_callback(self._flush, math.ceil(delay_ms))
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
        if socket_busy(self.doc):
            self._schedule(self.retry_ms)
            return
        self._scheduled = False
        points, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        if points:
            self.apply(points)

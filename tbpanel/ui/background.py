"""Blocking reads off the server loop, their results applied on the page session's document.

Pages read SQLite (models, anomalies, alarms, tasks) and the telemetry store; doing that in a
Bokeh callback would stall every session of the server. :class:`Background` runs the read on
the platform's I/O pool and hands the result back to the server loop, which applies it in a
next-tick callback of the session's own document (:meth:`Background.on_document`: the only
way this module touches a document from another thread), coalescing bursts: a change heard
while a read runs causes exactly one more read after it.

It is also how a page follows domain changes (:meth:`Background.follow`: a ``Signal`` of the
anomaly or alarm service, plus a slow poll). The one other way is ``ui/live_sink.py``'s
``DocumentSink``, for telemetry point streams from the live hub.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import panel as pn
from panel.io.state import set_curdoc
from tornado.ioloop import IOLoop

from ..events import Signal

log = logging.getLogger("tbpanel.ui")


class Background:
    """One session's background reads, keyed so each kind runs at most once at a time."""

    def __init__(self, executor):
        self.executor = executor
        self.doc = pn.state.curdoc if pn.state.curdoc is not None and pn.state.curdoc.session_context else None
        # pages are built on the server's loop: the one thread that may touch the document
        self.loop = IOLoop.current() if self.doc is not None else None
        self._running: set[str] = set()
        self._again: dict[str, tuple[Callable[[], Any], Callable[[Any], None], Callable[[Exception], None] | None]] = {}
        self._following = False
        self.closed = False
        if self.doc is not None:
            pn.state.on_session_destroyed(lambda ctx: self.close())

    def close(self) -> None:
        self.closed = True

    def on_document(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` as a next-tick callback of the document; any thread may ask.

        Bokeh calls ``add_next_tick_callback`` thread-safe, but from another thread it runs the
        document's change handlers on that thread, and while the loop holds the document (Panel
        does around every event) the request waits in the hold's event list, which ``unhold``
        copies and then empties: one added in between is lost. A lost callback left a key
        "running" for good and the page stopped following changes (CI: a live alarm never reached
        an open ``/alarms``). So the request hops onto the loop first (tornado's ``add_callback``
        is thread-safe and never drops one) and touches the document only there."""
        loop, doc = self.loop, self.doc
        if loop is None or doc is None:
            return

        def add() -> None:  # on the loop thread
            if self.closed:
                return
            try:
                doc.add_next_tick_callback(callback)
            except Exception as exc:  # the document was destroyed: the session has ended
                log.debug("session gone, background callback dropped: %s", exc)
                self.closed = True

        loop.add_callback(add)

    def run(
        self,
        key: str,
        load: Callable[[], Any],
        apply: Callable[[Any], None],
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """``apply(load())``: ``load`` on a worker thread, ``apply`` on the document's loop.
        Without a served document (tests, notebooks) both run here and now."""
        if self.closed:
            return
        if self.doc is None:
            try:
                apply(load())
            except Exception as exc:
                if failed is None:
                    raise
                failed(exc)
            return
        if key in self._running:
            self._again[key] = (load, apply, failed)
            return
        self._running.add(key)
        doc = self.doc

        def work() -> None:
            try:
                result, error = load(), None
            except Exception as exc:  # shown by ``failed`` or logged; the page keeps working
                result, error = None, exc

            def done() -> None:
                self._running.discard(key)
                if self.closed:
                    return
                with set_curdoc(doc):
                    try:
                        if error is None:
                            apply(result)
                        elif failed is not None:
                            failed(error)
                        else:
                            log.error("background read %s failed: %s", key, error)
                    finally:
                        again = self._again.pop(key, None)
                        if again is not None:
                            self.run(key, *again)

            self.on_document(done)

        self.executor.submit(work)

    def follow(
        self,
        changed: Signal,
        wanted: Callable[..., bool],
        refresh: Callable[[], None],
        poll_ms: int,
        tick: Callable[[], None] | None = None,
        *,
        after_commit: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        """Call ``refresh`` on this session after every change ``changed`` announces that
        ``wanted(*args)`` accepts (one pending call per session, however many changes), and
        ``tick`` (default ``refresh``) every ``poll_ms`` as a fallback; both stop with the session.

        ``changed`` is a domain :class:`~tbpanel.events.Signal`. One emitted inside its
        transaction (``AnomalyService.changed``) needs that transaction's ``after_commit``
        (``anomaly.repo.after_commit``), so that the page reads only what committed; one emitted
        after the commit (``AlarmService.changed``) needs nothing. Does nothing without a served
        document, or the second time."""
        doc = self.doc
        if doc is None or self._following:
            return
        self._following = True
        pending = threading.Lock()  # held from scheduling until the refresh starts

        def run() -> None:
            pending.release()
            if not self.closed:
                with set_curdoc(doc):
                    refresh()

        def schedule() -> None:  # any thread, after the commit
            if self.closed or not pending.acquire(blocking=False):
                return  # closed, or a refresh is pending already: it will read this change too
            self.on_document(run)

        def heard(*args: Any) -> None:  # the emitter's thread
            if self.closed or not wanted(*args):
                return
            if after_commit is None:
                schedule()
            else:
                after_commit(schedule)

        disconnect = changed.connect(heard)
        pn.state.add_periodic_callback(tick or refresh, period=poll_ms)
        pn.state.on_session_destroyed(lambda ctx: disconnect())

"""Blocking reads off the server loop, their results applied on the page session's document.

The workspace pages read SQLite (models, anomalies, tasks) and the telemetry store; doing that
in a Bokeh callback would stall every session of the server. :class:`Background` runs the read
on the platform's I/O pool and hands the result back with ``add_next_tick_callback`` on the
session's own document (thread-safe in Bokeh), coalescing bursts: a change heard while a read
runs causes exactly one more read after it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import panel as pn
from panel.io.state import set_curdoc

log = logging.getLogger("tbpanel.ui")


class Background:
    """One session's background reads, keyed so each kind runs at most once at a time."""

    def __init__(self, executor):
        self.executor = executor
        self.doc = pn.state.curdoc if pn.state.curdoc is not None and pn.state.curdoc.session_context else None
        self._running: set[str] = set()
        self._again: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {}
        self._following = False
        self.closed = False
        if self.doc is not None:
            pn.state.on_session_destroyed(lambda ctx: self.close())

    def close(self) -> None:
        self.closed = True

    def run(self, key: str, load: Callable[[], Any], apply: Callable[[Any], None],
            failed: Callable[[Exception], None] | None = None) -> None:
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
            try:
                doc.add_next_tick_callback(done)
            except Exception:  # the session closed meanwhile
                self.closed = True

        self.executor.submit(work)

    def follow(self, anomaly, wanted: Callable[[Any], bool], refresh: Callable[[], None],
               poll_ms: int, tick: Callable[[], None] | None = None) -> None:
        """Call ``refresh`` on this session after every committed change of a model that
        ``wanted(model)`` accepts, and ``tick`` (default ``refresh``) every ``poll_ms`` as a
        fallback; both stop with the session. Does nothing without a served document or twice."""
        doc = self.doc
        if doc is None or self._following:
            return
        self._following = True
        repo = anomaly.repo

        def heard(db, model, changes) -> None:  # a task's thread, inside its transaction
            if wanted(model) and not self.closed:
                repo.after_commit(lambda: doc.add_next_tick_callback(refresh))
        anomaly.listeners.append(heard)

        def stop(ctx) -> None:
            if heard in anomaly.listeners:
                anomaly.listeners.remove(heard)
        pn.state.add_periodic_callback(tick or refresh, period=poll_ms)
        pn.state.on_session_destroyed(stop)

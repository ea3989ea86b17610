"""One way to listen: :class:`Signal`.

Every "tell me when X changes" in tbpanel (durable telemetry commits, attribute changes, task
progress, anomaly and alarm changes) is a ``Signal``. Listeners are called in the emitting
thread, in the order they connected; a listener that must touch an event loop or a Bokeh
document schedules itself there (see ``live.py`` and ``ui/background.py``). Connecting and
disconnecting are safe from any thread and never block an emit: the listener list is an
immutable tuple swapped under a lock, so ``emit`` reads it without locking.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, ParamSpec

P = ParamSpec("P")
log = logging.getLogger("tbpanel.events")


class Signal(Generic[P]):
    """A named list of listeners.

    ``propagate=False`` (default): a listener's exception is logged and the others still run —
    an observer's bug must never undo or hide the change it observes. ``propagate=True``: the
    first exception propagates to the emitter; for listeners that take part in the emitter's
    transaction (the alarm lifecycle inside an anomaly transaction), where a failure must roll
    the whole change back.
    """

    def __init__(self, name: str, *, propagate: bool = False) -> None:
        self.name = name
        self.propagate = propagate
        self._lock = threading.Lock()
        self._listeners: tuple[Callable[P, Any], ...] = ()

    def connect(self, fn: Callable[P, Any]) -> Callable[[], None]:
        """Add ``fn``; returns a function that disconnects it (idempotent)."""
        with self._lock:
            self._listeners = (*self._listeners, fn)
        return lambda: self.disconnect(fn)

    def disconnect(self, fn: Callable[P, Any]) -> None:
        """Remove ``fn`` (its first connection); a no-op if it is not connected."""
        with self._lock:
            listeners = list(self._listeners)
            if fn in listeners:
                listeners.remove(fn)
                self._listeners = tuple(listeners)

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for fn in self._listeners:
            if self.propagate:
                fn(*args, **kwargs)
                continue
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("a listener of %s failed", self.name)

    def __len__(self) -> int:
        return len(self._listeners)

    def __bool__(self) -> bool:  # a Signal is always "there", even with no listeners
        return True

    def __contains__(self, fn: object) -> bool:
        return fn in self._listeners

    def __repr__(self) -> str:
        return f"Signal({self.name!r}, {len(self._listeners)} listener(s))"

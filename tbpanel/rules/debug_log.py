"""The last debug events of every node, kept for the ``/rules`` page and the REST extras.

:attr:`~.engine.RuleEngine.debug` is a Signal: who is not listening when a message passes
sees nothing of it. ThingsBoard keeps each debug-mode node's recent events; :class:`DebugLog`
does the same in memory (the last ``per_node`` events of each node, newest last) and says
which chain changed on its own :attr:`DebugLog.changed`, so a page can follow one chain.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..events import Signal
from .engine import DebugEvent, RuleEngine

if TYPE_CHECKING:
    from .service import RuleService

#: ThingsBoard shows a node's last events; this many per node are kept
PER_NODE = 100


class DebugLog:
    """Recent :class:`DebugEvent` per node of one engine (any thread records, any thread reads)."""

    def __init__(self, engine: RuleEngine, per_node: int = PER_NODE) -> None:
        self.per_node = per_node
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str], deque[DebugEvent]] = {}  # (tenant, node id) → events
        #: ``fn(tenant_id, chain_id)`` after events of that chain were recorded (processing thread)
        self.changed: Signal[[str, str]] = Signal("rules.debug_log.changed")
        self._disconnect: Callable[[], None] | None = engine.debug.connect(self.record)

    def record(self, event: DebugEvent) -> None:
        with self._lock:
            key = (event.tenant_id, event.node_id)
            q = self._events.get(key)
            if q is None:
                q = self._events[key] = deque(maxlen=self.per_node)
            q.append(event)
        self.changed.emit(event.tenant_id, event.chain_id)

    def events(
        self, tenant_id: str, chain_id: str, node_id: str | None = None, limit: int | None = None
    ) -> list[DebugEvent]:
        """The chain's (or one node's) recent events of ``tenant_id``, oldest first, the last
        ``limit`` (None: all kept)."""
        with self._lock:
            picked = [
                e
                for (tenant, _node), q in self._events.items()
                if tenant == tenant_id
                for e in q
                if e.chain_id == chain_id and (node_id is None or e.node_id == node_id)
            ]
        picked.sort(key=lambda e: e.ts)
        return picked if limit is None else picked[-limit:] if limit > 0 else []

    def clear(self, tenant_id: str, chain_id: str) -> None:
        with self._lock:
            for key, q in list(self._events.items()):
                if key[0] == tenant_id and any(e.chain_id == chain_id for e in q):
                    del self._events[key]

    def close(self) -> None:
        if self._disconnect is not None:
            self._disconnect()
            self._disconnect = None


_LOGS: weakref.WeakKeyDictionary[RuleService, DebugLog] = weakref.WeakKeyDictionary()
_LOGS_LOCK = threading.Lock()


def debug_log(service: RuleService) -> DebugLog:
    """The one :class:`DebugLog` of a rule service (made on first use: the server makes it
    when it mounts the rule chain routes, so it records from the start)."""
    with _LOGS_LOCK:
        log = _LOGS.get(service)
        if log is None:
            log = _LOGS[service] = DebugLog(service.engine)
        return log

"""The platform's rule engine: the tenants' chains, the durable queue and its worker, together.

One :class:`RuleService` per opened data directory (``Platform.rules``). Transports and
internal events hand it messages; the REST API and the ``/rules`` page edit chains through
:attr:`chains`; the worker thread runs queued messages through the engine.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .context import Services
from .engine import RuleEngine
from .node_state import RuleNodeStates
from .queue import RuleQueue
from .store import RuleChainStore

if TYPE_CHECKING:
    from ..alarms.service import AlarmService
    from ..entities import EntityRegistry
    from ..store import TelemetryStore


class RuleService:
    """Engine + chain store + queue of one data directory; :meth:`start` runs the worker."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        store: TelemetryStore | None = None,
        registry: EntityRegistry | None = None,
        alarms: AlarmService | None = None,
    ) -> None:
        self.queue = RuleQueue(data_dir)
        self.engine = RuleEngine(
            Services(store=store, registry=registry, alarms=alarms, node_states=RuleNodeStates(self.queue.db))
        )
        #: the tenants' chains (CRUD, root, import/export), kept in step with the engine
        self.chains = RuleChainStore(self.queue, self.engine)
        self.chains.load()
        self._worker: tuple[threading.Thread, threading.Event] | None = None

    def start(self) -> None:
        """Run the queue's worker thread (the server does; a notebook need not)."""
        if self._worker is None:
            self._worker = self.queue.start_worker(self.engine)

    def close(self) -> None:
        if self._worker is not None:
            self.queue.stop_worker(self._worker)
            self._worker = None
        self.engine.close()
        self.queue.close()

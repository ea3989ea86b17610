"""The platform's rule engine: the tenants' chains, the durable queue and its worker, together.

One :class:`RuleService` per opened data directory (``Platform.rules``). Transports and
internal events hand it messages through :attr:`ingress` (:mod:`.ingress`: the compiled
default chain or the durable queue); the REST API and the ``/rules`` page edit chains through
:attr:`chains`; the worker thread runs queued messages through :attr:`engine`.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import now_ms
from .context import Services
from .engine import RuleEngine
from .ingress import Ingress
from .message import TbMsg
from .node_state import RuleNodeStates
from .queue import RuleQueue
from .store import RuleChainStore

if TYPE_CHECKING:
    from ..alarms.service import AlarmService
    from ..entities import EntityRegistry
    from ..rpc import RpcService
    from ..store import TelemetryStore

log = logging.getLogger("tbpanel.rules")

#: how often devices are checked for the inactivity timeout (seconds)
INACTIVITY_CHECK_S = 5.0


class RuleService:
    """Engine + chain store + queue + ingress of one data directory; :meth:`start` runs the worker."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        store: TelemetryStore | None = None,
        registry: EntityRegistry | None = None,
        alarms: AlarmService | None = None,
        rpc: RpcService | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.queue = RuleQueue(data_dir)
        self.registry = registry
        services = Services(store=store, registry=registry, alarms=alarms, node_states=RuleNodeStates(self.queue.db))
        if rpc is not None:
            services.rpc = lambda msg: send_rpc(rpc, msg)
        self.engine = RuleEngine(services)
        #: the tenants' chains (CRUD, root, import/export), kept in step with the engine
        self.chains = RuleChainStore(self.queue, self.engine)
        self.chains.load()
        #: where transports and internal events hand over their messages
        self.ingress = Ingress(self.engine, self.chains, self.queue, store=store, registry=registry, executor=executor)
        services.rpc_reply = self.ingress.rpc_reply
        if rpc is not None:  # device → server RPC of a custom root chain enters it
            rpc.device_rpc_handler = self.ingress.device_rpc
        self._worker: tuple[threading.Thread, threading.Event] | None = None
        self._timer: tuple[threading.Thread, threading.Event] | None = None
        self._unhook: list[Any] = []
        if alarms is not None:
            self._unhook.append(alarms.actions.connect(self.ingress.on_alarm_action))
            if alarms.anomaly is not None:
                db = alarms.repo.db

                def anomalies(_conn: Any, model: Any, changes: Any) -> None:
                    db.after_commit(lambda: self.ingress.on_anomaly_changes(model, changes))

                self._unhook.append(alarms.anomaly.changed.connect(anomalies))

    def start(self) -> None:
        """Give every tenant its root chain and run the queue's worker thread (the server
        does; a notebook need not: what it queues runs when a server next starts)."""
        if self.registry is not None:
            for tenant in self.registry.list_tenants():
                self.ingress.plan(tenant.id)
        if self._worker is None:
            self._worker = self.queue.start_worker(self.engine)
        if self._timer is None:
            stop = threading.Event()
            thread = threading.Thread(target=self._inactivity, args=(stop,), name="tbpanel-activity", daemon=True)
            thread.start()
            self._timer = (thread, stop)

    def _inactivity(self, stop: threading.Event) -> None:
        """Devices silent for the inactivity timeout get their INACTIVITY_EVENT (checked every 5 s)."""
        while not stop.wait(INACTIVITY_CHECK_S):
            try:
                self.ingress.check_inactive()
            except Exception:
                log.exception("the inactivity check failed")

    def stop(self) -> None:
        """Stop the worker (it finishes the message it is running); the queue keeps the rest."""
        if self._timer is not None:
            self._timer[1].set()
            self._timer[0].join()
            self._timer = None
        if self._worker is not None:
            self.queue.stop_worker(self._worker)
            self._worker = None

    def close(self) -> None:
        self.stop()
        for unhook in self._unhook:
            unhook()
        self._unhook.clear()
        self.engine.close()
        self.queue.close()


def send_rpc(rpc: RpcService, msg: TbMsg) -> None:
    """The RPC call node's ``Services.rpc``: the message (``{"method", "params"}``, metadata
    ``oneway``, ``persistent``, ``timeout`` / ``expirationTime`` as ThingsBoard's RPC
    messages carry them) becomes a request of the platform's RPC service to its device; a
    device that is not connected (and a request that is not persistent) raises: Failure."""
    from ..rpc.model import parse_request

    meta = msg.metadata
    body: dict[str, Any] = {"method": msg.data.get("method"), "params": msg.data.get("params", {})}
    if meta.get("persistent"):
        body["persistent"] = meta["persistent"].lower() == "true"
    for key in ("timeout", "expirationTime", "retries"):
        if meta.get(key, "").isdigit():
            body[key] = int(meta[key])
    oneway = meta.get("oneway", "").lower() == "true"
    request = parse_request(body, tenant_id=msg.tenant_id, device_id=msg.originator.id, oneway=oneway, now=now_ms())
    rpc.submit(request).accepted.result(timeout=30)  # stored (persistent) or handed to a session; else raises

"""What a node may use while it runs: the tenant's services, the clock, scripts, its state.

The engine builds one :class:`Services` per platform (store, registry, alarms, optional RPC
and logging hooks) and one :class:`NodeContext` per call, so node code depends on these
small interfaces, never on the platform or a transport.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..clock import now_ms
from .message import TbMsg
from .script import MSG_ARGS, Script, ScriptEngine

if TYPE_CHECKING:
    from ..alarms.service import AlarmService
    from ..entities import EntityRegistry
    from ..store import TelemetryStore
    from .node_state import RuleNodeStates
    from .nodes.base import Outputs

log = logging.getLogger("tbpanel.rules")


@dataclass
class Services:
    """The parts of tbpanel nodes act on. Any may be None in a test of nodes that need none;
    a node that needs a missing one fails with a message saying which."""

    store: TelemetryStore | None = None
    registry: EntityRegistry | None = None
    alarms: AlarmService | None = None
    #: ``rpc(msg) -> None``: sends an RPC_CALL_FROM_SERVER_TO_DEVICE message to its device
    #: (wired by the transports; None: the RPC call node answers Failure)
    rpc: Callable[[TbMsg], None] | None = None
    #: ``rpc_reply(sessionId, requestId, data) -> bool``: answers a waiting device → server
    #: RPC request (the ingress's; None: the RPC call reply node answers Failure)
    rpc_reply: Callable[[str, str, Any], bool] | None = None
    #: what nodes remember per entity across restarts (rules.sqlite); None: in memory only
    node_states: RuleNodeStates | None = None
    clock: Callable[[], int] = now_ms
    script_timeout_ms: int = 500
    script_max_memory_bytes: int = 64 << 20
    _scripts: dict[str, ScriptEngine] = field(default_factory=dict)
    _owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def scripts(self, tenant_id: str) -> ScriptEngine:
        """The tenant's own JavaScript context (made on first use)."""
        eng = self._scripts.get(tenant_id)
        if eng is None:
            eng = self._scripts[tenant_id] = ScriptEngine(
                timeout_ms=self.script_timeout_ms, max_memory_bytes=self.script_max_memory_bytes
            )
        return eng

    def owner_tenant(self, entity_type: str, entity_id: str) -> str | None:
        """The tenant an entity belongs to (None: unknown entity). Devices and customers never
        change tenant, so positive answers are cached."""
        key = (entity_type, entity_id)
        hit = self._owners.get(key)
        if hit is not None:
            return hit
        if entity_type == "TENANT":
            return entity_id
        registry = self.need("registry")
        try:
            if entity_type == "DEVICE":
                owner = registry.get_device(entity_id).tenant_id
            elif entity_type == "CUSTOMER":
                owner = registry.get_customer(entity_id).tenant_id
            else:
                return None
        except Exception:  # not found, malformed id
            return None
        if len(self._owners) > 100_000:
            self._owners.clear()
        self._owners[key] = owner
        return str(owner)

    def need(self, what: str) -> Any:
        value = getattr(self, what)
        if value is None:
            raise RuntimeError(f"this rule engine has no {what} service")
        return value

    def close(self) -> None:
        for eng in self._scripts.values():
            eng.close()
        self._scripts.clear()


@dataclass
class NodeContext:
    """One node's view while it processes a message (or a timer tick)."""

    services: Services
    tenant_id: str
    chain_id: str
    node_id: str
    node_name: str
    #: ``call_chain(chain_id, msg) -> outputs`` (flow nodes): runs another chain of the tenant
    call_chain: Callable[[str, TbMsg], Outputs] | None = None

    def now(self) -> int:
        return self.services.clock()

    def own(self, entity_type: str, entity_id: str) -> str:
        """``entity_id`` if it belongs to this chain's tenant, else PermissionError: no chain
        reads or writes another tenant's data, whatever its configuration or messages say."""
        if self.services.owner_tenant(entity_type, entity_id) != self.tenant_id:
            raise PermissionError(f"{entity_type} {entity_id} does not belong to this tenant")
        return entity_id

    def own_originator(self, msg: TbMsg) -> str:
        return self.own(msg.originator.entity_type, msg.originator.id)

    def script(self, body: str, args: tuple[str, ...] = MSG_ARGS) -> Script:
        return self.services.scripts(self.tenant_id).compile(body, args)

    def log(self, text: str) -> None:
        log.info("[%s] %s", self.node_name, text)

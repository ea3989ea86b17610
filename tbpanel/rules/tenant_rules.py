"""What one tenant may do with its rule chains, in one place for the REST routes, the
``/rules`` page and notebooks (``tb.rules``).

:class:`TenantRules` is the rule service seen by one tenant: every read and write names that
tenant, so a chain, node, device or dead letter of another tenant is "not found" (the store's
rule), whoever asks. Who may ask at all (tenant administrators) is the caller's check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, NotFound
from .chain import RuleChain, import_chain
from .debug_log import debug_log
from .defaults import default_root_chain
from .engine import DebugEvent, NodeCounters, RunResult
from .message import TbMsg, device_msg
from .nodes.flow import RuleChainOutputNode
from .queue import DeadLetter
from .script_trial import ScriptTrial, try_script

if TYPE_CHECKING:
    from .service import RuleService
    from .store import RuleChainStore


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("Rule chain name should be specified!")
    return name.strip()


class TenantRules:
    """The rule chains, counters, debug events and dead letters of one tenant."""

    def __init__(self, service: RuleService, tenant_id: str) -> None:
        if not tenant_id:
            raise ValueError("TenantRules needs a tenant id")
        self.service, self.tenant_id = service, tenant_id
        debug_log(service)  # debug events are recorded from now on (the server's routes start it first)

    @property
    def store(self) -> RuleChainStore:
        return self.service.chains

    # -- chains ----------------------------------------------------------------------------
    def chains(self) -> list[RuleChain]:
        """Every chain of the tenant, the root first (a tenant without one gets the default root,
        made by the ingress, which never makes two)."""
        self.service.ingress.plan(self.tenant_id)
        return sorted(self.store.list(self.tenant_id), key=lambda c: (not c.root, c.title.lower(), c.id))

    def get(self, chain_id: str) -> RuleChain:
        return self.store.get(self.tenant_id, chain_id)

    def create(
        self, name: Any, *, debug_mode: bool = False, additional_info: dict[str, Any] | None = None
    ) -> RuleChain:
        """A new empty CORE chain (not root)."""
        chain = RuleChain(
            tenant_id=self.tenant_id, title=_clean_name(name), debug_mode=debug_mode, additional_info=additional_info
        )
        return self.save(chain)

    def create_default(self, name: Any) -> RuleChain:
        """ThingsBoard's ``/api/ruleChain/device/default``: a chain made from the default root
        chain's template, under ``name``, not root."""
        chain = default_root_chain(self.tenant_id)
        chain.param.update(title=_clean_name(name), root=False)
        return self.save(import_chain(chain.export_json(), tenant_id=self.tenant_id))

    def update(self, chain_id: str, body: Mapping[str, Any]) -> RuleChain:
        """``POST /api/ruleChain`` with an id: name, debug mode, configuration, additionalInfo
        (the graph is the metadata's, the root flag ``set_root``'s)."""
        chain = self.get(chain_id)
        changes: dict[str, Any] = {"title": _clean_name(body.get("name", chain.title))}
        if "debugMode" in body:
            changes["debug_mode"] = bool(body["debugMode"])
        for key, pname in (("configuration", "configuration"), ("additionalInfo", "additional_info")):
            if key in body:
                value = body[key]
                if value is not None and not isinstance(value, dict):
                    raise InvalidInput(f"{key} must be a JSON object")
                changes[pname] = value
        chain.param.update(**changes)
        return self.save(chain)

    def save(self, chain: RuleChain) -> RuleChain:
        """Store ``chain`` as this tenant's (validating it whole; a chain id of another tenant is NotFound)."""
        if chain.tenant_id and chain.tenant_id != self.tenant_id:
            raise NotFound(f"Rule chain with id [{chain.id}] is not found")
        chain.tenant_id = self.tenant_id
        if chain.type != "CORE":
            raise InvalidInput(f"rule chain type {chain.type!r} is not supported (tbpanel runs CORE chains)")
        return self.store.save(chain)

    def save_metadata(self, chain_id: str, metadata: Mapping[str, Any]) -> RuleChain:
        return self.store.save_metadata(self.tenant_id, chain_id, metadata)

    def import_json(self, doc: Mapping[str, Any] | str | bytes, *, root: bool = False) -> RuleChain:
        """A ThingsBoard export file, saved as a new chain of the tenant (root only if asked:
        importing never takes the root away from the running chain by surprise)."""
        chain = import_chain(doc, tenant_id=self.tenant_id)
        chain.root = root
        return self.save(chain)

    def export_json(self, chain_id: str) -> dict[str, Any]:
        return self.get(chain_id).export_json()

    def set_root(self, chain_id: str) -> RuleChain:
        return self.store.set_root(self.tenant_id, chain_id)

    def delete(self, chain_id: str) -> None:
        self.store.delete(self.tenant_id, chain_id)
        debug_log(self.service).clear(self.tenant_id, chain_id)

    def output_labels(self, chain_id: str) -> list[str]:
        """The names of the chain's output nodes (the relations a calling chain may follow)."""
        chain = self.get(chain_id)
        return sorted({n.name for n in chain.nodes if isinstance(n.impl, RuleChainOutputNode)})

    # -- what the chains did ---------------------------------------------------------------
    def counters(self, chain_id: str) -> dict[str, NodeCounters]:
        """Node id → what it has done since the server started (copies; nodes never run: zeros)."""
        chain = self.get(chain_id)
        engine = self.service.engine
        with engine._lock:  # the engine counts under this lock; read a consistent copy
            return {
                n.id: replace(c, relations=c.relations.copy()) if (c := engine.counters.get(n.id)) else NodeCounters()
                for n in chain.nodes
            }

    def debug_events(self, chain_id: str, node_id: str | None = None, limit: int = 200) -> list[DebugEvent]:
        self.get(chain_id)  # the chain must be the tenant's
        return debug_log(self.service).events(self.tenant_id, chain_id, node_id, limit)

    def node_chain(self, node_id: str) -> tuple[RuleChain, int]:
        """The tenant's chain holding node ``node_id`` and its index there (NotFound otherwise)."""
        for chain in self.store.list(self.tenant_id):
            found = chain.node_by_id(node_id)
            if found is not None:
                return chain, found[0]
        raise NotFound(f"Rule node with id [{node_id}] is not found")

    def latest_debug_in(self, node_id: str) -> DebugEvent | None:
        chain, _ = self.node_chain(node_id)
        ins = [e for e in debug_log(self.service).events(self.tenant_id, chain.id, node_id) if e.kind == "IN"]
        return ins[-1] if ins else None

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.service.queue.dead_letters(self.tenant_id, limit)

    def retry_dead(self, dead_id: int) -> None:
        if not self.service.queue.retry_dead(self.tenant_id, dead_id):
            raise NotFound(f"Dead letter [{dead_id}] is not found")

    # -- trying things ---------------------------------------------------------------------
    def try_script(self, script: str, script_type: str, **sample: Any) -> ScriptTrial:
        """ThingsBoard's script test in the tenant's own script context."""
        return try_script(self.service.engine.services, self.tenant_id, script, script_type, **sample)

    def sample_message(
        self,
        device_id: str,
        data: Any,
        *,
        msg_type: str = "POST_TELEMETRY_REQUEST",
        metadata: Mapping[str, Any] | None = None,
        ts: int | None = None,
    ) -> TbMsg:
        """A message from one of the tenant's devices, with the metadata its transport adds."""
        registry = self.service.engine.services.need("registry")
        device = tenant_device(registry, self.tenant_id, device_id, by_name=False)
        if device is None:
            raise NotFound(f"Device with id [{device_id}] is not found")
        return device_message(device, msg_type, data, ts=ts, metadata=metadata)

    def run_sample(self, chain_id: str, msg: TbMsg) -> RunResult:
        """Run one message through a chain now, on this thread, with real effects (what the
        page's "Send a test message" does: telemetry saved, alarms raised, as from the device)."""
        if msg.tenant_id != self.tenant_id:
            raise NotFound("the message is not from this tenant")
        self.get(chain_id)
        return self.service.engine.process(msg, chain_id)


def tenant_device(registry: Any, tenant_id: str, ref: str, *, by_name: bool = True) -> Any:
    """The tenant's device with id ``ref`` (or, ``by_name``, that name); None for any other."""
    try:
        device = registry.get_device(ref)
    except (NotFound, ValueError):
        device = registry.find_device(tenant_id, ref) if by_name else None
    return device if device is not None and device.tenant_id == tenant_id else None


def device_message(
    device: Any, msg_type: str, data: Any, *, ts: int | None = None, metadata: Mapping[str, Any] | None = None
) -> TbMsg:
    """A message from ``device`` with the metadata its transport adds (name, type, ts)."""
    return device_msg(
        msg_type,
        device.id,
        data,
        tenant_id=device.tenant_id,
        device_name=device.name,
        device_type=device.type,
        customer_id=device.customer_id,
        ts=ts,
        metadata={str(k): str(v) for k, v in (metadata or {}).items()},
    )

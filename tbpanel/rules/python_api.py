"""``tb.rules`` in a notebook: the rule service with the conveniences a data scientist wants.

``tb = tbpanel.connect(DATA)`` opens the platform; ``tb.rules`` is a :class:`NotebookRules`
(the platform's :class:`~.service.RuleService` plus these methods). Every method takes the
tenant as a :class:`~tbpanel.entities.Tenant`, its id or its title, and may leave it out when
the data directory has exactly one tenant::

    chains = tb.rules.list()                                  # the tenant's chains, root first
    chain = tb.rules.build("Hot?", [("filter.TbJsFilterNode", "hot", {"jsScript": "return msg.t > 30;"}),
                                    ("action.TbCreateAlarmNode", "alarm", {"alarmType": "Hot"})],
                           [("hot", "alarm", "True")])
    report = tb.rules.dry_run(chain, frame, device="Pump P1")  # what would have alarmed?
    tb.rules.save(chain); text = tb.rules.export_json(chain)   # ThingsBoard's export file
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..errors import InvalidInput, NotFound
from .chain import RuleChain, import_chain
from .dry_run import DryRun
from .nodes.base import RuleNode
from .service import RuleService
from .tenant_rules import TenantRules

#: ``(type, name, configuration)``: type as ThingsBoard's class name, with or without
#: ``org.thingsboard.rule.engine.``, or a node class; or a node object and a name
NodeSpec = tuple[Any, str] | tuple[Any, str, Mapping[str, Any] | None]
#: ``(from, to, relation label)``: nodes by index or by name
ConnectionSpec = tuple[int | str, int | str, str]


class NotebookRules(RuleService):
    """The rule service of a data directory, with ``list`` / ``build`` / ``import_json`` /
    ``export_json`` / ``save`` / ``dry_run`` per tenant."""

    # -- tenants ---------------------------------------------------------------------------
    def tenant_id(self, tenant: Any = None) -> str:
        registry = self.engine.services.need("registry")
        if tenant is None:
            tenants = registry.list_tenants()
            if len(tenants) != 1:
                raise InvalidInput(f"this data directory has {len(tenants)} tenants: pass tenant=")
            return str(tenants[0].id)
        if hasattr(tenant, "id"):
            return str(tenant.id)
        found = registry.find_tenant(str(tenant))
        if found is not None:
            return str(found.id)
        if any(t.id == str(tenant) for t in registry.list_tenants()):
            return str(tenant)
        raise NotFound(f"no tenant {tenant!r}")

    def of(self, tenant: Any = None) -> TenantRules:
        """The tenant's rules (what the REST routes and the page use)."""
        return TenantRules(self, self.tenant_id(tenant))

    # -- chains ----------------------------------------------------------------------------
    def list(self, tenant: Any = None) -> list[RuleChain]:
        """The tenant's chains, the root first."""
        return self.of(tenant).chains()

    def chain(self, ref: str, tenant: Any = None) -> RuleChain:
        """A chain by id or by name."""
        for c in self.list(tenant):
            if ref in (c.id, c.title):
                return c
        raise NotFound(f"no rule chain {ref!r}")

    def build(
        self,
        name: str,
        nodes: Sequence[NodeSpec],
        connections: Sequence[ConnectionSpec] = (),
        *,
        first: int | str = 0,
        debug: bool = False,
        tenant: Any = None,
    ) -> RuleChain:
        """A chain from Python (not saved yet: :meth:`save` stores it). Unknown node types
        and bad configurations are refused here, naming the node."""
        names: list[str] = []
        docs = []
        for i, spec in enumerate(nodes):
            kind, node_name = spec[0], spec[1]
            config = dict(spec[2] or {}) if len(spec) > 2 else None
            if isinstance(kind, RuleNode):
                config = kind.to_config() if config is None else config
                kind = kind.tb_type
            elif isinstance(kind, type) and issubclass(kind, RuleNode):
                kind = kind.tb_type
            if not isinstance(kind, str):
                raise InvalidInput(f"node {i}: the type must be a ThingsBoard class name or a node class")
            if not kind.startswith("org.thingsboard.rule.engine."):
                kind = "org.thingsboard.rule.engine." + kind
            names.append(node_name)
            docs.append(
                {
                    "type": kind,
                    "name": node_name,
                    "debugMode": debug,
                    "configuration": config or {},
                    "additionalInfo": {"layoutX": 120 + 240 * i, "layoutY": 150},
                }
            )

        def index(ref: int | str) -> int:
            if isinstance(ref, int):
                return ref
            if names.count(ref) != 1:
                raise InvalidInput(f"connections name nodes by their unique name; {ref!r} is not one")
            return names.index(ref)

        doc = {
            "ruleChain": {"name": name, "type": "CORE", "root": False, "debugMode": debug},
            "metadata": {
                "firstNodeIndex": index(first) if docs else None,
                "nodes": docs,
                "connections": [{"fromIndex": index(a), "toIndex": index(b), "type": t} for a, b, t in connections],
            },
        }
        return import_chain(doc, tenant_id=self.tenant_id(tenant))

    def import_json(self, doc: Mapping[str, Any] | str | bytes, *, save: bool = False, tenant: Any = None) -> RuleChain:
        """A chain from ThingsBoard's export file (saved as a new chain with ``save=True``)."""
        rules = self.of(tenant)
        return rules.import_json(doc) if save else import_chain(doc, tenant_id=rules.tenant_id)

    def export_json(self, chain: RuleChain | str, tenant: Any = None) -> str:
        """ThingsBoard's export file of a chain (object or id/name) as JSON text."""
        return (chain if isinstance(chain, RuleChain) else self.chain(chain, tenant)).export_text()

    def save(self, chain: RuleChain, tenant: Any = None) -> RuleChain:
        """Store the chain (a new one, or a changed one read from :meth:`list`)."""
        return self.of(tenant if tenant is not None else chain.tenant_id or None).save(chain)

    # -- what would have happened ----------------------------------------------------------
    def dry_run(
        self, chain: RuleChain | str, frame: pd.DataFrame, *, device: str | None = None, tenant: Any = None
    ) -> pd.DataFrame:
        """Replay historical telemetry through a chain with every effect recorded, not made:
        one row per message with its path, the alarms it would have created, updated or
        cleared, what it would have saved and sent (see :mod:`tbpanel.rules.dry_run`)."""
        if isinstance(chain, str):
            chain = self.chain(chain, tenant)
        tid = self.tenant_id(tenant if tenant is not None else chain.tenant_id or None)
        others = [c for c in self.chains.list(tid) if c.id != chain.id]
        with DryRun(self.engine.services, tid, chain, others) as run:
            return run.run(frame, device)

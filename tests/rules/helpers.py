"""Building small chains in tests: ``chain(tenant, [(type, name, config), …], [(from, to, label), …])``."""

from __future__ import annotations

from typing import Any

from tbpanel.rules import RuleChain, import_chain
from tbpanel.rules.message import EntityRef, TbMsg


def chain(
    tenant_id: str,
    nodes: list[tuple[str, str, dict[str, Any]]],
    connections: list[tuple[int, int, str]],
    *,
    root: bool = True,
    name: str = "c",
    debug: bool = True,
    first: int = 0,
) -> RuleChain:
    doc = {
        "ruleChain": {"name": name, "type": "CORE", "root": root, "debugMode": False, "configuration": None},
        "metadata": {
            "firstNodeIndex": first if nodes else None,
            "nodes": [
                {"type": "org.thingsboard.rule.engine." + t, "name": n, "debugMode": debug, "configuration": c}
                for t, n, c in nodes
            ],
            "connections": [{"fromIndex": a, "toIndex": b, "type": label} for a, b, label in connections],
        },
    }
    return import_chain(doc, tenant_id=tenant_id)


def msg(
    tenant_id: str = "t",
    type: str = "POST_TELEMETRY_REQUEST",
    data: Any = None,
    metadata: dict[str, str] | None = None,
    originator: str = "d1",
    entity_type: str = "DEVICE",
    ts: int = 1_767_225_600_000,
) -> TbMsg:
    return TbMsg(
        type=type,
        originator=EntityRef(entity_type, originator),
        data={} if data is None else data,
        metadata={"deviceName": "dev", "deviceType": "thermostat", "ts": str(ts), **(metadata or {})},
        tenant_id=tenant_id,
        ts=ts,
    )

"""Rule chains as data, and ThingsBoard's rule chain JSON in and out.

A chain is nodes plus labelled connections ``{fromIndex, toIndex, type}``, a first node and
a root flag. Each :class:`ChainNode` keeps what ThingsBoard's export carries (type, name,
debug mode, layout) and its implementation, a :class:`~.nodes.base.RuleNode` built from the
configuration at import, so a chain that imported is a chain that can run: an unknown node
type or a bad configuration is refused then, naming the node (:class:`UnknownNodeType`,
:class:`~.nodes.base.NodeConfigError`, both ``InvalidInput``: HTTP 400).

Old exports (ThingsBoard before 3.3) link chains with ``ruleChainConnections``; importing
turns each into the ``TbRuleChainInputNode`` newer versions use, so exports are always new style.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import param

from ..errors import InvalidInput
from .nodes import node_class
from .nodes.base import RuleNode

RULE_CHAIN_INPUT = "org.thingsboard.rule.engine.flow.TbRuleChainInputNode"


class UnknownNodeType(InvalidInput):
    """A chain names node types tbpanel does not implement (the message lists them all)."""

    def __init__(self, types: list[str]) -> None:
        self.types = types
        super().__init__(
            "rule chain uses node types tbpanel does not implement: " + ", ".join(sorted(dict.fromkeys(types)))
        )


@dataclass
class Connection:
    from_index: int
    to_index: int
    type: str

    def to_json(self) -> dict[str, Any]:
        return {"fromIndex": self.from_index, "toIndex": self.to_index, "type": self.type}


@dataclass
class ChainNode:
    """One node of a chain: ThingsBoard's node record plus its implementation."""

    impl: RuleNode
    name: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    debug_mode: bool = False
    additional_info: dict[str, Any] | None = None
    configuration_version: int | None = None

    @property
    def type(self) -> str:
        return self.impl.tb_type

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": {"entityType": "RULE_NODE", "id": self.id},
            "additionalInfo": self.additional_info,
            "type": self.type,
            "name": self.name,
            "debugMode": self.debug_mode,
            "configuration": self.impl.to_config(),
        }
        if self.configuration_version is not None:
            out["configurationVersion"] = self.configuration_version
        return out


class RuleChain(param.Parameterized):
    """A tenant's rule chain: nodes, connections, first node, root flag."""

    id = param.String(default="", doc="Chain UUID (given on import when absent).")
    tenant_id = param.String(default="", doc="The owning tenant.")
    title = param.String(default="", doc="The chain's name (ThingsBoard's ruleChain.name).")
    type = param.String(default="CORE", doc="ThingsBoard's chain type; tbpanel runs CORE chains.")
    root = param.Boolean(default=False, doc="The tenant's root chain: every message enters here.")
    debug_mode = param.Boolean(default=False)
    first_node_index = param.Integer(default=None, allow_None=True, doc="Where a message enters; None: nowhere.")
    nodes = param.List(default=[], item_type=ChainNode)
    connections = param.List(default=[], item_type=Connection)
    configuration = param.Dict(default=None, allow_None=True)
    additional_info = param.Dict(default=None, allow_None=True)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not self.id:
            self.id = str(uuid.uuid4())
        self.check()

    def check(self) -> None:
        n = len(self.nodes)
        if self.first_node_index is not None and not 0 <= self.first_node_index < n:
            raise InvalidInput(f"firstNodeIndex {self.first_node_index} is not a node index (0..{n - 1})")
        for c in self.connections:
            if not (0 <= c.from_index < n and 0 <= c.to_index < n):
                raise InvalidInput(f"connection {c.from_index} -> {c.to_index} names a node that does not exist")
            if not isinstance(c.type, str) or not c.type:
                raise InvalidInput("a connection's type (its relation label) must be a non-empty string")

    def targets(self, index: int, relation: str) -> list[int]:
        """Node indexes reached from ``index`` over connections labelled ``relation``."""
        conns = self.connections
        cache = self.__dict__.get("_targets")
        if cache is None or cache[0] is not conns or cache[1] != len(conns):
            table: dict[tuple[int, str], list[int]] = {}
            for c in conns:
                table.setdefault((c.from_index, c.type), []).append(c.to_index)
            cache = self.__dict__["_targets"] = (conns, len(conns), table)
        return cache[2].get((index, relation), [])

    def node_by_id(self, node_id: str) -> tuple[int, ChainNode] | None:
        for i, node in enumerate(self.nodes):
            if node.id == node_id:
                return i, node
        return None

    # -- ThingsBoard's JSON ----------------------------------------------------------------
    def chain_json(self) -> dict[str, Any]:
        """``GET /api/ruleChain/{id}`` (and the export's ``ruleChain``)."""
        return {
            "id": {"entityType": "RULE_CHAIN", "id": self.id},
            "tenantId": {"entityType": "TENANT", "id": self.tenant_id},
            "name": self.title,
            "type": self.type,
            "firstRuleNodeId": (
                {"entityType": "RULE_NODE", "id": self.nodes[self.first_node_index].id}
                if self.first_node_index is not None
                else None
            ),
            "root": self.root,
            "debugMode": self.debug_mode,
            "configuration": self.configuration,
            "additionalInfo": self.additional_info,
        }

    def metadata_json(self) -> dict[str, Any]:
        """``GET /api/ruleChain/{id}/metadata`` (and the export's ``metadata``)."""
        return {
            "ruleChainId": {"entityType": "RULE_CHAIN", "id": self.id},
            "firstNodeIndex": self.first_node_index,
            "nodes": [n.to_json() for n in self.nodes],
            "connections": [c.to_json() for c in self.connections],
            "ruleChainConnections": None,
        }

    def export_json(self) -> dict[str, Any]:
        """The file ThingsBoard's UI downloads (and :func:`import_chain` reads)."""
        return {"ruleChain": self.chain_json(), "metadata": self.metadata_json()}

    def export_text(self) -> str:
        return orjson.dumps(self.export_json(), option=orjson.OPT_INDENT_2).decode()

    def __repr__(self) -> str:
        return f"RuleChain({self.title!r}, {len(self.nodes)} nodes, root={self.root})"


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def _index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {value!r}")
    return value


def _label(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("a connection's type (its relation label) must be a non-empty string")
    return value


def _entity_uuid(value: Any) -> str | None:
    if isinstance(value, Mapping):
        v = value.get("id")
        return str(v) if v else None
    return str(value) if value else None


def build_nodes(nodes: Any) -> list[ChainNode]:
    """ThingsBoard's ``metadata.nodes`` → chain nodes; unknown types all named in one error."""
    if not isinstance(nodes, list):
        raise InvalidInput("metadata.nodes must be an array")
    unknown = []
    for i, raw in enumerate(nodes):
        raw = _obj(raw, f"node {i}")
        t = raw.get("type")
        if not isinstance(t, str) or not t:
            raise InvalidInput(f"node {i} has no type")
        if node_class(t) is None:
            unknown.append(t)
    if unknown:
        raise UnknownNodeType(unknown)
    out = []
    for raw in nodes:
        name = raw.get("name") or ""
        if not isinstance(name, str):
            raise InvalidInput("a node's name must be a string")
        cls = node_class(raw["type"])
        assert cls is not None
        cfg = raw.get("configuration")
        if cfg is not None and not isinstance(cfg, dict):
            raise InvalidInput(f"node {name!r}: configuration must be a JSON object")
        info = raw.get("additionalInfo")
        version = raw.get("configurationVersion")
        out.append(
            ChainNode(
                impl=cls.from_config(cfg, node_name=name),
                name=name,
                id=_entity_uuid(raw.get("id")) or str(uuid.uuid4()),
                debug_mode=bool(raw.get("debugMode")),
                additional_info=info if isinstance(info, dict) else None,
                configuration_version=version if isinstance(version, int) and not isinstance(version, bool) else None,
            )
        )
    return out


def apply_metadata(chain: RuleChain, metadata: Mapping[str, Any]) -> RuleChain:
    """Replace ``chain``'s graph with ThingsBoard's metadata object (``POST
    /api/ruleChain/metadata``'s body, an export's ``metadata``); validates everything first,
    so a refused body leaves ``chain`` as it was."""
    md = _obj(metadata, "metadata")
    nodes = build_nodes([] if md.get("nodes") is None else md["nodes"])
    conns_raw = [] if md.get("connections") is None else md["connections"]
    if not isinstance(conns_raw, list):
        raise InvalidInput("metadata.connections must be an array")
    connections = []
    for c in conns_raw:
        c = _obj(c, "a connection")
        connections.append(
            Connection(
                _index(c.get("fromIndex"), "fromIndex"), _index(c.get("toIndex"), "toIndex"), _label(c.get("type"))
            )
        )
    # ThingsBoard < 3.3: links to other chains as ruleChainConnections → TbRuleChainInputNode
    for rc in md.get("ruleChainConnections") or []:
        rc = _obj(rc, "a ruleChainConnection")
        target = _entity_uuid(rc.get("targetRuleChainId"))
        if not target:
            raise InvalidInput("a ruleChainConnection has no targetRuleChainId")
        cls = node_class(RULE_CHAIN_INPUT)
        assert cls is not None
        info: dict[str, Any] = rc["additionalInfo"] if isinstance(rc.get("additionalInfo"), dict) else {}
        nodes.append(
            ChainNode(
                impl=cls.from_config({"ruleChainId": target}, node_name="rule chain"),
                name=str(info.get("ruleChainNodeId") or f"chain {target}"),
                additional_info={k: v for k, v in info.items() if k in ("layoutX", "layoutY")},
            )
        )
        connections.append(Connection(_index(rc.get("fromIndex"), "fromIndex"), len(nodes) - 1, _label(rc.get("type"))))
    first = md.get("firstNodeIndex")
    first = None if first is None or first == -1 else _index(first, "firstNodeIndex")
    trial = RuleChain(
        id=chain.id, tenant_id=chain.tenant_id, nodes=nodes, connections=connections, first_node_index=first
    )
    chain.param.update(nodes=trial.nodes, connections=trial.connections, first_node_index=trial.first_node_index)
    return chain


def import_chain(data: Mapping[str, Any] | str | bytes, *, tenant_id: str = "", keep_id: bool = False) -> RuleChain:
    """A chain from ThingsBoard's export file (a new id unless ``keep_id``); raises
    InvalidInput / UnknownNodeType / NodeConfigError, all naming what is wrong."""
    if isinstance(data, (str, bytes)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"rule chain file is not JSON: {exc}") from None
    doc = _obj(data, "rule chain file")
    rc = _obj(doc.get("ruleChain"), "ruleChain")
    name = rc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("ruleChain.name must be a non-empty string")
    ctype = rc.get("type") or "CORE"
    if ctype != "CORE":
        raise InvalidInput(f"ruleChain.type {ctype!r} is not supported (tbpanel runs CORE chains)")
    chain = RuleChain(
        id=(_entity_uuid(rc.get("id")) or "") if keep_id else "",
        tenant_id=tenant_id,
        title=name,
        root=bool(rc.get("root")),
        debug_mode=bool(rc.get("debugMode")),
        configuration=rc.get("configuration") if isinstance(rc.get("configuration"), dict) else None,
        additional_info=rc.get("additionalInfo") if isinstance(rc.get("additionalInfo"), dict) else None,
    )
    return apply_metadata(chain, _obj(doc.get("metadata") or {}, "metadata"))

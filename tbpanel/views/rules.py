"""The ``/rules`` page as data: the tenant's chains, the chain being edited, its graph, the
selected node, the script test, the debug events and the dead letters.

Everything goes through :class:`~tbpanel.rules.tenant_rules.TenantRules`, so the page and
``/api/ruleChain*`` obey one set of rules (the tenant's chains only; a chain is validated
whole when saved). :class:`ChainEditor` edits a private copy of a chain — nodes added,
configured, connected, removed — and :meth:`ChainEditor.save` stores it as ThingsBoard's
metadata, exactly what ``POST /api/ruleChain/metadata`` takes. Reads are blocking (SQLite):
the page runs them off the server loop (``ui/background.py``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
import param

from ..clock import now_ms, utc_text
from ..errors import InvalidInput
from ..rules.chain import ChainNode, Connection, RuleChain, import_chain
from ..rules.engine import DebugEvent, NodeCounters, RunResult
from ..rules.nodes import NODE_TYPES
from ..rules.nodes.base import FAILURE, RuleNode
from ..rules.nodes.scripted import ScriptedNode
from ..rules.script_trial import ScriptTrial
from ..rules.tenant_rules import TenantRules

CHAIN_COLUMNS = ["id", "name", "root", "nodes"]
DEBUG_COLUMNS = ["time", "node", "type", "relation", "msgType", "data", "metadata", "error"]
DEAD_COLUMNS = ["id", "failed", "device", "msgType", "error", "attempts"]
_PREFIX = "org.thingsboard.rule.engine."

#: bodies a new script node starts with, so that it is valid (and does something) at once
STARTER_SCRIPTS = {
    "filter.TbJsFilterNode": "return true;",
    "filter.TbJsSwitchNode": "return ['Success'];",
    "transform.TbTransformMsgNode": "return {msg: msg, metadata: metadata, msgType: msgType};",
    "action.TbLogNode": "return 'Incoming message:\\n' + JSON.stringify(msg);",
}
#: ThingsBoard's script test type for each scripted node (how its result is read)
SCRIPT_TYPES = {
    "filter.TbJsFilterNode": "filter",
    "filter.TbJsSwitchNode": "switch",
    "transform.TbTransformMsgNode": "update",
    "action.TbLogNode": "string",
    "action.TbCreateAlarmNode": "json",
    "action.TbClearAlarmNode": "json",
    "debug.TbMsgGeneratorNode": "generate",
}
#: node colours on the graph: never ran, ran (not lately), ran in the last RECENT_MS, has failed
IDLE, RAN, BUSY, FAILED = "#b0b7c3", "#8fc9a5", "#2e9e5b", "#d62d20"
RECENT_MS = 60_000


def short_type(tb_type: str) -> str:
    return tb_type[len(_PREFIX) :] if tb_type.startswith(_PREFIX) else tb_type


def node_types() -> dict[str, str]:
    """``{"Category: ShortName": tb type}`` of every registered node type, for a picker."""
    items = sorted(NODE_TYPES.items(), key=lambda kv: (kv[1].category, kv[0]))
    return {f"{cls.category.title()}: {short_type(t).split('.', 1)[-1]}": t for t, cls in items}


def export_name(title: str) -> str:
    """The file name of a chain's export (``thermostat_alarms.json``)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in title.lower()) or "rule_chain"
    return f"{safe}.json"


def _ms_text(ms: int) -> str:
    return utc_text(ms or None, seconds=True)


# -- the chains -------------------------------------------------------------------------------
class ChainList(param.Parameterized):
    """The tenant's chains and what may be done to them as a whole."""

    selected = param.String(default="", doc="Id of the chain being edited.")

    def __init__(self, rules: TenantRules, **params: Any) -> None:
        super().__init__(**params)
        self.rules = rules

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"id": c.id, "name": c.title, "root": "★ root" if c.root else "", "nodes": len(c.nodes)}
                for c in self.rules.chains()
            ],
            columns=CHAIN_COLUMNS,
        )

    def create(self, name: str) -> RuleChain:
        chain = self.rules.create(name)
        self.selected = chain.id
        return chain

    def make_root(self, chain_id: str) -> RuleChain:
        return self.rules.set_root(chain_id)

    def delete(self, chain_id: str) -> None:
        self.rules.delete(chain_id)
        if self.selected == chain_id:
            self.selected = ""

    def import_file(self, data: bytes | str) -> RuleChain:
        """ThingsBoard's export file as a new chain (never root: make it root explicitly)."""
        chain = self.rules.import_json(data)
        self.selected = chain.id
        return chain

    def export_file(self, chain_id: str) -> tuple[str, str]:
        """(file name, ThingsBoard's export JSON text) of a chain."""
        chain = self.rules.get(chain_id)
        return export_name(chain.title), chain.export_text()

    def dead_letters(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "id": d.id,
                    "failed": _ms_text(d.failed_ms),
                    "device": d.msg.metadata.get("deviceName") or d.msg.originator.id,
                    "msgType": d.msg.type,
                    "error": d.error,
                    "attempts": d.attempts,
                }
                for d in self.rules.dead_letters()
            ],
            columns=DEAD_COLUMNS,
        )

    def retry(self, dead_id: int) -> None:
        self.rules.retry_dead(int(dead_id))


# -- the graph --------------------------------------------------------------------------------
@dataclass
class GraphData:
    """Columns of the graph's two data sources (nodes, edges), in plot coordinates (y up)."""

    nodes: dict[str, list[Any]]
    edges: dict[str, list[Any]]


def layered_layout(chain: RuleChain) -> list[tuple[float, float]]:
    """ThingsBoard's ``additionalInfo.layoutX/Y`` when every node has them (y flipped: screen
    y grows down); otherwise layers by distance from the first node, left to right."""
    infos = [n.additional_info or {} for n in chain.nodes]
    if chain.nodes and all(
        isinstance(i.get("layoutX"), (int, float)) and isinstance(i.get("layoutY"), (int, float)) for i in infos
    ):
        return [(float(i["layoutX"]), -float(i["layoutY"])) for i in infos]
    n = len(chain.nodes)
    layer = [-1] * n
    start = chain.first_node_index if chain.first_node_index is not None else 0
    queue: deque[int] = deque()
    if n:
        layer[start] = 0
        queue.append(start)
    while queue:
        i = queue.popleft()
        for c in chain.connections:
            if c.from_index == i and layer[c.to_index] < 0:
                layer[c.to_index] = layer[i] + 1
                queue.append(c.to_index)
    deepest = max(layer, default=0)
    for i in range(n):  # unreachable nodes: a column of their own after the rest
        if layer[i] < 0:
            layer[i] = deepest + 1
    rows: dict[int, int] = {}
    out = []
    for i in range(n):
        row = rows.get(layer[i], 0)
        rows[layer[i]] = row + 1
        out.append((120.0 + 240 * layer[i], -(80.0 + 110 * row)))
    return out


def node_colour(c: NodeCounters | None, now: int) -> str:
    """Grey: never ran; red: a message failed in it; green: it ran (bright: in the last minute)."""
    if c is None or (c.received == 0 and not c.relations):
        return IDLE
    if c.failures:
        return FAILED
    return BUSY if now - c.last_ts <= RECENT_MS else RAN


def graph_data(
    chain: RuleChain, counters: dict[str, NodeCounters], selected: int | None, now: int | None = None
) -> GraphData:
    now = now_ms() if now is None else now
    pos = layered_layout(chain)
    nodes: dict[str, list[Any]] = {k: [] for k in ("x", "y", "name", "type", "colour", "line", "label", "index")}
    for i, node in enumerate(chain.nodes):
        c = counters.get(node.id)
        nodes["x"].append(pos[i][0])
        nodes["y"].append(pos[i][1])
        nodes["name"].append(node.name)
        nodes["type"].append(short_type(node.type))
        nodes["colour"].append(node_colour(c, now))
        nodes["line"].append("#0b6bcb" if i == selected else ("#222" if i == chain.first_node_index else "#fff"))
        traffic = f"{c.received} in · {c.failures} failed" if c is not None else "idle"
        nodes["label"].append(f"{node.name} ({traffic})")
        nodes["index"].append(i)
    edges: dict[str, list[Any]] = {k: [] for k in ("xs", "ys", "label", "mx", "my")}
    for conn in chain.connections:
        (x0, y0), (x1, y1) = pos[conn.from_index], pos[conn.to_index]
        edges["xs"].append([x0, x1])
        edges["ys"].append([y0, y1])
        edges["label"].append(conn.type)
        edges["mx"].append((x0 + x1) / 2)
        edges["my"].append((y0 + y1) / 2)
    return GraphData(nodes, edges)


# -- the chain being edited -------------------------------------------------------------------
class ChainEditor(param.Parameterized):
    """A private, editable copy of one chain; :meth:`save` validates and stores it."""

    selected = param.Integer(default=None, allow_None=True, doc="Index of the selected node.")
    dirty = param.Boolean(default=False, doc="Edited since the last save.")
    version = param.Integer(default=0, doc="Bumped on every change of the graph (what a page redraws on).")

    def __init__(self, rules: TenantRules, chain: RuleChain, **params: Any) -> None:
        super().__init__(**params)
        self.rules = rules
        self.chain = import_chain(chain.export_json(), tenant_id=rules.tenant_id, keep_id=True)

    @property
    def title(self) -> str:
        return self.chain.title

    def _changed(self) -> None:
        self.dirty = True
        self.version += 1

    # -- nodes -----------------------------------------------------------------------------
    def node(self, index: int | None = None) -> ChainNode:
        i = self.selected if index is None else index
        if i is None or not 0 <= i < len(self.chain.nodes):
            raise InvalidInput("no node is selected")
        return self.chain.nodes[i]

    def form_params(self, index: int | None = None) -> list[str]:
        """The node's configuration parameters for a generated form (scripts apart: they get
        the script editor)."""
        impl = self.node(index).impl
        scripts = set(impl.script_params) if isinstance(impl, ScriptedNode) else set()
        return [p for p in impl.config_params() if p not in scripts and p != "script_lang"]

    def script_param(self, index: int | None = None) -> str | None:
        """The parameter holding the node's JavaScript body (None: not a script node)."""
        impl = self.node(index).impl
        return impl.script_params[0] if isinstance(impl, ScriptedNode) else None

    def add_node(self, tb_type: str, name: str) -> int:
        """A node of any registered type with its default configuration (script nodes start
        with a working body); in debug mode, so its events show at once. Returns its index."""
        cls = NODE_TYPES.get(tb_type) or NODE_TYPES.get(_PREFIX + tb_type)
        if cls is None:
            raise InvalidInput(f"unknown node type {tb_type!r}")
        config: dict[str, Any] = {}
        starter = STARTER_SCRIPTS.get(short_type(cls.tb_type))
        if starter is not None:
            config["jsScript"] = starter
        impl = cls.from_config(config, node_name=name)
        info = {"layoutX": 120 + 240 * (len(self.chain.nodes) % 5), "layoutY": 80 + 110 * (len(self.chain.nodes) // 5)}
        self.chain.nodes = [
            *self.chain.nodes,
            ChainNode(impl=impl, name=name.strip() or short_type(cls.tb_type), debug_mode=True, additional_info=info),
        ]
        if self.chain.first_node_index is None:
            self.chain.first_node_index = 0
        self.selected = len(self.chain.nodes) - 1
        self._changed()
        return self.selected

    def apply_node(self, index: int, *, name: str, debug_mode: bool, values: dict[str, Any]) -> None:
        """Take the form's values for one node: the node is rebuilt from the configuration they
        make (scripts compiled, values checked), so a bad value is refused naming the node."""
        node = self.node(index)
        config = node.impl.to_config()
        for pname, value in values.items():
            config[node.impl.config_key(pname)] = value
        impl: RuleNode = type(node.impl).from_config(config, node_name=name)
        node.impl, node.name, node.debug_mode = impl, name.strip() or node.name, debug_mode
        self._changed()

    def remove_node(self, index: int) -> None:
        nodes = list(self.chain.nodes)
        del nodes[index]

        def moved(i: int) -> int:
            return i - 1 if i > index else i

        conns = [
            Connection(moved(c.from_index), moved(c.to_index), c.type)
            for c in self.chain.connections
            if index not in (c.from_index, c.to_index)
        ]
        first = self.chain.first_node_index
        first = None if not nodes else (0 if first is None or first == index else moved(first))
        self.chain.param.update(nodes=nodes, connections=conns, first_node_index=first)
        self.selected = None
        self._changed()

    def set_first(self, index: int) -> None:
        self.node(index)
        self.chain.first_node_index = index
        self._changed()

    # -- connections -----------------------------------------------------------------------
    def connect(self, from_index: int, to_index: int, label: str) -> None:
        label = label.strip()
        if not label:
            raise InvalidInput("a connection needs a relation label (Success, True, …)")
        self.node(from_index), self.node(to_index)
        if any((c.from_index, c.to_index, c.type) == (from_index, to_index, label) for c in self.chain.connections):
            raise InvalidInput("that connection exists already")
        self.chain.connections = [*self.chain.connections, Connection(from_index, to_index, label)]
        self._changed()

    def disconnect(self, position: int) -> None:
        conns = list(self.chain.connections)
        del conns[position]
        self.chain.connections = conns
        self._changed()

    def connection_labels(self) -> dict[str, int]:
        """``{"a -[True]-> b": position}`` for a picker."""
        names = [n.name for n in self.chain.nodes]
        return {
            f"{names[c.from_index]} -[{c.type}]-> {names[c.to_index]} (#{i})": i
            for i, c in enumerate(self.chain.connections)
        }

    def node_labels(self) -> dict[str, int]:
        return {f"{n.name} (#{i})": i for i, n in enumerate(self.chain.nodes)}

    # -- saving, trying ----------------------------------------------------------------------
    def save(self) -> RuleChain:
        """Store the graph (ThingsBoard's metadata); the stored chain is re-read, so what the
        page shows is what runs."""
        saved = self.rules.save_metadata(self.chain.id, self.chain.metadata_json())
        self.chain = import_chain(saved.export_json(), tenant_id=self.rules.tenant_id, keep_id=True)
        self.dirty = False
        self.version += 1
        return saved

    def test_script(self, body: str, msg_text: str, metadata_text: str, msg_type: str) -> ScriptTrial:
        """The selected script node's body on a sample message (ThingsBoard's Test button)."""
        node = self.node()
        script_type = SCRIPT_TYPES.get(short_type(node.type), "json")
        try:
            metadata = orjson.loads(metadata_text or "{}")
        except orjson.JSONDecodeError as exc:
            return ScriptTrial(error=f"the sample metadata is not JSON: {exc}")
        if not isinstance(metadata, dict):
            return ScriptTrial(error="the sample metadata must be a JSON object")
        return self.rules.try_script(body, script_type, msg=msg_text or "{}", metadata=metadata, msg_type=msg_type)

    def run_sample(self, device_id: str, data_text: str, msg_type: str) -> RunResult:
        """Send one message from a device through the *saved* chain now (real effects)."""
        try:
            data = orjson.loads(data_text or "{}")
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the message is not JSON: {exc}") from None
        if self.dirty:
            raise InvalidInput("save the chain first: messages run through the saved chain")
        msg = self.rules.sample_message(device_id, data, msg_type=msg_type)
        return self.rules.run_sample(self.chain.id, msg)

    def counters(self) -> dict[str, NodeCounters]:
        return self.rules.counters(self.chain.id)

    def debug_frame(self, limit: int = 200) -> pd.DataFrame:
        return debug_frame(self.rules.debug_events(self.chain.id, limit=limit))


def debug_frame(events: list[DebugEvent]) -> pd.DataFrame:
    """Debug events as table rows, newest first."""
    return pd.DataFrame(
        [
            {
                "time": _ms_text(e.ts),
                "node": e.node_name,
                "type": e.kind,
                "relation": e.relation or "",
                "msgType": e.msg.type,
                "data": orjson.dumps(e.msg.data).decode()[:300],
                "metadata": orjson.dumps(dict(e.msg.metadata)).decode()[:300],
                "error": e.error or "",
            }
            for e in reversed(events)
        ],
        columns=DEBUG_COLUMNS,
    )


def run_text(result: RunResult) -> str:
    """How a sample message ended, one line per path."""
    lines = [
        f"- **{e.node_name}** → `{e.relation}`"
        + (f": {e.msg.metadata.get('error', '')}" if e.relation == FAILURE else "")
        for e in result.ended
    ]
    return ("✔ done\n" if result.ok else "✖ failed\n") + "\n".join(lines or ["- (the chain has no first node)"])

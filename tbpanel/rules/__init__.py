"""The rule engine: ThingsBoard's messages, rule chains and nodes (no Panel import).

- :mod:`.message` — :class:`TbMsg` and ThingsBoard's message types.
- :mod:`.chain` — :class:`RuleChain` (nodes, labelled connections) and ThingsBoard's rule
  chain JSON in (:func:`import_chain`, :func:`apply_metadata`) and out (``export_json``).
- :mod:`.nodes` — the node implementations, one ``param.Parameterized`` each, registered by
  ThingsBoard class name; :mod:`.script` — the sandboxed JavaScript they run.
- :mod:`.engine` — :class:`RuleEngine`: runs messages, debug events, per-node counters.
- :mod:`.defaults` — the root chain of a new tenant.
- :mod:`.queue` — :class:`RuleQueue`: the durable queue in ``rules.sqlite`` (per-originator
  order, retries, dead letters) and its worker thread; :mod:`.store` — :class:`RuleChainStore`:
  the tenants' chains in the same file, kept in step with the engine.
"""

from .chain import ChainNode, Connection, RuleChain, UnknownNodeType, apply_metadata, import_chain
from .context import NodeContext, Services
from .defaults import default_root_chain, default_root_json
from .engine import DebugEvent, NodeCounters, RuleEngine, RuleEngineError, RunResult
from .message import TYPE_RELATIONS, EntityRef, TbMsg, device_msg, telemetry_msgs
from .nodes import NODE_TYPES, NodeConfigError, RuleNode
from .queue import DeadLetter, Outcome, RuleQueue
from .script import ScriptEngine, ScriptError
from .store import RuleChainStore

__all__ = [
    "NODE_TYPES",
    "TYPE_RELATIONS",
    "ChainNode",
    "Connection",
    "DeadLetter",
    "DebugEvent",
    "EntityRef",
    "NodeConfigError",
    "NodeContext",
    "NodeCounters",
    "Outcome",
    "RuleChain",
    "RuleChainStore",
    "RuleEngine",
    "RuleEngineError",
    "RuleNode",
    "RuleQueue",
    "RunResult",
    "ScriptEngine",
    "ScriptError",
    "Services",
    "TbMsg",
    "UnknownNodeType",
    "apply_metadata",
    "default_root_chain",
    "default_root_json",
    "device_msg",
    "import_chain",
    "telemetry_msgs",
]

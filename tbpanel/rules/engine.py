"""The rule engine: runs a message through a tenant's chains, node by node.

Each node's output follows every connection with the relation it emitted; no connection
means the message is done on that path. An exception inside a node becomes ``Failure`` with
the error in metadata ``error``. Every step is announced on :attr:`RuleEngine.debug` (a
:class:`~tbpanel.events.Signal` of :class:`DebugEvent`, what the ``/rules`` page streams) and
counted per node (:class:`NodeCounters`). The engine is synchronous and in-process: it runs on
whichever thread calls :meth:`RuleEngine.process` (the delivery queue's worker), and the timer
nodes (delay, deduplication, message count, generator) advance when :meth:`RuleEngine.tick` is
called with the current time — so tests drive time themselves.

:class:`RunResult` says how a message ended: the relations it left the chain by, and the
failures no connection handled (an unhandled failure of an external node is what the delivery
queue retries).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..events import Signal
from .chain import ChainNode, RuleChain
from .context import NodeContext, Services
from .message import TbMsg
from .nodes.base import FAILURE, Outputs
from .nodes.flow import RuleChainOutputNode

log = logging.getLogger("tbpanel.rules")

#: chain → chain calls deeper than this are a loop: Failure
MAX_CHAIN_DEPTH = 16
#: node executions one message may cause (a cycle of connections ends here, as Failure)
MAX_STEPS = 10_000


class RuleEngineError(Exception):
    """The engine could not run a message at all (no root chain, unknown chain)."""


@dataclass(frozen=True)
class DebugEvent:
    """One node seeing a message: ``IN`` (received) or ``OUT`` (emitted with ``relation``)."""

    tenant_id: str
    chain_id: str
    node_id: str
    node_name: str
    kind: str
    msg: TbMsg
    relation: str | None = None
    error: str | None = None
    ts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "ruleChainId": self.chain_id,
            "ruleNodeId": self.node_id,
            "nodeName": self.node_name,
            "type": self.kind,
            "relationType": self.relation,
            "error": self.error,
            "ts": self.ts,
            "msgId": self.msg.id,
            "msgType": self.msg.type,
            "data": self.msg.data,
            "metadata": dict(self.msg.metadata),
        }


@dataclass
class NodeCounters:
    """What a node has done since the engine started."""

    received: int = 0
    failures: int = 0
    relations: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None
    last_ts: int = 0


@dataclass
class Ended:
    """One path's end: the last node, the relation it emitted (with no connection for it) and
    the message; for a failure also the message the node was given (what a retry resends)."""

    chain_id: str
    node_id: str
    node_name: str
    relation: str
    msg: TbMsg
    external: bool = False
    node_index: int = -1
    input: TbMsg | None = None


@dataclass
class RunResult:
    """How one message ended: every path's last node and relation."""

    ended: list[Ended] = field(default_factory=list)

    @property
    def unhandled_failures(self) -> list[Ended]:
        return [e for e in self.ended if e.relation == FAILURE]

    @property
    def external_failures(self) -> list[Ended]:
        """Failures of nodes that talk to outside systems (what the queue retries)."""
        return [e for e in self.unhandled_failures if e.external]

    @property
    def ok(self) -> bool:
        return not self.unhandled_failures


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 1000 else text[:1000] + "…"


class RuleEngine:
    """The chains of every tenant, and the one way to run a message through them."""

    def __init__(self, services: Services | None = None) -> None:
        self.services = services or Services()
        self._lock = threading.RLock()
        self._chains: dict[str, dict[str, RuleChain]] = {}  # tenant → chain id → chain
        self.counters: dict[str, NodeCounters] = {}  # node id → counters
        #: ``fn(DebugEvent)`` for every step of nodes in debug mode (or every step when
        #: ``debug_all``); called on the processing thread, listeners must be quick
        self.debug: Signal[[DebugEvent]] = Signal("rules.debug")
        self.debug_all = False

    # -- chains ----------------------------------------------------------------------------
    def set_chain(self, chain: RuleChain) -> None:
        """Install (or replace) a chain; making it root unsets the tenant's previous root."""
        if not chain.tenant_id:
            raise ValueError("a chain needs its tenant_id before it can run")
        with self._lock:
            chains = self._chains.setdefault(chain.tenant_id, {})
            if chain.root:
                for other in chains.values():
                    if other.id != chain.id:
                        other.root = False
            old = chains.get(chain.id)
            chains[chain.id] = chain
            if old is not None and old is not chain:
                _close_nodes(old)
            now = self.services.clock()
            for node in chain.nodes:
                start = getattr(node.impl, "start", None)
                if callable(start) and node.impl.due() is None:
                    start(now)

    def remove_chain(self, tenant_id: str, chain_id: str) -> None:
        with self._lock:
            old = self._chains.get(tenant_id, {}).pop(chain_id, None)
        if old is not None:
            _close_nodes(old)

    def chains(self, tenant_id: str) -> list[RuleChain]:
        with self._lock:
            return list(self._chains.get(tenant_id, {}).values())

    def chain(self, tenant_id: str, chain_id: str) -> RuleChain:
        with self._lock:
            c = self._chains.get(tenant_id, {}).get(chain_id)
        if c is None:
            raise RuleEngineError(f"rule chain {chain_id} not found")
        return c

    def root(self, tenant_id: str) -> RuleChain:
        with self._lock:
            for c in self._chains.get(tenant_id, {}).values():
                if c.root:
                    return c
        raise RuleEngineError(f"tenant {tenant_id} has no root rule chain")

    # -- running ---------------------------------------------------------------------------
    def process(self, msg: TbMsg, chain_id: str | None = None) -> RunResult:
        """Run ``msg`` through its tenant's root chain (or ``chain_id``) to the end."""
        if not msg.tenant_id:
            raise RuleEngineError("the message has no tenant")
        chain = self.chain(msg.tenant_id, chain_id) if chain_id else self.root(msg.tenant_id)
        result = RunResult()
        if chain.first_node_index is not None:
            self._run(chain, [(chain.first_node_index, msg)], result, depth=0, collect=None)
        return result

    def process_at(self, tenant_id: str, chain_id: str, node_index: int, msg: TbMsg) -> RunResult:
        """Run ``msg`` from one node of a chain on (a retry of the node that failed)."""
        chain = self.chain(tenant_id, chain_id)
        if not 0 <= node_index < len(chain.nodes):
            raise RuleEngineError(f"rule chain {chain_id} has no node {node_index}")
        result = RunResult()
        self._run(chain, [(node_index, msg)], result, depth=0, collect=None)
        return result

    def process_node(self, tenant_id: str, chain_id: str, node_id: str, msg: TbMsg) -> RunResult:
        """Run ``msg`` through one node only: what it emits ends there, whatever the node's
        connections say (the default root chain's device profile step, when the rest of that
        chain ran compiled in the transport: see :mod:`.ingress`)."""
        chain = self.chain(tenant_id, chain_id)
        found = chain.node_by_id(node_id)
        if found is None:
            raise RuleEngineError(f"rule chain {chain_id} has no node {node_id}")
        index, node = found
        result = RunResult()
        self._emit(chain, node, "IN", msg, None, None)
        self._count(node, None, None)
        error: str | None = None
        try:
            outputs = node.impl.process(self._context(chain, node, 0, result), msg)
        except Exception as exc:
            error = f"{type(exc).__name__}: {_error_text(exc)}"
            outputs = [(FAILURE, msg.copy(metadata={**msg.metadata, "error": error}))]
        for relation, out in outputs:
            failed = error if relation == FAILURE else None
            self._emit(chain, node, "OUT", out, relation, failed)
            self._count(node, relation, failed)
            result.ended.append(Ended(chain.id, node.id, node.name, relation, out, node.impl.external, index, msg))
        return result

    def tick(self, now: int | None = None) -> RunResult:
        """Let timer nodes emit what is due at ``now`` and run it on through their chains."""
        now = self.services.clock() if now is None else now
        result = RunResult()
        with self._lock:
            chains = [c for per in self._chains.values() for c in per.values()]
        for chain in chains:
            for i, node in enumerate(chain.nodes):
                due = node.impl.due()
                if due is None or due > now:
                    continue
                ctx = self._context(chain, node, 0, result)
                try:
                    outputs = node.impl.tick(ctx, now)
                except Exception as exc:
                    self._count(node, FAILURE, f"{type(exc).__name__}: {_error_text(exc)}")
                    continue
                work: deque[tuple[int, TbMsg]] = deque()
                for relation, out in outputs:
                    self._emit(chain, node, "OUT", out, relation, None)
                    self._count(node, relation, None)
                    self._follow(chain, i, node, relation, out, work, result, None, None)
                if work:
                    self._run(chain, list(work), result, depth=0, collect=None)
        return result

    def next_due(self) -> int | None:
        """The earliest time a timer node has work (None: none has)."""
        with self._lock:
            dues = [n.impl.due() for per in self._chains.values() for c in per.values() for n in c.nodes]
        return min((d for d in dues if d is not None), default=None)

    def _context(
        self, chain: RuleChain, node: ChainNode, depth: int = 0, result: RunResult | None = None
    ) -> NodeContext:
        def call_chain(chain_id: str, msg: TbMsg) -> Outputs:
            """Paths that end inside the called chain end the message there (into ``result``);
            what reaches its output nodes comes back to the calling node."""
            if depth + 1 > MAX_CHAIN_DEPTH:
                raise RecursionError(f"rule chains call each other more than {MAX_CHAIN_DEPTH} deep")
            target = self.root(chain.tenant_id) if not chain_id else self.chain(chain.tenant_id, chain_id)
            collected: Outputs = []
            if target.first_node_index is not None:
                self._run(target, [(target.first_node_index, msg)], result or RunResult(), depth + 1, collected)
            return collected

        return NodeContext(
            services=self.services,
            tenant_id=chain.tenant_id,
            chain_id=chain.id,
            node_id=node.id,
            node_name=node.name,
            call_chain=call_chain,
        )

    def _run(
        self,
        chain: RuleChain,
        start: Iterable[tuple[int, TbMsg]],
        result: RunResult,
        depth: int,
        collect: Outputs | None,
    ) -> None:
        """Breadth-first through ``chain``; output nodes' messages go to ``collect`` (the
        calling flow node) instead of ending."""
        work: deque[tuple[int, TbMsg]] = deque(start)
        steps = 0
        nodes = chain.nodes
        while work:
            index, msg = work.popleft()
            node = nodes[index]
            steps += 1
            if steps > MAX_STEPS:
                raise_msg = msg.copy(metadata={**msg.metadata, "error": f"more than {MAX_STEPS} node steps (a loop?)"})
                result.ended.append(Ended(chain.id, node.id, node.name, FAILURE, raise_msg))
                return
            self._emit(chain, node, "IN", msg, None, None)
            self._count(node, None, None)
            if isinstance(node.impl, RuleChainOutputNode):
                if collect is not None:
                    collect.append((node.name, msg))
                else:
                    result.ended.append(Ended(chain.id, node.id, node.name, node.name, msg))
                continue
            error: str | None = None
            try:
                outputs = node.impl.process(self._context(chain, node, depth, result), msg)
            except Exception as exc:
                error = f"{type(exc).__name__}: {_error_text(exc)}"
                outputs = [(FAILURE, msg.copy(metadata={**msg.metadata, "error": error}))]
            for relation, out in outputs:
                self._emit(chain, node, "OUT", out, relation, error if relation == FAILURE else None)
                self._count(node, relation, error if relation == FAILURE else None)
                self._follow(chain, index, node, relation, out, work, result, collect, msg)

    def _follow(
        self,
        chain: RuleChain,
        index: int,
        node: ChainNode,
        relation: str,
        msg: TbMsg,
        work: deque[tuple[int, TbMsg]],
        result: RunResult,
        collect: Outputs | None,
        given: TbMsg | None,
    ) -> None:
        targets = chain.targets(index, relation)
        if not targets:
            result.ended.append(Ended(chain.id, node.id, node.name, relation, msg, node.impl.external, index, given))
            return
        for t in targets:
            work.append((t, msg))

    def _emit(
        self, chain: RuleChain, node: ChainNode, kind: str, msg: TbMsg, relation: str | None, error: str | None
    ) -> None:
        if (node.debug_mode or self.debug_all) and len(self.debug):
            self.debug.emit(
                DebugEvent(
                    chain.tenant_id, chain.id, node.id, node.name, kind, msg, relation, error, self.services.clock()
                )
            )

    def _count(self, node: ChainNode, relation: str | None, error: str | None) -> None:
        with self._lock:
            c = self.counters.get(node.id)
            if c is None:
                c = self.counters[node.id] = NodeCounters()
            if relation is None:
                c.received += 1
            else:
                c.relations[relation] += 1
            if error is not None:
                c.failures += 1
                c.last_error = error
            c.last_ts = self.services.clock()

    def close(self) -> None:
        with self._lock:
            chains = [c for per in self._chains.values() for c in per.values()]
            self._chains.clear()
        for c in chains:
            _close_nodes(c)
        self.services.close()


def _close_nodes(chain: RuleChain) -> None:
    for node in chain.nodes:
        try:
            node.impl.close()
        except Exception:  # a node's cleanup must not stop the others'
            log.exception("closing rule node %r failed", node.name)

"""The durable queue between producers (transports, internal events) and the rule chains.

Its own SQLite file (``rules.sqlite``, opened through :mod:`tbpanel.sqlite`: WAL,
``synchronous=FULL``, numbered migrations), so :meth:`RuleQueue.put` returning means the
messages are on disk: a device's ack can mean "durably queued".

- **Per-originator order**: only the oldest waiting message of an originator is processed;
  the next one waits until it is done (ThingsBoard's SEQUENTIAL_BY_ORIGINATOR).
- **At-least-once**: a message leaves the queue only after the engine finished it, in the
  same transaction that records the outcome; a crash (``kill -9``) mid-way runs it again.
- **Retries**: when an *external* node fails (broker down, HTTP 5xx) the message stays at the
  head of its originator with the failed nodes and their input remembered (``resume``); it
  is retried from those nodes only, after a back-off (doubling from ``retry_base_ms`` up to
  ``retry_max_ms``), forever unless ``max_attempts`` is set.
- **Dead letters**: a message that fails in a non-external node with no Failure connection
  (or runs out of attempts, or whose chain is gone) is moved to ``dead_letter`` with its
  error; :meth:`RuleQueue.retry_dead` puts it back at the end of the queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..clock import now_ms
from ..events import Signal
from ..sqlite import Database
from .engine import RuleEngine, RuleEngineError, RunResult
from .message import TbMsg

log = logging.getLogger("tbpanel.rules.queue")

FILE = "rules.sqlite"

MIGRATIONS = [
    """
    CREATE TABLE queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        originator TEXT NOT NULL,
        msg TEXT NOT NULL,
        enqueued_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        resume TEXT
    );
    CREATE INDEX queue_by_originator ON queue (originator, seq);
    CREATE TABLE dead_letter (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        originator TEXT NOT NULL,
        msg TEXT NOT NULL,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        enqueued_ms INTEGER NOT NULL,
        failed_ms INTEGER NOT NULL
    );
    CREATE INDEX dead_letter_by_tenant ON dead_letter (tenant_id, id);
    """,
    # 2: the tenants' rule chains (tbpanel/rules/store.py), as ThingsBoard's export JSON
    """
    CREATE TABLE rule_chain (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        root INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX rule_chain_by_tenant ON rule_chain (tenant_id, name);
    CREATE UNIQUE INDEX rule_chain_one_root ON rule_chain (tenant_id) WHERE root = 1;
    """,
    # 3: what rule nodes remember per entity across restarts (tbpanel/rules/node_state.py)
    """
    CREATE TABLE rule_node_state (
        node_id TEXT NOT NULL,
        entity_type TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (node_id, entity_id)
    );
    """,
]


@dataclass(frozen=True)
class DeadLetter:
    id: int
    tenant_id: str
    msg: TbMsg
    error: str
    attempts: int
    enqueued_ms: int
    failed_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "msg": self.msg.to_json(),
            "error": self.error,
            "attempts": self.attempts,
            "enqueuedTs": self.enqueued_ms,
            "failedTs": self.failed_ms,
        }


@dataclass(frozen=True)
class Outcome:
    """What one processing step did with one queued message."""

    seq: int
    msg_id: str
    state: str  # DONE, RETRY, DEAD
    error: str | None = None


def _originator(msg: TbMsg) -> str:
    return f"{msg.originator.entity_type}:{msg.originator.id}"


class RuleQueue:
    """Queued messages, their retries and the dead-letter list, in one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        retry_base_ms: int = 1000,
        retry_max_ms: int = 60_000,
        max_attempts: int | None = None,
        clock: Any = now_ms,
    ) -> None:
        p = Path(path)
        if p.is_dir():
            p = p / FILE
        self.path = str(p)
        self.db = Database(self.path, MIGRATIONS, what=self.path)
        self.retry_base_ms = retry_base_ms
        self.retry_max_ms = retry_max_ms
        self.max_attempts = max_attempts
        self.clock = clock
        self._wake = threading.Event()
        #: ``fn(outcomes)`` after each processing step committed (the UI's counters, tests)
        self.processed: Signal[[list[Outcome]]] = Signal("rules.queue.processed")

    def close(self) -> None:
        self.db.close()

    # -- producers -------------------------------------------------------------------------
    def put(self, msgs: Iterable[TbMsg], *, only: tuple[str, str] | None = None) -> int:
        """Append messages; durable when this returns. Returns how many.

        ``only=(chain id, node id)``: each message is run through that one node and ends
        there (:meth:`RuleEngine.process_node`) instead of entering its tenant's root chain."""
        t = self.clock()
        rows = []
        for m in msgs:
            text = orjson.dumps(m.to_json()).decode()
            resume = None
            if only is not None:
                step = {"chain": only[0], "nodeId": only[1], "only": True, "msg": m.to_json()}
                resume = orjson.dumps([step]).decode()
            rows.append((m.tenant_id, _originator(m), text, t, resume))
        if not rows:
            return 0
        if any(not r[0] for r in rows):
            raise ValueError("every queued message needs its tenant_id")
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO queue (tenant_id, originator, msg, enqueued_ms, resume) VALUES (?, ?, ?, ?, ?)", rows
            )
        self._wake.set()
        return len(rows)

    # -- reading ---------------------------------------------------------------------------
    def size(self, tenant_id: str | None = None) -> int:
        if tenant_id is None:
            row = self.db.one("SELECT count(*) FROM queue")
        else:
            row = self.db.one("SELECT count(*) FROM queue WHERE tenant_id = ?", (tenant_id,))
        return int(row[0]) if row else 0

    def waiting(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's queued messages with their retry state, oldest first."""
        rows = self.db.all(
            "SELECT seq, msg, attempts, next_attempt_ms, last_error FROM queue WHERE tenant_id = ? ORDER BY seq",
            (tenant_id,),
        )
        return [
            {"seq": s, "msg": orjson.loads(m), "attempts": a, "nextAttemptTs": n, "lastError": e}
            for s, m, a, n, e in rows
        ]

    def dead_letters(self, tenant_id: str, limit: int = 100) -> list[DeadLetter]:
        rows = self.db.all(
            "SELECT id, tenant_id, msg, error, attempts, enqueued_ms, failed_ms FROM dead_letter "
            "WHERE tenant_id = ? ORDER BY id DESC LIMIT ?",
            (tenant_id, int(limit)),
        )
        return [DeadLetter(i, t, TbMsg.from_json(orjson.loads(m)), e, a, q, f) for i, t, m, e, a, q, f in rows]

    def retry_dead(self, tenant_id: str, dead_id: int) -> bool:
        """Put a dead letter back at the end of the queue (from the root chain); False if the
        tenant has no such dead letter."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT originator, msg FROM dead_letter WHERE id = ? AND tenant_id = ?", (int(dead_id), tenant_id)
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT INTO queue (tenant_id, originator, msg, enqueued_ms) VALUES (?, ?, ?, ?)",
                (tenant_id, row[0], row[1], self.clock()),
            )
            conn.execute("DELETE FROM dead_letter WHERE id = ?", (int(dead_id),))
        self._wake.set()
        return True

    def next_due(self) -> int | None:
        row = self.db.one(
            "SELECT min(q.next_attempt_ms) FROM queue q WHERE q.seq = "
            "(SELECT min(seq) FROM queue WHERE originator = q.originator)"
        )
        return None if row is None or row[0] is None else int(row[0])

    # -- the consumer ----------------------------------------------------------------------
    def heads(self, now: int, limit: int) -> list[tuple[int, str, str, int, str | None]]:
        """The oldest message of each originator that is due: ``(seq, tenant, msg, attempts, resume)``."""
        return [
            (int(s), str(t), str(m), int(a), r)
            for s, t, m, a, r in self.db.all(
                "SELECT q.seq, q.tenant_id, q.msg, q.attempts, q.resume FROM queue q "
                "WHERE q.next_attempt_ms <= ? AND q.seq = (SELECT min(seq) FROM queue WHERE originator = q.originator) "
                "ORDER BY q.seq LIMIT ?",
                (int(now), int(limit)),
            )
        ]

    def process_due(self, engine: RuleEngine, *, limit: int = 100) -> list[Outcome]:
        """Run every due head message through ``engine`` and record each outcome."""
        now = self.clock()
        outcomes = []
        for seq, tenant, text, attempts, resume in self.heads(now, limit):
            outcomes.append(self._process_one(engine, seq, tenant, text, attempts, resume))
        if outcomes:
            self.processed.emit(outcomes)
        return outcomes

    def _process_one(
        self, engine: RuleEngine, seq: int, tenant: str, text: str, attempts: int, resume: str | None
    ) -> Outcome:
        msg = TbMsg.from_json(orjson.loads(text))
        only = False
        try:
            if resume is None:
                result = engine.process(msg)
            else:
                result = RunResult()
                steps = orjson.loads(resume)
                only = any(step.get("only") for step in steps)
                for step in steps:
                    given = TbMsg.from_json(step["msg"])
                    if step.get("only"):
                        part = engine.process_node(tenant, step["chain"], step["nodeId"], given)
                    else:
                        part = engine.process_at(tenant, step["chain"], step["node"], given)
                    result.ended.extend(part.ended)
        except RuleEngineError as exc:
            return self._dead(seq, msg, f"{exc}", attempts + 1)
        fatal = [e for e in result.unhandled_failures if not e.external]
        if fatal:
            return self._dead(
                seq, msg, "; ".join(f"{e.node_name}: {e.msg.metadata.get('error', '')}" for e in fatal), attempts + 1
            )
        external = result.external_failures
        if not external:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM queue WHERE seq = ?", (seq,))
            return Outcome(seq, msg.id, "DONE")
        error = "; ".join(f"{e.node_name}: {e.msg.metadata.get('error', '')}" for e in external)
        attempts += 1
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return self._dead(seq, msg, f"gave up after {attempts} attempts: {error}", attempts)
        steps = [
            {"chain": e.chain_id, "node": e.node_index, "msg": (e.input or e.msg).to_json()}
            | ({"nodeId": e.node_id, "only": True} if only else {})
            for e in external
        ]
        delay = min(self.retry_max_ms, self.retry_base_ms * 2 ** min(attempts - 1, 30))
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE queue SET attempts = ?, next_attempt_ms = ?, last_error = ?, resume = ? WHERE seq = ?",
                (attempts, self.clock() + delay, error[:2000], orjson.dumps(steps).decode(), seq),
            )
        log.warning("rule chain delivery failed, retry %d in %d ms: %s", attempts, delay, error[:300])
        return Outcome(seq, msg.id, "RETRY", error)

    def _dead(self, seq: int, msg: TbMsg, error: str, attempts: int) -> Outcome:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT originator, msg, enqueued_ms FROM queue WHERE seq = ?", (seq,)).fetchone()
            if row is not None:
                conn.execute(
                    "INSERT INTO dead_letter (tenant_id, originator, msg, error, attempts, enqueued_ms, failed_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (msg.tenant_id, row[0], row[1], error[:4000], attempts, row[2], self.clock()),
                )
                conn.execute("DELETE FROM queue WHERE seq = ?", (seq,))
        log.warning("rule chain message %s moved to the dead-letter list: %s", msg.id, error[:300])
        return Outcome(seq, msg.id, "DEAD", error)

    # -- the worker thread -----------------------------------------------------------------
    def run_worker(self, engine: RuleEngine, stop: threading.Event, *, idle_s: float = 0.5) -> None:
        """Process until ``stop`` is set: due messages, then the engine's timer nodes; sleeps
        until the next due time, a :meth:`put`, or ``idle_s``."""
        while not stop.is_set():
            self._wake.clear()
            try:
                did = self.process_due(engine)
                engine.tick()
            except Exception:
                log.exception("rule queue worker step failed")
                did = []
            if did:
                continue
            now = self.clock()
            dues = [d for d in (self.next_due(), engine.next_due()) if d is not None]
            wait = idle_s if not dues else max(0.0, min(idle_s, (min(dues) - now) / 1000))
            self._wake.wait(wait)

    def start_worker(self, engine: RuleEngine) -> tuple[threading.Thread, threading.Event]:
        """:meth:`run_worker` on a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        t = threading.Thread(target=self.run_worker, args=(engine, stop), name="tbpanel-rules", daemon=True)
        t.start()
        return t, stop

    def stop_worker(self, worker: tuple[threading.Thread, threading.Event]) -> None:
        thread, stop = worker
        stop.set()
        self._wake.set()
        thread.join()

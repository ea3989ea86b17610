"""ThingsBoard's ``RuleNodeState``: what a rule node remembers per entity across restarts (the
device profile node's DURATION and REPEATING progress), one JSON document per (node, entity)
in ``rules.sqlite`` next to the chains that own the nodes (table ``rule_node_state``,
:data:`~tbpanel.rules.queue.MIGRATIONS` 3).

Same file and connection as the queue, so a state write and the queue's bookkeeping never
wait on the entity or telemetry files; a node's id is kept in its chain's stored JSON, so a
restarted server finds the state of the same node again.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..clock import now_ms
from ..sqlite import Database


class RuleNodeStates:
    """Read and write node states; every write is its own small transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, node_id: str, entity_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT state FROM rule_node_state WHERE node_id = ? AND entity_id = ?", (node_id, entity_id))
        if row is None:
            return None
        value = orjson.loads(row[0])
        return value if isinstance(value, dict) else None

    def all(self, node_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """``(entity_type, entity_id, state)`` of every entity the node remembers."""
        rows = self.db.all(
            "SELECT entity_type, entity_id, state FROM rule_node_state WHERE node_id = ? ORDER BY entity_id", (node_id,)
        )
        return [(t, e, orjson.loads(s)) for t, e, s in rows]

    def save(self, node_id: str, entity_type: str, entity_id: str, state: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO rule_node_state (node_id, entity_type, entity_id, state, updated_ms) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (node_id, entity_id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
                (node_id, entity_type, entity_id, orjson.dumps(state).decode(), now_ms()),
            )

    def delete(self, node_id: str, entity_id: str | None = None) -> None:
        """Forget one entity's state, or (``entity_id`` None) all of the node's."""
        with self.db.transaction() as conn:
            if entity_id is None:
                conn.execute("DELETE FROM rule_node_state WHERE node_id = ?", (node_id,))
            else:
                conn.execute("DELETE FROM rule_node_state WHERE node_id = ? AND entity_id = ?", (node_id, entity_id))

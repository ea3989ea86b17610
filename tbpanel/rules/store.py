"""The tenants' rule chains on disk (``rules.sqlite``, table ``rule_chain``), kept in step
with a :class:`~.engine.RuleEngine`.

A chain is stored as ThingsBoard's export JSON, so what is saved is exactly what import and
export read and write, and a chain that is stored is one that imported (every save validates
the whole chain first; a refused one changes nothing). At most one root chain per tenant is
a database constraint. Every read and write names the tenant: a chain id of another tenant is
"not found", never another tenant's chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..clock import now_ms
from ..errors import NotFound
from .chain import RuleChain, apply_metadata, import_chain
from .defaults import default_root_chain
from .engine import RuleEngine
from .queue import RuleQueue


class RuleChainStore:
    """CRUD of rule chains per tenant; every change is applied to ``engine`` after its commit."""

    def __init__(self, queue: RuleQueue, engine: RuleEngine) -> None:
        self.db = queue.db
        self.engine = engine

    def load(self) -> int:
        """Install every stored chain into the engine (at start); returns how many."""
        rows = self.db.all("SELECT tenant_id, doc FROM rule_chain ORDER BY root, created_ms")
        for tenant_id, doc in rows:
            self.engine.set_chain(import_chain(doc, tenant_id=tenant_id, keep_id=True))
        return len(rows)

    def ensure_root(self, tenant_id: str) -> RuleChain:
        """The tenant's root chain, creating the default one for a tenant that has none."""
        row = self.db.one("SELECT id FROM rule_chain WHERE tenant_id = ? AND root = 1", (tenant_id,))
        if row is not None:
            return self.get(tenant_id, row[0])
        return self.save(default_root_chain(tenant_id))

    def list(self, tenant_id: str) -> list[RuleChain]:
        rows = self.db.all("SELECT doc FROM rule_chain WHERE tenant_id = ? ORDER BY name, id", (tenant_id,))
        return [import_chain(d, tenant_id=tenant_id, keep_id=True) for (d,) in rows]

    def get(self, tenant_id: str, chain_id: str) -> RuleChain:
        row = self.db.one("SELECT doc FROM rule_chain WHERE tenant_id = ? AND id = ?", (tenant_id, chain_id))
        if row is None:
            raise NotFound(f"Rule chain with id [{chain_id}] is not found")
        return import_chain(row[0], tenant_id=tenant_id, keep_id=True)

    def save(self, chain: RuleChain) -> RuleChain:
        """Insert or replace ``chain`` (its tenant_id says whose); root moves to it if it is root."""
        if not chain.tenant_id:
            raise ValueError("a chain needs its tenant_id")
        doc = orjson.dumps(chain.export_json()).decode()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT tenant_id, created_ms FROM rule_chain WHERE id = ?", (chain.id,)).fetchone()
            if row is not None and row[0] != chain.tenant_id:
                raise NotFound(f"Rule chain with id [{chain.id}] is not found")
            if chain.root:
                conn.execute(
                    "UPDATE rule_chain SET root = 0 WHERE tenant_id = ? AND id != ?", (chain.tenant_id, chain.id)
                )
                self._unroot_docs(conn, chain.tenant_id, chain.id)
            conn.execute(
                "INSERT INTO rule_chain (id, tenant_id, name, root, created_ms, doc) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, root = excluded.root, doc = excluded.doc",
                (chain.id, chain.tenant_id, chain.title, int(chain.root), row[1] if row else now_ms(), doc),
            )
            self.db.after_commit(lambda: self.engine.set_chain(chain))
        return chain

    def save_metadata(self, tenant_id: str, chain_id: str, metadata: Mapping[str, Any]) -> RuleChain:
        """``POST /api/ruleChain/metadata``: replace the graph of a stored chain."""
        chain = self.get(tenant_id, chain_id)
        return self.save(apply_metadata(chain, metadata))

    def set_root(self, tenant_id: str, chain_id: str) -> RuleChain:
        chain = self.get(tenant_id, chain_id)
        chain.root = True
        return self.save(chain)

    def delete(self, tenant_id: str, chain_id: str) -> None:
        """Delete a chain; the root chain cannot be deleted (ThingsBoard's rule too)."""
        chain = self.get(tenant_id, chain_id)
        if chain.root:
            from ..errors import InvalidInput

            raise InvalidInput("the root rule chain cannot be deleted; make another chain root first")
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM rule_chain WHERE tenant_id = ? AND id = ?", (tenant_id, chain_id))
            self.db.after_commit(lambda: self.engine.remove_chain(tenant_id, chain_id))

    def _unroot_docs(self, conn: Any, tenant_id: str, keep: str) -> None:
        for cid, doc in conn.execute(
            "SELECT id, doc FROM rule_chain WHERE tenant_id = ? AND id != ?", (tenant_id, keep)
        ).fetchall():
            d = orjson.loads(doc)
            if d["ruleChain"].get("root"):
                d["ruleChain"]["root"] = False
                conn.execute("UPDATE rule_chain SET doc = ? WHERE id = ?", (orjson.dumps(d).decode(), cid))

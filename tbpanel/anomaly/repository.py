"""Where anomaly models, their trained artifacts and their anomalies live: ``analytics.sqlite``.

One SQLite file (WAL, synchronous=FULL) in the data directory, shared with the task history
and (later) alarms, so that an anomaly change and what it causes can commit in one
transaction. Listeners registered with :meth:`AnomalyRepository.transaction` callers get the
open connection for exactly that reason.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

DB_FILE = "analytics.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', trained TEXT,
    created_ms INTEGER NOT NULL, built_ms INTEGER, refresh TEXT NOT NULL DEFAULT '{}',
    last_refresh_end_ms INTEGER, last_refresh_run_ms INTEGER, refits INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS models_tenant ON models(tenant_id);
CREATE TABLE IF NOT EXISTS anomalies (
    id TEXT PRIMARY KEY, model_id TEXT NOT NULL, item TEXT NOT NULL,
    start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL, score REAL NOT NULL,
    score_index REAL NOT NULL, cluster INTEGER NOT NULL, detected_at INTEGER NOT NULL,
    active INTEGER NOT NULL, n_segments INTEGER NOT NULL, details TEXT NOT NULL DEFAULT '{}',
    suppressed INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS anomalies_model_item ON anomalies(model_id, item, start_ts);
"""

ANOMALY_COLUMNS = ("id", "model_id", "item", "start_ts", "end_ts", "score", "score_index", "cluster",
                   "detected_at", "active", "n_segments", "details", "suppressed", "created_ms", "updated_ms")
MODEL_COLUMNS = ("id", "tenant_id", "name", "config", "status", "message", "trained", "created_ms",
                 "built_ms", "refresh", "last_refresh_end_ms", "last_refresh_run_ms", "refits")


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


class AnomalyRepository:
    """Rows in, rows out; the service layer owns the rules."""

    def __init__(self, data_dir: str | Path):
        self.path = str(Path(data_dir) / DB_FILE)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._after_commit: list = []

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; everything done with the yielded connection commits together."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._after_commit = []
            try:
                yield self._db
            except BaseException:
                self._after_commit = []
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            callbacks, self._after_commit = self._after_commit, []
        for fn in callbacks:  # outside the lock: callbacks may read the database
            try:
                fn()
            except Exception:  # a listener's bug must not undo or hide a commit
                logging.getLogger("tbpanel.anomaly").exception("after-commit callback failed")

    def after_commit(self, fn) -> None:
        """Run ``fn`` once the open transaction commits (dropped if it rolls back): what others
        should hear about (live alarm pushes) must never announce a change that was undone."""
        self._after_commit.append(fn)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The shared connection for reads (sees the caller's own open transaction, if any)."""
        with self._lock:
            yield self._db

    # -- models ------------------------------------------------------------------------------
    def insert_model(self, row: dict) -> None:
        with self.transaction() as db:
            db.execute(f"INSERT INTO models ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       [self._encode(k, v) for k, v in row.items()])

    def update_model(self, model_id: str, db: sqlite3.Connection | None = None, **fields: Any) -> None:
        sql = f"UPDATE models SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?"
        args = [*(self._encode(k, v) for k, v in fields.items()), model_id]
        if db is not None:
            db.execute(sql, args)
        else:
            with self.transaction() as tx:
                tx.execute(sql, args)

    def get_model(self, model_id: str, with_trained: bool = False) -> dict | None:
        cols = MODEL_COLUMNS if with_trained else tuple(c for c in MODEL_COLUMNS if c != "trained")
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(cols)} FROM models WHERE id=?", (model_id,)).fetchone()
        return self._decode(cols, row) if row else None

    def has_trained(self, model_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT trained IS NOT NULL FROM models WHERE id=?", (model_id,)).fetchone()
        return bool(row and row[0])

    def list_models(self, tenant_id: str | None = None) -> list[dict]:
        cols = tuple(c for c in MODEL_COLUMNS if c != "trained")
        sql = f"SELECT {', '.join(cols)} FROM models"
        args: list = []
        if tenant_id is not None:
            sql, args = sql + " WHERE tenant_id=?", [tenant_id]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_ms", args).fetchall()
        return [self._decode(cols, r) for r in rows]

    def delete_model(self, model_id: str, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM anomalies WHERE model_id=?", (model_id,))
        db.execute("DELETE FROM models WHERE id=?", (model_id,))

    # -- anomalies -----------------------------------------------------------------------------
    def anomalies(self, model_id: str, *, items: Iterable[str] | None = None, start: int | None = None,
                  end: int | None = None, active: bool | None = None,
                  db: sqlite3.Connection | None = None) -> list[dict]:
        """Anomalies of a model; ``start``/``end`` select by the anomaly's start time."""
        sql, args = "SELECT * FROM anomalies WHERE model_id=?", [model_id]
        if items is not None:
            items = list(items)
            sql += f" AND item IN ({', '.join('?' * len(items))})"
            args += items
        if start is not None:
            sql, args = sql + " AND start_ts >= ?", [*args, int(start)]
        if end is not None:
            sql, args = sql + " AND start_ts < ?", [*args, int(end)]
        if active is not None:
            sql, args = sql + " AND active=?", [*args, int(active)]
        with self._lock:
            rows = (db or self._db).execute(sql + " ORDER BY item, start_ts", args).fetchall()
        return [self._decode(ANOMALY_COLUMNS, r) for r in rows]

    def count_anomalies(self, model_id: str) -> dict:
        with self._lock:
            n, active, items = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(active), 0), COUNT(DISTINCT item) FROM anomalies "
                "WHERE model_id=?", (model_id,)).fetchone()
        return {"anomalies": n, "active": active, "items": items}

    def insert_anomaly(self, db: sqlite3.Connection, row: dict) -> dict:
        row = {"id": str(uuid.uuid4()), **row}
        db.execute(f"INSERT INTO anomalies ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   [self._encode(k, v) for k, v in row.items()])
        return row

    def update_anomaly(self, db: sqlite3.Connection, anomaly_id: str, **fields: Any) -> None:
        db.execute(f"UPDATE anomalies SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?",
                   [*(self._encode(k, v) for k, v in fields.items()), anomaly_id])

    def delete_anomalies(self, db: sqlite3.Connection, ids: list[str]) -> None:
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            db.execute(f"DELETE FROM anomalies WHERE id IN ({', '.join('?' * len(chunk))})", chunk)

    # -- encoding ------------------------------------------------------------------------------
    @staticmethod
    def _encode(key: str, value: Any) -> Any:
        if key in ("details", "refresh", "trained") and value is not None and not isinstance(value, str):
            return _dumps(value)
        if key in ("active", "suppressed"):
            return int(bool(value))
        return value

    @staticmethod
    def _decode(cols: tuple[str, ...], row: tuple) -> dict:
        out = dict(zip(cols, row))
        for key in ("details", "refresh", "trained"):
            if key in out and isinstance(out[key], str):
                out[key] = orjson.loads(out[key])
        for key in ("active", "suppressed"):
            if key in out:
                out[key] = bool(out[key])
        return out

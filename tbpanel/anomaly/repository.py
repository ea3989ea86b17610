"""Where anomaly models, their trained artifacts and their anomalies live: ``analytics.sqlite``.

Tables ``models`` and ``anomalies`` of the analytics file (:mod:`tbpanel.analytics_db` holds
its schema), through the :class:`~tbpanel.sqlite.Database` it shares with the alarm
repository, so that an anomaly change and what it causes commit in one transaction.
Listeners of :attr:`AnomalyService.changed <tbpanel.anomaly.service.AnomalyService.changed>`
get the open connection of :meth:`AnomalyRepository.transaction` for exactly that reason.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from ..analytics_db import FILE as DB_FILE
from ..sqlite import Database

__all__ = ["AnomalyRepository", "DB_FILE", "ANOMALY_COLUMNS", "MODEL_COLUMNS"]

ANOMALY_COLUMNS = (
    "id",
    "model_id",
    "item",
    "start_ts",
    "end_ts",
    "score",
    "score_index",
    "cluster",
    "detected_at",
    "active",
    "n_segments",
    "details",
    "suppressed",
    "created_ms",
    "updated_ms",
)
MODEL_COLUMNS = (
    "id",
    "tenant_id",
    "name",
    "config",
    "status",
    "message",
    "trained",
    "created_ms",
    "built_ms",
    "refresh",
    "last_refresh_end_ms",
    "last_refresh_run_ms",
    "refits",
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


class AnomalyRepository:
    """Rows in, rows out; the service layer owns the rules."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = db.path

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; everything done with the yielded connection commits together
        (a nested block is a savepoint of the outer one)."""
        with self.db.transaction() as conn:
            yield conn

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the open transaction commits (dropped if it rolls back): what others
        should hear about (live alarm pushes) must never announce a change that was undone."""
        self.db.after_commit(fn)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The shared connection for reads (sees the caller's own open transaction, if any)."""
        with self.db.reading() as conn:
            yield conn

    # -- models ------------------------------------------------------------------------------
    def insert_model(self, row: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                f"INSERT INTO models ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                [self._encode(k, v) for k, v in row.items()],
            )

    def update_model(self, model_id: str, db: sqlite3.Connection | None = None, **fields: Any) -> None:
        sql = f"UPDATE models SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?"
        args = [*(self._encode(k, v) for k, v in fields.items()), model_id]
        if db is not None:
            db.execute(sql, args)
        else:
            with self.transaction() as tx:
                tx.execute(sql, args)

    def get_model(self, model_id: str, with_trained: bool = False) -> dict[str, Any] | None:
        cols = MODEL_COLUMNS if with_trained else tuple(c for c in MODEL_COLUMNS if c != "trained")
        row = self.db.one(f"SELECT {', '.join(cols)} FROM models WHERE id=?", (model_id,))
        return self._decode(cols, row) if row else None

    def has_trained(self, model_id: str) -> bool:
        row = self.db.one("SELECT trained IS NOT NULL FROM models WHERE id=?", (model_id,))
        return bool(row and row[0])

    def list_models(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        cols = tuple(c for c in MODEL_COLUMNS if c != "trained")
        sql = f"SELECT {', '.join(cols)} FROM models"
        args: list[Any] = []
        if tenant_id is not None:
            sql, args = sql + " WHERE tenant_id=?", [tenant_id]
        rows = self.db.all(sql + " ORDER BY created_ms", args)
        return [self._decode(cols, r) for r in rows]

    def delete_model(self, model_id: str, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM anomalies WHERE model_id=?", (model_id,))
        db.execute("DELETE FROM models WHERE id=?", (model_id,))

    # -- anomalies -----------------------------------------------------------------------------
    def anomalies(
        self,
        model_id: str,
        *,
        items: Iterable[str] | None = None,
        start: int | None = None,
        end: int | None = None,
        active: bool | None = None,
        db: sqlite3.Connection | None = None,
    ) -> list[dict[str, Any]]:
        """Anomalies of a model; ``start``/``end`` select by the anomaly's start time."""
        sql = "SELECT * FROM anomalies WHERE model_id=?"
        args: list[Any] = [model_id]
        if items is not None:
            wanted = list(items)
            sql += f" AND item IN ({', '.join('?' * len(wanted))})"
            args += wanted
        if start is not None:
            sql, args = sql + " AND start_ts >= ?", [*args, int(start)]
        if end is not None:
            sql, args = sql + " AND start_ts < ?", [*args, int(end)]
        if active is not None:
            sql, args = sql + " AND active=?", [*args, int(active)]
        with self.db.reading() as shared:
            rows = (db or shared).execute(sql + " ORDER BY item, start_ts", args).fetchall()
        return [self._decode(ANOMALY_COLUMNS, r) for r in rows]

    def count_anomalies(self, model_id: str) -> dict[str, int]:
        row = self.db.one(
            "SELECT COUNT(*), COALESCE(SUM(active), 0), COUNT(DISTINCT item) FROM anomalies WHERE model_id=?",
            (model_id,),
        )
        assert row is not None  # an aggregate without GROUP BY always has one row
        n, active, items = row
        return {"anomalies": n, "active": active, "items": items}

    def insert_anomaly(self, db: sqlite3.Connection, row: dict[str, Any]) -> dict[str, Any]:
        row = {"id": str(uuid.uuid4()), **row}
        db.execute(
            f"INSERT INTO anomalies ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            [self._encode(k, v) for k, v in row.items()],
        )
        return row

    def update_anomaly(self, db: sqlite3.Connection, anomaly_id: str, **fields: Any) -> None:
        db.execute(
            f"UPDATE anomalies SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?",
            [*(self._encode(k, v) for k, v in fields.items()), anomaly_id],
        )

    def delete_anomalies(self, db: sqlite3.Connection, ids: list[str]) -> None:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
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
    def _decode(cols: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
        out = dict(zip(cols, row))
        for key in ("details", "refresh", "trained"):
            if key in out and isinstance(out[key], str):
                out[key] = orjson.loads(out[key])
        for key in ("active", "suppressed"):
            if key in out:
                out[key] = bool(out[key])
        return out

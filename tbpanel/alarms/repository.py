"""Alarm rows in ``analytics.sqlite``, next to the anomalies that cause most of them.

Same file and same :class:`~tbpanel.sqlite.Database` as
:class:`~tbpanel.anomaly.repository.AnomalyRepository`, so an anomaly change and the alarm
transition it causes commit in one transaction; the table's schema is in
:mod:`tbpanel.analytics_db`. Every write takes the caller's open connection ``db``; reads may pass
one to see their own uncommitted writes.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import orjson

from ..sqlite import Database
from .model import SEVERITY_RANK, Alarm
from .query import SEARCH_SQL, SORT, AlarmQuery

COLUMNS = (
    "id",
    "created_time",
    "tenant_id",
    "customer_id",
    "type",
    "originator_type",
    "originator_id",
    "originator_name",
    "severity",
    "acknowledged",
    "cleared",
    "start_ts",
    "end_ts",
    "ack_ts",
    "clear_ts",
    "details",
    "propagate",
    "anomaly_id",
    "model_id",
)


class AlarmRepository:
    """Rows in, rows out; :mod:`.lifecycle` and :mod:`.service` own the rules."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """The shared analytics transaction (see :meth:`tbpanel.sqlite.Database.transaction`)."""
        return self.db.transaction()

    # -- writes (inside the caller's transaction) ---------------------------------------------
    def insert(self, db: sqlite3.Connection, alarm: Alarm) -> Alarm:
        if not alarm.id:
            alarm.id = str(uuid.uuid4())
        row = self._encode(alarm)
        db.execute(f"INSERT INTO alarms ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        return alarm

    def save(self, db: sqlite3.Connection, alarm: Alarm) -> Alarm:
        row = self._encode(alarm)
        db.execute(
            f"UPDATE alarms SET {', '.join(f'{k}=?' for k in row if k != 'id')} WHERE id=?",
            [v for k, v in row.items() if k != "id"] + [alarm.id],
        )
        return alarm

    def delete(self, db: sqlite3.Connection, alarm_id: str) -> None:
        db.execute("DELETE FROM alarms WHERE id=?", (alarm_id,))

    # -- reads ---------------------------------------------------------------------------------
    def get(self, alarm_id: str, db: sqlite3.Connection | None = None) -> Alarm | None:
        rows = self._select("SELECT * FROM alarms WHERE id=?", [alarm_id], db)
        return rows[0] if rows else None

    def active_for(self, originator_id: str, type: str, db: sqlite3.Connection | None = None) -> Alarm | None:
        rows = self._select(
            "SELECT * FROM alarms WHERE originator_id=? AND type=? AND cleared=0", [originator_id, type], db
        )
        return rows[0] if rows else None

    def for_anomalies(self, anomaly_ids: Iterable[str], db: sqlite3.Connection | None = None) -> dict[str, Alarm]:
        ids = list(anomaly_ids)
        out: dict[str, Alarm] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for a in self._select(
                f"SELECT * FROM alarms WHERE anomaly_id IN ({', '.join('?' * len(chunk))})", chunk, db
            ):
                if a.anomaly_id is not None:  # always, by the WHERE clause
                    out[a.anomaly_id] = a
        return out

    def all(self, db: sqlite3.Connection | None = None) -> list[Alarm]:
        return self._select("SELECT * FROM alarms ORDER BY created_time", [], db)

    def query(self, q: AlarmQuery) -> tuple[list[Alarm], int]:
        where, args = self._where(q)
        order = SORT.get(q.sort_property)
        if order is None:
            raise ValueError(f"sortProperty must be one of {', '.join(SORT)}, got {q.sort_property!r}")
        with self.db.reading() as db:
            total = db.execute(f"SELECT COUNT(*) FROM alarms WHERE {where}", args).fetchone()[0]
        rows = self._select(
            f"SELECT * FROM alarms WHERE {where} ORDER BY {order} {q.sort_order}, id LIMIT ? OFFSET ?",
            [*args, q.page_size, q.page * q.page_size],
        )
        return rows, total

    def highest_severity(
        self, tenant_id: str, originator_id: str, search_status: str = "ANY", statuses: list[str] | None = None
    ) -> str | None:
        where, args = self._where(
            AlarmQuery(tenant_id, originators=[originator_id], search_status=search_status, statuses=statuses or [])
        )
        with self.db.reading() as db:
            row = db.execute(
                f"SELECT severity FROM alarms WHERE {where} ORDER BY severity_rank DESC LIMIT 1", args
            ).fetchone()
        return row[0] if row else None

    def types(self, tenant_id: str | None, originators: Iterable[str] | None = None) -> list[str]:
        """The tenant's alarm types (none for no tenant); with ``originators``, only those of
        these devices' alarms."""
        sql, args = "SELECT DISTINCT type FROM alarms WHERE tenant_id=?", [tenant_id]
        if originators is not None:
            ids = list(originators)
            sql += f" AND originator_id IN ({', '.join('?' * len(ids))})"
            args += ids
        with self.db.reading() as db:
            return [r[0] for r in db.execute(sql + " ORDER BY type", args)]

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _where(q: AlarmQuery) -> tuple[str, list[Any]]:
        where = ["tenant_id=?"]
        args: list[Any] = [q.tenant_id]
        if q.originators is not None:
            if not q.originators:
                return "0", []
            where.append(f"originator_id IN ({', '.join('?' * len(q.originators))})")
            args += q.originators
        where.append(SEARCH_SQL[q.search_status])
        if q.statuses:
            parts = [
                f"(cleared={int(s.startswith('CLEARED'))} AND acknowledged={int(s.endswith('_ACK'))})"
                for s in q.statuses
            ]
            where.append("(" + " OR ".join(parts) + ")")
        for col, values in (("severity", q.severities), ("type", q.types)):
            if values:
                where.append(f"{col} IN ({', '.join('?' * len(values))})")
                args += list(values)
        if q.model_id:
            where.append("model_id=?")
            args.append(q.model_id)
        col = "start_ts" if q.time_property == "startTs" else "created_time"
        if q.start_time is not None:
            where.append(f"{col} >= ?")
            args.append(q.start_time)
        if q.end_time is not None:
            where.append(f"{col} <= ?")
            args.append(q.end_time)
        if q.text:
            where.append("(LOWER(type) LIKE ? OR LOWER(severity) LIKE ? OR LOWER(originator_name) LIKE ?)")
            needle = "%" + q.text.lower() + "%"
            args += [needle] * 3
        return " AND ".join(where), args

    def _select(self, sql: str, args: list, db: sqlite3.Connection | None = None) -> list[Alarm]:
        with self.db.reading() as shared:
            cur = (db or shared).execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for r in rows:
            row = dict(zip(names, r))
            row.pop("severity_rank", None)
            row["details"] = orjson.loads(row["details"]) if row["details"] else {}
            for k in ("acknowledged", "cleared", "propagate"):
                row[k] = bool(row[k])
            out.append(Alarm.from_row(row))
        return out

    @staticmethod
    def _encode(alarm: Alarm) -> dict[str, Any]:
        row = {k: getattr(alarm, k) for k in COLUMNS}
        row["details"] = orjson.dumps(
            alarm.details or {}, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        ).decode()
        for k in ("acknowledged", "cleared", "propagate"):
            row[k] = int(bool(row[k]))
        row["severity_rank"] = SEVERITY_RANK[alarm.severity]
        return row

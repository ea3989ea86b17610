"""Persistent RPC requests in their own SQLite file, ``rpc.sqlite`` in the data directory.

A file of its own (not ``entities.sqlite``): RPC status changes are frequent small writes that
must not wait on, or hold up, entity changes. Opened through :mod:`tbpanel.sqlite` (WAL,
``synchronous=FULL``, numbered migrations): a request whose ``rpcId`` was answered is on disk
and survives ``kill -9``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from ..sqlite import Database
from .model import DELIVERED, EXPIRED, QUEUED, SENT, RpcRequest

FILE = "rpc.sqlite"

#: ``PRAGMA user_version`` migrations (append only)
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS rpc (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        method TEXT NOT NULL,
        params TEXT NOT NULL,
        oneway INTEGER NOT NULL,
        timeout_ms INTEGER NOT NULL,
        expiration_time INTEGER NOT NULL,
        created_time INTEGER NOT NULL,
        status TEXT NOT NULL,
        response TEXT,
        request_id INTEGER NOT NULL DEFAULT 0,
        retries INTEGER,
        additional_info TEXT
    );
    CREATE INDEX IF NOT EXISTS rpc_device ON rpc (device_id, created_time);
    CREATE INDEX IF NOT EXISTS rpc_open ON rpc (status, expiration_time);
    """,
]

_COLUMNS = (
    "id, tenant_id, device_id, method, params, oneway, timeout_ms, expiration_time, created_time, "
    "status, response, request_id, retries, additional_info"
)
SORT = {"createdTime": "created_time", "expirationTime": "expiration_time", "status": "status", "method": "method"}


def _dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _load(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _request(row: tuple[Any, ...]) -> RpcRequest:
    (
        rid,
        tenant,
        device,
        method,
        params,
        oneway,
        timeout,
        expiration,
        created,
        status,
        response,
        req,
        retries,
        info,
    ) = row
    return RpcRequest(
        id=rid,
        tenant_id=tenant,
        device_id=device,
        method=method,
        params=_load(params),
        oneway=bool(oneway),
        persistent=True,
        timeout_ms=timeout,
        expiration_time=expiration,
        created_time=created,
        status=status,
        response=_load(response),
        request_id=req,
        retries=retries,
        additional_info=_load(info),
    )


class RpcRepository:
    """The ``rpc`` table: insert, status changes, reads, deletes, recovery after a restart."""

    def __init__(self, data_dir: str | os.PathLike):
        path = Path(data_dir) / FILE
        self.db = Database(str(path), MIGRATIONS, what=str(path))
        os.chmod(path, 0o600)

    def close(self) -> None:
        self.db.close()

    def insert(self, r: RpcRequest) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                f"INSERT INTO rpc ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.id,
                    r.tenant_id,
                    r.device_id,
                    r.method,
                    _dump(r.params),
                    int(r.oneway),
                    r.timeout_ms,
                    r.expiration_time,
                    r.created_time,
                    r.status,
                    _dump(r.response),
                    r.request_id,
                    r.retries,
                    _dump(r.additional_info),
                ),
            )

    def update(self, r: RpcRequest) -> bool:
        """Store ``r``'s status, answer and wire id; False when the row was deleted meanwhile or
        has ended already (a final status is never overwritten, by this process or another)."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE rpc SET status = ?, response = ?, request_id = ? WHERE id = ? "
                "AND status IN (?, ?, ?) AND NOT (status = ? AND oneway = 1)",
                (r.status, _dump(r.response), r.request_id, r.id, QUEUED, SENT, DELIVERED, DELIVERED),
            )
            return cur.rowcount > 0

    def get(self, rpc_id: str) -> RpcRequest | None:
        row = self.db.one(f"SELECT {_COLUMNS} FROM rpc WHERE id = ?", (rpc_id,))
        return None if row is None else _request(row)

    def delete(self, rpc_id: str) -> bool:
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM rpc WHERE id = ?", (rpc_id,)).rowcount > 0

    def by_device(
        self,
        device_id: str,
        *,
        status: str | None,
        page: int,
        page_size: int,
        text: str | None = None,
        sort_property: str = "createdTime",
        sort_order: str = "DESC",
    ) -> tuple[list[RpcRequest], int]:
        """One page of a device's requests (newest first by default) and the total count."""
        where, params = ["device_id = ?"], [device_id]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if text:
            where.append("method LIKE ? ESCAPE '\\'")
            params.append("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        clause = " AND ".join(where)
        direction = "ASC" if sort_order == "ASC" else "DESC"
        # requests made in the same millisecond keep the order they were made in (rowid)
        order = f"{SORT[sort_property]} {direction}, rowid {direction}"
        with self.db.reading() as conn:
            total = conn.execute(f"SELECT COUNT(*) FROM rpc WHERE {clause}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM rpc WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, page_size, page * page_size],
            ).fetchall()
        return [_request(r) for r in rows], int(total)

    def queued(self, device_id: str | None = None) -> list[RpcRequest]:
        """Requests waiting for a session (of one device, or of all), oldest first."""
        if device_id is None:
            rows = self.db.all(f"SELECT {_COLUMNS} FROM rpc WHERE status = ? ORDER BY created_time", (QUEUED,))
        else:
            rows = self.db.all(
                f"SELECT {_COLUMNS} FROM rpc WHERE device_id = ? AND status = ? ORDER BY created_time",
                (device_id, QUEUED),
            )
        return [_request(r) for r in rows]

    def max_request_id(self) -> int:
        row = self.db.one("SELECT MAX(request_id) FROM rpc")
        return int(row[0] or 0) if row else 0

    def recover(self, now: int) -> tuple[int, int]:
        """After a restart: requests past their expiration that had not ended become EXPIRED;
        the ones a session had taken but not finished (SENT, or two-way DELIVERED) go back to
        QUEUED, to be sent again on the device's next connect (delivery is at least once).
        Returns ``(expired, requeued)``."""
        open_ = (QUEUED, SENT, DELIVERED)
        marks = ", ".join("?" * len(open_))
        with self.db.transaction() as conn:
            expired = conn.execute(
                f"UPDATE rpc SET status = ? WHERE status IN ({marks}) AND expiration_time <= ? "
                "AND NOT (status = ? AND oneway = 1)",
                (EXPIRED, *open_, now, DELIVERED),
            ).rowcount
            requeued = conn.execute(
                "UPDATE rpc SET status = ? WHERE status = ? OR (status = ? AND oneway = 0)", (QUEUED, SENT, DELIVERED)
            ).rowcount
        return expired, requeued

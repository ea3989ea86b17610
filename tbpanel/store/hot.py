"""SQLite hot tier: every write lands here first, durably, through one writer thread.

One file, ``DATA/telemetry.sqlite`` (WAL mode), holds the hot points of every series plus
the store's metadata:

``series(id, entity, key)``
    one row per ``(entity, key)``; ids are never reused (AUTOINCREMENT), so cold data of a
    deleted series can never resurface under a new one.
``hot(series, ts, t, v) WITHOUT ROWID``, primary key ``(series, ts)``
    points not yet moved to the cold tier. ``v`` has no declared type, so SQLite keeps
    Python ints (exact 64-bit), floats and strings as given; ``t`` is the
    :class:`~tbpanel.store.values.ValueType` code.
``latest(series, ts, t, v, points)``
    the latest value of each series (``ts`` NULL once deleted) and an approximate count of
    stored points (used by :meth:`TelemetryStore.stats`).
``month_state(month, wc, hot)``
    per UTC month (months since 1970-01): a write counter bumped by every transaction that
    writes or deletes points of that month, and whether hot rows may exist for it. The
    compactor uses ``wc`` to detect concurrent changes (optimistic concurrency).
``cold_partitions(name, generation, rows, ...)``
    the cold-tier manifest: which Zarr generation of each month is current.
``tombstones(series, part, start_ts, end_ts)``
    deleted ranges that hide cold points until the partition is rewritten.
``latest_version(n)``
    bumped by every transaction that may change a row of ``latest`` (from any store
    instance): it tells an instance whether its in-memory copy of ``latest``
    (:mod:`tbpanel.store.latest`) is current.

All writes go through :class:`Writer`: a single thread that drains its queue, writes every
queued batch in one transaction (``executemany``), commits, and only then resolves the
batches' futures ("group commit"). With ``synchronous=FULL`` (the default) the commit has
been fsynced to the WAL before any future resolves, so an acknowledged write survives
``kill -9`` and power loss.
"""
from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from .values import ValueType

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS series(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    key TEXT NOT NULL,
    UNIQUE(entity, key)
);
CREATE TABLE IF NOT EXISTS hot(
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    t INTEGER NOT NULL,
    v,
    PRIMARY KEY(series, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest(
    series INTEGER PRIMARY KEY,
    ts INTEGER,
    t INTEGER,
    v,
    points INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS month_state(
    month INTEGER PRIMARY KEY,
    wc INTEGER NOT NULL DEFAULT 0,
    hot INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cold_partitions(
    name TEXT PRIMARY KEY,
    month INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    has_txt INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series INTEGER NOT NULL,
    part TEXT NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS latest_version(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT OR IGNORE INTO latest_version(id, n) VALUES (1, 0);
CREATE INDEX IF NOT EXISTS tombstones_series ON tombstones(series);
CREATE INDEX IF NOT EXISTS tombstones_part ON tombstones(part);
"""

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

SQL_UPSERT_HOT = (
    "INSERT INTO hot(series, ts, t, v) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(series, ts) DO UPDATE SET t = excluded.t, v = excluded.v"
)
# latest only moves forward in time (an equal ts rewrites it); a NULL latest (deleted) is
# replaced by whatever comes next. `points` counts every written point (approximate).
SQL_UPSERT_LATEST = (
    "INSERT INTO latest(series, ts, t, v, points) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(series) DO UPDATE SET "
    "points = latest.points + excluded.points, "
    "t = CASE WHEN latest.ts IS NULL OR excluded.ts >= latest.ts THEN excluded.t ELSE latest.t END, "
    "v = CASE WHEN latest.ts IS NULL OR excluded.ts >= latest.ts THEN excluded.v ELSE latest.v END, "
    "ts = CASE WHEN latest.ts IS NULL OR excluded.ts >= latest.ts THEN excluded.ts ELSE latest.ts END"
)
SQL_BUMP_LATEST_VERSION = "UPDATE latest_version SET n = n + 1 RETURNING n"
SQL_LATEST_VERSION = "SELECT n FROM latest_version"
SQL_ALL_LATEST = ("SELECT s.entity, s.key, l.ts, l.t, l.v FROM series s JOIN latest l ON l.series = s.id "
                  "WHERE l.ts IS NOT NULL ORDER BY s.entity, s.key")
SQL_TOUCH_MONTH = (
    "INSERT INTO month_state(month, wc, hot) VALUES (?, 1, 1) "
    "ON CONFLICT(month) DO UPDATE SET wc = wc + 1, hot = 1"
)

_EPOCH = datetime(1970, 1, 1)


# --- months (partitions) -------------------------------------------------------------------

def month_of(ms: int) -> int:
    """UTC month index (months since 1970-01) of an epoch-ms timestamp."""
    d = _EPOCH + timedelta(milliseconds=int(ms))
    return (d.year - 1970) * 12 + d.month - 1


def months_of(ts: np.ndarray) -> np.ndarray:
    """Vectorised :func:`month_of`."""
    return np.asarray(ts, dtype=np.int64).astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def month_start(m: int) -> int:
    """Epoch ms of the first instant of month index ``m``."""
    y, mo = divmod(int(m), 12)
    d = datetime(1970 + y, mo + 1, 1)
    return (d - _EPOCH) // timedelta(milliseconds=1)


def month_name(m: int) -> str:
    y, mo = divmod(int(m), 12)
    return f"{1970 + y:04d}-{mo + 1:02d}"


def month_from_name(name: str) -> int:
    y, mo = name.split("-")
    return (int(y) - 1970) * 12 + int(mo) - 1


# --- connections ---------------------------------------------------------------------------

def connect(path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 10_000,
            readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the store's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


def init_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


# --- rows -> columns -----------------------------------------------------------------------

_T_BOOL, _T_LONG, _T_DOUBLE, _T_STR, _T_JSON = (int(x) for x in ValueType)


def columns_from_values(t: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray | None]:
    """Split typed values (object array ``v``, type codes ``t``) into the store's columns.

    ``num`` float64 (bool as 0/1, long as float, NaN for text), ``lng`` int64 (exact longs,
    0 elsewhere), ``txt`` object array of strings for STR/JSON points (``None`` elsewhere),
    or ``txt=None`` when there is no text at all.
    """
    n = len(t)
    num = np.full(n, np.nan)
    lng = np.zeros(n, np.int64)
    txt = None
    if n:
        is_text = t >= _T_STR
        if is_text.any():
            numeric = ~is_text
            txt = np.full(n, None, dtype=object)
            txt[is_text] = v[is_text]
            if numeric.any():
                num[numeric] = v[numeric].astype(np.float64)
        else:
            num[:] = v.astype(np.float64)
        is_long = t == _T_LONG
        if is_long.any():
            lng[is_long] = v[is_long].astype(np.int64)
    return {"num": num, "lng": lng, "txt": txt}


def hot_rows_to_columns(rows: list[tuple], with_series: bool) -> dict[str, np.ndarray | None]:
    """Rows ``(series?, ts, t, v)`` from SQLite to column arrays (``series``, ``ts``, ``t`` ...)."""
    n = len(rows)
    if n == 0:
        out = {"ts": np.empty(0, np.int64), "t": np.empty(0, np.int8),
               "num": np.empty(0, np.float64), "lng": np.empty(0, np.int64), "txt": None}
        if with_series:
            out["series"] = np.empty(0, np.int64)
        return out
    cols = list(zip(*rows))
    off = 1 if with_series else 0
    ts = np.fromiter(cols[off], dtype=np.int64, count=n)
    t = np.fromiter(cols[off + 1], dtype=np.int8, count=n)
    t0 = int(t[0])
    if t0 <= _T_DOUBLE and (t == t0).all():  # fast path: one numeric type, no object array
        num = np.fromiter(cols[off + 2], dtype=np.float64, count=n)
        if t0 == _T_LONG:
            lng = np.fromiter(cols[off + 2], dtype=np.int64, count=n)
        else:
            lng = np.zeros(n, np.int64)
        out = {"ts": ts, "t": t, "num": num, "lng": lng, "txt": None}
    else:
        v = np.fromiter(cols[off + 2], dtype=object, count=n)
        out = {"ts": ts, "t": t, **columns_from_values(t, v)}
    if with_series:
        out["series"] = np.fromiter(cols[0], dtype=np.int64, count=n)
    return out


def py_value(t: int, v: Any) -> Any:
    """A value as read from SQLite back to its Python type."""
    if t == _T_BOOL:
        return bool(v)
    if t == _T_DOUBLE:
        return float(v)
    return v


# --- the writer thread ---------------------------------------------------------------------

class _WriteOp:
    """Points waiting for the writer, acknowledged through a ``Future`` or a ``done`` callback."""

    __slots__ = ("points", "future", "done")

    def __init__(self, points: list, future: Future | None,
                 done: Callable[[int, BaseException | None], None] | None = None):
        self.points = points
        self.future = future
        self.done = done

    def start(self) -> bool:
        """False if the caller cancelled the future before the writer got to it."""
        return self.future is None or self.future.set_running_or_notify_cancel()

    def resolve(self, exc: BaseException | None = None) -> None:
        if self.done is not None:
            try:
                self.done(len(self.points), exc)
            except Exception:  # pragma: no cover - a broken callback must not stop the writer
                log.exception("write acknowledgement callback failed")
        elif exc is None:
            self.future.set_result(len(self.points))
        else:
            self.future.set_exception(exc)


class _CallOp:
    __slots__ = ("fn", "on_commit", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any],
                 on_commit: Callable[[Any], None] | None, future: Future):
        self.fn = fn
        self.on_commit = on_commit
        self.future = future


_STOP = object()


class Writer(threading.Thread):
    """The single writer: group commit of queued point batches, plus arbitrary transactions.

    ``write_group(conn, points) -> state`` runs inside an open transaction for all points of
    a group; after COMMIT, ``after_commit(points, state)`` runs (still in this thread) and
    then the futures are resolved. If anything fails before COMMIT completes, the
    transaction is rolled back, ``on_rollback(state_or_None)`` runs, and every future of the
    group gets the exception: none of their points is stored.
    """

    def __init__(self, conn: sqlite3.Connection,
                 write_group: Callable[[sqlite3.Connection, list], Any],
                 after_commit: Callable[[list, Any], None],
                 max_group_points: int = 250_000):
        super().__init__(name="tbpanel-store-writer", daemon=True)
        self.conn = conn
        self._write_group = write_group
        self._after_commit = after_commit
        self._max_group = max_group_points
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False

    # -- producer side
    def submit_points(self, points: list) -> Future:
        fut: Future = Future()
        if self._stopping:
            raise RuntimeError("the telemetry store is closed")
        self._q.put(_WriteOp(points, fut))
        return fut

    def submit_points_done(self, points: list, done: Callable[[int, BaseException | None], None]) -> None:
        """Like :meth:`submit_points`, but ``done(count, exc)`` is called on this thread after
        COMMIT (``exc`` None) or after the rollback: no ``Future`` (and its lock) per batch."""
        if self._stopping:
            raise RuntimeError("the telemetry store is closed")
        self._q.put(_WriteOp(points, None, done))

    def call(self, fn: Callable[[sqlite3.Connection], Any],
             on_commit: Callable[[Any], None] | None = None) -> Future:
        """Run ``fn(conn)`` in its own write transaction on the writer thread."""
        fut: Future = Future()
        if self._stopping:
            raise RuntimeError("the telemetry store is closed")
        self._q.put(_CallOp(fn, on_commit, fut))
        return fut

    def stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._q.put(_STOP)

    # -- consumer side
    def run(self) -> None:
        try:
            while True:
                first = self._q.get()
                ops = [first]
                while True:  # drain: everything queued now goes into this round
                    try:
                        ops.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                stop = False
                group: list[_WriteOp] = []
                n_group = 0
                for op in ops:
                    if op is _STOP:
                        stop = True
                        continue
                    if isinstance(op, _WriteOp):
                        if group and n_group + len(op.points) > self._max_group:
                            self._commit_group(group)
                            group, n_group = [], 0
                        group.append(op)
                        n_group += len(op.points)
                        continue
                    if group:
                        self._commit_group(group)
                        group, n_group = [], 0
                    self._run_call(op)
                if group:
                    self._commit_group(group)
                if stop:
                    # anything queued after the stop marker is refused
                    while True:
                        try:
                            op = self._q.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(op, _WriteOp):
                            op.resolve(RuntimeError("the telemetry store is closed"))
                        elif op is not _STOP:
                            op.future.set_exception(RuntimeError("the telemetry store is closed"))
                    return
        finally:
            try:
                self.conn.close()
            except Exception:  # pragma: no cover
                log.exception("closing the writer connection failed")

    def _commit_group(self, group: list[_WriteOp]) -> None:
        # a future cancelled before the writer got to it is simply not written
        group = [op for op in group if op.start()]
        if not group:
            return
        points = group[0].points if len(group) == 1 else [p for op in group for p in op.points]
        conn = self.conn
        state = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                state = self._write_group(conn, points)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            log.warning("telemetry write transaction failed (%d points): %s", len(points), exc)
            for op in group:
                op.resolve(exc)
            return
        try:
            self._after_commit(points, state)
        except Exception:  # pragma: no cover - bookkeeping must never lose an ack
            log.exception("post-commit bookkeeping failed")
        for op in group:
            op.resolve()

    def _run_call(self, op: _CallOp) -> None:
        if not op.future.set_running_or_notify_cancel():
            return
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = op.fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            op.future.set_exception(exc)
            return
        if op.on_commit is not None:
            try:
                op.on_commit(result)
            except Exception:  # pragma: no cover
                log.exception("post-commit hook failed")
        op.future.set_result(result)


class ReaderPool:
    """Thread-local read connections (WAL readers see a consistent snapshot per transaction)."""

    def __init__(self, path: str, busy_timeout_ms: int):
        self._path = path
        self._busy = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the telemetry store is closed")
            conn = connect(self._path, busy_timeout_ms=self._busy, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:  # pragma: no cover
                pass


def db_path(data_dir: str) -> str:
    return os.path.join(data_dir, "telemetry.sqlite")

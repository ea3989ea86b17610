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
``hot_blocks(id, series, month, min_ts, max_ts, n, ts, t, num, lng, txt)``
    hot points written in bulk: what one commit group wrote of one series in one month, as
    columnar blobs (:mod:`tbpanel.store.blocks`; a hot row wins over a block on equal
    ``(series, ts)``, a later block over an earlier one).
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

This module is the schema (:data:`MIGRATIONS`, ``PRAGMA user_version`` numbered through
:func:`tbpanel.sqlite.migrate`) and every SQL statement the store runs against it: the other
store modules name a statement or call a function of this one, so a change of a table is a
change of one file. Writes run on the single writer thread (:mod:`.writer`); reads on the
thread-local connections of :class:`ReaderPool`, each inside one read transaction
(:class:`ReadTransaction`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .. import sqlite as db
from . import blocks
from .columns import Columns, concat_columns, hot_rows_to_columns, py_value
from .ingest import Batch, PointColumns, py_values, value_columns
from .latest import Latest, LatestTable, LatestValues
from .times import month_of, months_of

#: Schema versions of ``telemetry.sqlite`` (see :func:`tbpanel.sqlite.migrate`). Version 1 is
#: the schema the store had before versioning, written with IF NOT EXISTS so those files upgrade.
MIGRATIONS: tuple[str, ...] = (
    """
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
""",
    # 2: columnar blocks of the hot tier (store/blocks.py): bulk writes of a series, one row
    # per series, month and commit group instead of one row per point
    """
CREATE TABLE hot_blocks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series INTEGER NOT NULL,
    month INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    n INTEGER NOT NULL,
    ts BLOB NOT NULL,
    t BLOB NOT NULL,
    num BLOB NOT NULL,
    lng BLOB,
    txt BLOB
);
CREATE INDEX hot_blocks_series ON hot_blocks(series, min_ts);
CREATE INDEX hot_blocks_month ON hot_blocks(month);
""",
)

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
#: Default page cache of each SQLite connection of the hot tier (KiB; ``tbpanel serve
#: --sqlite-cache-mib``). The writer and every reading thread have one; the OS page cache holds
#: the file anyway, so a big private cache per connection mostly costs RSS.
CACHE_KIB = 16 << 10
SQL_IN_CHUNK = 500  # ids per IN (...) list, well below SQLite's 32766 bound variables


def db_path(data_dir: str) -> str:
    return os.path.join(data_dir, "telemetry.sqlite")


# --- connections ---------------------------------------------------------------------------


def open_database(
    path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 10_000, cache_kib: int = CACHE_KIB
) -> sqlite3.Connection:
    """The writer's connection, with the file brought to the current schema version."""
    conn = db.connect(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, cache_kib=cache_kib)
    try:
        db.migrate(conn, MIGRATIONS, what=f"the telemetry database {path}")
    except BaseException:
        conn.close()
        raise
    return conn


class ReaderPool:
    """Thread-local read connections (WAL readers see a consistent snapshot per transaction)."""

    def __init__(self, path: str, busy_timeout_ms: int, cache_kib: int = CACHE_KIB) -> None:
        self._path = path
        self._busy = busy_timeout_ms
        self._cache_kib = cache_kib
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def path(self) -> str:
        """The telemetry database file these connections read."""
        return self._path

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the telemetry store is closed")
            conn = db.connect(self._path, busy_timeout_ms=self._busy, readonly=True, cache_kib=self._cache_kib)
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


class ReadTransaction:
    """``with ReadTransaction(conn):`` one read transaction: every statement inside sees the
    same committed state. (A class, not a generator context manager: reads of latest values
    run it per request, and this costs a fifth of the other.)"""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN")
        return self._conn

    def __exit__(self, *exc: object) -> None:
        self._conn.execute("COMMIT")


def scalar(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row, or None when there is no row."""
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


# --- series --------------------------------------------------------------------------------

SQL_INSERT_SERIES = "INSERT INTO series(entity, key) VALUES (?, ?) ON CONFLICT(entity, key) DO NOTHING"
SQL_SERIES_ID = "SELECT id FROM series WHERE entity = ? AND key = ?"
SQL_SERIES_WITH_LATEST = (
    "SELECT s.id, s.entity, s.key, l.ts, l.t, l.v, coalesce(l.points, 0) FROM series s "
    "LEFT JOIN latest l ON l.series = s.id ORDER BY s.entity, s.key"
)
SQL_KEYS_WITH_DATA = (
    "SELECT s.key FROM series s JOIN latest l ON l.series = s.id "
    "WHERE s.entity = ? AND (l.ts IS NOT NULL OR l.points > 0) ORDER BY s.key"
)
SQL_ENTITIES_WITH_DATA = (
    "SELECT DISTINCT s.entity FROM series s JOIN latest l ON l.series = s.id "
    "WHERE l.ts IS NOT NULL OR l.points > 0 ORDER BY s.entity"
)
SQL_SERIES_OF_ENTITY = "SELECT id FROM series WHERE entity = ?"
SQL_DELETE_SERIES_OF_ENTITY = "DELETE FROM series WHERE entity = ?"


def series_id(conn: sqlite3.Connection, entity: str, key: str) -> int | None:
    sid: int | None = scalar(conn, SQL_SERIES_ID, (entity, key))
    return sid


def entity_keys(conn: sqlite3.Connection, entity: str) -> list[str]:
    """Sorted keys of ``entity`` that have data or a latest value."""
    return [r[0] for r in conn.execute(SQL_KEYS_WITH_DATA, (entity,)).fetchall()]


def series_with_latest(conn: sqlite3.Connection) -> sqlite3.Cursor:
    """Every series as ``(id, entity, key, latest ts, t, v, points)``, by entity and key."""
    return conn.execute(SQL_SERIES_WITH_LATEST)


# --- hot points ----------------------------------------------------------------------------

SQL_UPSERT_HOT = (
    "INSERT INTO hot(series, ts, t, v) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(series, ts) DO UPDATE SET t = excluded.t, v = excluded.v"
)
SQL_HOT_RANGE = "SELECT ts, t, v FROM hot WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts"
SQL_HOT_RANGE_FIRST = "SELECT ts, t, v FROM hot WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts ASC LIMIT ?"
SQL_HOT_RANGE_LAST = "SELECT ts, t, v FROM hot WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts DESC LIMIT ?"
SQL_HOT_FIRST_TS = "SELECT MIN(ts) FROM hot WHERE series = ?"
SQL_HOT_OF_RANGE = "SELECT series, ts, t, v FROM hot WHERE ts >= ? AND ts < ? ORDER BY series, ts"
SQL_DELETE_HOT_RANGE = "DELETE FROM hot WHERE series = ? AND ts >= ? AND ts < ?"
SQL_DELETE_HOT_OF_SERIES = "DELETE FROM hot WHERE series = ?"


SQL_INSERT_BLOCK = "INSERT INTO hot_blocks(series, month, min_ts, max_ts, n, ts, t, num, lng, txt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SQL_BLOCKS_IN_RANGE = (
    "SELECT id, ts, t, num, lng, txt FROM hot_blocks WHERE series = ? AND min_ts < ? AND max_ts >= ? ORDER BY id"
)
SQL_BLOCK_KEYS_IN_RANGE = "SELECT id, n FROM hot_blocks WHERE series = ? AND min_ts < ? AND max_ts >= ? ORDER BY id"
SQL_BLOCKS_BY_ID = "SELECT id, ts, t, num, lng, txt FROM hot_blocks WHERE id IN ({}) ORDER BY id"
SQL_BLOCK_SPANS_IN_RANGE = (
    "SELECT id, min_ts, max_ts FROM hot_blocks WHERE series = ? AND min_ts < ? AND max_ts >= ? ORDER BY id"
)
SQL_BLOCK = "SELECT id, ts, t, num, lng, txt FROM hot_blocks WHERE id = ?"
SQL_BLOCKS_OF_MONTH = "SELECT series, id, ts, t, num, lng, txt FROM hot_blocks WHERE month = ? ORDER BY series, id"
SQL_BLOCKS_FIRST_TS = "SELECT MIN(min_ts) FROM hot_blocks WHERE series = ?"
SQL_UPDATE_BLOCK = (
    "UPDATE hot_blocks SET min_ts = ?, max_ts = ?, n = ?, ts = ?, t = ?, num = ?, lng = ?, txt = ? WHERE id = ?"
)
SQL_DELETE_BLOCK = "DELETE FROM hot_blocks WHERE id = ?"
SQL_DELETE_BLOCKS_OF_MONTH = "DELETE FROM hot_blocks WHERE month = ?"
SQL_DELETE_BLOCKS_OF_SERIES = "DELETE FROM hot_blocks WHERE series = ?"
SQL_HOT_TS_BETWEEN = "SELECT ts FROM hot WHERE series = ? AND ts >= ? AND ts <= ?"
SQL_DELETE_HOT_POINT = "DELETE FROM hot WHERE series = ? AND ts = ?"
SQL_HOT_OF_SERIES_SINCE = "SELECT ts, t, v FROM hot WHERE series = ? AND ts >= ? ORDER BY ts"
SQL_DELETE_HOT_OF_SERIES_SINCE = "DELETE FROM hot WHERE series = ? AND ts >= ?"


def hot_in_range(
    conn: sqlite3.Connection,
    sids: Sequence[int],
    start: int,
    end: int,
    limit: int | None = None,
    desc: bool = False,
    cache: blocks.BlockCache | None = None,
) -> dict[int, Columns]:
    """Hot points of each series in ``[start, end)`` as columns sorted by ts: its blocks
    (a few blobs, :mod:`.blocks`, merged once and then taken from ``cache``) with its
    single-point rows on top; with ``limit`` only the first (or, ``desc``, the last)
    ``limit`` of them."""
    out: dict[int, Columns] = {}
    if limit is None:
        q = SQL_HOT_RANGE
    else:
        q = SQL_HOT_RANGE_LAST if desc else SQL_HOT_RANGE_FIRST
    for sid in sids:
        if limit is None:
            rows = conn.execute(q, (sid, start, end)).fetchall()
        else:
            rows = conn.execute(q, (sid, start, end, limit)).fetchall()
            if desc:
                rows.reverse()
        cols = hot_rows_to_columns(rows, with_series=False)
        merged = _blocks_of(conn, sid, start, end, cache)
        if merged is not None:
            cols = blocks.limited(blocks.overlay(blocks.in_range(merged, start, end), cols), limit, desc)
        out[sid] = cols
    return out


def _blocks_of(
    conn: sqlite3.Connection, sid: int, start: int, end: int, cache: blocks.BlockCache | None
) -> Columns | None:
    """The merged blocks of ``sid`` that overlap ``[start, end)`` (None: there are none)."""
    if cache is None or cache.max_bytes <= 0:
        brows = conn.execute(SQL_BLOCKS_IN_RANGE, (sid, end, start)).fetchall()
        return blocks.merge_blocks([blocks.decode(r) for r in brows]) if brows else None
    found = conn.execute(SQL_BLOCK_KEYS_IN_RANGE, (sid, end, start)).fetchall()
    if not found:
        return None
    key = (sid, *found)
    merged = cache.get(key)
    if merged is None:
        parts: list[Columns] = []
        for i in range(0, len(found), SQL_IN_CHUNK):
            ids = [r[0] for r in found[i : i + SQL_IN_CHUNK]]
            q = SQL_BLOCKS_BY_ID.format(",".join("?" * len(ids)))
            parts.extend(blocks.decode(r) for r in conn.execute(q, ids))
        merged = blocks.merge_blocks(parts)
        cache.put(key, merged)
    return merged


def month_hot(conn: sqlite3.Connection, lo: int, hi: int, m: int, check: Callable[[], None]) -> Columns:
    """Every hot point of month ``m`` (``[lo, hi)``) with its series, sorted by (series, ts),
    inside the caller's read transaction; ``check()`` runs between chunks (it may raise to
    abandon a long read)."""
    cur = conn.execute(SQL_HOT_OF_RANGE, (lo, hi))
    chunks = []
    while True:
        check()
        rows = cur.fetchmany(200_000)
        if not rows:
            break
        chunks.append(hot_rows_to_columns(rows, with_series=True))
    cols = concat_columns(chunks)
    parts = []
    for sid, *row in conn.execute(SQL_BLOCKS_OF_MONTH, (m,)):
        check()
        c = blocks.decode(row)
        c["series"] = np.full(len(c["ts"]), sid, np.int64)
        parts.append(c)
    if not parts:
        return cols
    return blocks.overlay(blocks.merge_blocks(parts, with_series=True), cols, with_series=True)


def write_blocks(
    conn: sqlite3.Connection, groups: Iterable[tuple[int, int, Columns]], rows_checked: bool = False
) -> None:
    """Insert blocks ``(sid, month, columns)`` inside the writer's transaction; a hot row of
    the same ``(series, ts)`` is deleted first (the block is the newer write) unless
    ``rows_checked`` (the caller deleted them)."""
    for sid, month, cols in groups:
        enc = blocks.encode(cols)
        if rows_checked:
            conn.execute(SQL_INSERT_BLOCK, (sid, month, *enc))
            continue
        older = conn.execute(SQL_HOT_TS_BETWEEN, (sid, enc[0], enc[1])).fetchall()
        if older:
            ts_old = np.fromiter((r[0] for r in older), np.int64, len(older))
            dup = ts_old[np.isin(ts_old, cols["ts"])]
            conn.executemany(SQL_DELETE_HOT_POINT, [(sid, int(t)) for t in dup])
        conn.execute(SQL_INSERT_BLOCK, (sid, month, *enc))


def pack_rows(conn: sqlite3.Connection, sid: int, since: int) -> int:
    """Turn the hot rows of ``sid`` with ``ts >= since`` into blocks, inside the writer's
    transaction; returns how many. The new blocks are the newest, so they win over older
    blocks as the rows did; the months' write counters are bumped (a compaction that read
    them retries rather than trusting its read)."""
    rows = conn.execute(SQL_HOT_OF_SERIES_SINCE, (sid, since)).fetchall()
    n = len(rows)
    if n < 2:
        return 0
    cols = list(zip(*rows))
    ts = np.fromiter(cols[0], np.int64, n)
    v = np.empty(n, dtype=object)
    v[:] = cols[2]
    conn.execute(SQL_DELETE_HOT_OF_SERIES_SINCE, (sid, since))  # exactly the rows read
    groups = blocks.group_blocks(np.full(n, sid, np.int64), ts, np.fromiter(cols[1], np.int8, n), v)
    write_blocks(conn, groups, rows_checked=True)
    conn.execute(SQL_BUMP_MONTHS, (month_of(int(ts[0])), month_of(int(ts[-1]))))
    return n


def delete_hot_range(conn: sqlite3.Connection, sid: int, start: int, end: int) -> None:
    """Delete the hot points of ``sid`` in ``[start, end)``: rows, whole blocks inside the
    range, and the points of blocks that straddle it (those blocks are rewritten, same id)."""
    conn.execute(SQL_DELETE_HOT_RANGE, (sid, start, end))
    for bid, lo, hi in conn.execute(SQL_BLOCK_SPANS_IN_RANGE, (sid, end, start)).fetchall():
        if lo >= start and hi < end:
            conn.execute(SQL_DELETE_BLOCK, (bid,))
            continue
        cols = blocks.decode(conn.execute(SQL_BLOCK, (bid,)).fetchone())
        keep = (cols["ts"] < start) | (cols["ts"] >= end)
        if keep.all():
            continue
        if not keep.any():
            conn.execute(SQL_DELETE_BLOCK, (bid,))
        else:
            conn.execute(SQL_UPDATE_BLOCK, (*blocks.encode(blocks.take(cols, keep)), bid))


def first_hot_ts(conn: sqlite3.Connection, sids: Sequence[int]) -> list[int]:
    """The earliest hot timestamp of each series that has hot rows or blocks."""
    return [
        r[0]
        for sid in sids
        for q in (SQL_HOT_FIRST_TS, SQL_BLOCKS_FIRST_TS)
        for r in conn.execute(q, (sid,))
        if r[0] is not None
    ]


# --- latest values -------------------------------------------------------------------------

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
SQL_ALL_LATEST = (
    "SELECT s.entity, s.key, l.ts, l.t, l.v FROM series s JOIN latest l ON l.series = s.id "
    "WHERE l.ts IS NOT NULL ORDER BY s.entity, s.key"
)
SQL_LATEST_OF_ENTITIES = (
    "SELECT s.entity, s.key, l.ts, l.t, l.v FROM series s JOIN latest l ON l.series = s.id "
    "WHERE l.ts IS NOT NULL AND s.entity IN ({}){} ORDER BY s.entity, s.key"
)
SQL_LATEST_TS_AND_POINTS = "SELECT ts, points FROM latest WHERE series = ?"
SQL_SET_LATEST = "UPDATE latest SET ts = ?, t = ?, v = ? WHERE series = ?"
SQL_CLEAR_LATEST = "UPDATE latest SET ts = NULL, t = NULL, v = NULL WHERE series = ?"
SQL_SET_POINTS = "UPDATE latest SET points = ? WHERE series = ?"
SQL_ADD_POINTS = "UPDATE latest SET points = max(0, points + ?) WHERE series = ?"
SQL_DELETE_LATEST_OF_SERIES = "DELETE FROM latest WHERE series = ?"


def bump_latest_version(conn: sqlite3.Connection) -> int:
    """Tell every store instance that this transaction may change latest values."""
    version: int = conn.execute(SQL_BUMP_LATEST_VERSION).fetchone()[0]
    return version


def latest_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute(SQL_LATEST_VERSION).fetchone()[0]
    return version


def read_all_latest(conn: sqlite3.Connection) -> tuple[int, LatestTable]:
    """The latest version and every latest value, inside the caller's read transaction."""
    version = latest_version(conn)
    rows = ((e, k, ts, t, py_value(t, v)) for e, k, ts, t, v in conn.execute(SQL_ALL_LATEST))
    return version, LatestValues.build(rows)


def latest_of(conn: sqlite3.Connection, ents: list[str], key_args: list[str] | None) -> dict[str, dict[str, Latest]]:
    """Latest values of ``ents`` (only ``key_args`` if given) inside the caller's read
    transaction, one query per :data:`SQL_IN_CHUNK` entities and keys."""
    out: dict[str, dict[str, Latest]] = {e: {} for e in ents}
    key_filter = ""
    if key_args is not None:
        key_filter = f" AND s.key IN ({','.join('?' * len(key_args))})"
    else:
        key_args = []
    step = max(1, SQL_IN_CHUNK - len(key_args))
    for i in range(0, len(ents), step):
        chunk = ents[i : i + step]
        q = SQL_LATEST_OF_ENTITIES.format(",".join("?" * len(chunk)), key_filter)
        for e, k, ts, t, v in conn.execute(q, (*chunk, *key_args)):
            out[e][k] = (ts, t, py_value(t, v))
    return out


# --- months --------------------------------------------------------------------------------

SQL_TOUCH_MONTH = (
    "INSERT INTO month_state(month, wc, hot) VALUES (?, 1, 1) ON CONFLICT(month) DO UPDATE SET wc = wc + 1, hot = 1"
)
SQL_BUMP_MONTHS = "UPDATE month_state SET wc = wc + 1 WHERE month >= ? AND month <= ?"
SQL_BUMP_ALL_MONTHS = "UPDATE month_state SET wc = wc + 1"
SQL_HOT_MONTHS = "SELECT month FROM month_state WHERE hot = 1"
SQL_MONTH_WC = "SELECT wc FROM month_state WHERE month = ?"
SQL_MONTH_COMPACTED = "UPDATE month_state SET hot = 0 WHERE month = ?"


def month_wc(conn: sqlite3.Connection, month: int) -> int | None:
    """The month's write counter (None: nothing was ever written to it)."""
    wc: int | None = scalar(conn, SQL_MONTH_WC, (month,))
    return wc


# --- cold manifest -------------------------------------------------------------------------

SQL_MANIFEST = "SELECT name, generation FROM cold_partitions"
SQL_FIRST_COLD_TS = "SELECT MIN(start_ts) FROM cold_partitions"
SQL_PARTITIONS_IN_RANGE = (
    "SELECT name, generation FROM cold_partitions WHERE end_ts > ? AND start_ts < ? ORDER BY start_ts"
)
SQL_PARTITION_SPANS = "SELECT name, generation, start_ts, end_ts FROM cold_partitions"
SQL_PARTITION_SPANS_IN_RANGE = SQL_PARTITION_SPANS + " WHERE end_ts > ? AND start_ts < ?"
SQL_GENERATION = "SELECT generation FROM cold_partitions WHERE name = ?"
SQL_SET_PARTITION = (
    "INSERT OR REPLACE INTO cold_partitions(name, month, generation, rows, start_ts, "
    "end_ts, has_txt, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_DELETE_PARTITION = "DELETE FROM cold_partitions WHERE name = ?"


def current_generation(conn: sqlite3.Connection, name: str) -> int | None:
    """The generation of month ``name`` the manifest points at (None: not in the cold tier)."""
    gen: int | None = scalar(conn, SQL_GENERATION, (name,))
    return gen


# --- tombstones ----------------------------------------------------------------------------

SQL_INSERT_TOMBSTONE = "INSERT INTO tombstones(series, part, start_ts, end_ts, created_ms) VALUES (?, ?, ?, ?, ?)"
SQL_TOMBSTONES_OF_SERIES_IN_RANGE = (
    "SELECT series, part, start_ts, end_ts FROM tombstones WHERE end_ts > ? AND start_ts < ? AND series IN ({})"
)
SQL_TOMBSTONED_PARTS = "SELECT DISTINCT part FROM tombstones"
SQL_TOMBSTONES_OF_PART = "SELECT id, series, start_ts, end_ts FROM tombstones WHERE part = ?"
SQL_DELETE_TOMBSTONE = "DELETE FROM tombstones WHERE id = ?"
SQL_DELETE_TOMBSTONES_OF_SERIES = "DELETE FROM tombstones WHERE series = ?"


def tombstones_in_range(
    conn: sqlite3.Connection, sids: Sequence[int], start: int, end: int
) -> dict[int, list[tuple[str, int, int]]]:
    """``sid -> [(partition, start_ts, end_ts)]`` of the tombstones overlapping ``[start, end)``."""
    tombs: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for i in range(0, len(sids), SQL_IN_CHUNK):
        chunk = list(sids[i : i + SQL_IN_CHUNK])
        q = SQL_TOMBSTONES_OF_SERIES_IN_RANGE.format(",".join("?" * len(chunk)))
        for sid, part, a, b in conn.execute(q, (start, end, *chunk)):
            tombs[sid].append((part, a, b))
    return tombs


# --- one write group (the writer thread) ---------------------------------------------------

SQL_SERIES_IDS_OF_ENTITY = "SELECT key, id FROM series WHERE entity = ? AND key IN ({})"


def create_series(
    conn: sqlite3.Connection, ids: dict[tuple[str, str], int], points: Sequence[Sequence[Any]], first: int
) -> dict[tuple[str, str], int]:
    """Create the series of ``points[first:]`` that ``ids`` does not know, in bulk: one
    ``executemany`` and one ``SELECT ... IN`` per :data:`SQL_IN_CHUNK` keys of an entity
    (two statements per new key made a message with many new keys slow)."""
    missing: dict[tuple[str, str], None] = {}
    for p in points[first:] if first else points:
        ek = (p[0], p[1])
        if ek not in ids:
            missing[ek] = None
    conn.executemany(SQL_INSERT_SERIES, missing)
    by_entity: dict[str, list[str]] = defaultdict(list)
    for e, k in missing:
        by_entity[e].append(k)
    out: dict[tuple[str, str], int] = {}
    for e, keys in by_entity.items():
        for j in range(0, len(keys), SQL_IN_CHUNK):
            chunk = keys[j : j + SQL_IN_CHUNK]
            for k, sid in conn.execute(SQL_SERIES_IDS_OF_ENTITY.format(",".join("?" * len(chunk))), (e, *chunk)):
                out[(e, k)] = sid
    return out


#: What a committed write group did: the series it created ``{(entity, key): id}``, per series
#: ``[id, newest ts, t, v, points]``, the ``(entity, key)`` of each series written, and the
#: latest version it bumped to, and its oldest timestamp.
GroupState = tuple[dict[tuple[str, str], int], dict[int, list[Any]], dict[int, tuple[str, str]], int, int]


def write_group(conn: sqlite3.Connection, ids: dict[tuple[str, str], int], batches: Sequence[Batch]) -> GroupState:
    """Write validated batches (tuple points or :class:`~tbpanel.store.ingest.PointColumns`)
    inside the writer's open transaction: create missing series (``ids`` holds the known ones),
    upsert latest values, touch their months, and store the points: as columnar blocks for the
    series with at least :data:`~tbpanel.store.blocks.BLOCK_MIN_POINTS` points in the group,
    as single rows for the others. Vectorised over the points: per-point Python only for
    tuple batches (turning them into columns) and for the rows handed to ``executemany``."""
    new: dict[tuple[str, str], int] = {}
    names: dict[int, tuple[str, str]] = {}
    parts = [_batch_columns(conn, ids, new, names, b) for b in batches]
    sid = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    cols = parts[0][1] if len(parts) == 1 else blocks.concat([p[1] for p in parts], with_series=False)
    ts, t = cols["ts"], cols["t"]
    n = len(ts)
    # the newest point of each series (the last written of equal timestamps), and the counts
    order = np.lexsort((np.arange(n), ts, sid))
    s_sorted = sid[order]
    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    counts = np.diff(ends, prepend=-1)
    last = order[ends]
    last_v = py_values(
        t[last], cols["num"][last], cols["lng"][last], None if cols["txt"] is None else cols["txt"][last]
    )
    lat: dict[int, list[Any]] = {
        s: [s, tsl, tl, v, c]
        for s, tsl, tl, v, c in zip(
            s_sorted[ends].tolist(), ts[last].tolist(), t[last].tolist(), last_v, counts.tolist()
        )
    }
    big = s_sorted[ends][counts >= blocks.BLOCK_MIN_POINTS]
    rows_sel: np.ndarray | None = None
    if len(big):  # many points of a series: one columnar block per series and month, not a row each
        in_big = np.isin(sid, big)
        sel = None if in_big.all() else in_big
        bcols = cols if sel is None else blocks.take(cols, sel)
        write_blocks(conn, blocks.group_columns(sid if sel is None else sid[sel], bcols))
        rows_sel = ~in_big
    if rows_sel is None or rows_sel.any():
        rc = cols if rows_sel is None else blocks.take(cols, rows_sel)
        rsid = sid if rows_sel is None else sid[rows_sel]
        values = py_values(rc["t"], rc["num"], rc["lng"], rc["txt"])
        conn.executemany(SQL_UPSERT_HOT, zip(rsid.tolist(), rc["ts"].tolist(), rc["t"].tolist(), values))
    conn.executemany(SQL_UPSERT_LATEST, lat.values())
    mn, mx = int(ts.min()), int(ts.max())
    m0, m1 = month_of(mn), month_of(mx)
    months = [(m0,)] if m0 == m1 else [(int(m),) for m in np.unique(months_of(ts))]
    conn.executemany(SQL_TOUCH_MONTH, months)
    version = bump_latest_version(conn)
    return new, lat, names, version, mn


def _batch_columns(
    conn: sqlite3.Connection,
    ids: dict[tuple[str, str], int],
    new: dict[tuple[str, str], int],
    names: dict[int, tuple[str, str]],
    batch: Batch,
) -> tuple[np.ndarray, Columns]:
    """The series id of each point of a batch and its columns ``ts``, ``t``, ``num``, ``lng``,
    ``txt``; series the batch needs and nobody created yet are created (into ``new``)."""
    if isinstance(batch, PointColumns):
        e = batch.entity
        wanted = [(e, k) for k in batch.keys]
        if any(ek not in ids and ek not in new for ek in wanted):
            new.update(create_series(conn, ids, wanted, 0))
        key_sids = [ids.get(ek) or new[ek] for ek in wanted]
        for ek, ksid in zip(wanted, key_sids):
            names[ksid] = ek
        sid = np.array(key_sids, np.int64)[batch.key]
        return sid, {"ts": batch.ts, "t": batch.t, "num": batch.num, "lng": batch.lng, "txt": batch.txt}
    points = batch
    n = len(points)
    sids: list[int] = []
    append = sids.append
    for i, p in enumerate(points):
        ek = (p[0], p[1])
        s = ids.get(ek)
        if s is None:
            s = new.get(ek)
            if s is None:  # the first new series of the batch: create all of them at once
                new.update(create_series(conn, ids, points, i))
                s = new[ek]
        if s not in names:
            names[s] = ek
        append(s)
    t = np.fromiter((p[3] for p in points), np.int8, n)
    num, lng, txt = value_columns(t, [p[4] for p in points])
    ts = np.fromiter((p[2] for p in points), np.int64, n)
    return np.array(sids, np.int64), {"ts": ts, "t": t, "num": num, "lng": lng, "txt": txt}

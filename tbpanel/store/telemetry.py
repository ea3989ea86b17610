"""The telemetry store: one object that writes, reads, aggregates, deletes and compacts.

::

    from tbpanel.store import open_store
    store = open_store("data/demo")                      # creates the directory
    store.write(device_id, {"temperature": 21.5})        # durable when it returns
    store.query_agg(device_id, ["temperature"], start, end, "AVG", 3_600_000)
    ds = store.query([device_id], ["temperature"], interval="1h", agg="avg")  # xarray

Data flow: :meth:`TelemetryStore.submit` validates points synchronously (a bad point raises
``ValueError`` before anything is queued), hands them to the single writer thread of
:mod:`tbpanel.store.hot` (group commit into SQLite, WAL, ``synchronous=FULL``) and returns a
``Future`` resolved after COMMIT. A compactor (background thread every
``compaction_interval_s`` seconds, or :meth:`TelemetryStore.compact`) moves the points of closed
UTC months into the Zarr cold tier (:mod:`tbpanel.store.cold`); a month is closed when its end
is older than ``now - grace_ms``. Queries read both tiers in one SQLite snapshot and merge them
(hot wins on equal ``(series, ts)``); aggregation is vectorised numpy
(:mod:`tbpanel.store.aggregate`) over bucket edges from :mod:`tbpanel.store.buckets`.

Crash safety of compaction: the new generation is written and fsynced *before* one SQLite
transaction (through the writer) switches the manifest, deletes the moved hot rows and the
applied tombstones. A crash before that commit leaves an orphan directory (removed at the
next open) and the data still in hot; after it, the old generation is the orphan. The commit
is refused if any transaction wrote or deleted points of that month since the compactor read
it (``month_state.wc``), so a concurrent late write or delete is never lost; the month is
simply retried.

Counting: ``stats()["points"]`` and the counts returned by :meth:`TelemetryStore.delete` are
best effort (kept as counters, never a scan). Every acknowledged point is counted when
written, so rewriting an existing ``(series, ts)`` counts it again: for a point already in the
cold tier the next compaction of its month corrects that, for a point still in the hot tier
the extra count stays. ``delete`` returns the number of points visible in the range just
before the delete (concurrent writes into the same range may make it off) and subtracts it;
a series left with no data at all is reset to exactly 0.

Sharing a directory: several ``TelemetryStore`` objects (threads of one process, or several
processes, e.g. a notebook next to the server) may open the same directory. SQLite
serialises their writes; series ids are created race-free; only one of them compacts at a
time (an ``flock`` on ``compaction.lock``); a reader whose cold generation is removed by
another instance retries on a fresh snapshot. The in-memory counters of :meth:`stats` only
see the writes of their own instance. Latest values are answered from an in-memory copy
(:mod:`tbpanel.store.latest`) only while it is current; after another instance's commit
they come from SQL (or a reloaded copy), so they are always fresh.
"""
from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import math
import os
from pathlib import Path
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np

from ..clock import now_ms, utc_text
from .acks import loop_acks
from .aggregate import AggResult, aggregate, normalize_agg
from .buckets import QueryError, bucket_edges, check_range, get_zone, normalize_interval_type
from .cold import ColdTier
from .faults import storage_fault
from .hot import (
    SQL_ALL_LATEST, SQL_BUMP_LATEST_VERSION, SQL_LATEST_VERSION, SQL_TOUCH_MONTH, SQL_UPSERT_HOT,
    SQL_UPSERT_LATEST, SYNCHRONOUS_MODES, ReaderPool, Writer, connect, db_path, hot_rows_to_columns,
    init_schema, month_from_name, month_name, month_of, month_start, months_of, py_value,
)
from .latest import LatestValues
from .payload import TS_MAX, TS_MIN
from .values import LONG_MAX, LONG_MIN, ValueType, classify

log = logging.getLogger(__name__)

Point = tuple[str, str, int, int, Any]  # (entity, key, ts, vtype, value)

_BOOL, _LONG, _DOUBLE, _STR, _JSON = (int(x) for x in ValueType)
_TCODE = {int(x): int(x) for x in ValueType}
_SQL_IN_CHUNK = 500


def _iso(ts: int | None) -> str:
    """Epoch ms as a short UTC timestamp for reprs."""
    return "-" if ts is None else utc_text(ts) + " UTC"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class _Conflict(Exception):
    """The month changed while it was being compacted; retry."""


# --- validation ----------------------------------------------------------------------------

def _bad(i: int, msg: str) -> ValueError:
    return ValueError(f"point {i}: {msg}")


def validate_points(points: Iterable) -> list[Point]:
    """Check and normalise points ``(entity, key, ts, vtype, value)``; raise ``ValueError``.

    Accepted values per type: BOOL a bool (or 0/1), LONG a 64-bit int, DOUBLE a finite float
    (ints are converted), STR/JSON a string. ``ts`` is epoch ms in ``TS_MIN..TS_MAX``.
    """
    out: list[Point] = []
    append = out.append
    tcode = _TCODE
    for i, p in enumerate(points):
        try:
            e, k, ts, t, v = p
        except (TypeError, ValueError):
            raise _bad(i, f"expected (entity, key, ts, vtype, value), got {p!r}") from None
        if type(e) is not str or not e:
            raise _bad(i, f"entity must be a non-empty string, got {e!r}")
        if type(k) is not str or not k:
            raise _bad(i, f"key must be a non-empty string, got {k!r}")
        if type(ts) is not int:
            if isinstance(ts, (bool, np.bool_)) or not isinstance(ts, (int, np.integer)):
                raise _bad(i, f"ts must be an integer (epoch ms), got {ts!r}")
            ts = int(ts)
        if not TS_MIN <= ts <= TS_MAX:
            raise _bad(i, f"ts {ts} is outside {TS_MIN}..{TS_MAX} (epoch ms)")
        tc = tcode.get(t) if isinstance(t, (int, np.integer)) and not isinstance(t, bool) else None
        if tc is None:
            raise _bad(i, f"unknown value type {t!r} (expected a ValueType code 0..4)")
        tv = type(v)
        if tc == _DOUBLE:
            if tv is not float:
                if tv is bool or not isinstance(v, (int, float, np.integer, np.floating)):
                    raise _bad(i, f"a DOUBLE value must be a number, got {tv.__name__}")
                v = float(v)
            if not math.isfinite(v):
                raise _bad(i, "NaN and Infinity are not valid telemetry values")
        elif tc == _LONG:
            if tv is not int:
                if tv is bool or not isinstance(v, (int, np.integer)):
                    raise _bad(i, f"a LONG value must be an integer, got {tv.__name__}")
                v = int(v)
            if not LONG_MIN <= v <= LONG_MAX:
                raise _bad(i, f"integer {v} is outside the 64-bit range")
        elif tc == _BOOL:
            if tv is not bool:
                if isinstance(v, (int, np.integer, np.bool_)) and v in (0, 1):
                    v = bool(v)
                else:
                    raise _bad(i, f"a BOOL value must be a bool, got {tv.__name__}")
        else:
            if tv is not str:
                raise _bad(i, f"a {ValueType(tc).name} value must be a string, got {tv.__name__}")
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise _bad(i, "the string is not valid Unicode (lone surrogate)") from None
        append((e, k, ts, tc, v))
    return out


# --- time helpers for query() --------------------------------------------------------------

_INTERVAL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_UNITS = {"": 1, "ms": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000,
          "hr": 3_600_000, "d": 86_400_000, "day": 86_400_000, "w": 7 * 86_400_000,
          "week": 7 * 86_400_000}


def parse_interval(interval: Any) -> int | None:
    """Milliseconds from an int, a timedelta/timedelta64, or a string like "1h", "15min", "30s"."""
    if interval is None:
        return None
    if isinstance(interval, bool):
        raise QueryError(f"invalid interval {interval!r}")
    if isinstance(interval, (int, np.integer)):
        return int(interval)
    if isinstance(interval, timedelta):
        return int(interval / timedelta(milliseconds=1))
    if isinstance(interval, np.timedelta64):
        return int(interval.astype("timedelta64[ms]").astype(np.int64))
    if isinstance(interval, str):
        m = _INTERVAL_RE.match(interval)
        unit = m.group(2).lower() if m else None
        if m and unit in _UNITS:
            return int(round(float(m.group(1)) * _UNITS[unit]))
    raise QueryError(f"invalid interval {interval!r}; use milliseconds or a string like '1h', '15min', '30s'")


def to_ms(x: Any, what: str) -> int:
    """Epoch ms from an int, datetime (naive = UTC), date, numpy datetime64 or ISO string."""
    if isinstance(x, bool):
        raise QueryError(f"invalid {what} {x!r}")
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, datetime):
        if x.tzinfo is None:
            x = x.replace(tzinfo=timezone.utc)
        return int((x - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(milliseconds=1))
    if isinstance(x, date):
        return to_ms(datetime(x.year, x.month, x.day), what)
    if isinstance(x, np.datetime64):
        return int(x.astype("datetime64[ms]").astype(np.int64))
    if isinstance(x, str):
        try:
            return int(np.datetime64(x.rstrip("Z"), "ms").astype(np.int64))
        except ValueError:
            pass
    if hasattr(x, "to_datetime64"):  # pandas Timestamp
        return to_ms(x.to_datetime64(), what)
    raise QueryError(f"invalid {what} {x!r}; use epoch ms, a datetime or an ISO string")


# --- merged view of one series -------------------------------------------------------------

class _Seg:
    """Rows ``lo+a : lo+b`` of one series in one cold partition, minus tombstoned rows."""

    __slots__ = ("part", "lo", "a", "b", "keep", "ts")

    def __init__(self, part, lo, a, b, keep, ts_full):
        self.part, self.lo, self.a, self.b, self.keep = part, lo, a, b, keep
        ts = ts_full[a:b]
        self.ts = ts if keep is None else ts[keep]

    def column(self, name: str) -> np.ndarray:
        arr = self.part.read(name, self.lo + self.a, self.lo + self.b) if name != "ts" else self.ts
        if name != "ts" and self.keep is not None:
            arr = arr[self.keep]
        return arr


_EMPTY = {"ts": np.empty(0, np.int64), "t": np.empty(0, np.int8), "num": np.empty(0, np.float64),
          "lng": np.empty(0, np.int64), "txt": np.empty(0, object)}


class SeriesData:
    """One series over a range: cold segments and hot rows merged (hot wins), loaded lazily.

    ``ts`` is sorted ascending; :meth:`column` returns the aligned ``t``/``num``/``lng``/``txt``.
    """

    def __init__(self, segs: list[_Seg], hot: dict, final: slice | None = None):
        self._segs = segs
        self._hot = hot
        self._memo: dict[str, np.ndarray] = {}
        cts = _concat([s.ts for s in segs], np.int64)
        hts = hot["ts"]
        self._cold_keep = None
        self._order = None
        if len(hts) == 0:
            ts = cts
        elif len(cts) == 0:
            ts = hts
        else:
            pos = np.searchsorted(hts, cts)
            dup = hts[np.minimum(pos, len(hts) - 1)] == cts
            if dup.any():
                self._cold_keep = ~dup
                cts = cts[self._cold_keep]
            ts = np.concatenate((cts, hts))
            if len(cts) and cts[-1] >= hts[0]:
                self._order = np.argsort(ts, kind="stable")
                ts = ts[self._order]
        self._final = final if final is not None else None
        if final is not None:
            ts = ts[final]
        self.ts = ts

    def __len__(self) -> int:
        return len(self.ts)

    def column(self, name: str) -> np.ndarray:
        if name == "ts":
            return self.ts
        c = self._memo.get(name)
        if c is not None:
            return c
        hot = self._hot.get(name)
        nh = len(self._hot["ts"])
        if hot is None:  # hot txt absent: no text in the hot rows
            hot = np.full(nh, None, dtype=object) if name == "txt" else _EMPTY[name]
        parts = [s.column(name) for s in self._segs]
        if not parts and self._order is None and self._final is None:
            c = hot
        elif nh == 0 and len(parts) == 1 and self._final is None:
            c = parts[0]
        else:
            c = _concat(parts, hot.dtype)
            if self._cold_keep is not None:
                c = c[self._cold_keep]
            if nh:
                c = np.concatenate((c, hot))
            if self._order is not None:
                c = c[self._order]
            if self._final is not None:
                c = c[self._final]
        self._memo[name] = c
        return c

    def values(self) -> np.ndarray:
        """Python values of every point (bool/int/float/str) as an object array."""
        t = self.column("t")
        out = np.empty(len(t), dtype=object)
        numeric = t <= _DOUBLE
        if numeric.any():
            num = self.column("num")
            m = t == _DOUBLE
            if m.any():
                out[m] = num[m]
            m = t == _BOOL
            if m.any():
                out[m] = num[m] != 0
            m = t == _LONG
            if m.any():
                out[m] = self.column("lng")[m]
        m = t >= _STR
        if m.any():
            out[m] = self.column("txt")[m]
        return out

    def to_list(self, desc: bool = False) -> list[tuple[int, int, Any]]:
        rows = list(zip(self.ts.tolist(), self.column("t").tolist(), self.values().tolist()))
        if desc:
            rows.reverse()
        return rows


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=dtype)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts)


# --- the store -----------------------------------------------------------------------------

class TelemetryStore:
    """Telemetry persistence: SQLite hot tier + Zarr cold tier. See the module docstring."""

    def __init__(self, path: str, cold_url: str | None = None, *, synchronous: str = "FULL",
                 compaction_interval_s: float = 60, grace_ms: int = 86_400_000,
                 busy_timeout_ms: int = 10_000, cache_bytes: int = 256 << 20,
                 chunk_rows: int = 1_000_000, compressor: str = "lz4"):
        self.path = os.path.abspath(os.fspath(path))
        os.makedirs(self.path, exist_ok=True)
        sync = str(synchronous).upper()
        if sync not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        self.synchronous = sync
        self.grace_ms = int(grace_ms)
        self.compaction_interval_s = float(compaction_interval_s or 0)
        self._closed = False
        self._db = db_path(self.path)

        wconn = connect(self._db, synchronous=sync, busy_timeout_ms=busy_timeout_ms)
        init_schema(wconn)
        self._readers = ReaderPool(self._db, busy_timeout_ms)
        self.cold = ColdTier(cold_url or os.path.join(self.path, "cold"), chunk_rows=chunk_rows,
                             cache_bytes=cache_bytes, compressor=compressor,
                             fsync=sync != "OFF")  # OFF: no durability anywhere (scratch stores)

        # in-memory mirrors (the writer thread updates them after each commit)
        self._state_lock = threading.RLock()
        self._ids: dict[tuple[str, str], int] = {}
        self._by_entity: dict[str, dict[str, int]] = {}
        self._sstat: dict[int, list] = {}  # sid -> [points, latest_ts]
        self._total_points = 0
        self._latest = LatestValues()  # latest_many() answers from it
        self._load_state(wconn)
        self._listeners: tuple[Callable, ...] = ()

        # generations retired by compaction are removed once no reader may still use them
        self._epoch_lock = threading.Lock()
        self._epoch = 0
        self._active: dict[int, int] = {}
        self._retired: list[tuple[int, str, int]] = []

        self._tl = threading.local()
        self._compact_mutex = threading.Lock()
        self._lock_fd = os.open(os.path.join(self.path, "compaction.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        self._cleanup_orphans(wconn)

        self._writer = Writer(wconn, self._write_group, self._after_commit)
        self._writer.start()
        self._stop = threading.Event()
        self._compactor = None
        if self.compaction_interval_s > 0:
            self._compactor = threading.Thread(target=self._compact_loop, name="tbpanel-compactor",
                                               daemon=True)
            self._compactor.start()

    # ----------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop the compactor and the writer (queued writes are committed first); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._compactor is not None:
            self._compactor.join()
        self._writer.stop()
        self._writer.join()
        self._readers.close()
        self.cold.forget_all()
        try:
            os.close(self._lock_fd)
        except OSError:  # pragma: no cover
            pass

    def __enter__(self) -> "TelemetryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<TelemetryStore {self.path!r} closed>"
        s = self._summary()
        span = (f"{_iso(s['first_ts'])} .. {_iso(s['last_ts'])}" if s["first_ts"] is not None else "empty")
        keys = ", ".join(s["keys"][:8]) + (", ..." if len(s["keys"]) > 8 else "")
        return (f"<TelemetryStore {self.path!r} devices={s['entities']} series={s['series']} "
                f"points~{s['points']:,} span={span} size={_size(s['bytes'])} keys=[{keys}]>")

    def _repr_html_(self) -> str:
        """What a notebook shows for ``store``: enough to know what is in it before querying."""
        import html

        if self._closed:
            return f"<b>TelemetryStore</b> <code>{html.escape(self.path)}</code> (closed)"
        s = self._summary()
        span = (f"{_iso(s['first_ts'])} &ndash; {_iso(s['last_ts'])}" if s["first_ts"] is not None else "empty")
        rows = [("path", f"<code>{html.escape(self.path)}</code>"), ("devices", f"{s['entities']:,}"),
                ("series", f"{s['series']:,}"), ("points (approx.)", f"{s['points']:,}"), ("time span", span),
                ("size on disk", _size(s["bytes"])), ("keys", html.escape(", ".join(s["keys"])) or "&ndash;")]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                       for k, v in rows)
        return f"<b>TelemetryStore</b><table>{body}</table>"

    def _summary(self) -> dict:
        """Devices, keys, time span and size for the reprs (index lookups only, no data scan)."""
        with self._state_lock:
            keys = sorted({k for ks in self._by_entity.values() for k in ks})
            last = max((st[1] for st in self._sstat.values() if st[1] is not None), default=None)
            sids = list(self._sstat)
            out = {"entities": len(self._by_entity), "series": len(sids), "points": self._total_points,
                   "keys": keys, "last_ts": last}
        conn = self._readers.get()
        firsts = [r[0] for sid in sids
                  for r in conn.execute("SELECT MIN(ts) FROM hot WHERE series = ?", (sid,)) if r[0] is not None]
        cold = conn.execute("SELECT MIN(start_ts) FROM cold_partitions").fetchone()
        if cold and cold[0] is not None:
            firsts.append(cold[0])
        out["first_ts"] = min(firsts) if firsts else None
        total = 0
        for root, _dirs, files in os.walk(self.path):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:  # a retired generation removed while we walk
                    pass
        out["bytes"] = total
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the telemetry store is closed")

    def _load_state(self, conn) -> None:
        conn.execute("BEGIN")  # one snapshot: another instance may be writing
        gc_was_on = gc.isenabled()
        gc.disable()  # ~3 new objects per series, no cycles: the collector would double the time
        try:
            version = conn.execute(SQL_LATEST_VERSION).fetchone()[0]
            latest = []
            for sid, entity, key, ts, t, v, points in conn.execute(
                    "SELECT s.id, s.entity, s.key, l.ts, l.t, l.v, coalesce(l.points, 0) FROM series s "
                    "LEFT JOIN latest l ON l.series = s.id ORDER BY s.entity, s.key"):
                self._ids[(entity, key)] = sid
                self._by_entity.setdefault(entity, {})[key] = sid
                self._sstat[sid] = [points, ts]
                self._total_points += points
                if ts is not None:
                    latest.append((entity, key, ts, t, py_value(t, v)))
            self._latest.load(version, LatestValues.build(latest))
        finally:
            conn.execute("COMMIT")
            if gc_was_on:
                gc.enable()

    def _cleanup_orphans(self, conn) -> None:
        """Remove generation directories that the manifest does not point at."""
        if not self._try_lock():
            return  # another process is compacting; its directories are not orphans
        try:
            current = {(n, g) for n, g in conn.execute("SELECT name, generation FROM cold_partitions")}
            for name, gen in self.cold.list_generations():
                if (name, gen) not in current:
                    log.info("removing orphan cold generation %s/g%06d", name, gen)
                    self.cold.remove(name, gen)
            self.cold.remove_empty_month_dirs({n for n, _ in current})
        finally:
            self._unlock()

    def _try_lock(self) -> bool:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # --------------------------------------------------------------------------------- writes
    def submit(self, points: Iterable[Point]) -> Future:
        """Queue points for the writer; the future resolves to their count after COMMIT.

        Points are validated here: an invalid point raises ``ValueError`` and nothing of the
        batch is queued. If the transaction fails, the future carries the exception and none
        of the batch is stored.
        """
        self._check_open()
        pts = validate_points(points)
        if not pts:
            fut: Future = Future()
            fut.set_result(0)
            return fut
        return self._writer.submit_points(pts)

    def submit_async(self, points: Iterable[Point]) -> "asyncio.Future[int]":
        """:meth:`submit` for a coroutine on a running asyncio loop: ``await`` the result for
        the count once the points are durable. Invalid points raise ``ValueError`` here.

        Cheaper per call than ``asyncio.wrap_future(store.submit(...))``: no thread-safe
        ``Future`` per batch, and the loop is woken once per commit group (:mod:`.acks`).
        """
        self._check_open()
        pts = validate_points(points)
        fut, done = loop_acks().waiter()
        if pts:
            self._writer.submit_points_done(pts, done)
        else:
            fut.set_result(0)
        return fut

    def write_points(self, points: Iterable[Point]) -> int:
        """Write points and wait until they are durable; returns how many."""
        return self.submit(points).result()

    def write(self, entity: str, values: dict[str, Any], ts: int | None = None) -> int:
        """Write one timestamped set of Python values (typed with ``values.classify``)."""
        ts = now_ms() if ts is None else ts
        pts = []
        for key, raw in values.items():
            typed = classify(raw)
            if typed is None:
                continue
            pts.append((entity, key, ts, int(typed[0]), typed[1]))
        return self.write_points(pts) if pts else 0

    def add_listener(self, fn: Callable[[list[Point]], None]) -> None:
        """``fn(points)`` is called from the writer thread after each commit."""
        with self._state_lock:
            self._listeners = self._listeners + (fn,)

    def remove_listener(self, fn: Callable[[list[Point]], None]) -> None:
        with self._state_lock:
            ls = list(self._listeners)
            if fn in ls:
                ls.remove(fn)
            self._listeners = tuple(ls)

    # writer-thread side of a write group
    def _write_group(self, conn, points: list[Point]):
        ids = self._ids
        new: dict[tuple[str, str], int] = {}
        rows = []
        append = rows.append
        lat: dict[int, list] = {}  # sid -> [sid, newest ts, t, v, points]
        names: dict[int, tuple[str, str]] = {}
        mn = mx = points[0][2]
        for e, k, ts, t, v in points:
            ek = (e, k)
            sid = ids.get(ek)
            if sid is None:
                sid = new.get(ek)
                if sid is None:
                    conn.execute("INSERT INTO series(entity, key) VALUES (?, ?) "
                                 "ON CONFLICT(entity, key) DO NOTHING", ek)
                    sid = conn.execute("SELECT id FROM series WHERE entity = ? AND key = ?",
                                       ek).fetchone()[0]
                    new[ek] = sid
            append((sid, ts, t, v))
            cur = lat.get(sid)
            if cur is None:
                lat[sid] = [sid, ts, t, v, 1]
                names[sid] = ek
            else:
                cur[4] += 1
                if ts >= cur[1]:
                    cur[1] = ts
                    cur[2] = t
                    cur[3] = v
            if ts < mn:
                mn = ts
            elif ts > mx:
                mx = ts
        conn.executemany(SQL_UPSERT_HOT, rows)
        conn.executemany(SQL_UPSERT_LATEST, lat.values())
        m0, m1 = month_of(mn), month_of(mx)
        if m0 == m1:
            months = [(m0,)]
        else:
            ts_arr = np.fromiter((p[2] for p in points), dtype=np.int64, count=len(points))
            months = [(int(m),) for m in np.unique(months_of(ts_arr))]
        conn.executemany(SQL_TOUCH_MONTH, months)
        version = conn.execute(SQL_BUMP_LATEST_VERSION).fetchone()[0]
        return new, lat, names, version

    def _after_commit(self, points: list[Point], state) -> None:
        new, lat, names, version = state
        self._latest.written(version, [(*names[sid], ts, t, v) for sid, ts, t, v, _n in lat.values()])
        with self._state_lock:
            for (e, k), sid in new.items():
                self._ids[(e, k)] = sid
                self._by_entity.setdefault(e, {})[k] = sid
            sstat = self._sstat
            total = 0
            for sid, ts, _t, _v, n in lat.values():
                st = sstat.get(sid)
                if st is None:
                    sstat[sid] = [n, ts]
                else:
                    st[0] += n
                    if st[1] is None or ts >= st[1]:
                        st[1] = ts
                total += n
            self._total_points += total
        for fn in self._listeners:
            try:
                fn(points)
            except Exception:
                log.exception("telemetry listener %r failed", fn)

    # -------------------------------------------------------------------------------- lookups
    def _sid(self, entity: str, key: str) -> int | None:
        sid = self._ids.get((entity, key))
        if sid is None:  # maybe created by another process sharing the directory
            row = self._readers.get().execute(
                "SELECT id FROM series WHERE entity = ? AND key = ?", (entity, key)).fetchone()
            sid = row[0] if row else None
        return sid

    def _resolve(self, entity: str, keys) -> dict[str, int]:
        if keys is None:
            keys = self.keys(entity)
        elif isinstance(keys, str):
            keys = [keys]
        out = {}
        for k in keys:
            sid = self._sid(entity, k)
            if sid is not None:
                out[k] = sid
        return out

    def keys(self, entity: str) -> list[str]:
        """Sorted keys of ``entity`` that have data or a latest value."""
        self._check_open()
        rows = self._readers.get().execute(
            "SELECT s.key FROM series s JOIN latest l ON l.series = s.id "
            "WHERE s.entity = ? AND (l.ts IS NOT NULL OR l.points > 0) ORDER BY s.key",
            (entity,)).fetchall()
        return [r[0] for r in rows]

    def latest(self, entity: str, keys: Sequence[str] | str | None = None) -> dict[str, tuple[int, int, Any]]:
        """Latest value per key: ``key -> (ts, vtype, value)``; keys without one are absent."""
        return self.latest_many([entity], keys)[entity]

    def latest_many(self, entities: Iterable[str], keys: Sequence[str] | str | None = None
                    ) -> dict[str, dict[str, tuple[int, int, Any]]]:
        """Latest values of many entities in one read: ``entity -> {key: (ts, vtype, value)}``.

        Every entity asked for is in the result, with ``{}`` when it has no latest value;
        keys are sorted. Answered from memory (:mod:`.latest`) when this instance's copy is
        current -- one tiny SQL read checks that -- otherwise (another instance or process
        wrote since) by SQL, one query per 500 entities, all from one snapshot.
        """
        self._check_open()
        ents = list(dict.fromkeys(entities))
        if isinstance(keys, str):
            keys = [keys]
        key_args = None if keys is None else list(dict.fromkeys(keys))
        if not ents or key_args == []:
            return {e: {} for e in ents}
        conn = self._readers.get()
        conn.execute("BEGIN")
        try:
            version = conn.execute(SQL_LATEST_VERSION).fetchone()[0]
            out = self._latest.read(version, ents, key_args)
            if out is None and self._latest.stale:  # missed another instance's commit: reload
                version, by_entity = _read_all_latest(conn)
                out = LatestValues.answer(by_entity, ents, key_args)
                self._latest.install(version, by_entity)
            if out is None:  # behind another instance's commits
                out = self._latest_sql(conn, ents, key_args)
        finally:
            conn.execute("COMMIT")
        return out

    @staticmethod
    def _latest_sql(conn, ents: list[str], key_args: list[str] | None
                    ) -> dict[str, dict[str, tuple[int, int, Any]]]:
        """:meth:`latest_many` by SQL inside the caller's read transaction."""
        out: dict[str, dict[str, tuple[int, int, Any]]] = {e: {} for e in ents}
        key_filter = ""
        if key_args is not None:
            key_filter = " AND s.key IN (%s)" % ",".join("?" * len(key_args))
        else:
            key_args = []
        step = max(1, _SQL_IN_CHUNK - len(key_args))
        for i in range(0, len(ents), step):
            chunk = ents[i:i + step]
            q = ("SELECT s.entity, s.key, l.ts, l.t, l.v FROM series s JOIN latest l ON l.series = s.id "
                 "WHERE l.ts IS NOT NULL AND s.entity IN (%s)%s ORDER BY s.entity, s.key"
                 % (",".join("?" * len(chunk)), key_filter))
            for e, k, ts, t, v in conn.execute(q, (*chunk, *key_args)):
                out[e][k] = (ts, t, py_value(t, v))
        return out

    def stats(self, entity: str | None = None) -> dict:
        """Cheap counters (no scan). ``points`` is approximate (see the module docstring)."""
        with self._state_lock:
            if entity is None:
                return {"points": self._total_points, "series": len(self._sstat),
                        "entities": len(self._by_entity)}
            sids = list(self._by_entity.get(entity, {}).values())
            pts = 0
            last = None
            for sid in sids:
                st = self._sstat.get(sid)
                if st is None:
                    continue
                pts += st[0]
                if st[1] is not None and (last is None or st[1] > last):
                    last = st[1]
            return {"points": pts, "series": len(sids), "last_ts": last}

    # -------------------------------------------------------------------------------- reading
    # Every public read runs inside _read(): it registers a reader epoch for its whole
    # duration (including lazy column loads), so a generation retired by an in-process
    # compaction is removed only after every reader that could have seen it has finished.
    # Another process sharing the directory may still remove a generation under us; the
    # generations used are checked to still exist after the read, and the read is retried.
    @contextmanager
    def _reading(self):
        with self._epoch_lock:
            self._epoch += 1
            tok = self._epoch
            self._active[tok] = tok
        try:
            yield
        finally:
            with self._epoch_lock:
                del self._active[tok]
                pending = bool(self._retired)
            if pending:
                self._purge_retired()

    def _read(self, fn: Callable[[], Any]) -> Any:
        tl = self._tl
        if getattr(tl, "used", None) is not None:  # nested: the outer read checks and retries
            return fn()
        for attempt in range(3):
            tl.used = used = set()
            try:
                with self._reading():
                    result = fn()
                    if all(self.cold.exists(n, g) for n, g in used):
                        return result
                    exc: Exception = FileNotFoundError("a cold generation vanished during the read")
            except FileNotFoundError as e:  # includes zarr's GroupNotFoundError
                exc = e
            finally:
                tl.used = None
            if attempt == 2:
                raise exc
            log.info("cold generation changed during a read (%s); retrying", exc)
            self.cold.forget_all()
        raise AssertionError("unreachable")  # pragma: no cover

    def _retire(self, name: str, gen: int) -> None:
        with self._epoch_lock:
            self._epoch += 1
            self._retired.append((self._epoch, name, gen))
        self._purge_retired()

    def _purge_retired(self) -> None:
        with self._epoch_lock:
            oldest = min(self._active.values(), default=math.inf)
            ready = [r for r in self._retired if r[0] < oldest]
            self._retired = [r for r in self._retired if r[0] >= oldest]
        for _, name, gen in ready:
            try:
                self.cold.remove(name, gen)
            except Exception:  # pragma: no cover - an orphan is removed at the next open
                log.exception("removing cold generation %s/g%06d failed", name, gen)

    def _collect(self, sids: Sequence[int], start: int, end: int, limit: int | None = None,
                 desc: bool = False) -> dict[int, SeriesData]:
        """Merged data of each series over ``[start, end)`` from one consistent snapshot.

        Must run inside :meth:`_read` (columns of the result load lazily from the cold tier).
        """
        conn = self._readers.get()
        conn.execute("BEGIN")
        try:
            parts = conn.execute(
                "SELECT name, generation FROM cold_partitions WHERE end_ts > ? AND start_ts < ? "
                "ORDER BY start_ts", (start, end)).fetchall()
            tombs: dict[int, list] = defaultdict(list)
            if parts:
                for i in range(0, len(sids), _SQL_IN_CHUNK):
                    chunk = list(sids[i:i + _SQL_IN_CHUNK])
                    q = ("SELECT series, part, start_ts, end_ts FROM tombstones WHERE end_ts > ? "
                         "AND start_ts < ? AND series IN (%s)" % ",".join("?" * len(chunk)))
                    for sid, part, a, b in conn.execute(q, (start, end, *chunk)):
                        tombs[sid].append((part, a, b))
            if limit is None:
                q = "SELECT ts, t, v FROM hot WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts"
                hot = {sid: conn.execute(q, (sid, start, end)).fetchall() for sid in sids}
            else:
                q = ("SELECT ts, t, v FROM hot WHERE series = ? AND ts >= ? AND ts < ? "
                     f"ORDER BY ts {'DESC' if desc else 'ASC'} LIMIT ?")
                hot = {}
                for sid in sids:
                    rows = conn.execute(q, (sid, start, end, limit)).fetchall()
                    if desc:
                        rows.reverse()
                    hot[sid] = rows
        finally:
            conn.execute("COMMIT")
        used = getattr(self._tl, "used", None)
        if used is not None:
            used.update((n, g) for n, g in parts)
        return {sid: self._assemble(sid, parts, tombs.get(sid, ()), hot[sid], start, end, limit, desc)
                for sid in sids}

    def _assemble(self, sid, parts, tombs, hot_rows, start, end, limit, desc) -> SeriesData:
        segs: list[_Seg] = []
        need = limit
        for name, gen in (reversed(parts) if desc else parts):
            p = self.cold.open(name, gen)
            loc = p.locate(sid)
            if loc is None:
                continue
            lo, hi = loc
            tsf = p.read("ts", lo, hi)
            a = int(np.searchsorted(tsf, start))
            b = int(np.searchsorted(tsf, end))
            if a >= b:
                continue
            keep = None
            for part, ta, tb in tombs:
                if part != name:
                    continue
                i = max(a, int(np.searchsorted(tsf, ta)))
                j = min(b, int(np.searchsorted(tsf, tb)))
                if i < j:
                    if keep is None:
                        keep = np.ones(b - a, bool)
                    keep[i - a:j - a] = False
            nvis = (b - a) if keep is None else int(keep.sum())
            if nvis == 0:
                continue
            if need is not None and nvis > need:
                if keep is None:
                    if desc:
                        a = b - need
                    else:
                        b = a + need
                else:
                    vis = np.flatnonzero(keep)
                    if desc:
                        cut = int(vis[-need])
                        a, keep = a + cut, keep[cut:]
                    else:
                        cut = int(vis[need - 1]) + 1
                        b, keep = a + cut, keep[:cut]
                nvis = need
            segs.append(_Seg(p, lo, a, b, keep, tsf))
            if need is not None:
                need -= nvis
                if need <= 0:
                    break
        if desc:
            segs.reverse()
        hot = hot_rows_to_columns(hot_rows, with_series=False)
        final = None
        if limit is not None:
            final = slice(-limit, None) if desc else slice(0, limit)
        return SeriesData(segs, hot, final)

    # -------------------------------------------------------------------------------- queries
    def query_raw(self, entity: str, keys, start: int, end: int, limit: int = 100,
                  order: str = "DESC") -> dict[str, list[tuple[int, int, Any]]]:
        """Raw points with ``start <= ts < end``: per key at most ``limit``, ordered as asked."""
        self._check_open()
        start, end = int(start), int(end)
        check_range(start, end)
        order_u = str(order).upper()
        if order_u not in ("ASC", "DESC"):
            raise QueryError(f"orderBy must be ASC or DESC, got {order!r}")
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise QueryError(f"limit must be a positive integer, got {limit!r}")
        sids = self._resolve(entity, keys)
        if not sids:
            return {}

        def run():
            data = self._collect(list(sids.values()), start, end, int(limit), order_u == "DESC")
            out = {}
            for k, sid in sids.items():
                sd = data[sid]
                if len(sd):
                    out[k] = sd.to_list(desc=order_u == "DESC")
            return out

        return self._read(run)

    def query_agg(self, entity: str, keys, start: int, end: int, agg: str, interval: int | None = None,
                  interval_type: str = "MILLISECONDS", tz: str = "UTC") -> dict[str, list[tuple[int, int, Any]]]:
        """Aggregated buckets per key (ascending, empty buckets omitted, keys without data absent)."""
        self._check_open()
        agg_u = normalize_agg(agg)
        start, end = int(start), int(end)
        edges = bucket_edges(start, end, interval, interval_type, tz)
        sids = self._resolve(entity, keys)

        def one(sd: SeriesData):
            res = aggregate(agg_u, edges, sd.ts, sd.column)
            return res.to_list() if len(res) else None

        return self._per_series(sids, start, end, one)

    def _per_series(self, sids: dict[str, int], start: int, end: int, one: Callable[["SeriesData"], Any]) -> dict:
        """``{key: one(series data)}`` over one consistent read; series with no points, or for
        which ``one`` returns None, are left out (ThingsBoard omits keys without data)."""
        if not sids:
            return {}

        def run():
            data = self._collect(list(sids.values()), start, end)
            out = {}
            for key, sid in sids.items():
                sd = data[sid]
                if len(sd):
                    value = one(sd)
                    if value is not None:
                        out[key] = value
            return out

        return self._read(run)

    def numeric_arrays(self, entity: str, keys, start: int, end: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every numeric point of each key in ``[start, end)`` as ``(ts int64, values float64)``.

        Longs and doubles as float64, booleans as 0/1; string and JSON points are left out.
        This is what analytics (anomaly models) read: arrays, never Python tuples per point.
        """
        self._check_open()
        check_range(int(start), int(end))
        sids = self._resolve(entity, keys)

        def one(sd: SeriesData):
            numeric = sd.column("t") <= _DOUBLE
            ts, num = sd.ts, sd.column("num")
            if not numeric.all():
                ts, num = ts[numeric], num[numeric]
            return (np.asarray(ts, np.int64), np.asarray(num, np.float64)) if len(ts) else None

        return self._per_series(sids, int(start), int(end), one)

    def query_agg_arrays(self, entity: str, keys, start: int, end: int, agg: str,
                         interval: int | None = None, interval_type: str = "MILLISECONDS",
                         tz: str = "UTC") -> dict[str, AggResult]:
        """Like :meth:`query_agg` but returns :class:`AggResult` arrays (no Python tuples)."""
        self._check_open()
        agg_u = normalize_agg(agg)
        edges = bucket_edges(int(start), int(end), interval, interval_type, tz)
        sids = self._resolve(entity, keys)

        def one(sd: SeriesData):
            res = aggregate(agg_u, edges, sd.ts, sd.column)
            return res if len(res) else None

        return self._per_series(sids, int(start), int(end), one)

    def query(self, devices, keys=None, start=None, end=None, interval=None, agg=None, *,
              interval_type: str = "MILLISECONDS", tz: str = "UTC"):
        """Query into an ``xarray.Dataset`` with dims ``("device", "time")``.

        ``agg`` None/"NONE" returns every raw point in range (union of timestamps on
        ``time``); otherwise one value per bucket at the bucket midpoint. ``interval`` is ms
        or a string like ``"1h"``; ``start``/``end`` are epoch ms, datetimes or ISO strings
        (``start=None``: the earliest point, ``end=None``: now + 1 ms). Numeric and bool values
        become float64 (bool as 0/1); keys holding text become object arrays. Missing cells
        are NaN. Each variable's ``attrs["key"]`` is its key (variables named ``device`` or
        ``time`` are renamed with a trailing underscore).
        """
        import xarray as xr

        self._check_open()
        if isinstance(devices, str):
            devices = [devices]
        devices = list(dict.fromkeys(devices))
        agg_u = normalize_agg(agg, allow_none=True)
        it = normalize_interval_type(interval_type)
        interval_ms = parse_interval(interval)
        if agg_u is None and interval_ms is not None:
            raise QueryError("an interval needs an aggregation; pass agg='avg' (or min, max, sum, count)")
        if it != "MILLISECONDS":
            get_zone(tz)
        end_ms = now_ms() + 1 if end is None else to_ms(end, "end")
        start_ms = TS_MIN if start is None else to_ms(start, "start")
        check_range(start_ms, end_ms)
        if agg_u is not None:  # validate interval (and, with a start, the bucket count) before reading
            bucket_edges(start_ms, end_ms, interval_ms, it, tz) if start is not None else \
                bucket_edges(0, 1, interval_ms, it, tz)
        if keys is None:
            keys = sorted({k for d in devices for k in self.keys(d)})
        elif isinstance(keys, str):
            keys = [keys]
        keys = list(dict.fromkeys(keys))

        pairs = {}
        for di, d in enumerate(devices):
            for ki, k in enumerate(keys):
                sid = self._sid(d, k)
                if sid is not None:
                    pairs[(di, ki)] = sid

        def run():
            data = self._collect(list(dict.fromkeys(pairs.values())), start_ms, end_ms) if pairs else {}
            first = start_ms
            if start is None:
                firsts = [int(sd.ts[0]) for sd in data.values() if len(sd)]
                first = min(firsts) if firsts else start_ms
            results: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, bool]] = {}
            if agg_u is not None:
                if not any(len(sd) for sd in data.values()):
                    return first, results
                edges = bucket_edges(first, end_ms, interval_ms, it, tz)
                for pk, sid in pairs.items():
                    sd = data[sid]
                    if not len(sd):
                        continue
                    r = aggregate(agg_u, edges, sd.ts, sd.column)
                    if len(r):
                        has_str = bool((r.vtype == _STR).any())
                        results[pk] = (r.ts, r.values() if has_str else r.fval, has_str)
            else:
                for pk, sid in pairs.items():
                    sd = data[sid]
                    if not len(sd):
                        continue
                    has_text = bool((sd.column("t") >= _STR).any())
                    results[pk] = (sd.ts, sd.values() if has_text else sd.column("num"), has_text)
            return first, results

        start_ms, results = self._read(run)
        all_ts = [r[0] for r in results.values()]
        times = np.unique(np.concatenate(all_ts)) if all_ts else np.empty(0, np.int64)
        data_vars = {}
        for ki, k in enumerate(keys):
            is_obj = any(results[(di, ki)][2] for di in range(len(devices)) if (di, ki) in results)
            arr = np.full((len(devices), len(times)), np.nan, dtype=object if is_obj else np.float64)
            for di in range(len(devices)):
                r = results.get((di, ki))
                if r is None:
                    continue
                pos = np.searchsorted(times, r[0])
                arr[di, pos] = r[1]
            name = k if k not in ("device", "time") else k + "_"
            data_vars[name] = (("device", "time"), arr, {"key": k})
        attrs = {"agg": agg_u or "NONE", "interval_ms": int(interval_ms or 0) if it == "MILLISECONDS" else 0,
                 "interval_type": it, "tz": tz or "UTC", "start_ms": int(start_ms), "end_ms": int(end_ms)}
        return xr.Dataset(
            data_vars,
            coords={"device": np.array(devices, dtype=object),
                    "time": times.astype("datetime64[ms]")},
            attrs=attrs,
        )

    # -------------------------------------------------------------------------------- deletes
    def delete(self, entity: str, keys, start: int, end: int, delete_latest: bool = True,
               rewrite_latest_if_deleted: bool = False) -> int:
        """Delete points with ``start <= ts < end`` of the given keys (None: all keys).

        Hot rows are deleted; cold points are hidden by a tombstone until their month is
        rewritten. Returns the number of points that were visible in the range just before
        the delete (best effort under concurrent writes to the same range).
        """
        self._check_open()
        start, end = int(start), int(end)
        check_range(start, end)
        sids = self._resolve(entity, keys)
        if not sids:
            return 0
        lo, hi = max(start, TS_MIN), min(end, TS_MAX + 1)
        keys_of = {sid: k for k, sid in sids.items()}

        def plan_delete():
            plan = {}
            for k, sid in sids.items():
                count = len(self._collect([sid], lo, hi)[sid]) if lo < hi else 0
                remains = (lo > TS_MIN and self._any(sid, TS_MIN, lo)) or \
                    (hi <= TS_MAX and self._any(sid, hi, TS_MAX + 1))
                cand = None
                if delete_latest and rewrite_latest_if_deleted and lo > TS_MIN:
                    r = self._collect([sid], TS_MIN, lo, 1, True)[sid]
                    if len(r):
                        t = int(r.column("t")[0])
                        cand = (int(r.ts[0]), t, r.values()[0])
                plan[sid] = (count, remains, cand)
            return plan

        plan = self._read(plan_delete)

        def fn(conn):
            parts = conn.execute("SELECT name, generation, start_ts, end_ts FROM cold_partitions "
                                 "WHERE end_ts > ? AND start_ts < ?", (start, end)).fetchall()
            now = now_ms()
            changes = {}
            latest: dict[str, tuple[int, int, Any] | None] = {}  # key -> its new latest value
            for sid, (count, remains, cand) in plan.items():
                conn.execute("DELETE FROM hot WHERE series = ? AND ts >= ? AND ts < ?", (sid, start, end))
                for name, gen, ps, pe in parts:
                    a, b = max(start, ps), min(end, pe)
                    if self._cold_has(name, gen, sid, a, b):
                        conn.execute("INSERT INTO tombstones(series, part, start_ts, end_ts, created_ms) "
                                     "VALUES (?, ?, ?, ?, ?)", (sid, name, a, b, now))
                row = conn.execute("SELECT ts, points FROM latest WHERE series = ?", (sid,)).fetchone()
                if row is None:
                    continue
                lts, points = row
                new_points = max(0, points - count) if remains else 0
                new_lts = lts
                if delete_latest and lts is not None and start <= lts < end:
                    if cand is not None:
                        conn.execute("UPDATE latest SET ts = ?, t = ?, v = ? WHERE series = ?",
                                     (cand[0], cand[1], cand[2], sid))
                        new_lts = cand[0]
                    else:
                        conn.execute("UPDATE latest SET ts = NULL, t = NULL, v = NULL WHERE series = ?",
                                     (sid,))
                        new_lts = None
                    latest[keys_of[sid]] = cand
                conn.execute("UPDATE latest SET points = ? WHERE series = ?", (new_points, sid))
                changes[sid] = (new_points, new_lts)
            conn.execute("UPDATE month_state SET wc = wc + 1 WHERE month >= ? AND month <= ?",
                         (month_of(lo), month_of(max(lo, hi - 1))))
            version = conn.execute(SQL_BUMP_LATEST_VERSION).fetchone()[0]
            return changes, latest, version

        def on_commit(result):
            changes, latest, version = result
            self._latest.changed(version, entity, latest)
            with self._state_lock:
                for sid, (pts, lts) in changes.items():
                    st = self._sstat.get(sid)
                    if st is not None:
                        self._total_points += pts - st[0]
                        st[0], st[1] = pts, lts

        self._writer.call(fn, on_commit).result()
        return sum(p[0] for p in plan.values())

    def _any(self, sid: int, start: int, end: int) -> bool:
        return start < end and self._read(lambda: len(self._collect([sid], start, end, 1, False)[sid]) > 0)

    def _cold_has(self, name: str, gen: int, sid: int, a: int, b: int) -> bool:
        """Does the cold generation hold points of ``sid`` in ``[a, b)``? (True when unsure.)"""
        try:
            p = self.cold.open(name, gen)
            loc = p.locate(sid)
            if loc is None:
                return False
            ts = p.read("ts", *loc)
            return int(np.searchsorted(ts, b)) > int(np.searchsorted(ts, a))
        except Exception:
            return True

    def delete_entity(self, entity: str) -> None:
        """Drop every series of ``entity`` (hot rows, latest values, and its cold points)."""
        self._check_open()

        def fn(conn):
            sids = [r[0] for r in conn.execute("SELECT id FROM series WHERE entity = ?", (entity,))]
            parts = conn.execute("SELECT name, generation, start_ts, end_ts FROM cold_partitions").fetchall()
            now = now_ms()
            for sid in sids:
                conn.execute("DELETE FROM hot WHERE series = ?", (sid,))
                conn.execute("DELETE FROM latest WHERE series = ?", (sid,))
                conn.execute("DELETE FROM tombstones WHERE series = ?", (sid,))
                for name, gen, ps, pe in parts:
                    if self._cold_has(name, gen, sid, ps, pe):
                        conn.execute("INSERT INTO tombstones(series, part, start_ts, end_ts, created_ms) "
                                     "VALUES (?, ?, ?, ?, ?)", (sid, name, ps, pe, now))
            conn.execute("DELETE FROM series WHERE entity = ?", (entity,))
            conn.execute("UPDATE month_state SET wc = wc + 1")
            return sids, conn.execute(SQL_BUMP_LATEST_VERSION).fetchone()[0]

        def on_commit(result):
            sids, version = result
            self._latest.dropped(version, entity)
            with self._state_lock:
                keys = self._by_entity.pop(entity, {})
                for k in keys:
                    self._ids.pop((entity, k), None)
                for sid in sids:
                    st = self._sstat.pop(sid, None)
                    if st is not None:
                        self._total_points -= st[0]

        self._writer.call(fn, on_commit).result()

    # ----------------------------------------------------------------------------- compaction
    def _compact_loop(self) -> None:
        while not self._stop.wait(self.compaction_interval_s):
            try:
                self.compact()
            except Exception as exc:
                fault = storage_fault(exc)
                if fault is not None:  # expected while the disk is full: no traceback every round
                    log.warning("background compaction postponed: %s (%s)", fault.split(";")[0], exc)
                else:
                    log.exception("background compaction failed")

    def compact(self, before_ts: int | None = None) -> dict:
        """Move closed months from hot to cold (and rewrite months with tombstones).

        A month is closed when its end is ``<= before_ts`` (default ``now - grace_ms``).
        Returns stats: ``partitions`` written, ``points_moved`` from hot, ``rows_written``,
        ``tombstones_applied``, ``conflicts`` (retries after concurrent changes) and
        ``skipped`` (a reason, or None).
        """
        self._check_open()
        stats = {"partitions": 0, "points_moved": 0, "rows_written": 0, "tombstones_applied": 0,
                 "partitions_removed": 0, "conflicts": 0, "skipped": None}
        with self._compact_mutex:
            if not self._try_lock():
                stats["skipped"] = "another process is compacting this store"
                return stats
            try:
                cutoff = now_ms() - self.grace_ms if before_ts is None else int(before_ts)
                conn = self._readers.get()
                conn.execute("BEGIN")
                try:
                    hot_months = [r[0] for r in conn.execute("SELECT month FROM month_state WHERE hot = 1")]
                    tomb_parts = [r[0] for r in conn.execute("SELECT DISTINCT part FROM tombstones")]
                finally:
                    conn.execute("COMMIT")
                todo = {m for m in hot_months if month_start(m + 1) <= cutoff}
                todo |= {month_from_name(p) for p in tomb_parts}
                for m in sorted(todo):
                    if self._stop.is_set() and threading.current_thread() is self._compactor:
                        break
                    self._compact_month(m, stats)
            finally:
                self._unlock()
        self._purge_retired()
        return stats

    def _compact_month(self, m: int, stats: dict) -> None:
        name = month_name(m)
        lo, hi = month_start(m), month_start(m + 1)
        for _attempt in range(3):
            conn = self._readers.get()
            conn.execute("BEGIN")
            try:
                r = conn.execute("SELECT wc FROM month_state WHERE month = ?", (m,)).fetchone()
                wc = r[0] if r else None
                man = conn.execute("SELECT generation FROM cold_partitions WHERE name = ?", (name,)).fetchone()
                old_gen = man[0] if man else None
                tombs = conn.execute("SELECT id, series, start_ts, end_ts FROM tombstones WHERE part = ?",
                                     (name,)).fetchall()
                cur = conn.execute("SELECT series, ts, t, v FROM hot WHERE ts >= ? AND ts < ? "
                                   "ORDER BY series, ts", (lo, hi))
                chunks = []
                while True:
                    rows = cur.fetchmany(200_000)
                    if not rows:
                        break
                    chunks.append(hot_rows_to_columns(rows, with_series=True))
            finally:
                conn.execute("COMMIT")
            hot = _concat_cols(chunks)
            n_hot = len(hot["ts"])

            if n_hot == 0 and not tombs:
                def clear(conn, wc=wc):
                    r = conn.execute("SELECT wc FROM month_state WHERE month = ?", (m,)).fetchone()
                    if (r[0] if r else None) == wc:
                        conn.execute("UPDATE month_state SET hot = 0 WHERE month = ?", (m,))
                self._writer.call(clear).result()
                return

            old = None
            n_old_visible = None
            if old_gen is not None:
                p = self.cold.open(name, old_gen)
                old = p.read_all()
                if tombs:
                    keep = np.ones(len(old["ts"]), bool)
                    for _tid, sid, a, b in tombs:
                        loc = p.locate(sid)
                        if loc is None:
                            continue
                        s0, s1 = loc
                        tss = old["ts"][s0:s1]
                        keep[s0 + int(np.searchsorted(tss, a)):s0 + int(np.searchsorted(tss, b))] = False
                    if not keep.all():
                        old = {c: (None if v is None else v[keep]) for c, v in old.items()}
                n_old_visible = old["series"]
            merged = _merge(old, hot)
            n_rows = len(merged["ts"])
            series, counts = np.unique(merged["series"], return_counts=True)
            offsets = np.zeros(len(series) + 1, np.int64)
            np.cumsum(counts, out=offsets[1:])

            existing = [g for nme, g in self.cold.list_generations() if nme == name]
            new_gen = max([old_gen or 0, *existing]) + 1
            if n_rows:
                try:
                    self.cold.write_generation(name, new_gen, merged, series, offsets)
                except BaseException:
                    # e.g. a full disk: a partial generation would hold on to the space it took
                    self.cold.remove(name, new_gen)
                    raise

            # per-series change of the stored-points counter
            universe = np.unique(np.concatenate([
                series, hot["series"], n_old_visible if n_old_visible is not None else np.empty(0, np.int64)]))
            delta = _counts(merged["series"], universe) - _counts(hot["series"], universe)
            if n_old_visible is not None:
                delta -= _counts(n_old_visible, universe)
            deltas = [(int(d), int(s)) for d, s in zip(delta, universe) if d]
            hot_series = np.unique(hot["series"]).tolist()
            tomb_ids = [(t[0],) for t in tombs]
            has_txt = merged.get("txt") is not None

            def commit(conn, wc=wc, old_gen=old_gen, new_gen=new_gen):
                r = conn.execute("SELECT wc FROM month_state WHERE month = ?", (m,)).fetchone()
                if (r[0] if r else None) != wc:
                    raise _Conflict(name)
                r = conn.execute("SELECT generation FROM cold_partitions WHERE name = ?", (name,)).fetchone()
                if (r[0] if r else None) != old_gen:
                    raise _Conflict(name)
                if n_rows:
                    conn.execute(
                        "INSERT OR REPLACE INTO cold_partitions(name, month, generation, rows, start_ts, "
                        "end_ts, has_txt, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (name, m, new_gen, n_rows, lo, hi, int(has_txt), now_ms()))
                else:
                    conn.execute("DELETE FROM cold_partitions WHERE name = ?", (name,))
                conn.executemany("DELETE FROM hot WHERE series = ? AND ts >= ? AND ts < ?",
                                 [(s, lo, hi) for s in hot_series])
                conn.executemany("DELETE FROM tombstones WHERE id = ?", tomb_ids)
                conn.execute("UPDATE month_state SET hot = 0 WHERE month = ?", (m,))
                conn.executemany("UPDATE latest SET points = max(0, points + ?) WHERE series = ?", deltas)

            def on_commit(_):
                with self._state_lock:
                    for d, sid in deltas:
                        st = self._sstat.get(sid)
                        if st is not None:
                            newv = max(0, st[0] + d)
                            self._total_points += newv - st[0]
                            st[0] = newv

            try:
                self._writer.call(commit, on_commit).result()
            except _Conflict:
                stats["conflicts"] += 1
                if n_rows:
                    self.cold.remove(name, new_gen)
                continue
            except BaseException:
                if n_rows:
                    self.cold.remove(name, new_gen)
                raise
            if old_gen is not None:
                self._retire(name, old_gen)
            if n_rows:
                stats["partitions"] += 1
            else:
                stats["partitions_removed"] += 1
            stats["points_moved"] += n_hot
            stats["rows_written"] += n_rows
            stats["tombstones_applied"] += len(tombs)
            return
        log.info("compaction of %s gave up after repeated concurrent changes; will retry later", name)


def _read_all_latest(conn) -> tuple[int, dict]:
    """The latest version and every latest value, inside the caller's read transaction."""
    version = conn.execute(SQL_LATEST_VERSION).fetchone()[0]
    rows = ((e, k, ts, t, py_value(t, v)) for e, k, ts, t, v in conn.execute(SQL_ALL_LATEST))
    return version, LatestValues.build(rows)


def _counts(s: np.ndarray, universe: np.ndarray) -> np.ndarray:
    if len(s) == 0:
        return np.zeros(len(universe), np.int64)
    return np.bincount(np.searchsorted(universe, s), minlength=len(universe)).astype(np.int64)


def _concat_cols(chunks: list[dict]) -> dict:
    if not chunks:
        return hot_rows_to_columns([], with_series=True)
    if len(chunks) == 1:
        return chunks[0]
    out = {}
    for c in ("series", "ts", "t", "num", "lng"):
        out[c] = np.concatenate([ch[c] for ch in chunks])
    if any(ch["txt"] is not None for ch in chunks):
        out["txt"] = np.concatenate([ch["txt"] if ch["txt"] is not None
                                     else np.full(len(ch["ts"]), None, dtype=object) for ch in chunks])
    else:
        out["txt"] = None
    return out


def _merge(old: dict | None, hot: dict) -> dict:
    """Merge old cold rows and hot rows sorted by (series, ts); hot wins on equal keys."""
    if old is None or len(old["ts"]) == 0:
        return hot  # hot rows come ordered by (series, ts) from SQLite
    if len(hot["ts"]) == 0:
        return old
    n_old = len(old["ts"])
    cols = {}
    for c in ("series", "ts", "t", "num", "lng"):
        cols[c] = np.concatenate((old[c], hot[c]))
    if old.get("txt") is not None or hot.get("txt") is not None:
        cols["txt"] = np.concatenate((
            old["txt"] if old.get("txt") is not None else np.full(n_old, None, dtype=object),
            hot["txt"] if hot.get("txt") is not None else np.full(len(hot["ts"]), None, dtype=object)))
    else:
        cols["txt"] = None
    src = np.concatenate((np.zeros(n_old, np.int8), np.ones(len(hot["ts"]), np.int8)))
    order = np.lexsort((src, cols["ts"], cols["series"]))
    s, t = cols["series"][order], cols["ts"][order]
    keep = np.ones(len(order), bool)
    keep[:-1] = ~((s[1:] == s[:-1]) & (t[1:] == t[:-1]))  # drop the old one of an equal pair
    sel = order[keep]
    return {c: (None if v is None else v[sel]) for c, v in cols.items()}


def open_store(path: str | os.PathLike, cold_url: str | None = None, *, synchronous: str = "FULL",
               compaction_interval_s: float = 60, grace_ms: int = 86_400_000, **kwargs) -> TelemetryStore:
    """Open (creating if needed) the telemetry store in directory ``path`` (or at a URL: see
    :func:`resolve_location`).

    ``cold_url``: where the Zarr cold tier lives (a path or an fsspec URL; default
    ``path/cold``). ``synchronous``: SQLite's durability level (FULL: an acknowledged write
    survives power loss; NORMAL: survives a killed process; OFF: scratch data, and cold
    generations are not fsynced either). ``compaction_interval_s``: background compaction period (0 disables).
    ``grace_ms``: how long after its end a month stays writable in the hot tier before it is
    compacted. Extra keyword arguments: ``busy_timeout_ms``, ``cache_bytes``, ``chunk_rows``,
    ``compressor`` ("lz4" or "zstd").
    """
    path, cold_url = resolve_location(path, cold_url)
    return TelemetryStore(path, cold_url, synchronous=synchronous,
                          compaction_interval_s=compaction_interval_s, grace_ms=grace_ms, **kwargs)


def resolve_location(path_or_url, cold_url: str | None = None) -> tuple[str, str | None]:
    """``open_store`` takes a directory or a URL. With an fsspec URL (``s3://bucket/fleet``,
    ``memory://x``) the history — the Zarr cold tier — lives at ``<url>/cold``, and the hot tier
    (recent writes, not yet compacted; SQLite needs a local file) in a local cache directory,
    ``$TBPANEL_CACHE`` or ``~/.cache/tbpanel``, named after the URL."""
    text = os.fspath(path_or_url)
    if text.startswith("file://"):
        return text[len("file://"):], cold_url
    if "://" not in text:
        return text, cold_url
    import hashlib
    cache = Path(os.environ.get("TBPANEL_CACHE") or Path.home() / ".cache" / "tbpanel")
    local = cache / "stores" / hashlib.sha256(text.encode()).hexdigest()[:16]
    return str(local), cold_url or text.rstrip("/") + "/cold"

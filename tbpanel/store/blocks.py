"""Columnar blocks of the hot tier: what one commit group wrote of one series in one month.

A group that writes many points of a series (a backfill, a bulk upload: at least
:data:`BLOCK_MIN_POINTS` of one series and month) stores them as one ``hot_blocks`` row
(:mod:`.hot`) whose blobs are the store's columns (:mod:`.columns`) as raw little-endian
arrays: ``ts`` int64 (sorted, unique), ``t`` int8, ``num`` float64, ``lng`` int64 (NULL when
the block holds no long) and ``txt`` (NULL when it holds no text, else a JSON list of strings
and nulls). Reading a year of such points is a few ``np.frombuffer`` calls instead of a Python
tuple per point, which is what made fresh data slow to query.

Precedence, so that a block and single-point rows of one series can coexist: on equal
``(series, ts)`` a hot row wins over a block (writing a block first deletes the hot rows it
rewrites, :func:`tbpanel.store.hot.write_blocks`) and a later block (higher id) wins over an
earlier one (:func:`merge_blocks`). This module is pure numpy; the SQL is in :mod:`.hot`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson

from .columns import Columns, columns_from_values, empty_columns
from .times import months_of
from .values import ValueType

#: Points of one series (and month) in one commit group from which they go into a block
#: rather than into one row each.
BLOCK_MIN_POINTS = 64
#: Single-point rows of a series written (by this store instance) after which its rows in
#: open months are packed into blocks (:func:`tbpanel.store.hot.pack_rows`): data that
#: arrives a point at a time becomes as cheap to read as a backfill.
PACK_ROWS = 1024

_LONG = int(ValueType.LONG)
_STR = int(ValueType.STR)

#: A block as fetched: ``(id, ts, t, num, lng, txt)`` blobs (``lng``/``txt`` may be None).
BlockRow = tuple[int, bytes, bytes, bytes, bytes | None, bytes | None]


# --- writing --------------------------------------------------------------------------------


def group_blocks(sid: np.ndarray, ts: np.ndarray, t: np.ndarray, v: np.ndarray) -> Iterable[tuple[int, int, Columns]]:
    """Points of a group (parallel arrays, in write order; ``v`` an object array of values) as
    ``(sid, month, columns)`` per series and month (see :func:`group_columns`)."""
    return group_columns(sid, {"ts": ts, "t": t, **columns_from_values(t, v)})


def group_columns(sid: np.ndarray, cols: Columns) -> Iterable[tuple[int, int, Columns]]:
    """Points of a group as columns (in write order) with their series ids, as ``(sid, month,
    columns)`` per series and month: sorted by ts, a timestamp written twice keeps its last
    value (as the row upsert does)."""
    ts = cols["ts"]
    month = months_of(ts)
    order = np.lexsort((np.arange(len(ts)), ts, month, sid))  # stable: write order breaks ties
    sid, ts, month = sid[order], ts[order], month[order]
    last = np.ones(len(ts), bool)
    last[:-1] = (sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1])
    sel = order if last.all() else order[last]
    if not last.all():
        sid, ts, month = sid[last], ts[last], month[last]
    t, num, lng = cols["t"][sel], cols["num"][sel], cols["lng"][sel]
    txt = None if cols.get("txt") is None else cols["txt"][sel]
    cuts = np.flatnonzero((sid[1:] != sid[:-1]) | (month[1:] != month[:-1])) + 1
    bounds = [0, *cuts.tolist(), len(ts)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        part_txt = None
        if txt is not None:
            part_txt = txt[a:b]
            if not (t[a:b] >= _STR).any():
                part_txt = None
        yield (
            int(sid[a]),
            int(month[a]),
            {"ts": ts[a:b], "t": t[a:b], "num": num[a:b], "lng": lng[a:b], "txt": part_txt},
        )


def encode(cols: Columns) -> tuple[int, int, int, bytes, bytes, bytes, bytes | None, bytes | None]:
    """``(min_ts, max_ts, n, ts, t, num, lng, txt)`` of a block's columns for its row."""
    ts = np.ascontiguousarray(cols["ts"], "<i8")
    t = np.ascontiguousarray(cols["t"], np.int8)
    lng = cols["lng"] if (t == _LONG).any() else None
    txt = cols.get("txt")
    return (
        int(ts[0]),
        int(ts[-1]),
        len(ts),
        ts.tobytes(),
        t.tobytes(),
        np.ascontiguousarray(cols["num"], "<f8").tobytes(),
        None if lng is None else np.ascontiguousarray(lng, "<i8").tobytes(),
        None if txt is None else orjson.dumps(txt.tolist()),
    )


# --- reading --------------------------------------------------------------------------------


def decode(row: BlockRow) -> Columns:
    """A fetched block row back to columns (read-only views on the blobs; ``lng`` None when
    the block holds no long: :func:`concat` fills zeros once for all of them)."""
    _id, ts_b, t_b, num_b, lng_b, txt_b = row
    ts = np.frombuffer(ts_b, "<i8")
    n = len(ts)
    txt = None
    if txt_b is not None:
        txt = np.empty(n, dtype=object)
        txt[:] = orjson.loads(txt_b)
    return {
        "ts": ts,
        "t": np.frombuffer(t_b, np.int8),
        "num": np.frombuffer(num_b, "<f8"),
        "lng": None if lng_b is None else np.frombuffer(lng_b, "<i8"),
        "txt": txt,
    }


def concat(parts: list[Columns], with_series: bool) -> Columns:
    """Columns of several blocks (or rows) one after the other (always new arrays)."""
    if not parts:
        return empty_columns(with_series)
    names = ["ts", "t", "num"] + (["series"] if with_series else [])
    out: Columns = {c: np.concatenate([p[c] for p in parts]) for c in names}
    if all(p["lng"] is None for p in parts):
        out["lng"] = np.zeros(len(out["ts"]), np.int64)
    else:
        out["lng"] = np.concatenate(
            [p["lng"] if p["lng"] is not None else np.zeros(len(p["ts"]), np.int64) for p in parts]
        )
    if any(p["txt"] is not None for p in parts):
        out["txt"] = np.concatenate(
            [p["txt"] if p["txt"] is not None else np.full(len(p["ts"]), None, dtype=object) for p in parts]
        )
    else:
        out["txt"] = None
    return out


def take(cols: Columns, sel: Any) -> Columns:
    """Rows ``sel`` (an index array, mask or slice) of every column."""
    return {c: (None if v is None else v[sel]) for c, v in cols.items()}


def dedupe_sorted(cols: Columns, order: np.ndarray | None, with_series: bool) -> Columns:
    """Rows in ``order`` (None: as they are, already sorted), keeping the last of equal keys."""
    if order is not None:
        cols = take(cols, order)
    ts = cols["ts"]
    if len(ts) < 2:
        return cols
    same = ts[1:] == ts[:-1]
    if with_series:
        same &= cols["series"][1:] == cols["series"][:-1]
    if not same.any():
        return cols
    keep = np.ones(len(ts), bool)
    keep[:-1] = ~same
    return take(cols, keep)


def merge_blocks(blocks: list[Columns], with_series: bool = False) -> Columns:
    """Blocks in write order (with ``series`` columns if ``with_series``) as one set of columns
    sorted by (series,) ts; on equal keys the later block wins."""
    cols = concat(blocks, with_series)
    n = len(cols["ts"])
    if n < 2:
        return cols
    ts = cols["ts"]
    if with_series:
        s = cols["series"]
        ordered = bool(np.all((s[1:] > s[:-1]) | ((s[1:] == s[:-1]) & (ts[1:] > ts[:-1]))))
        if ordered:
            return cols
        seq = np.repeat(np.arange(len(blocks)), [len(b["ts"]) for b in blocks])
        return dedupe_sorted(cols, np.lexsort((seq, ts, s)), True)
    if bool(np.all(ts[1:] > ts[:-1])):  # blocks in time order, no overlap (a backfill)
        return cols
    return dedupe_sorted(cols, np.argsort(ts, kind="stable"), False)


def in_range(cols: Columns, start: int, end: int) -> Columns:
    """The rows of sorted single-series columns with ``start <= ts < end``."""
    ts = cols["ts"]
    a, b = int(np.searchsorted(ts, start)), int(np.searchsorted(ts, end))
    if a == 0 and b == len(ts):
        return cols
    return take(cols, slice(a, b))


def overlay(base: Columns, top: Columns, with_series: bool = False) -> Columns:
    """``base`` and ``top`` (each sorted, unique keys) merged; ``top`` wins on equal keys."""
    if len(top["ts"]) == 0:
        return base
    if len(base["ts"]) == 0:
        return top
    cols = concat([base, top], with_series)
    src = np.concatenate((np.zeros(len(base["ts"]), np.int8), np.ones(len(top["ts"]), np.int8)))
    keys = (src, cols["ts"], cols["series"]) if with_series else (src, cols["ts"])
    return dedupe_sorted(cols, np.lexsort(keys), with_series)


def limited(cols: Columns, limit: int | None, desc: bool) -> Columns:
    """Only the first (``desc``: last) ``limit`` rows."""
    if limit is None or len(cols["ts"]) <= limit:
        return cols
    return take(cols, slice(-limit, None) if desc else slice(0, limit))


def nbytes(cols: Columns) -> int:
    """Memory held by columns (text counted at a rough 64 bytes a string)."""
    n = sum(int(v.nbytes) for c, v in cols.items() if v is not None and c != "txt")
    return n + (64 * len(cols["txt"]) if cols.get("txt") is not None else 0)


class BlockCache:
    """Merged, decoded blocks of a series, kept so that querying fresh bulk-written data again
    costs what a cold-tier query does (the cold tier caches decoded chunks the same way).

    An entry is keyed by the series and the ``(id, n)`` of every block it merged: block ids
    are never reused and a block is only ever rewritten smaller (a range delete), so the key
    names one content and an entry can never be stale -- a write, delete or compaction in
    any process changes the blocks a read finds, hence the key. Least recently used entries
    go once ``max_bytes`` is exceeded (0 disables the cache).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[Columns, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[Any, ...]) -> Columns | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            return hit[0]

    def put(self, key: tuple[Any, ...], cols: Columns) -> None:
        size = nbytes(cols)
        if size > self.max_bytes:
            return
        for v in cols.values():  # shared between readers: nobody may write into them
            if v is not None:
                v.flags.writeable = False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (cols, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                _k, (_c, sz) = self._entries.popitem(last=False)
                self._bytes -= sz

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

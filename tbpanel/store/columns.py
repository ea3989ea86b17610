"""The column layout both tiers share, and the conversions into it.

Points of a series (or of many, sorted by ``(series, ts)``) are held as parallel numpy arrays:
``ts`` int64, ``t`` int8 (:class:`~tbpanel.store.values.ValueType` code), ``num`` float64
(bool as 0/1, long as float, NaN for text: what aggregation reads), ``lng`` int64 (exact
longs), ``txt`` object array of strings (``None`` when there is no text at all) and, for rows
of several series, ``series``. The cold tier stores exactly these arrays; hot-tier rows from
SQLite are turned into them (:func:`hot_rows_to_columns`); compaction concatenates and merges
them (:func:`concat_columns`, :func:`merge_columns`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .values import ValueType

_T_BOOL, _T_LONG, _T_DOUBLE, _T_STR, _T_JSON = (int(x) for x in ValueType)

#: Column arrays of points: ``ts``, ``t``, ``num``, ``lng``, ``txt`` (None: no text at all)
#: and, for rows of several series, ``series``.
Columns = dict[str, Any]


def columns_from_values(t: np.ndarray, v: np.ndarray) -> Columns:
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


def empty_columns(with_series: bool) -> Columns:
    """No points, in the column layout (with a ``series`` column when asked)."""
    out: Columns = {
        "ts": np.empty(0, np.int64),
        "t": np.empty(0, np.int8),
        "num": np.empty(0, np.float64),
        "lng": np.empty(0, np.int64),
        "txt": None,
    }
    if with_series:
        out["series"] = np.empty(0, np.int64)
    return out


def hot_rows_to_columns(rows: list[tuple[Any, ...]], with_series: bool) -> Columns:
    """Rows ``(series?, ts, t, v)`` from SQLite to column arrays (``series``, ``ts``, ``t`` ...)."""
    n = len(rows)
    if n == 0:
        return empty_columns(with_series)
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


def concat_columns(chunks: list[Columns]) -> Columns:
    """Chunks of rows of several series (as fetched in pieces) as one set of columns."""
    if not chunks:
        return hot_rows_to_columns([], with_series=True)
    if len(chunks) == 1:
        return chunks[0]
    out: Columns = {}
    for c in ("series", "ts", "t", "num", "lng"):
        out[c] = np.concatenate([ch[c] for ch in chunks])
    if any(ch["txt"] is not None for ch in chunks):
        out["txt"] = np.concatenate(
            [ch["txt"] if ch["txt"] is not None else np.full(len(ch["ts"]), None, dtype=object) for ch in chunks]
        )
    else:
        out["txt"] = None
    return out


def merge_columns(old: Columns | None, hot: Columns) -> Columns:
    """Merge old cold rows and hot rows sorted by (series, ts); hot wins on equal keys."""
    if old is None or len(old["ts"]) == 0:
        return hot  # hot rows come ordered by (series, ts) from SQLite
    if len(hot["ts"]) == 0:
        return old
    n_old = len(old["ts"])
    cols: Columns = {}
    for c in ("series", "ts", "t", "num", "lng"):
        cols[c] = np.concatenate((old[c], hot[c]))
    if old.get("txt") is not None or hot.get("txt") is not None:
        cols["txt"] = np.concatenate(
            (
                old["txt"] if old.get("txt") is not None else np.full(n_old, None, dtype=object),
                hot["txt"] if hot.get("txt") is not None else np.full(len(hot["ts"]), None, dtype=object),
            )
        )
    else:
        cols["txt"] = None
    src = np.concatenate((np.zeros(n_old, np.int8), np.ones(len(hot["ts"]), np.int8)))
    order = np.lexsort((src, cols["ts"], cols["series"]))
    s, t = cols["series"][order], cols["ts"][order]
    keep = np.ones(len(order), bool)
    keep[:-1] = ~((s[1:] == s[:-1]) & (t[1:] == t[:-1]))  # drop the old one of an equal pair
    sel = order[keep]
    return {c: (None if v is None else v[sel]) for c, v in cols.items()}

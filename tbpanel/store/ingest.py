"""The columnar ingest path: a device's telemetry body straight into typed numpy columns.

:mod:`.payload` and :mod:`.validate` type a payload one point at a time (a Python tuple and a
few calls per point); this module makes the same points as :class:`PointColumns` — one
entity, the distinct keys, and parallel arrays ``key``, ``ts``, ``t``, ``num``, ``lng``,
``txt`` — with the per-point work done in C: orjson decodes, ``itertools.chain`` flattens the
objects' keys and values, ``map(type, ...)`` types them, numpy converts. Keys are checked once
per distinct key, timestamps once per object.

The rules are ThingsBoard's as :mod:`.payload` states them, and the old parser stays their
definition: whenever anything is unusual (a bad or out-of-range value, a key that fails a
check, a ``ts`` that is not a plain in-range integer, a body that is not objects of values)
this module runs the old parser on the same decoded JSON, which raises exactly its error — or,
for a case this path does not handle itself, returns the points, which are then turned into
columns. So a rejected body gets the same message, and an accepted one the same typed points
(tests/store/test_ingest_columns.py checks both on random payloads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, repeat
from typing import Any

import numpy as np

from .heap import PausedCollector
from .payload import (
    _CONTROL_CHARS,
    GC_PAUSE_BYTES,
    MAX_KEY_LENGTH,
    MAX_STRING_LENGTH,
    TS_MAX,
    TS_MIN,
    loads,
    parse_telemetry,
)
from .validate import Point, payload_points
from .values import ValueType, _cast_string, classify

_BOOL, _LONG, _DOUBLE, _STR, _JSON = (int(x) for x in ValueType)
_EMPTY_I8 = np.empty(0, np.int8)


class PointColumns:
    """Validated points of one entity as columns (in payload order): what the store writes.

    ``keys`` are the distinct keys and ``key`` each point's index into them; ``ts`` int64,
    ``t`` int8 (:class:`~tbpanel.store.values.ValueType`), ``num`` float64 (bool 0/1, long as
    float, NaN for text), ``lng`` int64 (exact longs, 0 elsewhere), ``txt`` an object array of
    the STR/JSON values (None elsewhere) or None when there is no text. Iterating yields the
    :data:`~tbpanel.store.validate.Point` tuples (for listeners that want points)."""

    __slots__ = ("entity", "keys", "key", "ts", "t", "num", "lng", "txt")

    def __init__(
        self,
        entity: str,
        keys: list[str],
        key: np.ndarray,
        ts: np.ndarray,
        t: np.ndarray,
        num: np.ndarray,
        lng: np.ndarray,
        txt: np.ndarray | None,
    ) -> None:
        self.entity = entity
        self.keys = keys
        self.key = key
        self.ts = ts
        self.t = t
        self.num = num
        self.lng = lng
        self.txt = txt

    def __len__(self) -> int:
        return len(self.ts)

    def __bool__(self) -> bool:
        return len(self.ts) > 0

    def values(self) -> list[Any]:
        """Each point's Python value (bool, int, float or str), as the tuple path has them."""
        return py_values(self.t, self.num, self.lng, self.txt)

    def __iter__(self) -> Iterator[Point]:
        keys = self.keys
        return zip(
            repeat(self.entity),
            map(keys.__getitem__, self.key.tolist()),
            self.ts.tolist(),
            self.t.tolist(),
            self.values(),
        )

    def __repr__(self) -> str:
        return f"<PointColumns {self.entity!r}: {len(self)} points of {len(self.keys)} keys>"


#: What the writer takes: validated tuple points (of any entities) or one entity's columns.
Batch = Sequence[Point] | PointColumns


def py_values(t: np.ndarray, num: np.ndarray, lng: np.ndarray, txt: np.ndarray | None) -> list[Any]:
    """The Python value of each point of columns (bool, int, float or str)."""
    if len(t) == 0:
        return []
    t0 = int(t[0])
    if t0 == _DOUBLE and (t == _DOUBLE).all():
        out: list[Any] = num.tolist()
        return out
    if t0 == _LONG and (t == _LONG).all():
        out = lng.tolist()
        return out
    res: list[Any] = num.tolist()
    for i in np.flatnonzero(t == _LONG).tolist():
        res[i] = int(lng[i])
    for i in np.flatnonzero(t == _BOOL).tolist():
        res[i] = res[i] != 0
    if txt is not None:
        for i in np.flatnonzero(t >= _STR).tolist():
            res[i] = txt[i]
    return res


def value_columns(t: np.ndarray, vals: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(num, lng, txt)`` of values already typed (``t``) and checked (see :class:`PointColumns`)."""
    n = len(vals)
    num = np.full(n, np.nan)
    lng = np.zeros(n, np.int64)
    txt = None
    is_text = t >= _STR
    if is_text.any():
        txt = np.full(n, None, dtype=object)
        idx = np.flatnonzero(is_text)
        txt[idx] = [vals[i] for i in idx.tolist()]
    numeric = np.flatnonzero(~is_text)
    if len(numeric) == n:
        num[:] = np.fromiter(map(float, vals), np.float64, n)
    elif len(numeric):
        num[numeric] = [float(vals[i]) for i in numeric.tolist()]
    longs = np.flatnonzero(t == _LONG)
    if len(longs) == n:
        lng = np.fromiter(vals, np.int64, n)
    elif len(longs):
        lng[longs] = [vals[i] for i in longs.tolist()]
    return num, lng, txt


def columns_of_points(entity: str, points: Sequence[Point]) -> PointColumns:
    """Validated tuple points of one entity (the old path's result) as columns."""
    n = len(points)
    index: dict[str, int] = {}
    code = index.setdefault
    key = np.fromiter((code(p[1], len(index)) for p in points), np.int32, n)
    ts = np.fromiter((p[2] for p in points), np.int64, n)
    t = np.fromiter((p[3] for p in points), np.int8, n)
    return PointColumns(entity, list(index), key, ts, t, *value_columns(t, [p[4] for p in points]))


class GroupPoints:
    """The points of several batches as one iterable: what
    :attr:`~tbpanel.store.telemetry.TelemetryStore.committed` emits for a commit group (the
    tuples are only made for a listener that iterates)."""

    __slots__ = ("batches",)

    def __init__(self, batches: Sequence[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return sum(map(len, self.batches))

    def __iter__(self) -> Iterator[Point]:
        return chain.from_iterable(self.batches)


def entities_of(batch: Batch) -> Iterable[str]:
    """The entity of each point of a batch (of :class:`PointColumns`: its one entity)."""
    if type(batch) is PointColumns:
        return (batch.entity,)
    return (p[0] for p in batch)


def series_of(batch: Batch) -> Iterable[tuple[str, str]]:
    """``(entity, key)`` of each point of a batch (of :class:`PointColumns`: each distinct key once)."""
    if type(batch) is PointColumns:
        e = batch.entity
        return ((e, k) for k in batch.keys)
    return ((p[0], p[1]) for p in batch)


class _Unusual(Exception):
    """Something the fast path leaves to the old parser (which raises the error, if any)."""


def _objects(data: Any, server_ts: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The value objects of a decoded body and the ts of each, as the old parser reads them:
    an object is timestamped when it has both ``ts`` and ``values``. Checked with ``map`` over
    the objects (C loops); a mix of timestamped and plain objects goes one by one."""
    if type(data) is dict:
        items = [data]
    elif type(data) is list:
        items = data
    else:
        raise _Unusual
    if not items:
        return [], np.empty(0, np.int64)
    if set(map(type, items)) != {dict}:
        raise _Unusual
    has_ts = sum(map(dict.__contains__, items, repeat("ts")))
    has_values = sum(map(dict.__contains__, items, repeat("values"))) if has_ts else 0
    if has_ts == has_values == len(items):  # all timestamped: [{"ts": ..., "values": {...}}, ...]
        stamps = list(map(dict.__getitem__, items, repeat("ts")))
        dicts = list(map(dict.__getitem__, items, repeat("values")))
        if set(map(type, stamps)) != {int} or set(map(type, dicts)) != {dict}:
            raise _Unusual
        try:
            ts = np.fromiter(stamps, np.int64, len(stamps))
        except OverflowError:
            raise _Unusual from None
        if int(ts.min()) < TS_MIN or int(ts.max()) > TS_MAX:
            raise _Unusual
        return dicts, ts
    if not has_ts or not has_values:  # none timestamped: keys and values, at the server's time
        return items, np.full(len(items), server_ts, np.int64)
    objs: list[dict[str, Any]] = []
    out: list[int] = []
    for item in items:
        if "ts" in item and "values" in item:
            t, values = item["ts"], item["values"]
            if type(t) is not int or not TS_MIN <= t <= TS_MAX or type(values) is not dict:
                raise _Unusual
            objs.append(values)
            out.append(t)
        else:
            objs.append(item)
            out.append(server_ts)
    return objs, np.array(out, np.int64)


def _check_keys(keys: dict[str, int]) -> None:
    for k in keys:
        if not k or len(k) > MAX_KEY_LENGTH or _CONTROL_CHARS.search(k) or not _encodable(k):
            raise _Unusual


def _fast(entity: str, data: Any, server_ts: int) -> PointColumns:
    if type(entity) is not str or not entity:
        raise _Unusual
    dicts, stamps = _objects(data, server_ts)
    counts = np.fromiter(map(len, dicts), np.int64, len(dicts))
    n = int(counts.sum())
    keys_all = list(chain.from_iterable(dicts))
    vals = list(chain.from_iterable(map(dict.values, dicts)))
    index = dict.fromkeys(keys_all)
    for i, k in enumerate(index):
        index[k] = i
    _check_keys(index)  # type: ignore[arg-type]
    key = np.fromiter(map(index.__getitem__, keys_all), np.int32, n)
    ts = np.repeat(stamps, counts)
    kinds = set(map(type, vals))
    keys = list(index)
    if kinds == {float}:
        num = np.fromiter(vals, np.float64, n)
        if not np.isfinite(num).all():  # pragma: no cover - orjson refuses NaN/Infinity already
            raise _Unusual
        return PointColumns(entity, keys, key, ts, np.full(n, _DOUBLE, np.int8), num, np.zeros(n, np.int64), None)
    if kinds == {int}:
        try:
            lng = np.fromiter(vals, np.int64, n)
        except OverflowError:
            raise _Unusual from None
        return PointColumns(entity, keys, key, ts, np.full(n, _LONG, np.int8), lng.astype(np.float64), lng, None)
    return _mixed(entity, keys, key, ts, vals, kinds)


#: Type codes by Python type of a decoded JSON value; below 0 what is not a plain number:
#: -1 a null (skipped), -2 a string (cast if numeric), -3 an object or array (JSON text).
_KIND = {float: _DOUBLE, int: _LONG, bool: _BOOL, type(None): -1, str: -2, dict: -3, list: -3}


def _mixed(
    entity: str, keys: list[str], key: np.ndarray, ts: np.ndarray, vals: list[Any], kinds: set[type]
) -> PointColumns:
    """Values of several JSON kinds: numbers and booleans typed by their Python type, strings
    and objects/arrays one by one (as :func:`~tbpanel.store.values.classify` types them)."""
    if not kinds <= _KIND.keys():
        raise _Unusual
    n = len(vals)
    t = np.fromiter(map(_KIND.__getitem__, map(type, vals)), np.int8, n)
    special = np.flatnonzero(t <= -2)
    if len(special):
        vals = list(vals)
        for i in special.tolist():
            v = vals[i]
            if type(v) is str:
                tc, v = _cast_string(v)
            else:
                try:
                    tc, v = classify(v)  # type: ignore[misc]
                except ValueError:
                    raise _Unusual from None
            if tc >= _STR:
                if len(v) > MAX_STRING_LENGTH or not _encodable(v):
                    raise _Unusual
            t[i] = tc
            vals[i] = v
    keep = t >= 0  # JSON nulls are skipped
    if not keep.all():
        idx = np.flatnonzero(keep)
        vals = [vals[i] for i in idx.tolist()]
        key, ts, t = key[idx], ts[idx], t[idx]
    try:
        return PointColumns(entity, keys, key, ts, t, *value_columns(t, vals))
    except OverflowError:  # an integer beyond 64 bits
        raise _Unusual from None


def _encodable(s: str) -> bool:
    """Whether ``s`` can be stored as UTF-8 (no lone surrogate)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fast_paused(entity: str, data: Any, server_ts: int) -> PointColumns:
    """:func:`_fast` with the garbage collector paused (as :func:`~tbpanel.store.payload.loads`
    decodes a big body: the views and lists made per object would trigger collections)."""
    with PausedCollector():
        return _fast(entity, data, server_ts)


def telemetry_columns(
    entity: str, body: bytes | str | Any, server_ts: int, count_check: Callable[[int], None] | None = None
) -> PointColumns:
    """A device's telemetry body (raw, or decoded JSON) as validated columns of ``entity``.

    Raises :class:`~tbpanel.store.payload.PayloadError` (or ``ValueError``), with the old
    parser's message, for a body :func:`~tbpanel.store.payload.parse_telemetry` and
    :func:`~tbpanel.store.validate.payload_points` refuse; ``count_check(points)`` runs
    between the two, as the transports ran the point limit."""
    raw = isinstance(body, (bytes, str))
    data = loads(body) if raw else body
    try:
        big = raw and len(body) >= GC_PAUSE_BYTES
        points = _fast_paused(entity, data, server_ts) if big else _fast(entity, data, server_ts)
    except _Unusual:
        pass
    else:
        if count_check is not None:
            count_check(len(points))
        return points
    # the old parser reads the body as it came (decoded JSON that is a string is not a body)
    parsed = parse_telemetry(body, server_ts)
    if count_check is not None:
        count_check(len(parsed))
    return columns_of_points(entity, payload_points(entity, parsed))

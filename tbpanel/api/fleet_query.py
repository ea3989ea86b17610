"""``POST /api/tbpanel/telemetry/query``: many devices × keys in one request, as columns.

ThingsBoard's routes answer one device per request and a JSON object per point; pulling a
fleet that way costs a round trip per device and a Python object per point. This route reads
every series in one consistent store read (:meth:`TelemetryStore.query_columns`) and sends the
columns on without a Python loop over points: JSON arrays straight from numpy (orjson), or an
Arrow IPC stream (``Accept: application/vnd.apache.arrow.stream``) that pandas and polars load
in one call. Same authentication and scoping as the ThingsBoard routes: every device asked for
must be readable by the caller, or the whole request is refused naming it.

Body::

    {"deviceIds": ["<uuid>", ...], "keys": ["temperature"], "startTs": ms, "endTs": ms,
     "agg": "NONE" | "AVG" | "MIN" | "MAX" | "SUM" | "COUNT", "interval": ms,
     "intervalType": "MILLISECONDS" | "WEEK" | ..., "timeZone": "UTC",
     "limit": 100000, "orderBy": "ASC" | "DESC"}

``keys`` absent: every key of each device. Raw queries keep at most ``limit`` points per
series, the oldest (``orderBy`` ASC) or the newest (DESC); answers are ascending in time.

JSON answer: ``{"series": [{"entityId": {...}, "key", "ts": [...], "values": [...]}], "points"}``
with values in their type (numbers, booleans, strings). Arrow answer: one row per point with
columns ``deviceId``, ``key``, ``ts`` (timestamp[ms, UTC]), ``type`` (BOOLEAN/LONG/DOUBLE/STRING/
JSON), ``value`` (float64; booleans 0/1, null for text), ``long`` (the exact int64 of LONG
points) and ``text`` (STRING/JSON points).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..store.aggregate import AGGS
from ..store.buckets import INTERVAL_TYPES
from ..store.fleet_query import SeriesColumns, total_points
from ..store.values import ValueType
from .base import ApiError, ApiHandler

ARROW = "application/vnd.apache.arrow.stream"
#: bounds that keep one answer within what a server should build in memory
MAX_DEVICES = 10_000
MAX_KEYS = 1_000
MAX_LIMIT = 10_000_000
MAX_POINTS = 20_000_000
DEFAULT_LIMIT = 100_000
#: the fields a query body may have (docs/openapi.json describes exactly these)
FIELDS = ("deviceIds", "keys", "startTs", "endTs", "agg", "interval", "intervalType", "timeZone", "limit", "orderBy")
_TYPE_NAMES = {int(t): n for t, n in zip(ValueType, ("BOOLEAN", "LONG", "DOUBLE", "STRING", "JSON"))}


class FleetQueryHandler(ApiHandler):
    async def post(self) -> None:
        user = self.require_user()
        body = self.json_object("the query")
        q = _parse(body)
        registry = self.platform.registry
        for device_id in q["deviceIds"]:  # every device must be the caller's to read
            await self.in_thread(registry.check_device, user, device_id)
        arrow = _wants_arrow(self.request.headers.get("Accept", ""))
        store = self.platform.store
        columns = await self.in_thread(
            lambda: store.query_columns(
                q["deviceIds"],
                q["keys"],
                q["startTs"],
                q["endTs"],
                agg=q["agg"],
                interval=q["interval"],
                interval_type=q["intervalType"],
                tz=q["timeZone"],
                limit=q["limit"],
                newest=q["orderBy"] == "DESC",
            )
        )
        points = total_points(columns)
        if points > MAX_POINTS:
            raise ApiError(
                413, f"the query matches {points:,} points, over the limit of {MAX_POINTS:,}: narrow the range or keys"
            )
        if arrow:
            payload = await self.in_thread(arrow_stream, columns)
            self.set_header("Content-Type", ARROW)
            self.finish(payload)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(await self.in_thread(json_answer, columns))


def _wants_arrow(accept: str) -> bool:
    """Arrow when the client lists it (ahead of JSON if both are given); JSON otherwise."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    if ARROW not in kinds:
        return False
    json_at = kinds.index("application/json") if "application/json" in kinds else len(kinds)
    if kinds.index(ARROW) > json_at:
        return False
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        if "application/json" in kinds or "*/*" in kinds:
            return False
        raise ApiError(406, "Arrow answers need pyarrow on the server (pip install 'tbpanel[arrow]')") from None
    return True


def _parse(body: dict[str, Any]) -> dict[str, Any]:
    """The validated query; a 400 naming the first problem otherwise."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(FIELDS)}")
    ids = body.get("deviceIds")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "deviceIds must be a non-empty list of device id strings")
    if len(ids) > MAX_DEVICES:
        raise ApiError(413, f"{len(ids):,} devices asked for; one query takes at most {MAX_DEVICES:,}")
    keys = body.get("keys")
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ApiError(400, "keys must be a list of non-empty strings (or absent: every key)")
        if len(keys) > MAX_KEYS:
            raise ApiError(413, f"{len(keys):,} keys asked for; one query takes at most {MAX_KEYS:,}")
    start, end = _int(body, "startTs"), _int(body, "endTs")
    if start is None or end is None:
        raise ApiError(400, "startTs and endTs (epoch ms) are required")
    if start >= end:
        raise ApiError(400, f"startTs ({start}) must be less than endTs ({end})")
    agg = body.get("agg", "NONE")
    if not isinstance(agg, str) or agg.upper() not in AGGS:
        raise ApiError(400, f"agg must be one of {', '.join(AGGS)}; got {agg!r}")
    interval_type = body.get("intervalType", "MILLISECONDS")
    if not isinstance(interval_type, str) or interval_type.upper() not in INTERVAL_TYPES:
        raise ApiError(400, f"intervalType must be one of {', '.join(INTERVAL_TYPES)}; got {interval_type!r}")
    interval = _int(body, "interval")
    if agg.upper() != "NONE" and interval_type.upper() == "MILLISECONDS" and (interval is None or interval <= 0):
        raise ApiError(400, f"interval must be a positive number of milliseconds when agg={agg.upper()}")
    limit = _int(body, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT:,}; got {limit}")
    order = body.get("orderBy", "ASC")
    if not isinstance(order, str) or order.upper() not in ("ASC", "DESC"):
        raise ApiError(400, f"orderBy must be ASC or DESC; got {order!r}")
    tz = body.get("timeZone", "UTC")
    if not isinstance(tz, str):
        raise ApiError(400, "timeZone must be a time-zone name such as 'Europe/Berlin'")
    return {
        "deviceIds": list(dict.fromkeys(i.lower() for i in ids)),
        "keys": None if keys is None else list(dict.fromkeys(keys)),
        "startTs": start,
        "endTs": end,
        "agg": agg.upper(),
        "interval": interval,
        "intervalType": interval_type.upper(),
        "timeZone": tz,
        "limit": limit,
        "orderBy": order.upper(),
    }


def _int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name} must be an integer; got {value!r}")
    return value


# -- answers ---------------------------------------------------------------------------------
def _values(c: SeriesColumns) -> Any:
    """The series' values in their JSON types: a numpy array when they share one type (orjson
    writes it without a Python loop), a list only for a series that mixes types."""
    kinds = np.unique(c.vtype)
    if len(kinds) == 1:
        kind = int(kinds[0])
        if kind == ValueType.DOUBLE:
            return np.ascontiguousarray(c.num, np.float64)
        if kind == ValueType.LONG:
            return np.ascontiguousarray(c.lng, np.int64)
        if kind == ValueType.BOOL:
            return np.ascontiguousarray(c.num != 0)
    out = np.asarray(c.num, np.float64).astype(object)
    for kind in kinds.tolist():
        m = c.vtype == kind
        if kind == ValueType.LONG:
            out[m] = c.lng[m].astype(object)
        elif kind == ValueType.BOOL:
            out[m] = c.num[m] != 0
        elif kind > ValueType.DOUBLE and c.txt is not None:
            out[m] = c.txt[m]
    return out.tolist()


def json_answer(columns: list[SeriesColumns]) -> bytes:
    series = [
        {
            "entityId": {"entityType": "DEVICE", "id": c.entity},
            "key": c.key,
            "ts": np.ascontiguousarray(c.ts, np.int64),
            "values": _values(c),
        }
        for c in columns
    ]
    return orjson.dumps({"series": series, "points": total_points(columns)}, option=orjson.OPT_SERIALIZE_NUMPY)


def arrow_stream(columns: list[SeriesColumns]) -> bytes:
    """One Arrow IPC stream, one row per point (columns in the module docstring)."""
    import pyarrow as pa

    counts = np.array([len(c) for c in columns], np.int64)
    n = int(counts.sum())

    def cat(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.empty(0, dtype)

    entity_names = list(dict.fromkeys(c.entity for c in columns))
    key_names = list(dict.fromkeys(c.key for c in columns))
    entity_at = {e: i for i, e in enumerate(entity_names)}
    key_at = {k: i for i, k in enumerate(key_names)}
    entity_idx = np.repeat(np.array([entity_at[c.entity] for c in columns], np.int32), counts)
    key_idx = np.repeat(np.array([key_at[c.key] for c in columns], np.int32), counts)
    vtype = cat([c.vtype for c in columns], np.int8)
    num = cat([c.num for c in columns], np.float64)
    lng = cat([c.lng for c in columns], np.int64)
    is_text = vtype > ValueType.DOUBLE
    if is_text.any():
        txt = np.concatenate([c.txt if c.txt is not None else np.full(len(c), None, object) for c in columns])
        text = pa.array(txt, type=pa.string(), mask=~is_text)
    else:
        text = pa.nulls(n, pa.string())
    type_names = [_TYPE_NAMES[t] for t in range(len(_TYPE_NAMES))]
    table = pa.table(
        {
            "deviceId": pa.DictionaryArray.from_arrays(pa.array(entity_idx), pa.array(entity_names, pa.string())),
            "key": pa.DictionaryArray.from_arrays(pa.array(key_idx), pa.array(key_names, pa.string())),
            "ts": pa.array(cat([c.ts for c in columns], np.int64), pa.timestamp("ms", tz="UTC")),
            "type": pa.DictionaryArray.from_arrays(pa.array(vtype), pa.array(type_names, pa.string())),
            "value": pa.array(num, pa.float64(), mask=is_text),
            "long": pa.array(lng, pa.int64(), mask=vtype != ValueType.LONG),
            "text": text,
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())

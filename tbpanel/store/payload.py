"""Parsing ThingsBoard telemetry and attribute payloads into typed points.

Shared by every device transport (HTTP, MQTT, CoAP) so that the type rules and the
error messages are the same everywhere. A payload is either accepted whole or rejected whole
with a :class:`PayloadError` that says what is wrong: nothing from a bad request is stored.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from typing import Any

import orjson

from .heap import PausedCollector
from .values import classify

#: Earliest and latest timestamps accepted: 1970-01-01 and 9999-12-31 (epoch ms).
TS_MIN = 0
TS_MAX = 253_402_300_799_999
#: Longest key accepted (characters). ThingsBoard's key dictionary column is varchar(255).
MAX_KEY_LENGTH = 255
#: Longest string or JSON value accepted (characters).
MAX_STRING_LENGTH = 1_000_000

#: A payload entry as parsed: ``(ts, key, vtype, value)``; the device it came from is known to
#: the transport, and :func:`tbpanel.store.validate.payload_points` makes store points of it.
ParsedPoint = tuple[int, str, int, Any]


class PayloadError(ValueError):
    """A payload that cannot be stored; the message is shown to the client."""


# orjson turns integer literals beyond 64 bits into floats without a word; a body holding a
# run of 19+ digits (-2**63 - 1 has 19) is re-read with the stdlib parser, which keeps them
# exact so that the value check can reject them instead of storing a silently rounded number.
# (The run is found by mapping every digit to "0" and everything else to " " in C, then a
# substring search: ~10x faster than the regex \d{19,}, which cost more than orjson itself.)
_DIGITS_TO_ZERO = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_HUGE_INT_DIGITS = b"0" * 19
_CONTROL_CHARS = re.compile("[\x00-\x1f]")


#: Deepest nesting of arrays and objects accepted (levels): orjson's own limit, which the
#: exact-integer re-read below is given room to honour too (the stdlib parser alone stops near
#: Python's recursion limit, ~990 levels, and would refuse what orjson accepted).
MAX_JSON_DEPTH = 1024
_TOO_DEEP = f"Invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels"
_EXACT_REREAD = threading.Lock()


def _no_constants(name: str) -> Any:
    raise PayloadError(f"Invalid JSON body: {name} is not valid JSON")


def _loads_exact(body: bytes) -> Any:
    """The stdlib parser (big integers stay exact) with the recursion headroom for a body
    orjson already found at most MAX_JSON_DEPTH deep; serialised, as the limit is global."""
    with _EXACT_REREAD:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(limit + MAX_JSON_DEPTH + 64)
        try:
            return json.loads(body, parse_constant=_no_constants)
        except RecursionError:  # pragma: no cover - orjson refused deeper bodies already
            raise PayloadError(_TOO_DEEP) from None
        finally:
            sys.setrecursionlimit(limit)


#: Bodies from this size on are decoded with the cyclic garbage collector paused: decoding makes
#: thousands of dicts and lists, each allocation counts towards a collection, and a collection
#: in a server's big heap cost more than the decoding itself (2-3x orjson's CPU for a
#: 10,000-point body). Decoded JSON has no reference cycles, so there is nothing to miss.
GC_PAUSE_BYTES = 16 << 10


def _loads_paused(body: bytes) -> Any:
    with PausedCollector():
        return orjson.loads(body)


def loads(body: bytes | str) -> Any:
    """Decode JSON, rejecting NaN/Infinity literals, invalid UTF-8 and nesting deeper than
    :data:`MAX_JSON_DEPTH` with a clear message."""
    if isinstance(body, str):
        body = body.encode()
    try:
        data = _loads_paused(body) if len(body) >= GC_PAUSE_BYTES else orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise PayloadError(_TOO_DEEP) from None
        raise PayloadError(f"Invalid JSON body: {exc}") from None
    if _HUGE_INT_DIGITS in body.translate(_DIGITS_TO_ZERO):
        data = _loads_exact(body)
    return data


def parse_ts(raw: Any) -> int:
    """An epoch-milliseconds timestamp: an integer (or integral number/digit string) in range."""
    if isinstance(raw, bool):
        raise PayloadError(f"'ts' must be an epoch-milliseconds integer, got {raw!r}")
    if isinstance(raw, float):
        if raw != raw or raw in (float("inf"), float("-inf")) or raw != int(raw):
            raise PayloadError(f"'ts' must be an epoch-milliseconds integer, got {raw!r}")
        raw = int(raw)
    elif isinstance(raw, str):
        if not raw.isdigit():
            raise PayloadError(f"'ts' must be an epoch-milliseconds integer, got {raw!r}")
        raw = int(raw)
    elif not isinstance(raw, int):
        raise PayloadError(f"'ts' must be an epoch-milliseconds integer, got {type(raw).__name__}")
    if not TS_MIN <= raw <= TS_MAX:
        raise PayloadError(f"'ts' {raw} is outside the accepted range {TS_MIN}..{TS_MAX} (epoch ms)")
    ts: int = raw
    return ts


def _check_key(key: str) -> None:
    if not key:
        raise PayloadError("telemetry keys must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise PayloadError(f"key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
    if _CONTROL_CHARS.search(key):  # a regex: a per-character generator was ~20% of batched ingest
        raise PayloadError(f"key {key!r} contains control characters")


def parse_values(values: Any, ts: int, where: str = "body") -> list[ParsedPoint]:
    """Type every entry of one flat ``{key: value}`` object; JSON nulls are skipped."""
    if not isinstance(values, dict):
        raise PayloadError(f"{where} must be a JSON object of key/value pairs, got {_kind(values)}")
    points: list[ParsedPoint] = []
    for key, raw in values.items():
        _check_key(key)
        try:
            typed = classify(raw)
        except ValueError as exc:
            raise PayloadError(f"value of {key!r}: {exc}") from None
        if typed is None:
            continue
        vtype, value = typed
        if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
            raise PayloadError(f"value of {key!r} is longer than {MAX_STRING_LENGTH} characters")
        points.append((ts, key, vtype, value))
    return points


def parse_telemetry(body: bytes | str | Any, server_ts: int) -> list[ParsedPoint]:
    """All points of a telemetry payload (object, timestamped object, or an array of either).

    ``body`` may be raw bytes or already-decoded JSON. An object is "timestamped" only when it
    has both ``ts`` and ``values``; otherwise its keys are telemetry keys stamped ``server_ts``.
    """
    data = loads(body) if isinstance(body, (bytes, str)) else body
    if isinstance(data, list):
        points: list[ParsedPoint] = []
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise PayloadError(f"element {i} of the array must be a JSON object, got {_kind(item)}")
            points.extend(_parse_object(item, server_ts, f"element {i}"))
        return points
    if isinstance(data, dict):
        return _parse_object(data, server_ts, "body")
    raise PayloadError(f"telemetry must be a JSON object or an array of objects, got {_kind(data)}")


def _parse_object(obj: dict[str, Any], server_ts: int, where: str) -> list[ParsedPoint]:
    if "ts" in obj and "values" in obj:
        ts = parse_ts(obj["ts"])
        return parse_values(obj["values"], ts, f"'values' of {where}")
    return parse_values(obj, server_ts, where)


def parse_attributes(body: bytes | str | Any, server_ts: int) -> list[ParsedPoint]:
    """A flat attributes object, typed like telemetry and stamped with the server time."""
    data = loads(body) if isinstance(body, (bytes, str)) else body
    if not isinstance(data, dict):
        raise PayloadError(f"attributes must be a JSON object, got {_kind(data)}")
    return parse_values(data, server_ts, "attributes")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)

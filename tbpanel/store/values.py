"""Typed telemetry values: the five ThingsBoard kinds and how each is rendered on the wire.

A value travels through tbpanel as a pair ``(vtype, value)`` where ``vtype`` is a
:class:`ValueType` code and ``value`` is a plain Python ``bool``/``int``/``float``/``str``
(JSON values are kept as their compact JSON text). Keeping the type next to the value is
what lets a query answer ``"73"`` for a long and ``"73.0"`` for a double, as ThingsBoard does.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Any

import orjson

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1
#: Deepest JSON value (nested arrays/objects) stored as text: what orjson serialises.
MAX_JSON_VALUE_DEPTH = 254


class ValueType(IntEnum):
    BOOL = 0
    LONG = 1
    DOUBLE = 2
    STR = 3
    JSON = 4


NUMERIC_TYPES = (ValueType.LONG, ValueType.DOUBLE)
# the members as module globals (an attribute lookup on an Enum class is slow in Python 3.11)
_BOOL, _LONG, _DOUBLE, _STR, _JSON = ValueType


def format_double(x: float) -> str:
    """Render a double the way ThingsBoard (Java ``Double.toString``) does for common values."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e16:
        return f"{int(x)}.0"
    return repr(float(x))


def to_wire_string(vtype: int, value: Any) -> str:
    """ThingsBoard's default (non-strict) rendering: every value as a string."""
    if vtype == ValueType.BOOL:
        return "true" if value else "false"
    if vtype == ValueType.LONG:
        return str(int(value))
    if vtype == ValueType.DOUBLE:
        return format_double(float(value))
    return str(value)


def to_strict(vtype: int, value: Any) -> Any:
    """Native JSON value for ``useStrictDataTypes=true`` (JSON kept as text, like ThingsBoard)."""
    if vtype == ValueType.BOOL:
        return bool(value)
    if vtype == ValueType.LONG:
        return int(value)
    if vtype == ValueType.DOUBLE:
        v = float(value)
        return v if math.isfinite(v) else None
    return value


def classify(value: Any) -> tuple[int, Any] | None:
    """Type a Python/JSON value by ThingsBoard's rules; ``None`` means "skip it" (JSON null).

    Numeric strings are cast to numbers (ThingsBoard's default); nested objects and arrays
    become JSON text. Raises ``ValueError`` for values that cannot be stored faithfully
    (integers outside 64 bits, NaN/Infinity).
    """
    # exact-type checks and module-level members first: this runs for every ingested value
    tp = type(value)
    if tp is float or (tp is not bool and isinstance(value, float)):
        if not math.isfinite(value):
            raise ValueError("NaN and Infinity are not valid telemetry values")
        return _DOUBLE, value
    if tp is int or (tp is not bool and isinstance(value, int)):
        if not LONG_MIN <= value <= LONG_MAX:
            raise ValueError(f"integer {value} is outside the 64-bit range")
        return _LONG, value
    if value is None:
        return None
    if tp is bool:
        return _BOOL, value
    if isinstance(value, str):
        return _cast_string(value)
    if isinstance(value, (dict, list)):
        try:
            return ValueType.JSON, orjson.dumps(value).decode()
        except TypeError as exc:  # an integer beyond 64 bits (or a non-JSON object) inside
            if str(exc) == "Recursion limit reached":
                raise ValueError(f"JSON value nested deeper than {MAX_JSON_VALUE_DEPTH} levels") from None
            raise ValueError(f"JSON value cannot be stored: {exc}") from None
    # numpy scalars and the like
    if hasattr(value, "item"):
        return classify(value.item())
    raise ValueError(f"unsupported value type {type(value).__name__}")


def _cast_string(s: str) -> tuple[int, Any]:
    """Numeric strings become numbers ("42" → long, "4.2" → double); others stay strings."""
    t = s.strip()
    if t and t == s and (t[0].isdigit() or (t[0] in "+-" and len(t) > 1 and t[1].isdigit())):
        try:
            n = int(t, 10)
        except ValueError:
            pass
        else:
            if LONG_MIN <= n <= LONG_MAX:
                return ValueType.LONG, n
            return ValueType.STR, s
        try:
            f = float(t)
        except ValueError:
            return ValueType.STR, s
        if math.isfinite(f):
            return ValueType.DOUBLE, f
    return ValueType.STR, s

"""Time as the store counts it: query arguments to epoch ms, and the UTC months that partition it.

Query arguments (:func:`to_ms`, :func:`parse_interval`) accept what a notebook user types —
datetimes, ISO strings, ``"1h"`` — and raise :class:`~tbpanel.store.buckets.QueryError` for
anything else, so the API answers 400 instead of 500.

Months partition both tiers: the cold tier holds one Zarr group per UTC month, the hot tier's
``month_state`` counts writes per month. A month is an integer, *months since 1970-01*
(:func:`month_of`), named ``"YYYY-MM"`` on disk (:func:`month_name`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from .buckets import QueryError

# --- query arguments -----------------------------------------------------------------------

_INTERVAL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_UNITS = {
    "": 1,
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "w": 7 * 86_400_000,
    "week": 7 * 86_400_000,
}


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
            x = x.replace(tzinfo=UTC)
        return int((x - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
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


# --- months (partitions) -------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1)


def month_of(ms: int) -> int:
    """UTC month index (months since 1970-01) of an epoch-ms timestamp."""
    d = _EPOCH + timedelta(milliseconds=int(ms))
    return (d.year - 1970) * 12 + d.month - 1


def months_of(ts: np.ndarray) -> np.ndarray:
    """Vectorised :func:`month_of`."""
    months: np.ndarray = (
        np.asarray(ts, dtype=np.int64).astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
    )
    return months


def month_start(m: int) -> int:
    """Epoch ms of the first instant of month index ``m``."""
    y, mo = divmod(int(m), 12)
    d = datetime(1970 + y, mo + 1, 1)
    return (d - _EPOCH) // timedelta(milliseconds=1)


def month_name(m: int) -> str:
    """``"YYYY-MM"``: the month's directory in the cold tier and its ``cold_partitions`` name."""
    y, mo = divmod(int(m), 12)
    return f"{1970 + y:04d}-{mo + 1:02d}"


def month_from_name(name: str) -> int:
    y, mo = name.split("-")
    return (int(y) - 1970) * 12 + int(mo) - 1

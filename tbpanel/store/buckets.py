"""Aggregation bucket edges for telemetry queries.

A bucketing is returned as an ``int64`` array ``edges`` of length ``n + 1``: bucket ``i`` is
``[edges[i], edges[i + 1])``, ``edges[0] == startTs`` and ``edges[-1] == endTs``.

* ``MILLISECONDS``: fixed intervals aligned to ``startTs`` (ThingsBoard's rule):
  ``[startTs + k*interval, min(startTs + (k+1)*interval, endTs))``.
* ``WEEK`` (Sunday-Saturday), ``WEEK_ISO`` (Monday-Sunday), ``MONTH``, ``QUARTER``
  (starting January, April, July, October): calendar periods in an IANA time zone. The first
  bucket is ``[startTs, first period boundary after startTs)``, then whole periods, the last
  one clipped to ``endTs``. A period boundary is local midnight of its first day, converted
  to UTC with :mod:`zoneinfo`, so buckets spanning a DST change are an hour shorter or
  longer, as they are on a wall clock. (Where local midnight does not exist because clocks
  jump forward at midnight, the boundary is the instant of the jump.)

The number of buckets of one query is capped at :data:`MAX_BUCKETS`; past it a
:class:`QueryError` says the count and the cap.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from ..clock import from_datetime

#: Most buckets one aggregated query may ask for (ThingsBoard itself stops at 700).
MAX_BUCKETS = 100_000

INTERVAL_TYPES = ("MILLISECONDS", "WEEK", "WEEK_ISO", "MONTH", "QUARTER")

# Calendar arithmetic is done with Python dates, which stop at year 9999.
_CAL_MIN_MS = -62_135_596_800_000 + 14 * 86_400_000  # 0001-01-15 UTC
_CAL_MAX_MS = 253_402_300_799_999 - 14 * 86_400_000  # 9999-12-17 UTC


class QueryError(ValueError):
    """A query that cannot be answered as asked; the message says what is wrong."""


@lru_cache(maxsize=256)
def get_zone(tz: str | None) -> ZoneInfo | timezone:
    """The ``tzinfo`` for an IANA zone name ("UTC" and empty mean UTC)."""
    if tz is None or tz == "" or tz == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise QueryError(f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin'") from None


def normalize_interval_type(interval_type: str | None) -> str:
    it = (interval_type or "MILLISECONDS").upper()
    if it not in INTERVAL_TYPES:
        raise QueryError(f"unknown intervalType {interval_type!r}; expected one of {', '.join(INTERVAL_TYPES)}")
    return it


def _cap_error(n: int) -> QueryError:
    return QueryError(
        f"the query asks for {n} buckets; tbpanel's cap is {MAX_BUCKETS} "
        f"— use a longer interval or a shorter time range"
    )


def check_range(start: int, end: int) -> None:
    if start >= end:
        raise QueryError(f"startTs must be less than endTs (got startTs={start}, endTs={end})")


def bucket_edges(
    start: int, end: int, interval: int | None = None, interval_type: str = "MILLISECONDS", tz: str | None = "UTC"
) -> np.ndarray:
    """Edges of the aggregation buckets covering ``[start, end)`` (see the module docstring).

    For ``MILLISECONDS`` an ``interval`` of ``None`` means one bucket for the whole range.
    """
    start = int(start)
    end = int(end)
    check_range(start, end)
    it = normalize_interval_type(interval_type)
    if it == "MILLISECONDS":
        if interval is None:
            return np.array([start, end], dtype=np.int64)
        if isinstance(interval, bool) or not isinstance(interval, (int, np.integer)):
            raise QueryError(f"interval must be an integer number of milliseconds, got {interval!r}")
        interval = int(interval)
        if interval <= 0:
            raise QueryError(f"interval must be greater than 0 ms (got {interval})")
        n = -(-(end - start) // interval)
        if n > MAX_BUCKETS:
            raise _cap_error(n)
        edges = start + np.arange(n + 1, dtype=np.int64) * interval
        edges[-1] = end
        return edges
    zone = get_zone(tz)
    if start < _CAL_MIN_MS or end > _CAL_MAX_MS:
        raise QueryError("calendar intervals need startTs and endTs between years 0001 and 9999")
    return _calendar_edges(start, end, it, zone)


# --- calendar periods -------------------------------------------------------------------------
# A period is identified by an integer index: weeks by the ordinal of their first day // 7
# (shifted so that the index changes on Sunday or Monday), months by year*12 + month - 1,
# quarters by (year*12 + month - 1) // 3.

_SUNDAY_SHIFT = 0  # date(1, 1, 7) is a Sunday: ordinal 7 -> (7 - 0) % 7 == 0
_MONDAY_SHIFT = 1  # date(1, 1, 1) is a Monday: ordinal 1


def _period_index(d: date, it: str) -> int:
    if it == "WEEK":
        return (d.toordinal() - _SUNDAY_SHIFT) // 7
    if it == "WEEK_ISO":
        return (d.toordinal() - _MONDAY_SHIFT) // 7
    m = d.year * 12 + d.month - 1
    return m if it == "MONTH" else m // 3


def _period_start(idx: int, it: str) -> date:
    if it == "WEEK":
        return date.fromordinal(idx * 7 + _SUNDAY_SHIFT)
    if it == "WEEK_ISO":
        return date.fromordinal(idx * 7 + _MONDAY_SHIFT)
    m = idx if it == "MONTH" else idx * 3
    return date(m // 12, m % 12 + 1, 1)


def _local_midnight_ms(d: date, zone: tzinfo) -> int:
    # fold=0: for a nonexistent local midnight this yields the instant of the DST jump.
    return from_datetime(datetime(d.year, d.month, d.day, tzinfo=zone))


def _local_date(ms: int, zone: tzinfo) -> date:
    utc = datetime(1970, 1, 1) + timedelta(milliseconds=ms)
    return utc.replace(tzinfo=UTC).astimezone(zone).date()


def _calendar_edges(start: int, end: int, it: str, zone: tzinfo) -> np.ndarray:
    first_idx = _period_index(_local_date(start, zone), it) + 1
    last_idx = _period_index(_local_date(end, zone), it)
    if _local_midnight_ms(_period_start(last_idx, it), zone) >= end:
        last_idx -= 1
    n_inner = max(0, last_idx - first_idx + 1)  # period boundaries strictly inside the range
    if n_inner + 1 > MAX_BUCKETS:
        raise _cap_error(n_inner + 1)
    edges = [start]
    for idx in range(first_idx, first_idx + n_inner):
        b = _local_midnight_ms(_period_start(idx, it), zone)
        if start < b < end:  # always true; guards against odd zone data
            edges.append(b)
    edges.append(end)
    return np.asarray(edges, dtype=np.int64)


def bucket_midpoints(edges: np.ndarray) -> np.ndarray:
    """Each bucket's ts: ``start + (end - start) // 2``."""
    lo = edges[:-1]
    mids: np.ndarray = lo + (edges[1:] - lo) // 2
    return mids

"""Wall-clock time as ThingsBoard counts it, and the one set of time formatters.

Every timestamp in tbpanel is integer milliseconds since the Unix epoch (UTC). Conversions to
``datetime`` (for widgets, schedules and labels) and back live here so that every layer rounds
and labels time the same way.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_EPOCH = datetime(1970, 1, 1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def zone(tz: str | tzinfo | None) -> tzinfo:
    """``"Europe/Berlin"`` → its ``ZoneInfo``; ``None`` → UTC; a ``tzinfo`` as it is."""
    if tz is None:
        return UTC
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def to_datetime(ms: int, tz: str | tzinfo | None = None) -> datetime:
    """An aware ``datetime`` of ``ms`` in ``tz`` (UTC by default)."""
    return datetime.fromtimestamp(ms / 1000, zone(tz))


def naive_utc(ms: int) -> datetime:
    """``ms`` as a naive UTC ``datetime`` (what Panel's date widgets show and return)."""
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def from_datetime(dt: datetime) -> int:
    """Epoch ms of ``dt``, exactly (integer arithmetic, no float rounding); naive means UTC."""
    off = dt.utcoffset() or timedelta(0)
    delta = dt.replace(tzinfo=None) - _EPOCH - off
    return delta.days * DAY_MS + delta.seconds * 1000 + delta.microseconds // 1000


def utc_text(ms: int | None, *, seconds: bool = False, empty: str = "") -> str:
    """``2026-11-20 13:05`` (UTC; ``13:05:09`` with ``seconds``), or ``empty`` for ``None``."""
    if ms is None:
        return empty
    return naive_utc(ms).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


_UNITS = (("d", DAY_MS), ("h", HOUR_MS), ("min", MINUTE_MS), ("s", 1000))


def duration_text(ms: int | None, *, exact: bool = False) -> str:
    """A short duration for people.

    Rounded (default): ``850 ms``, ``42 s``, ``12 min``, ``3.5 h``, ``2 d`` — for measured
    durations. ``exact=True``: the largest unit that divides ``ms`` (``90 s``, ``6 h``), else one
    decimal of the largest unit that fits — for settings such as segment lengths, where
    ``90 s`` must not read as ``2 min``.
    """
    if ms is None:
        return ""
    if exact:
        for unit, size in _UNITS:
            if ms >= size and ms % size == 0:
                return f"{ms // size} {unit}"
        for unit, size in _UNITS:
            if ms >= size:
                return f"{ms / size:.1f} {unit}"
        return f"{ms} ms"
    if ms < 1000:
        return f"{int(ms)} ms"
    if ms < MINUTE_MS:
        return f"{ms / 1000:.0f} s"
    if ms < HOUR_MS:
        return f"{ms / MINUTE_MS:.0f} min"
    if ms < 2 * DAY_MS:
        return f"{ms / HOUR_MS:.1f}".removesuffix(".0") + " h"
    return f"{ms / DAY_MS:.1f}".removesuffix(".0") + " d"

"""When a periodic job runs next: every N HOUR | DAY | WEEK | MONTH, optionally at the start of the unit.

Pure functions of time (no threads), so the rule is easy to test and to show in the UI.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from ..clock import from_datetime, to_datetime

UNITS = ("HOUR", "DAY", "WEEK", "MONTH")


def unit_start(ms: int, unit: str, tz: str = "UTC") -> int:
    """Start of the hour/day/ISO week/month containing ``ms`` in ``tz``."""
    dt = to_datetime(ms, tz)
    if unit == "HOUR":
        dt = dt.replace(minute=0, second=0, microsecond=0)
    elif unit == "DAY":
        dt = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit == "WEEK":
        dt = (dt - timedelta(days=dt.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit == "MONTH":
        dt = dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}; got {unit!r}")
    # re-localise: replace() keeps the old UTC offset across a DST change
    return from_datetime(dt.replace(tzinfo=None).replace(tzinfo=ZoneInfo(tz)))


def add_units(ms: int, every: int, unit: str, tz: str = "UTC") -> int:
    """``ms`` plus ``every`` calendar units in ``tz`` (months keep the day where they can)."""
    dt = to_datetime(ms, tz).replace(tzinfo=None)
    if unit == "HOUR":
        return ms + every * 3_600_000
    if unit == "DAY":
        dt = dt + timedelta(days=every)
    elif unit == "WEEK":
        dt = dt + timedelta(weeks=every)
    elif unit == "MONTH":
        month = dt.month - 1 + every
        year = dt.year + month // 12
        month = month % 12 + 1
        day = min(dt.day, [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1])
        dt = dt.replace(year=year, month=month, day=day)
    else:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}; got {unit!r}")
    return from_datetime(dt.replace(tzinfo=ZoneInfo(tz)))


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def next_run(
    last_run_ms: int | None, now_ms: int, every: int, unit: str, *, at_unit_start: bool = False, tz: str = "UTC"
) -> int:
    """When the job is due next (a time ≤ now means "due now").

    Never run: due now, or at the next unit boundary with ``at_unit_start``. After a run:
    ``every`` units after it (after the start of its unit with ``at_unit_start``). A schedule
    that fell behind (server down) is simply due, so it runs once, not once per missed period.
    """
    if every < 1:
        raise ValueError(f"every must be at least 1; got {every}")
    if last_run_ms is None:
        return add_units(unit_start(now_ms, unit, tz), 1, unit, tz) if at_unit_start else now_ms
    base = unit_start(last_run_ms, unit, tz) if at_unit_start else last_run_ms
    return add_units(base, every, unit, tz)

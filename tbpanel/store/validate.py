"""The one :data:`Point` — what the store writes — and the one check every point passes.

A store point is ``(entity, key, ts, vtype, value)``: entity id, key, epoch ms, a
:class:`~tbpanel.store.values.ValueType` code and the plain Python value. Device payloads are
parsed by :mod:`.payload` into :data:`~tbpanel.store.payload.ParsedPoint` ``(ts, key, vtype,
value)`` (no entity: the transport knows which device sent it); :func:`payload_points` turns
those into store points of one entity.

:func:`validate_points` runs once per batch, before anything is queued, so a bad point raises
``ValueError`` in the caller and nothing of its batch is stored. It returns
:class:`ValidPoints`, which :meth:`TelemetryStore.submit` takes as they are instead of checking
them a second time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .payload import TS_MAX, TS_MIN, ParsedPoint
from .values import LONG_MAX, LONG_MIN, ValueType

Point = tuple[str, str, int, int, Any]  # (entity, key, ts, vtype, value)

_BOOL, _LONG, _DOUBLE, _STR, _JSON = (int(x) for x in ValueType)
_TCODE: dict[Any, int] = {int(x): int(x) for x in ValueType}  # numpy integers hash like ints


class ValidPoints(list[Point]):
    """Points that :func:`validate_points` checked and normalised (do not change them after)."""

    __slots__ = ()


def payload_points(entity: str, parsed: Iterable[ParsedPoint], *, first: int = 0) -> ValidPoints:
    """The store points of one entity's parsed payload, validated.

    ``first``: the position of the first point in error messages (a gateway message numbers
    the points of all its devices in one sequence, as one batch).
    """
    return validate_points([(entity, key, ts, vtype, value) for ts, key, vtype, value in parsed], first)


def _bad(i: int, msg: str) -> ValueError:
    return ValueError(f"point {i}: {msg}")


def validate_points(points: Iterable[Any], first: int = 0) -> ValidPoints:
    """Check and normalise points ``(entity, key, ts, vtype, value)``; raise ``ValueError``.

    Accepted values per type: BOOL a bool (or 0/1), LONG a 64-bit int, DOUBLE a finite float
    (ints are converted), STR/JSON a string. ``ts`` is epoch ms in ``TS_MIN..TS_MAX``.
    Errors name the point by its position, counted from ``first``.
    """
    out = ValidPoints()
    append = out.append
    tcode = _TCODE
    for i, p in enumerate(points, first):
        try:
            e, k, ts, t, v = p
        except (TypeError, ValueError):
            raise _bad(i, f"expected (entity, key, ts, vtype, value), got {p!r}") from None
        if type(e) is not str or not e:
            raise _bad(i, f"entity must be a non-empty string, got {e!r}")
        if type(k) is not str or not k:
            raise _bad(i, f"key must be a non-empty string, got {k!r}")
        if type(ts) is not int:
            if isinstance(ts, (bool, np.bool_)) or not isinstance(ts, (int, np.integer)):
                raise _bad(i, f"ts must be an integer (epoch ms), got {ts!r}")
            ts = int(ts)
        if not TS_MIN <= ts <= TS_MAX:
            raise _bad(i, f"ts {ts} is outside {TS_MIN}..{TS_MAX} (epoch ms)")
        tc = tcode.get(t) if isinstance(t, (int, np.integer)) and not isinstance(t, bool) else None
        if tc is None:
            raise _bad(i, f"unknown value type {t!r} (expected a ValueType code 0..4)")
        tv = type(v)
        if tc == _DOUBLE:
            if tv is not float:
                if tv is bool or not isinstance(v, (int, float, np.integer, np.floating)):
                    raise _bad(i, f"a DOUBLE value must be a number, got {tv.__name__}")
                v = float(v)
            if not math.isfinite(v):
                raise _bad(i, "NaN and Infinity are not valid telemetry values")
        elif tc == _LONG:
            if tv is not int:
                if tv is bool or not isinstance(v, (int, np.integer)):
                    raise _bad(i, f"a LONG value must be an integer, got {tv.__name__}")
                v = int(v)
            if not LONG_MIN <= v <= LONG_MAX:
                raise _bad(i, f"integer {v} is outside the 64-bit range")
        elif tc == _BOOL:
            if tv is not bool:
                if isinstance(v, (int, np.integer, np.bool_)) and v in (0, 1):
                    v = bool(v)
                else:
                    raise _bad(i, f"a BOOL value must be a bool, got {tv.__name__}")
        else:
            if tv is not str:
                raise _bad(i, f"a {ValueType(tc).name} value must be a string, got {tv.__name__}")
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise _bad(i, "the string is not valid Unicode (lone surrogate)") from None
        append((e, k, ts, tc, v))
    return out

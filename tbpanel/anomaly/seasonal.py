"""Seasonal baseline: how unlike a segment is to the same phase of the recent cycles.

The period ``P`` is found from the training data: the lag of the largest autocorrelation of
the items' series on a regular grid, past the autocorrelation's first dip below zero and two
segments, within half the training span. A
segment ``[s, e)`` is compared with the segments ``[s - kP, e - kP)``, ``k = 1 ..``
:data:`CYCLES`, on the model's own normalised feature vector, and its distance is the nearest
of them: a daily cycle that breaks (a missing peak, a flat day) is far from every recent day at
that hour even when its shape occurs elsewhere in the day, which the phase-free discord members
cannot see. Looking back seven cycles lets a weekly rhythm in daily data (weekends) find its
own match. Everything looked at is in the segment's past (causal).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .segments import ItemData, SegmentTable

__all__ = ["CYCLES", "find_period", "shifted_table", "seasonal_distances"]

#: recent cycles a segment is compared with
CYCLES = 7
#: grid points used for the autocorrelation (the latest ones), bounds the cost
MAX_GRID = 20_000
#: items sampled for the period search
MAX_ITEMS = 8


def _acf(v: np.ndarray) -> np.ndarray:
    """Autocorrelation of ``v`` at every lag (FFT; lag 0 = 1)."""
    x = v - v.mean()
    n = x.size
    f = np.fft.rfft(x, 2 * n)
    a = np.fft.irfft(f * np.conj(f))[:n]
    return np.asarray(a / a[0], dtype=np.float64) if a[0] > 0 else np.zeros(n)


def find_period(items: list[ItemData], fields: list[str], step_ms: float, segment_ms: int) -> int:
    """The seasonal period (ms, a whole number of steps) of the training data; 0 when there is
    none (too short a history, or no positive autocorrelation past two segments)."""
    step = max(float(step_ms), 1.0)
    lo = int(np.ceil(2 * segment_ms / step))
    total = None
    for item in items[:MAX_ITEMS]:
        for f in fields:
            ts, v = item.get(f, (np.empty(0), np.empty(0)))
            if len(ts) < 4:
                continue
            grid = np.arange(float(ts[0]), float(ts[-1]) + 1.0, step)[-MAX_GRID:]
            if grid.size < 2 * lo + 2:
                continue
            a = _acf(np.interp(grid, ts.astype(np.float64), v))
            total = a if total is None else total[: min(total.size, a.size)] + a[: min(total.size, a.size)]
    if total is None:
        return 0
    hi = total.size // 2
    # a cycle's autocorrelation dips below zero before it returns: search past the first dip
    # (a smooth or trending series, whose autocorrelation only decays, has no period)
    neg = np.flatnonzero(total[:hi] <= 0)
    if neg.size == 0:
        return 0
    lo = max(lo, int(neg[0]))
    if hi <= lo:
        return 0
    lag = lo + int(np.argmax(total[lo:hi]))
    return int(round(lag * step)) if total[lag] > 0 else 0


def shifted_table(
    item: ItemData, fields: list[str], table: SegmentTable, shift_ms: int, min_points: int
) -> tuple[SegmentTable, np.ndarray]:
    """The segments of ``table`` moved ``shift_ms`` into the past, and which of them hold at
    least ``min_points`` points of every field (the others have no reference there)."""
    start, end = table.start - shift_ms, table.end - shift_ms
    ok = np.ones(start.size, dtype=bool)
    los, his = {}, {}
    for f in fields:
        ts = item[f][0]
        lo = np.searchsorted(ts, start, side="left")
        hi = np.searchsorted(ts, end, side="left")
        ok &= (hi - lo) >= max(int(min_points), 1)
        los[f], his[f] = lo, hi
    return SegmentTable(start, end, los, his), ok


def seasonal_distances(
    item: ItemData,
    fields: list[str],
    table: SegmentTable,
    x: np.ndarray,
    period_ms: int,
    min_points: int,
    features: Callable[[SegmentTable], np.ndarray],
) -> np.ndarray:
    """Per segment: euclidean distance of its features ``x`` to the nearest of the same-phase
    segments of the last :data:`CYCLES` periods (``features`` maps a table to normalised
    features); NaN where no earlier cycle has data."""
    out = np.full(len(table), np.inf)
    if not period_ms or len(table) == 0:
        return np.full(len(table), np.nan)
    for k in range(1, CYCLES + 1):
        t, ok = shifted_table(item, fields, table, k * int(period_ms), min_points)
        if not ok.any():
            continue
        ref = features(t.take(ok))
        d = np.sqrt(np.sum((x[ok] - ref) ** 2, axis=1))
        out[ok] = np.minimum(out[ok], d)
    return np.where(np.isfinite(out), out, np.nan)

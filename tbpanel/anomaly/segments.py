"""Segmentation of one item's multi-field series into fixed or sliding windows.

Segments are aligned to the epoch: fixed segment ``k`` is ``[k*seg, (k+1)*seg)``, sliding
segment ``k`` is ``[k*step, k*step + seg)``. A segment is kept when, for every field, it holds
at least ``min_points`` points, they cover at least ``min_duration_ms`` (last - first point)
and no time gap inside it (the segment's edges included) exceeds ``max_gap_ms``.
Everything is vectorised with ``searchsorted`` and ``reduceat``; there is no per-point loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ItemData", "SegmentTable", "segment_item", "segment_grid", "range_reduce", "clean_item", "median_step"]

ItemData = dict[str, tuple[np.ndarray, np.ndarray]]


def clean_item(item: ItemData, fields: list[str] | None = None) -> ItemData:
    """int64 timestamps sorted ascending, float64 values, NaN/inf points dropped."""
    out: ItemData = {}
    for f in fields if fields is not None else sorted(item):
        if f not in item:
            out[f] = (np.empty(0, np.int64), np.empty(0, np.float64))
            continue
        ts, v = item[f]
        ts = np.asarray(ts, dtype=np.int64)
        v = np.asarray(v, dtype=np.float64)
        if ts.shape != v.shape:
            raise ValueError(f"field {f!r}: timestamps and values differ in length")
        ok = np.isfinite(v)
        if not ok.all():
            ts, v = ts[ok], v[ok]
        if ts.size > 1 and np.any(ts[1:] < ts[:-1]):
            o = np.argsort(ts, kind="stable")
            ts, v = ts[o], v[o]
        out[f] = (ts, v)
    return out


def median_step(items: list[ItemData]) -> float:
    """Median sampling step (ms) over all items and fields, ignoring repeated timestamps."""
    steps = []
    for item in items:
        for ts, _ in item.values():
            if len(ts) > 1:
                d = np.diff(ts)
                d = d[d > 0]
                if d.size:
                    steps.append(d)
    if not steps:
        return 60_000.0
    return float(np.median(np.concatenate(steps)))


def range_reduce(ufunc: np.ufunc, v: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty: float = np.nan) -> np.ndarray:
    """``ufunc.reduce(v[lo[i]:hi[i]])`` for every i (ranges may overlap); ``empty`` if lo >= hi."""
    lo = np.asarray(lo, dtype=np.intp)
    hi = np.asarray(hi, dtype=np.intp)
    out = np.full(lo.shape, empty, dtype=np.float64)
    ok = hi > lo
    n = len(v)
    if n == 0 or not ok.any():
        return out
    ext = np.empty(n + 1, dtype=np.float64)  # sentinel so that index n is valid
    ext[:n] = v
    ext[n] = v[-1]
    a, b = lo[ok], hi[ok]
    idx = np.empty(2 * a.size, dtype=np.intp)
    idx[0::2] = a
    idx[1::2] = b
    out[ok] = ufunc.reduceat(ext, idx)[0::2]
    return out


def segment_grid(
    t_min: int, t_max: int, seg_ms: int, step_ms: int, start_ms: int | None = None, end_ms: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Epoch-aligned segment starts/ends that can hold data in ``[t_min, t_max]``, with
    ``start >= start_ms`` and ``end <= end_ms`` when given."""
    seg, step = int(seg_ms), int(step_ms)
    k0 = (int(t_min) - seg) // step + 1  # first k with k*step + seg > t_min
    k1 = int(t_max) // step  # last k with k*step <= t_max
    if start_ms is not None:
        k0 = max(k0, -((-int(start_ms)) // step))  # ceil(start/step)
    if end_ms is not None:
        k1 = min(k1, (int(end_ms) - seg) // step)
    if k1 < k0:
        e = np.empty(0, np.int64)
        return e, e.copy()
    starts = np.arange(k0, k1 + 1, dtype=np.int64) * step
    return starts, starts + seg


@dataclass
class SegmentTable:
    """Kept segments of one item: bounds plus, per field, the index range ``[lo, hi)``."""

    start: np.ndarray
    end: np.ndarray
    lo: dict[str, np.ndarray] = field(default_factory=dict)
    hi: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.start.size)

    def take(self, sel: np.ndarray) -> SegmentTable:
        return SegmentTable(
            self.start[sel],
            self.end[sel],
            {f: a[sel] for f, a in self.lo.items()},
            {f: a[sel] for f, a in self.hi.items()},
        )


def segment_item(
    item: ItemData,
    fields: list[str],
    seg_ms: int,
    step_ms: int,
    *,
    max_gap_ms: int,
    min_duration_ms: int = 0,
    min_points: int = 1,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> SegmentTable:
    """Segments of one (cleaned) item that pass the gap / duration / point-count filters."""
    present = [item[f][0] for f in fields if f in item and len(item[f][0])]
    empty = np.empty(0, np.int64)
    if len(present) < len(fields) or not present:
        return SegmentTable(empty, empty.copy(), {f: empty.copy() for f in fields}, {f: empty.copy() for f in fields})
    t_min = min(int(t[0]) for t in present)
    t_max = max(int(t[-1]) for t in present)
    starts, ends = segment_grid(t_min, t_max, seg_ms, step_ms, start_ms, end_ms)
    keep = np.ones(starts.size, dtype=bool)
    los, his = {}, {}
    min_points = max(int(min_points), 1)
    for f in fields:
        ts = item[f][0]
        lo = np.searchsorted(ts, starts, side="left")
        hi = np.searchsorted(ts, ends, side="left")
        n = hi - lo
        keep &= n >= min_points
        has = n > 0
        first = np.where(has, ts[np.minimum(lo, ts.size - 1)], starts)
        last = np.where(has, ts[np.maximum(hi - 1, 0)], starts)
        if min_duration_ms:
            keep &= (last - first) >= min_duration_ms
        # largest gap: leading edge, between consecutive points, trailing edge
        inner = range_reduce(np.maximum, np.diff(ts).astype(np.float64), lo, hi - 1, empty=0.0)
        gap = np.maximum(np.maximum(first - starts, ends - last), inner)
        gap = np.where(has, gap, ends - starts)
        keep &= gap <= max_gap_ms
        los[f], his[f] = lo, hi
    return SegmentTable(
        starts[keep], ends[keep], {f: a[keep] for f, a in los.items()}, {f: a[keep] for f, a in his.items()}
    )

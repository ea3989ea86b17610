"""What the telemetry page shows, as plain data: no Panel import, usable from a notebook.

:class:`TelemetryQuery` holds the choices (device, keys, time window, aggregation), checks
them against what the user may see, and :meth:`TelemetryQuery.load` reads a :class:`Snapshot`
that is already small enough for a browser: long raw ranges are min/max-decimated and
aggregation intervals are widened so no line gets more than ``max_points`` points, however
long the range (a year of 1-minute data is ~525,000 points; the plot gets ≤ 2,000).
:class:`LiveSeries` then turns each batch of newly stored points into "append these" or
"replace the open bucket" per key, so the page sends the browser only what is new.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import param

from ..clock import duration_text, now_ms, utc_text
from ..entities import InvalidInput, NotFound, PermissionDenied
from ..store.aggregate import AGGS, aggregate
from ..store.buckets import bucket_edges
from ..store.values import ValueType, to_wire_string
from .fleet import Fleet

WINDOWS: dict[str, int] = {"5m": 5 * 60_000, "1h": 3_600_000, "1d": 86_400_000}
#: Bucket widths offered by the page, and used (next larger) when one is too narrow.
NICE_INTERVALS = (
    1_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    600_000,
    1_800_000,
    3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
    30 * 86_400_000,
)
_NUMERIC = (int(ValueType.BOOL), int(ValueType.LONG), int(ValueType.DOUBLE))
_DOUBLE = int(ValueType.DOUBLE)
#: prefixes of the telemetry an anomaly model saves (score, score index): selectable, never a default
SCORE_KEY_PREFIXES = ("_EAD_", "_EID_")
#: the device attribute (any scope) that names units: a JSON object ``{"key": "unit", ...}``
UNITS_ATTRIBUTE = "units"


def is_score_key(key: str) -> bool:
    """True for a model's saved-score keys (``_EAD_…``, ``_EID_…``)."""
    return key.startswith(SCORE_KEY_PREFIXES)


def default_keys(keys: list[str], n: int) -> list[str]:
    """The keys a device opens with: its first ``n`` measured keys, never saved scores."""
    return [k for k in keys if not is_score_key(k)][:n]


def plot_groups(series: dict[str, Series], units: dict[str, str]) -> list[tuple[str, list[str]]]:
    """``[(y-axis label, keys)]``, one per subplot, in the order of ``series``: keys with the same
    unit share a plot; keys without a known unit share one when their values are of the same
    decade (a 0–1 vibration and a 3,000 rpm speed never share an axis)."""
    groups: dict[tuple[str, int | str], list[str]] = {}
    for key, s in series.items():
        unit = units.get(key, "")
        if unit:
            groups.setdefault(("unit", unit), []).append(key)
            continue
        finite = np.abs(s.y[np.isfinite(s.y)]) if len(s.y) else np.empty(0)
        top = float(np.percentile(finite, 95)) if len(finite) else 0.0
        decade = int(math.floor(math.log10(top))) if top > 0 else 0
        groups.setdefault(("scale", decade), []).append(key)
    out = []
    for (kind, what), keys in groups.items():
        names = ", ".join(keys)
        out.append((f"{names} ({what})" if kind == "unit" else names, keys))
    return out


def age_text(ms: float) -> str:
    """A short human age: '4 s', '12 min', '3 h', '2 d'."""
    s = max(0, int(ms // 1000))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86_400:
        return f"{s // 3600} h"
    return f"{s // 86_400} d"


def minmax_decimate(ts: np.ndarray, y: np.ndarray, start: int, end: int, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each time bucket's first minimum and first maximum, in time order: ≤ 2 points per
    bucket, and every spike and dip of the full series stays visible. ``ts`` ascending."""
    width = max(1, -(-(end - start) // buckets))
    k = (ts - start) // width
    first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    bucket = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(k)]))
    picks = []
    for reduce in (np.minimum, np.maximum):
        extreme = reduce.reduceat(y, first)
        hits = np.flatnonzero(y == extreme[bucket])
        picks.append(hits[np.unique(bucket[hits], return_index=True)[1]])
    keep = np.unique(np.concatenate(picks))  # sorted indices = time order
    return ts[keep], y[keep]


@dataclass
class BucketState:
    """Running aggregate of the newest (open) bucket of one key."""

    index: int
    count: int
    vmin: float
    vmax: float
    vsum: float

    def add(self, v: float) -> None:
        self.count += 1
        self.vmin = min(self.vmin, v)
        self.vmax = max(self.vmax, v)
        self.vsum += v

    def value(self, agg: str) -> float:
        return {
            "MIN": self.vmin,
            "MAX": self.vmax,
            "SUM": self.vsum,
            "COUNT": float(self.count),
            "AVG": self.vsum / self.count if self.count else math.nan,
        }[agg]


def bucket_aggregate(
    agg: str, ts: np.ndarray, y: np.ndarray, origin: int, interval: int
) -> tuple[np.ndarray, np.ndarray, BucketState | None]:
    """Aggregate sorted numeric points into ``interval`` buckets from ``origin`` with the store's
    own aggregation (:func:`tbpanel.store.aggregate.aggregate`), so the plot and the REST API
    agree; returns midpoints, values and the newest bucket's running state, which live points
    keep updating. The plot is numeric (booleans as 0/1), so every point counts as a double:
    COUNT counts numeric points (the REST API's COUNT also counts strings)."""
    if not len(ts):
        return np.empty(0), np.empty(0), None
    last = int((ts[-1] - origin) // interval)
    # whole buckets up to the newest one: midpoints are ``origin + k*interval + interval//2``
    # for every bucket, the open one included (the store clips only an explicit end)
    edges = bucket_edges(origin, origin + (last + 1) * interval, interval)
    doubles = np.full(len(ts), _DOUBLE, np.int8)
    result = aggregate(agg, edges, ts, {"t": doubles, "num": y}.__getitem__)
    tail = y[np.searchsorted(ts, edges[-2]) :]
    state = BucketState(last, len(tail), float(tail.min()), float(tail.max()), float(np.add.reduceat(tail, [0])[0]))
    return result.ts.astype(float), result.fval.astype(float), state


@dataclass
class Series:
    """One key's plot data: x in epoch ms, y as float."""

    ts: np.ndarray
    y: np.ndarray
    raw_points: int = 0  # points read from the store for it
    last_raw_ts: int | None = None
    open_bucket: BucketState | None = None


@dataclass
class Snapshot:
    """What :meth:`TelemetryQuery.load` read: plot data, latest values, and what was reduced."""

    device_id: str
    start: int
    end: int
    live: bool
    agg: str
    interval: int | None
    series: dict[str, Series]
    latest: dict[str, tuple[int, int, Any]]
    notes: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)  # {key: unit} where known


class TelemetryQuery(param.Parameterized):
    """The telemetry page's choices for one user, and the reads they imply."""

    device = param.String(default="", doc="Device id; only devices the user may read load.")
    keys = param.List(default=[], item_type=str, doc="Keys to plot.")
    window: param.Selector[str] = param.Selector(
        default="1h", objects=[*WINDOWS, "fixed"], doc="A live, sliding window (5m, 1h, 1d) or a fixed range."
    )
    start = param.Integer(default=None, allow_None=True, doc="Fixed range start, epoch ms.")
    end = param.Integer(default=None, allow_None=True, doc="Fixed range end (exclusive), epoch ms.")
    agg: param.Selector[str] = param.Selector(default="NONE", objects=list(AGGS))
    interval = param.Integer(default=60_000, bounds=(1, None), doc="Bucket width in ms when aggregating.")
    max_points = param.Integer(
        default=2000, bounds=(10, None), doc="Most points per line the browser gets from one read."
    )

    def __init__(self, platform, user, **params):
        super().__init__(**params)
        self.platform = platform
        self.user = user
        self._fleet = Fleet(platform, user)

    # --------------------------------------------------------------------- what may be seen
    def devices(self) -> list:
        """The user's devices (a tenant admin's tenant, a customer user's customer)."""
        return self._fleet.devices()

    def find_devices(self, text: str = "", limit: int = 50) -> tuple[list, int]:
        """The first ``limit`` of the user's devices matching ``text``, and how many match."""
        return self._fleet.find_devices(text, limit)

    def device_entity(self):
        """The chosen device if the user may read it; raises NotFound/PermissionDenied/InvalidInput."""
        if not self.device:
            raise NotFound("No device chosen")
        return self.platform.registry.check_device(self.user, self.device)

    def may_read(self) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, why)`` for the chosen device."""
        try:
            self.device_entity()
        except PermissionDenied:
            return False, "You don't have permission to see this device."
        except (NotFound, InvalidInput):
            return False, "No such device." if self.device else "Pick a device."
        return True, ""

    def available_keys(self) -> list[str]:
        """The device's keys, measured ones first, saved scores (``_EAD_``/``_EID_``) last."""
        keys = self.platform.store.keys(self.device_entity().id)
        return [k for k in keys if not is_score_key(k)] + [k for k in keys if is_score_key(k)]

    def units(self, device) -> dict[str, str]:
        """``{key: unit}``: the device's ``units`` attribute (a JSON object), else, for a device
        of the demo fleet (same name and type), the fleet's units."""
        for attr in self.platform.registry.get_attributes(device.id, keys=[UNITS_ATTRIBUTE]):
            value = attr["value"]
            try:
                parsed = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                continue
            if isinstance(parsed, dict):
                return {str(k): str(v) for k, v in parsed.items() if v}
        from ..demo import load_fleet  # the demo fleet's definition (a JSON file), read lazily

        fleet = load_fleet()
        if any(d["name"] == device.name and d["type"] == device.type for d in fleet["devices"]):
            spec = fleet["device_types"].get(device.type, {})
            return {k: v["unit"] for k, v in spec.items() if v.get("unit")}
        return {}

    # ---------------------------------------------------------------------------- reading
    @property
    def live(self) -> bool:
        return self.window != "fixed"

    def time_range(self, now: int | None = None) -> tuple[int, int]:
        now = now_ms() if now is None else now
        if self.live:
            return now - WINDOWS[self.window], now + 1
        if self.start is None or self.end is None or self.start >= self.end:
            raise ValueError("a fixed range needs a start before its end")
        return int(self.start), int(self.end)

    def bucket_interval(self, start: int, end: int) -> int | None:
        """The interval actually used: the chosen one, widened until ≤ max_points buckets."""
        if self.agg == "NONE":
            return None
        interval = int(self.interval)
        need = -(-(end - start) // self.max_points)
        if interval < need:
            interval = next((i for i in NICE_INTERVALS if i >= need), need)
        return interval

    def load(self, now: int | None = None) -> Snapshot:
        """Read the chosen range, reduced for the browser, plus the device's latest values."""
        device = self.device_entity()
        start, end = self.time_range(now)
        store = self.platform.store
        keys = [k for k in self.keys if k]
        arrays = store.numeric_arrays(device.id, keys, start, end) if keys else {}
        interval = self.bucket_interval(start, end)
        snap = Snapshot(device.id, start, end, self.live, self.agg, interval, {}, store.latest(device.id))
        snap.units = self.units(device)
        if interval is not None and interval != self.interval:
            snap.notes.append(
                f"interval widened to {duration_text(interval, exact=True)} "
                f"to keep ≤ {self.max_points:,} points per line"
            )
        for key in keys:
            ts, y = arrays.get(key, (np.empty(0, np.int64), np.empty(0)))
            n, last = len(ts), (int(ts[-1]) if len(ts) else None)
            if interval is not None:
                x, v, state = bucket_aggregate(self.agg, ts, y, start, interval)
                snap.series[key] = Series(x, v, n, last, state)
                continue
            if len(ts) > self.max_points:
                dts, dy = minmax_decimate(ts, y, start, end, self.max_points // 2)
                snap.notes.append(f"{key}: {len(ts):,} points min/max-decimated to {len(dts):,}")
                ts, y = dts, dy
            snap.series[key] = Series(ts.astype(float), y.astype(float), n, last)
        return snap


def latest_rows(latest: dict[str, tuple[int, int, Any]], now: int | None = None) -> list[dict]:
    """Rows of the latest-values table: key, value as ThingsBoard renders it, time, age."""
    now = now_ms() if now is None else now
    rows = []
    for key in sorted(latest):
        ts, vtype, value = latest[key]
        rows.append(
            {
                "key": key,
                "value": to_wire_string(vtype, value),
                "ts": ts,
                "time": utc_text(ts, seconds=True),
                "age": age_text(now - ts),
            }
        )
    return rows


@dataclass
class Change:
    """What the browser must do for one key: append rows, and/or replace the last one."""

    ts: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    replace_last: tuple[float, float] | None = None


class LiveSeries:
    """Applies newly stored points to a :class:`Snapshot`: only what changed comes out.

    Raw lines get the new numeric points appended; aggregated lines get their open bucket
    replaced, or a new bucket appended. A point not newer than the newest one already
    plotted for its key (a duplicate of what the read returned, or a late point) is left
    for the next read: appending it would fold the line back on itself. The latest-values
    table takes every point that is newer than its row.
    """

    def __init__(self, snap: Snapshot):
        self.snap = snap
        self.keys = set(snap.series)
        self.last_ts = {k: s.last_raw_ts for k, s in snap.series.items()}
        self.buckets = {k: s.open_bucket for k, s in snap.series.items()}

    def apply(self, points) -> tuple[dict[str, Change], set[str]]:
        """``points`` as the store writes them; returns plot changes and the latest keys changed."""
        snap = self.snap
        changes: dict[str, Change] = {}
        latest_changed: set[str] = set()
        for entity, key, ts, vtype, value in points:
            if entity != snap.device_id:
                continue
            cur = snap.latest.get(key)
            if cur is None or ts >= cur[0]:
                snap.latest[key] = (ts, vtype, value)
                latest_changed.add(key)
            if key not in self.keys or vtype not in _NUMERIC:
                continue
            if not snap.live and not (snap.start <= ts < snap.end):
                continue
            last = self.last_ts.get(key)
            if last is not None and ts <= last:
                continue
            self.last_ts[key] = ts
            v = float(value)
            change = changes.setdefault(key, Change())
            if snap.interval is None:
                change.ts.append(float(ts))
                change.y.append(v)
                continue
            k = (ts - snap.start) // snap.interval
            mid = float(snap.start + k * snap.interval + snap.interval // 2)
            state = self.buckets.get(key)
            if state is not None and k == state.index:
                state.add(v)
                if change.ts:  # the open bucket was appended in this same batch
                    change.y[-1] = state.value(snap.agg)
                else:
                    change.replace_last = (mid, state.value(snap.agg))
            else:
                state = BucketState(int(k), 1, v, v, v)
                self.buckets[key] = state
                change.ts.append(mid)
                change.y.append(state.value(snap.agg))
        return changes, latest_changed

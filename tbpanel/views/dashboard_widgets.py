"""What each dashboard widget shows, as plain data: no Panel import, usable from a notebook.

A :class:`WidgetReader` is made per widget per session. :meth:`WidgetReader.load` is the
blocking read (run off the server loop by the page): it resolves the widget's entity alias
for the session's user (``tbpanel.dashboards.aliases.resolve_alias``: a customer user only
ever gets its own customer's devices), narrows to the dashboard's selected device when the
widget follows the selection, and reads through the same functions the telemetry and alarm
pages use (:class:`~tbpanel.views.telemetry.TelemetryQuery`, ``LiveSeries``,
:class:`~tbpanel.alarms.AlarmQuery`, ``alarm_row``). :meth:`WidgetReader.apply` takes the
live hub's new points and returns only what changed.
"""

from __future__ import annotations

import math
import operator
import re
import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import param

from ..alarms import AlarmQuery
from ..dashboards.model import (
    AlarmTable,
    AnomalyChart,
    AttributeSlider,
    AttributeSwitch,
    Dashboard,
    EntitiesTable,
    Gauge,
    LatestCard,
    MapWidget,
    MarkdownCard,
    RpcButton,
    TimeseriesChart,
    TimeWindow,
    WidgetModel,
)
from ..entities.access import require_attribute_access
from ..errors import InvalidInput, NotFound
from ..store.values import ValueType
from .alarms import alarm_row
from .rpc import RpcConsole
from .telemetry import Change, LiveSeries, Snapshot, TelemetryQuery

_NUMERIC = (int(ValueType.BOOL), int(ValueType.LONG), int(ValueType.DOUBLE))
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_FILTER = re.compile(r"^\s*([\w.\-]+)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
SHARED_SCOPE = "SHARED_SCOPE"


class DashboardSession(param.Parameterized):
    """One user looking at one dashboard: the selected device every widget may follow."""

    selected_device = param.String(default="", doc="Device id a click in an entities table chose ('' = none).")

    def __init__(self, platform: Any, user: Any, dashboard: Dashboard, **params: Any):
        super().__init__(**params)
        self.platform, self.user, self.dashboard = platform, user, dashboard

    def devices(self, widget: WidgetModel) -> list:
        """The devices ``widget`` shows for this user: its alias resolved in the user's scope,
        narrowed to the selected device when the widget follows the selection."""
        from ..dashboards.aliases import resolve_alias  # the store helper's module (r-dashstore)

        alias = self.dashboard.aliases.get(widget.alias_id)
        devices = resolve_alias(self.platform.registry, self.user, alias) if alias else []
        if widget.follow_selection and self.selected_device:
            chosen = [d for d in devices if d.id == self.selected_device]
            return chosen or devices[:1]
        return devices

    def window(self, widget: WidgetModel) -> TimeWindow:
        return widget.window(self.dashboard.timewindow or TimeWindow())


def key_filter(text: str) -> tuple[str, Any, float | str]:
    """``"temperature > 20"`` → (key, operator, 20.0); InvalidInput for anything else."""
    m = _FILTER.match(text)
    if m is None:
        raise InvalidInput(f"key filter {text!r} is not 'key op value' (op: > >= < <= == !=)")
    key, op, raw = m.groups()
    try:
        value: float | str = float(raw)
    except ValueError:
        value = raw.strip("'\"")
    return key, _OPS[op], value


def matches(filters: list[str], values: dict[str, Any]) -> bool:
    """Whether ``values`` meet every key filter (a missing key never matches, as ThingsBoard)."""
    for text in filters:
        key, op, want = key_filter(text)
        have = values.get(key)
        if have is None:
            return False
        try:
            if not op(float(have) if isinstance(want, float) else str(have), want):
                return False
        except (TypeError, ValueError):
            return False
    return True


def display(value: Any, decimals: int | None = None) -> str:
    """A latest value as a card shows it."""
    if value is None:
        return "–"
    if isinstance(value, float) and decimals is not None and math.isfinite(value):
        return f"{value:.{decimals}f}"
    return str(value)


# --------------------------------------------------------------------------- data objects
@dataclass
class SeriesData:
    """A chart's read: one Snapshot per device (lines keyed ``(device, key)``) and the anomaly
    windows to shade."""

    start: int
    end: int
    snapshots: dict[str, Snapshot]
    names: dict[str, str]
    anomalies: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, device name)

    def lines(self) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        """``[(device name, key, ts, y)]`` in device then key order."""
        return [
            (self.names[dev], key, s.ts, s.y) for dev, snap in self.snapshots.items() for key, s in snap.series.items()
        ]


@dataclass
class LatestData:
    """Latest values per device: ``{device id: {key: value}}`` plus names and value times."""

    names: dict[str, str]
    values: dict[str, dict[str, Any]]
    times: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class MapData:
    """Per device: the route (lon, lat arrays in time order) and its latest position."""

    names: dict[str, str]
    routes: dict[str, tuple[list[float], list[float]]]


# --------------------------------------------------------------------------- readers
class WidgetReader:
    """The reads and live updates of one widget in one session (subclass per kind)."""

    def __init__(self, session: DashboardSession, widget: WidgetModel):
        self.session = session
        self.widget: Any = widget  # the kind's model (its own parameters are read by the subclass)
        self.platform, self.user = session.platform, session.user
        self.device_ids: list[str] = []

    def live_keys(self) -> set[str] | None:
        """The telemetry keys live points are wanted for: a set (empty: not live), or ``None``
        for every key of the widget's devices."""
        return set(self.widget.keys)

    def load(self, now: int) -> Any:
        """Blocking: the widget's data (run off the server loop)."""
        raise NotImplementedError

    def apply(self, data: Any, points: list) -> Any:
        """New stored points → what changed (``None``: nothing to redraw)."""
        return None

    def _devices(self) -> list:
        devices = self.session.devices(self.widget)
        self.device_ids = [d.id for d in devices]
        return devices


class SeriesReader(WidgetReader):
    """Time-series charts (and the anomaly score chart): one TelemetryQuery read per device."""

    def chart_keys(self) -> list[str]:
        return list(self.widget.keys)

    def live_keys(self) -> set[str] | None:
        return set(self.chart_keys())

    def load(self, now: int) -> SeriesData:
        window = self.session.window(self.widget)
        start, end = window.range(now)
        keys = self.chart_keys()
        snaps, names = {}, {}
        for device in self._devices():
            q = TelemetryQuery(
                self.platform,
                self.user,
                device=device.id,
                keys=keys,
                window="fixed",
                start=start,
                end=end,
                agg=window.agg,
                interval=window.interval_ms,
                max_points=window.limit,
            )
            snap = q.load(now)
            snap.live = window.realtime  # a sliding window takes every newer point
            snaps[device.id], names[device.id] = snap, device.name
        self._series = {dev: LiveSeries(s) for dev, s in snaps.items()}
        data = SeriesData(start, end, snaps, names)
        if getattr(self.widget, "show_anomalies", True):
            data.anomalies = self.anomaly_windows(snaps, names, start, end)
        return data

    def covering_models(self, device_type: str, keys: list[str]) -> list:
        """The user's tenant's models for ``device_type`` that cover one of ``keys``."""
        out = []
        for model in self.platform.anomaly.list_models(self.user.tenant_id):
            config = model.config
            if config.device_type and config.device_type != device_type:
                continue
            if not config.fields or set(config.fields) & set(keys):
                out.append(model)
        return out

    def anomaly_windows(self, snaps: dict, names: dict, start: int, end: int) -> list[tuple[int, int, str]]:
        devices = {d: self.platform.registry.get_device(d) for d in snaps}
        out = []
        for dev, device in devices.items():
            for model in self.covering_models(device.type, self.chart_keys()):
                for a in self.platform.anomaly.anomalies(model.id, items=[dev]):
                    if a["end_ts"] >= start and a["start_ts"] < end:
                        out.append((int(a["start_ts"]), int(a["end_ts"]), names[dev]))
        return out

    def apply(self, data: SeriesData, points: list) -> dict[tuple[str, str], Change] | None:
        """``{(device name, key): Change}`` for the lines that got new points."""
        out = {}
        for dev, live in getattr(self, "_series", {}).items():
            changes, _ = live.apply([p for p in points if p[0] == dev])
            for key, change in changes.items():
                out[(data.names[dev], key)] = change
        return out or None


class AnomalyReader(SeriesReader):
    """The saved anomaly score ``_EAD_<key>``, shaded where the models that save it found anomalies."""

    def chart_keys(self) -> list[str]:
        return [f"_EAD_{self.widget.score_key}"]

    def covering_models(self, device_type: str, keys: list[str]) -> list:
        widget: AnomalyChart = self.widget
        return [
            m
            for m in self.platform.anomaly.list_models(self.user.tenant_id)
            if m.config.telemetry_key == widget.score_key and m.config.device_type in ("", device_type)
        ]


class LatestReader(WidgetReader):
    """Latest telemetry and attribute values of the widget's devices (cards, gauge, markdown, table)."""

    def wanted(self) -> list[str] | None:
        return list(self.widget.keys) or None

    def live_keys(self) -> set[str] | None:
        wanted = self.wanted()
        return None if wanted is None else set(wanted)

    def load(self, now: int) -> LatestData:
        devices = self._devices()
        names = {d.id: d.name for d in devices}
        values: dict[str, dict[str, Any]] = {}
        times: dict[str, dict[str, int]] = {}
        keys = self.wanted()
        latest = self.platform.store.latest_many([d.id for d in devices], keys) if devices else {}
        attrs = (
            self.platform.registry.get_attributes_many(names, keys=self.widget.attribute_keys)
            if self.widget.attribute_keys and devices
            else {}
        )
        for d in devices:
            row: dict[str, Any] = {"name": d.name, "type": d.type, "label": d.label}
            when: dict[str, int] = {}
            for scope in (attrs.get(d.id) or {}).values():
                for key, (ts, _vtype, value) in scope.items():
                    row[key], when[key] = value, ts
            for key, (ts, _vtype, value) in (latest.get(d.id) or {}).items():
                row[key], when[key] = value, ts
            values[d.id], times[d.id] = row, when
        return LatestData(names, values, times)

    def apply(self, data: LatestData, points: list) -> set[str] | None:
        """Device ids whose shown values changed."""
        changed = set()
        wanted = set(self.wanted() or [])
        for entity, key, ts, _vtype, value in points:
            row = data.values.get(entity)
            if row is None or (wanted and key not in wanted):
                continue
            if ts >= data.times[entity].get(key, -1):
                row[key], data.times[entity][key] = value, ts
                changed.add(entity)
        return changed or None


class MarkdownReader(LatestReader):
    def wanted(self) -> list[str] | None:
        return sorted(set(re.findall(r"\$\{([\w.\-]+)\}", self.widget.text)) - {"name", "type", "label"}) or None


class TableReader(LatestReader):
    """The entities table: the latest values, rows filtered by the key filters."""

    def rows(self, data: LatestData) -> list[dict[str, Any]]:
        widget: EntitiesTable = self.widget
        keys = [*widget.keys, *widget.attribute_keys]
        out = []
        for dev, values in data.values.items():
            if widget.key_filters and not matches(widget.key_filters, values):
                continue
            out.append({"id": dev, "name": values["name"], **{k: display(values.get(k), 2) for k in keys}})
        return out


def render_markdown(text: str, values: dict[str, Any]) -> str:
    """``${key}`` → the value (``–`` when there is none); other ``$`` text stays."""

    class Values(dict):
        def __missing__(self, key: str) -> str:
            return "–"

    return string.Template(text).safe_substitute(Values({k: display(v, 2) for k, v in values.items()}))


class MapReader(WidgetReader):
    """Routes of lat/lon telemetry over the widget's time window."""

    def live_keys(self) -> set[str] | None:
        w: MapWidget = self.widget
        return {w.lat_key, w.lon_key}

    def load(self, now: int) -> MapData:
        w: MapWidget = self.widget
        start, end = self.session.window(w).range(now)
        names, routes = {}, {}
        self._pending: dict[str, dict[int, dict[str, float]]] = {}
        for d in self._devices():
            names[d.id] = d.name
            arrays = self.platform.store.numeric_arrays(d.id, [w.lat_key, w.lon_key], start, end)
            lat_ts, lat = arrays.get(w.lat_key, (np.empty(0, np.int64), np.empty(0)))
            lon_ts, lon = arrays.get(w.lon_key, (np.empty(0, np.int64), np.empty(0)))
            common, i, j = np.intersect1d(lat_ts, lon_ts, assume_unique=True, return_indices=True)
            if not w.show_routes and len(common):
                i, j = i[-1:], j[-1:]
            routes[d.id] = (lon[j].tolist(), lat[i].tolist())
            if not len(common):  # nothing in the window: where it was last seen
                last = self.platform.store.latest(d.id, [w.lat_key, w.lon_key])
                if w.lat_key in last and w.lon_key in last:
                    routes[d.id] = ([float(last[w.lon_key][2])], [float(last[w.lat_key][2])])
        return MapData(names, routes)

    def apply(self, data: MapData, points: list) -> set[str] | None:
        """A position is drawn once both its lat and lon (same ts) arrived."""
        w: MapWidget = self.widget
        changed = set()
        for entity, key, ts, vtype, value in points:
            if entity not in data.routes or vtype not in _NUMERIC:
                continue
            slot = self._pending.setdefault(entity, {}).setdefault(ts, {})
            slot[key] = float(value)
            if w.lat_key in slot and w.lon_key in slot:
                lon, lat = data.routes[entity]
                if not w.show_routes:
                    del lon[:], lat[:]
                lon.append(slot[w.lon_key])
                lat.append(slot[w.lat_key])
                del self._pending[entity][ts]
                changed.add(entity)
        return changed or None


@dataclass
class AlarmData:
    rows: list[dict[str, str]]
    total: int


class AlarmReader(WidgetReader):
    """The alarms of the widget's devices (newest first) and the ack / clear actions."""

    def live_keys(self) -> set[str] | None:
        return set()  # alarms follow AlarmService.changed, not telemetry

    def load(self, now: int) -> AlarmData:
        widget: AlarmTable = self.widget
        devices = self._devices()
        if not devices:
            return AlarmData([], 0)
        q = AlarmQuery(
            self.user.tenant_id,
            originators=[d.id for d in devices],
            search_status=widget.status,
            sort_property="createdTime",
            sort_order="DESC",
            page_size=200,
        )
        alarms, total = self.platform.alarms.query(self.user, q)
        return AlarmData([alarm_row(a) for a in alarms], total)

    def concerns(self, alarm: Any) -> bool:
        return alarm.originator_id in self.device_ids

    def act(self, action: str, alarm_id: str) -> None:
        """Ack or clear as the user (the alarm service checks the permission)."""
        if action not in ("ack", "clear"):
            raise ValueError(f"unknown alarm action {action!r}")
        getattr(self.platform.alarms, action)(self.user, alarm_id)


@dataclass
class ControlData:
    device_id: str
    device_name: str
    value: Any


class ControlReader(WidgetReader):
    """Switches and sliders: the shared attribute of the target device (the selected one, or
    the alias's first), and setting it as the user."""

    def live_keys(self) -> set[str] | None:
        return set()

    def load(self, now: int) -> ControlData:
        devices = self._devices()
        if not devices:
            return ControlData("", "", None)
        device = devices[0]
        attrs = self.platform.registry.get_attributes(device.id, SHARED_SCOPE, keys=[self.widget.attribute])
        return ControlData(device.id, device.name, attrs[0]["value"] if attrs else None)

    def set_value(self, device_id: str, value: Any, now: int) -> None:
        """Save the shared attribute (a device hears it over its transport's attribute push)."""
        if not device_id:
            raise NotFound("the widget has no device")
        device = self.platform.registry.check_device(self.user, device_id)
        require_attribute_access(self.user, device, SHARED_SCOPE, "write")
        point: tuple[int, str, int, Any] = (
            (now, self.widget.attribute, int(ValueType.BOOL), value)
            if isinstance(value, bool)
            else (now, self.widget.attribute, int(ValueType.DOUBLE), float(value))
        )
        self.platform.registry.save_attributes(device.id, SHARED_SCOPE, [point])


class RpcReader(ControlReader):
    """The RPC button: the target device, and an :class:`RpcConsole` to send with."""

    def load(self, now: int) -> ControlData:
        devices = self._devices()
        return ControlData(devices[0].id, devices[0].name, None) if devices else ControlData("", "", None)

    def console(self, device_id: str) -> RpcConsole:
        w: RpcButton = self.widget
        return RpcConsole(
            self.platform,
            self.user,
            device=device_id,
            method=w.method,
            params_text=w.params_text,
            two_way=w.two_way,
            timeout_ms=w.timeout_ms,
        )


READERS: dict[type[WidgetModel], type[WidgetReader]] = {
    TimeseriesChart: SeriesReader,
    AnomalyChart: AnomalyReader,
    LatestCard: LatestReader,
    Gauge: LatestReader,
    MarkdownCard: MarkdownReader,
    EntitiesTable: TableReader,
    MapWidget: MapReader,
    AlarmTable: AlarmReader,
    AttributeSwitch: ControlReader,
    AttributeSlider: ControlReader,
    RpcButton: RpcReader,
}


def reader_for(session: DashboardSession, widget: WidgetModel) -> WidgetReader:
    return READERS[type(widget)](session, widget)

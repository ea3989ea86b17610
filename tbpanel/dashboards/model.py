"""A dashboard as param objects: what the browser edits, a notebook builds and the store keeps.

The stored form is ThingsBoard's dashboard JSON (``/work/wt/DASHBOARD-CONTRACT.md``, what
ThingsBoard's UI exports); :meth:`Dashboard.to_json` and :meth:`Dashboard.from_json` convert
both ways and keep what they do not understand (ids, times, assigned customers, unknown keys)
so that a stored dashboard round-trips unchanged. Each widget kind is a :class:`WidgetModel`
subclass whose own parameters are its ``settings``: the page's settings drawer is generated
from them, so adding a parameter adds a field. Pure domain: no Panel, no storage.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any, ClassVar

import param

from ..clock import HOUR_MS
from ..store.aggregate import AGGS

#: the grid's width in cells (ThingsBoard's default ``gridSettings.columns``)
GRID_COLUMNS = 24
#: ThingsBoard's widget types (``type`` in the JSON) our kinds map onto
WIDGET_TYPES = ("timeseries", "latest", "rpc", "alarm", "static")
FQN_PREFIX = "tbpanel."


def new_id() -> str:
    return str(uuid.uuid4())


class TimeWindow(param.Parameterized):
    """ThingsBoard's time window: real time (the last ``last_ms``, sliding, live) or a fixed
    history range; raw or aggregated; shown in ``timezone``."""

    realtime = param.Boolean(default=True, doc="Real time (the last N, sliding, live) or a fixed history range.")
    last_ms = param.Integer(default=HOUR_MS, bounds=(1000, None), doc="Real time: how far back, in ms.")
    start_ms = param.Integer(default=None, allow_None=True, doc="History: range start, epoch ms.")
    end_ms = param.Integer(default=None, allow_None=True, doc="History: range end (exclusive), epoch ms.")
    agg: param.Selector[str] = param.Selector(default="NONE", objects=list(AGGS), doc="Aggregation function.")
    interval_ms = param.Integer(default=60_000, bounds=(1, None), doc="Bucket width when aggregating, ms.")
    limit = param.Integer(default=2000, bounds=(10, None), doc="Most points per line one read returns.")
    timezone = param.String(default="UTC", doc="IANA time zone the times are shown in.")

    def range(self, now: int) -> tuple[int, int]:
        """``(start, end)`` in epoch ms (end exclusive) at ``now``."""
        if self.realtime:
            return now - self.last_ms, now + 1
        if self.start_ms is None or self.end_ms is None or self.start_ms >= self.end_ms:
            raise ValueError("a history time window needs a start before its end")
        return int(self.start_ms), int(self.end_ms)

    def to_json(self) -> dict[str, Any]:
        history: dict[str, Any] = {"historyType": 1, "interval": self.interval_ms}
        if self.start_ms is not None and self.end_ms is not None:
            history["fixedTimewindow"] = {"startTimeMs": self.start_ms, "endTimeMs": self.end_ms}
        return {
            "selectedTab": 0 if self.realtime else 1,
            "realtime": {"timewindowMs": self.last_ms, "interval": self.interval_ms},
            "history": history,
            "aggregation": {"type": self.agg, "limit": self.limit},
            "timezone": self.timezone,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> TimeWindow:
        raw = raw or {}
        realtime = raw.get("realtime") or {}
        history = raw.get("history") or {}
        fixed = history.get("fixedTimewindow") or {}
        aggregation = raw.get("aggregation") or {}
        agg = aggregation.get("type", "NONE")
        return cls(
            realtime=raw.get("selectedTab", 0) != 1,
            last_ms=int(realtime.get("timewindowMs", HOUR_MS)),
            start_ms=fixed.get("startTimeMs"),
            end_ms=fixed.get("endTimeMs"),
            agg=agg if agg in AGGS else "NONE",
            interval_ms=int(realtime.get("interval") or history.get("interval") or 60_000),
            limit=int(aggregation.get("limit", 2000)),
            timezone=raw.get("timezone") or "UTC",
        )


class WidgetModel(param.Parameterized):
    """One widget's configuration. Subclasses are the kinds; their own parameters are the
    kind's ``settings`` (the settings drawer shows them after the common ones)."""

    kind: ClassVar[str] = ""
    widget_type: ClassVar[str] = "latest"
    #: default size in grid cells (sizeX, sizeY)
    default_size: ClassVar[tuple[int, int]] = (8, 6)

    id = param.String(default="", doc="Widget id (a uuid), unique in its dashboard.")
    title = param.String(default="", doc="Shown above the widget.")
    alias_id = param.String(default="", doc="The entity alias whose devices the widget shows.")
    keys = param.List(default=[], item_type=str, doc="Telemetry keys shown.")
    attribute_keys = param.List(default=[], item_type=str, doc="Attribute keys shown (latest values).")
    units = param.Dict(default={}, doc="Unit per key, {key: unit}.")
    follow_selection = param.Boolean(
        default=False, doc="Show only the dashboard's selected device (set by a click in an entities table)."
    )
    use_dashboard_timewindow = param.Boolean(default=True, doc="Use the dashboard's time window.")
    timewindow = param.ClassSelector(
        class_=TimeWindow, default=None, allow_None=True, doc="This widget's own window (when not the dashboard's)."
    )

    def __init__(self, **params: Any):
        params.setdefault("id", new_id())
        super().__init__(**params)
        self._extra: dict[str, Any] = {}  # config fields we do not interpret, kept for the round trip

    @classmethod
    def settings_names(cls) -> list[str]:
        """The kind's own parameters (its ``settings``), in declaration order."""
        common = set(WidgetModel.param)
        return [n for n in cls.param if n not in common]

    @classmethod
    def common_names(cls) -> list[str]:
        return [n for n in WidgetModel.param if n not in ("name", "id", "timewindow")]

    @property
    def fqn(self) -> str:
        return FQN_PREFIX + self.kind

    def settings(self) -> dict[str, Any]:
        return {n: copy.deepcopy(getattr(self, n)) for n in self.settings_names()}

    def to_json(self) -> dict[str, Any]:
        data_keys = [
            {"name": k, "type": "timeseries", "label": k, **({"units": self.units[k]} if k in self.units else {})}
            for k in self.keys
        ] + [
            {"name": k, "type": "attribute", "label": k, **({"units": self.units[k]} if k in self.units else {})}
            for k in self.attribute_keys
        ]
        config: dict[str, Any] = {
            **copy.deepcopy(self._extra),
            "title": self.title,
            "datasources": [{"type": "entity", "entityAliasId": self.alias_id or None, "dataKeys": data_keys}]
            if self.alias_id or data_keys
            else [],
            "useDashboardTimewindow": self.use_dashboard_timewindow,
            "settings": {"followSelection": self.follow_selection, **self.settings()},
        }
        if self.timewindow is not None:
            config["timewindow"] = self.timewindow.to_json()
        return {"id": self.id, "typeFullFqn": self.fqn, "type": self.widget_type, "config": config}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> WidgetModel:
        """The widget of a stored ``configuration.widgets`` entry (an unknown kind is refused)."""
        fqn = str(raw.get("typeFullFqn", ""))
        cls = WIDGET_KINDS.get(fqn.removeprefix(FQN_PREFIX))
        if cls is None:
            raise ValueError(f"unknown widget kind {fqn!r}")
        config = dict(raw.get("config") or {})
        keys: list[str] = []
        attrs: list[str] = []
        units: dict[str, str] = {}
        alias = ""
        for source in config.pop("datasources", None) or []:
            alias = alias or (source.get("entityAliasId") or "")
            for dk in source.get("dataKeys") or []:
                (attrs if dk.get("type") == "attribute" else keys).append(str(dk["name"]))
                if dk.get("units"):
                    units[str(dk["name"])] = str(dk["units"])
        settings = dict(config.pop("settings", None) or {})
        follow = bool(settings.pop("followSelection", False))
        own = {n: settings[n] for n in cls.settings_names() if n in settings}
        tw = config.pop("timewindow", None)
        widget = cls(
            id=str(raw.get("id") or new_id()),
            title=str(config.pop("title", "") or ""),
            alias_id=alias,
            keys=keys,
            attribute_keys=attrs,
            units=units,
            follow_selection=follow,
            use_dashboard_timewindow=bool(config.pop("useDashboardTimewindow", True)),
            timewindow=TimeWindow.from_json(tw) if tw else None,
            **own,
        )
        widget._extra = config
        return widget

    def window(self, dashboard: TimeWindow) -> TimeWindow:
        """The time window this widget reads: its own, or the dashboard's."""
        if self.use_dashboard_timewindow or self.timewindow is None:
            return dashboard
        return self.timewindow


# --------------------------------------------------------------------------- the kinds
class TimeseriesChart(WidgetModel):
    """Lines or bars of several keys of several devices; keys named in ``right_axis_keys`` on a
    second y axis; anomaly windows shaded where a model of the device's type covers the key."""

    kind = "timeseries_chart"
    widget_type = "timeseries"
    default_size = (12, 7)
    chart: param.Selector[str] = param.Selector(default="line", objects=["line", "bar"], doc="Line or bar chart.")
    right_axis_keys = param.List(default=[], item_type=str, doc="Keys drawn on a second (right) y axis.")
    show_anomalies = param.Boolean(default=True, doc="Shade anomaly windows of models that cover the keys.")


class LatestCard(WidgetModel):
    """The latest value of one key of one device, large."""

    kind = "latest_card"
    default_size = (4, 4)
    decimals = param.Integer(default=1, bounds=(0, 8), doc="Digits after the decimal point.")


class Gauge(WidgetModel):
    """The latest value of one key on a dial from ``low`` to ``high``."""

    kind = "gauge"
    default_size = (6, 6)
    low = param.Number(default=0.0, doc="Dial start.")
    high = param.Number(default=100.0, doc="Dial end.")
    decimals = param.Integer(default=1, bounds=(0, 8), doc="Digits after the decimal point.")


class EntitiesTable(WidgetModel):
    """A row per device with its latest values; ``key_filters`` ("temperature > 20") keep the
    rows that match all; a click on a row selects the device for the other widgets."""

    kind = "entities_table"
    default_size = (12, 6)
    key_filters = param.List(default=[], item_type=str, doc='Conditions "key op value" (op: > >= < <= == !=).')
    select_on_click = param.Boolean(default=True, doc="A click on a row selects its device.")


class AlarmTable(WidgetModel):
    """The alarms of the alias's devices, with ack / clear buttons."""

    kind = "alarm_table"
    widget_type = "alarm"
    default_size = (12, 6)
    status: param.Selector[str] = param.Selector(
        default="ANY", objects=["ANY", "ACTIVE", "CLEARED", "ACK", "UNACK"], doc="Which alarms are listed."
    )
    allow_actions = param.Boolean(default=True, doc="Offer ack and clear on each row.")


class AnomalyChart(WidgetModel):
    """The anomaly score a model saves (``_EAD_<key>``) for the alias's devices, with its
    anomaly windows shaded."""

    kind = "anomaly_chart"
    widget_type = "timeseries"
    default_size = (12, 6)
    score_key = param.String(default="anomaly", doc="The model's telemetry key: scores are _EAD_<key>.")


class MarkdownCard(WidgetModel):
    """Markdown text where ``${key}`` is the device's latest value of ``key``."""

    kind = "markdown_card"
    widget_type = "static"
    default_size = (6, 4)
    text = param.String(default="**${name}**", doc="Markdown; ${key} is replaced by the latest value.")


class MapWidget(WidgetModel):
    """Devices at their latest lat/lon and, optionally, the route of the time window, on plain
    axes (no tile server: the page works offline)."""

    kind = "map"
    widget_type = "timeseries"
    default_size = (12, 7)
    lat_key = param.String(default="latitude", doc="Telemetry key of the latitude.")
    lon_key = param.String(default="longitude", doc="Telemetry key of the longitude.")
    show_routes = param.Boolean(default=True, doc="Draw each device's route over the time window.")


class AttributeSwitch(WidgetModel):
    """A switch that sets a boolean shared attribute of the selected (or first) device."""

    kind = "attribute_switch"
    widget_type = "rpc"
    default_size = (4, 3)
    attribute = param.String(default="enabled", doc="Shared attribute the switch sets.")


class AttributeSlider(WidgetModel):
    """A slider that sets a numeric shared attribute of the selected (or first) device."""

    kind = "attribute_slider"
    widget_type = "rpc"
    default_size = (6, 3)
    attribute = param.String(default="setpoint", doc="Shared attribute the slider sets.")
    low = param.Number(default=0.0, doc="Slider start.")
    high = param.Number(default=100.0, doc="Slider end.")
    step = param.Number(default=1.0, bounds=(0, None), inclusive_bounds=(False, True), doc="Slider step.")


class RpcButton(WidgetModel):
    """A button that sends an RPC to the selected (or first) device."""

    kind = "rpc_button"
    widget_type = "rpc"
    default_size = (4, 3)
    method = param.String(default="reboot", doc="RPC method.")
    params_text = param.String(default="{}", doc="RPC params (JSON).")
    two_way = param.Boolean(default=False, doc="Wait for the device's answer.")
    timeout_ms = param.Integer(default=5000, bounds=(100, 600_000), doc="How long to wait, ms.")


#: kind name -> class, in the order the "add widget" menu lists them
WIDGET_KINDS: dict[str, type[WidgetModel]] = {
    cls.kind: cls
    for cls in (
        TimeseriesChart,
        LatestCard,
        Gauge,
        EntitiesTable,
        AlarmTable,
        AnomalyChart,
        MarkdownCard,
        MapWidget,
        AttributeSwitch,
        AttributeSlider,
        RpcButton,
    )
}


# --------------------------------------------------------------------------- states and layout
class Placement(param.Parameterized):
    """Where a widget sits in one state's grid (cells)."""

    row = param.Integer(default=0, bounds=(0, None))
    col = param.Integer(default=0, bounds=(0, GRID_COLUMNS - 1))
    size_x = param.Integer(default=8, bounds=(1, GRID_COLUMNS))
    size_y = param.Integer(default=6, bounds=(1, None))

    def to_json(self) -> dict[str, int]:
        return {"row": self.row, "col": self.col, "sizeX": self.size_x, "sizeY": self.size_y}

    def overlaps(self, other: Placement) -> bool:
        return not (
            self.col + self.size_x <= other.col
            or other.col + other.size_x <= self.col
            or self.row + self.size_y <= other.row
            or other.row + other.size_y <= self.row
        )


class State(param.Parameterized):
    """One page of a dashboard: its widgets' places on the grid."""

    id = param.String(default="default")
    title = param.String(default="Main", doc="Shown in the page's state tabs.")
    root = param.Boolean(default=False, doc="The state a dashboard opens in.")
    layout = param.Dict(default={}, doc="widget id -> Placement")
    columns = param.Integer(default=GRID_COLUMNS, bounds=(1, None))

    def place(self, widget_id: str, size: tuple[int, int], row: int | None = None, col: int | None = None) -> Placement:
        """Put a widget at (row, col), or at the first free spot scanning rows top-down."""
        sx, sy = min(size[0], self.columns), size[1]
        if row is not None and col is not None:
            spot = Placement(row=row, col=min(col, self.columns - sx), size_x=sx, size_y=sy)
        else:
            spot = self._free_spot(sx, sy)
        self.layout = {**self.layout, widget_id: spot}
        return spot

    def _free_spot(self, sx: int, sy: int) -> Placement:
        taken = list(self.layout.values())
        bottom = max((p.row + p.size_y for p in taken), default=0)
        for row in range(bottom + 1):
            for col in range(self.columns - sx + 1):
                spot = Placement(row=row, col=col, size_x=sx, size_y=sy)
                if not any(spot.overlaps(p) for p in taken):
                    return spot
        return Placement(row=bottom, col=0, size_x=sx, size_y=sy)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.title,
            "root": self.root,
            "layouts": {
                "main": {
                    "widgets": {wid: p.to_json() for wid, p in self.layout.items()},
                    "gridSettings": {"columns": self.columns},
                }
            },
        }

    @classmethod
    def from_json(cls, state_id: str, raw: dict[str, Any]) -> State:
        main = (raw.get("layouts") or {}).get("main") or {}
        columns = int((main.get("gridSettings") or {}).get("columns", GRID_COLUMNS))
        layout = {
            wid: Placement(
                row=int(p.get("row", 0)),
                col=min(int(p.get("col", 0)), columns - 1),
                size_x=min(int(p.get("sizeX", 8)), columns),
                size_y=int(p.get("sizeY", 6)),
            )
            for wid, p in (main.get("widgets") or {}).items()
        }
        return cls(
            id=state_id,
            title=str(raw.get("name", state_id)),
            root=bool(raw.get("root")),
            layout=layout,
            columns=columns,
        )


# --------------------------------------------------------------------------- the dashboard
#: top-level fields the model keeps as they came (ids, times, tenant, customers)
_KEPT = (
    "id",
    "createdTime",
    "tenantId",
    "assignedCustomers",
    "version",
    "externalId",
    "image",
    "mobileHide",
    "mobileOrder",
)


class Dashboard(param.Parameterized):
    """A dashboard: widgets, states (pages) with a grid each, entity aliases, a time window."""

    title = param.String(default="Dashboard")
    description = param.String(default="")
    widgets = param.Dict(default={}, doc="widget id -> WidgetModel")
    states = param.Dict(default={}, doc="state id -> State (insertion order = tab order)")
    aliases = param.Dict(default={}, doc="alias id -> ThingsBoard entity alias {id, alias, filter}")
    timewindow = param.ClassSelector(class_=TimeWindow, default=None, allow_None=True)
    settings = param.Dict(default={}, doc="Dashboard settings we keep but do not interpret.")

    def __init__(self, **params: Any):
        params.setdefault("timewindow", TimeWindow())
        super().__init__(**params)
        if not self.states:
            self.states = {"default": State(id="default", title=self.title or "Main", root=True)}
        self._kept: dict[str, Any] = {}
        self._extra_config: dict[str, Any] = {}

    # -- identity (from the store) ---------------------------------------------------------------
    @property
    def id(self) -> str | None:
        """The stored dashboard's id (None until saved)."""
        ident = self._kept.get("id")
        return ident.get("id") if isinstance(ident, dict) else None

    def adopt(self, stored: dict[str, Any]) -> None:
        """Take the store's answer to a save: its id, times, tenant and customers."""
        self._kept = {k: copy.deepcopy(stored[k]) for k in _KEPT if k in stored}

    # -- states ----------------------------------------------------------------------------------
    @property
    def root_state(self) -> State:
        return next((s for s in self.states.values() if s.root), next(iter(self.states.values())))

    def state(self, state_id: str | None = None) -> State:
        return self.root_state if state_id is None else self.states[state_id]

    def add_state(self, title: str) -> State:
        state = State(id=new_id()[:8], title=title)
        self.states = {**self.states, state.id: state}
        return state

    def remove_state(self, state_id: str) -> None:
        if len(self.states) == 1:
            raise ValueError("a dashboard keeps at least one state")
        gone = self.states[state_id]
        rest = {k: v for k, v in self.states.items() if k != state_id}
        if gone.root:
            next(iter(rest.values())).root = True
        self.states = rest
        used = {w for s in rest.values() for w in s.layout}
        self.widgets = {k: v for k, v in self.widgets.items() if k in used}

    # -- aliases ---------------------------------------------------------------------------------
    def add_alias(self, name: str, filter: dict[str, Any]) -> str:
        """A ThingsBoard entity alias (``filter`` in ThingsBoard's form); returns its id. An
        alias of the same name and filter is reused."""
        for alias_id, alias in self.aliases.items():
            if alias.get("alias") == name and alias.get("filter") == filter:
                return alias_id
        alias_id = new_id()
        self.aliases = {**self.aliases, alias_id: {"id": alias_id, "alias": name, "filter": copy.deepcopy(filter)}}
        return alias_id

    def device_alias(self, device_id: str, name: str = "") -> str:
        return self.add_alias(
            name or f"device {device_id[:8]}",
            {
                "type": "singleEntity",
                "singleEntity": {"entityType": "DEVICE", "id": device_id},
                "resolveMultiple": False,
            },
        )

    def device_type_alias(self, device_type: str, name: str = "") -> str:
        return self.add_alias(
            name or f"all {device_type}s",
            {"type": "deviceType", "deviceTypes": [device_type], "deviceNameFilter": "", "resolveMultiple": True},
        )

    # -- widgets ---------------------------------------------------------------------------------
    def add_widget(
        self,
        widget: WidgetModel,
        state_id: str | None = None,
        *,
        row: int | None = None,
        col: int | None = None,
        size: tuple[int, int] | None = None,
    ) -> WidgetModel:
        """Add ``widget`` to a state (the root one by default), at (row, col) or the first free spot."""
        state = self.state(state_id)
        self.widgets = {**self.widgets, widget.id: widget}
        state.place(widget.id, size or widget.default_size, row, col)
        state.param.trigger("layout")
        return widget

    def remove_widget(self, widget_id: str) -> None:
        for state in self.states.values():
            if widget_id in state.layout:
                state.layout = {k: v for k, v in state.layout.items() if k != widget_id}
        self.widgets = {k: v for k, v in self.widgets.items() if k != widget_id}

    def move_widget(
        self, widget_id: str, row: int, col: int, size_x: int, size_y: int, state_id: str | None = None
    ) -> None:
        state = self.state(state_id)
        if widget_id not in state.layout:
            raise KeyError(widget_id)
        state.place(widget_id, (size_x, size_y), row, col)

    def widgets_of(self, state_id: str | None = None) -> list[tuple[WidgetModel, Placement]]:
        """The widgets of a state with their places, top-left first."""
        state = self.state(state_id)
        out = [(self.widgets[w], p) for w, p in state.layout.items() if w in self.widgets]
        return sorted(out, key=lambda wp: (wp[1].row, wp[1].col))

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """ThingsBoard's dashboard JSON (what ``DashboardStore.save`` takes)."""
        timewindow = self.timewindow or TimeWindow()
        return {
            **copy.deepcopy(self._kept),
            "title": self.title,
            "configuration": {
                **copy.deepcopy(self._extra_config),
                "description": self.description,
                "widgets": {wid: w.to_json() for wid, w in self.widgets.items()},
                "states": {sid: s.to_json() for sid, s in self.states.items()},
                "entityAliases": copy.deepcopy(self.aliases),
                "timewindow": timewindow.to_json(),
                "settings": copy.deepcopy(self.settings),
            },
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Dashboard:
        config = dict(body.get("configuration") or {})
        widgets = {}
        for wid, raw in (config.pop("widgets", None) or {}).items():
            widget = WidgetModel.from_json({**raw, "id": raw.get("id") or wid})
            widgets[widget.id] = widget
        states = {sid: State.from_json(sid, raw) for sid, raw in (config.pop("states", None) or {}).items()}
        dash = cls(
            title=str(body.get("title", "")),
            description=str(config.pop("description", "") or ""),
            widgets=widgets,
            states=states,
            aliases=copy.deepcopy(config.pop("entityAliases", None) or {}),
            timewindow=TimeWindow.from_json(config.pop("timewindow", None)),
            settings=copy.deepcopy(config.pop("settings", None) or {}),
        )
        dash.adopt(body)
        dash._extra_config = copy.deepcopy(config)
        return dash

    def copy(self) -> Dashboard:
        """An independent copy (the editor's undo snapshots)."""
        return Dashboard.from_json(self.to_json())

"""The dashboard widgets drawn: one ``pn.viewable.Viewer`` per kind over its param model.

Each view draws what its :class:`~tbpanel.views.dashboard_widgets.WidgetReader` read (the
read runs on the platform's pool through :class:`~tbpanel.ui.background.Background`, so a
slow widget never holds the page or the other widgets) and applies live points handed to it
by the dashboard's one :class:`~tbpanel.ui.live_sink.DocumentSink` (on the session's
document): charts stream only the new rows into their ``ColumnDataSource`` (as the telemetry
page), cards and tables redraw the values that changed.
"""

from __future__ import annotations

import contextlib
import html
import logging
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import (
    ColumnDataSource,
    DataRange1d,
    HoverTool,
    Line,
    LinearAxis,
    Quad,
    Scatter,
    VBar,
)
from bokeh.models.annotations import Legend, LegendItem
from bokeh.models.renderers import GlyphRenderer
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from bokeh.transform import dodge
from panel.io.document import hold

from ..clock import now_ms, zone
from ..dashboards.model import WidgetModel
from ..errors import EntityError
from ..views.dashboard_widgets import (
    AlarmData,
    AlarmReader,
    ControlData,
    ControlReader,
    LatestData,
    MapData,
    RpcReader,
    SeriesData,
    TableReader,
    WidgetReader,
    display,
    render_markdown,
)
from .alarms import BUTTONS
from .background import Background
from .telemetry import ROLLOVER

log = logging.getLogger("tbpanel.ui")
_ACTIONS = ("ack", "clear")
#: most legend entries one per line; beyond, one entry stands for all the lines
LEGEND_MAX = 10


def held(model: Any) -> contextlib.AbstractContextManager:
    """Changes to a drawn Bokeh model sent as one combined patch and its document's model
    graph recomputed once: added one at a time, each renderer and legend entry recomputed
    the whole graph and sent a patch (100 lines: 35 s in-process, minutes in the browser)."""
    doc = model.document
    return hold(doc, freeze=True) if doc is not None else contextlib.nullcontext()


def legend_items(entries: list[tuple[str, Any]], what: str = "lines") -> list[LegendItem]:
    """One entry per ``(label, renderer)`` up to :data:`LEGEND_MAX`; beyond, one entry
    ("100 lines") for all of them (a click still hides them), as 100 entries would cover the plot."""
    if len(entries) <= LEGEND_MAX:
        return [LegendItem(label=label, renderers=[r]) for label, r in entries]
    return [LegendItem(label=f"{len(entries)} {what}", renderers=[r for _, r in entries])]


def tz_offset_ms(tz: str, at_ms: int) -> int:
    """How far ``tz`` is ahead of UTC at ``at_ms`` (Bokeh's datetime axis draws UTC, so
    shifted times read as the dashboard's zone)."""
    try:
        offset = pd.Timestamp(at_ms, unit="ms", tz="UTC").tz_convert(zone(tz)).utcoffset()
    except Exception:
        return 0
    return int(offset.total_seconds() * 1000) if offset is not None else 0


class WidgetView(pn.viewable.Viewer):
    """A widget's frame (title, status line) around its kind's body; reads and live points."""

    widget: Any = param.ClassSelector(class_=WidgetModel, doc="The widget's model (required).")

    def __init__(self, reader: WidgetReader, background: Background, **params: Any):
        params.setdefault("widget", reader.widget)
        super().__init__(**params)
        self.reader, self.bg = reader, background
        self.data: Any = None
        self._stash: list = []
        self._title = pn.pane.HTML("", css_classes=["widget-title"], margin=(2, 8), sizing_mode="stretch_width")
        self._status = pn.pane.HTML("", css_classes=["widget-status"], margin=(0, 8), styles={"color": "#a33"})
        self.body = self.make_body()
        self._frame = pn.Column(
            self._title,
            self._status,
            self.body,
            sizing_mode="stretch_both",
            css_classes=["dash-widget", f"kind-{self.widget.kind}", f"w-{self.widget.id}"],
            styles={"background": "white", "border": "1px solid #dde2e8", "border-radius": "4px"},
            margin=4,
        )
        self._retitle()

    def _retitle(self) -> None:
        self._title.object = f"<b>{html.escape(self.widget.title or self.widget.kind.replace('_', ' '))}</b>"

    def make_body(self) -> Any:
        raise NotImplementedError

    def __panel__(self) -> Any:
        return self._frame

    # -- reads -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read again (off the loop); live points arriving meanwhile wait for the result."""
        self._retitle()
        self.data = None

        def failed(exc: Exception) -> None:
            self._status.object = html.escape(str(exc))
            log.info("dashboard widget %s failed: %s", self.widget.id, exc)

        self.bg.run(f"widget-{self.widget.id}", lambda: self.reader.load(now_ms()), self._loaded, failed)

    def _loaded(self, data: Any) -> None:
        self._status.object = ""
        self.data = data
        self.draw(data)
        stash, self._stash = self._stash, []
        if stash:
            self.on_points(stash)

    def draw(self, data: Any) -> None:
        raise NotImplementedError

    # -- live (on the document) --------------------------------------------------------------
    def on_points(self, points: list) -> None:
        if self.data is None:
            self._stash.extend(points)
            return
        changed = self.reader.apply(self.data, points)
        if changed:
            self.redraw(changed)

    def redraw(self, changed: Any) -> None:
        self.draw(self.data)


class ChartView(WidgetView):
    """Lines or bars per (device, key); a second y axis; anomaly windows shaded."""

    def make_body(self) -> Any:
        self._fig: Any = figure(
            x_axis_type="datetime",
            sizing_mode="stretch_both",
            tools="pan,xwheel_zoom,box_zoom,reset",
            toolbar_location="right",
            name="dashboard-chart",
            min_height=120,
        )
        self._fig.extra_y_ranges = {"right": DataRange1d()}
        self._fig.add_layout(LinearAxis(y_range_name="right", visible=False), "right")
        self._fig.add_tools(
            HoverTool(
                tooltips=[("line", "$name"), ("time", "@ts{%F %T}"), ("value", "@y")], formatters={"@ts": "datetime"}
            )
        )
        self._legend = Legend(click_policy="hide", label_text_font_size="8pt")
        self._fig.add_layout(self._legend)
        self._cds: dict[tuple[str, str], ColumnDataSource] = {}
        self._shade = ColumnDataSource(data={"left": [], "right": []}, name=f"anomalies:{self.widget.id}")
        self._offset = 0
        return pn.pane.Bokeh(self._fig, sizing_mode="stretch_both")

    def draw(self, data: SeriesData) -> None:
        with held(self._fig):
            self._draw(data)

    def _draw(self, data: SeriesData) -> None:
        """The renderers built apart and given to the figure at once (see :func:`held`)."""
        fig, w = self._fig, self.widget
        tz = self.reader.session.window(w).timezone
        self._offset = tz_offset_ms(tz, data.end)
        fig.xaxis.axis_label = f"time ({tz})"
        right = set(getattr(w, "right_axis_keys", []))
        fig.right[0].visible = bool(right)
        self._shade.data = {
            "left": [a[0] + self._offset for a in data.anomalies],
            "right": [a[1] + self._offset for a in data.anomalies],
        }
        shade = GlyphRenderer(
            data_source=self._shade,
            glyph=Quad(left="left", right="right", bottom=-1e15, top=1e15, fill_color="#e8590c", fill_alpha=0.15, line_alpha=0),
            name="anomaly",
        )  # fmt: skip
        main: list[Any] = []
        other: list[Any] = []
        entries: list[tuple[str, Any]] = []
        lines = data.lines()
        bars = getattr(w, "chart", "line") == "bar"
        for i, (device, key, ts, y) in enumerate(lines):
            src = self._cds.get((device, key))
            if src is None:
                src = self._cds[(device, key)] = ColumnDataSource(
                    data={"ts": [], "y": []}, name=f"line:{self.widget.id}:{device}:{key}"
                )
            src.data = {"ts": np.asarray(ts) + self._offset, "y": y}
            colour = Category10_10[i % len(Category10_10)]
            label = f"{device} · {key}"
            glyph: Any
            if bars:  # the lines' bars side by side in each slot
                slot = (data.end - data.start) / max(len(ts), 1)
                n = len(lines)
                glyph = VBar(
                    x=dodge("ts", (i - (n - 1) / 2) * slot * 0.8 / n),
                    top="y",
                    width=slot * 0.8 / n,
                    fill_color=colour,
                    line_color=colour,
                )
            else:
                glyph = Line(x="ts", y="y", line_color=colour, line_width=1.6)
            r = GlyphRenderer(
                data_source=src, glyph=glyph, name=label, y_range_name="right" if key in right else "default"
            )
            (other if key in right else main).append(r)
            entries.append((label, r))
        fig.renderers = [shade, *main, *other]
        self._legend.items = legend_items(entries)
        fig.y_range.renderers = main or "auto"  # the shading never stretches the axes
        fig.extra_y_ranges["right"].renderers = other or "auto"
        fig.x_range.start, fig.x_range.end = data.start + self._offset, data.end + self._offset

    def redraw(self, changed: dict) -> None:
        for line, change in changed.items():
            src = self._cds.get(line)
            if src is None:
                continue
            if change.replace_last is not None and len(src.data["ts"]):
                i = len(src.data["ts"]) - 1
                src.patch({"ts": [(i, change.replace_last[0] + self._offset)], "y": [(i, change.replace_last[1])]})
            if change.ts:
                src.stream({"ts": [t + self._offset for t in change.ts], "y": change.y}, rollover=ROLLOVER)

    def slide(self, now: int) -> None:
        """A real-time window follows the clock."""
        window = self.reader.session.window(self.widget)
        if window.realtime and self.data is not None:
            self._fig.x_range.start, self._fig.x_range.end = now - window.last_ms + self._offset, now + self._offset


class CardView(WidgetView):
    """The latest value of the first key of the first device, large."""

    def make_body(self) -> Any:
        return pn.pane.HTML("", css_classes=["card-value"], sizing_mode="stretch_both")

    def draw(self, data: LatestData) -> None:
        w = self.widget
        key = (w.keys or w.attribute_keys or [""])[0]
        dev = next(iter(data.values), None)
        value = data.values[dev].get(key) if dev else None
        unit = w.units.get(key, "")
        who = html.escape(data.names.get(dev, "no device")) if dev else "no device"
        self.body.object = (
            f'<div style="font-size:2.2em;font-weight:600" class="value">{html.escape(display(value, w.decimals))}'
            f'<span style="font-size:0.5em;color:#667"> {html.escape(unit)}</span></div>'
            f'<div style="color:#667">{who} · {html.escape(key)}</div>'
        )


class GaugeView(WidgetView):
    def make_body(self) -> Any:
        w = self.widget
        return pn.indicators.Gauge(
            name=(w.keys or [""])[0], value=w.low, bounds=(w.low, w.high), format="{value}", sizing_mode="stretch_both"
        )

    def draw(self, data: LatestData) -> None:
        w = self.widget
        key = (w.keys or [""])[0]
        dev = next(iter(data.values), None)
        value = data.values[dev].get(key) if dev else None
        self.body.bounds = (w.low, w.high)
        self.body.name = f"{data.names.get(dev, '')} {key}".strip() if dev else key
        unit = w.units.get(key, "")
        self.body.format = "{value}" + (f" {unit}" if unit else "")
        if isinstance(value, (int, float)):
            self.body.value = round(min(max(float(value), w.low), w.high), w.decimals)


class MarkdownView(WidgetView):
    def make_body(self) -> Any:
        return pn.pane.Markdown("", sizing_mode="stretch_both", css_classes=["markdown-card"])

    def draw(self, data: LatestData) -> None:
        dev = next(iter(data.values), None)
        self.body.object = render_markdown(self.widget.text, data.values[dev] if dev else {})


class TableView(WidgetView):
    """A row per device; a click selects the device for the widgets that follow the selection."""

    reader: TableReader

    def make_body(self) -> Any:
        table = pn.widgets.Tabulator(
            pd.DataFrame(columns=["id", "name"]),
            show_index=False,
            disabled=True,
            hidden_columns=["id"],
            sizing_mode="stretch_both",
            pagination=None,
            css_classes=["entities-table"],
        )
        table.on_click(self._on_click)
        return table

    def draw(self, data: LatestData) -> None:
        w = self.widget
        cols = ["id", "name", *w.keys, *w.attribute_keys]
        self.body.value = pd.DataFrame(self.reader.rows(data), columns=cols)

    def _on_click(self, event: Any) -> None:
        if self.widget.select_on_click and self.body.value is not None and event.row is not None:
            self.reader.session.selected_device = str(self.body.value.iloc[event.row]["id"])


class AlarmTableView(WidgetView):
    reader: AlarmReader

    def make_body(self) -> Any:
        table = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            hidden_columns=["id", "review", "model", "end"],
            sizing_mode="stretch_both",
            pagination=None,
            formatters={a: {"type": "html"} for a in _ACTIONS},
            css_classes=["alarm-widget-table"],
        )
        table.on_click(self._on_click)
        return table

    def draw(self, data: AlarmData) -> None:
        frame = pd.DataFrame(data.rows)
        if self.widget.allow_actions and len(frame):
            frame = frame.assign(**{a: [BUTTONS[a]] * len(frame) for a in _ACTIONS})
        self.body.value = frame

    def _on_click(self, event: Any) -> None:
        if event.column not in _ACTIONS:
            return
        alarm_id = self.body.value.iloc[event.row]["id"]

        def refused(exc: Exception) -> None:
            if not isinstance(exc, EntityError):
                raise exc
            self._status.object = html.escape(str(exc))

        self.bg.run(
            f"alarm-{alarm_id}", lambda: self.reader.act(event.column, alarm_id), lambda _: self.refresh(), refused
        )


class MapView(WidgetView):
    """Routes (lines) and latest positions (dots) on plain lon/lat axes: no tiles, offline."""

    def make_body(self) -> Any:
        self._fig = figure(
            sizing_mode="stretch_both",
            tools="pan,wheel_zoom,reset",
            match_aspect=True,
            name="dashboard-map",
            min_height=120,
        )
        self._fig.xaxis.axis_label, self._fig.yaxis.axis_label = "longitude", "latitude"
        self._legend = Legend()
        self._fig.add_layout(self._legend)
        self._cds: dict[str, tuple[ColumnDataSource, ColumnDataSource]] = {}
        return pn.pane.Bokeh(self._fig, sizing_mode="stretch_both")

    def draw(self, data: MapData) -> None:
        with held(self._fig):
            self._draw(data)

    def _draw(self, data: MapData) -> None:
        renderers: list[Any] = []
        entries: list[tuple[str, Any]] = []
        for i, (dev, (lon, lat)) in enumerate(data.routes.items()):
            name = data.names[dev]
            if dev not in self._cds:
                self._cds[dev] = (
                    ColumnDataSource(data={"x": [], "y": []}, name=f"route:{self.widget.id}:{name}"),
                    ColumnDataSource(data={"x": [], "y": []}, name=f"position:{self.widget.id}:{name}"),
                )
            route, pos = self._cds[dev]
            route.data = {"x": list(lon), "y": list(lat)}
            pos.data = {"x": lon[-1:], "y": lat[-1:]}
            colour = Category10_10[i % len(Category10_10)]
            dot = GlyphRenderer(
                data_source=pos, glyph=Scatter(x="x", y="y", fill_color=colour, line_color=colour, size=10), name=name
            )
            line = GlyphRenderer(
                data_source=route, glyph=Line(x="x", y="y", line_color=colour, line_width=1.5), name=name
            )
            renderers += [line, dot]
            entries.append((name, dot))
        self._fig.renderers = renderers
        self._legend.items = legend_items(entries, "devices")

    def redraw(self, changed: set[str]) -> None:
        for dev in changed:
            lon, lat = self.data.routes[dev]
            route, pos = self._cds[dev]
            route.data = {"x": list(lon), "y": list(lat)}
            pos.data = {"x": lon[-1:], "y": lat[-1:]}


class SwitchView(WidgetView):
    """Sets a boolean shared attribute of the target device."""

    reader: ControlReader

    def make_body(self) -> Any:
        self._device = pn.pane.HTML("", margin=(0, 8))
        self._switch: Any = pn.widgets.Switch(value=False, css_classes=["attribute-switch"], margin=(4, 8))
        self._switch.param.watch(self._on_change, "value")
        return pn.Column(self._device, self._switch, sizing_mode="stretch_width")

    def draw(self, data: ControlData) -> None:
        self._device.object = (
            f"{html.escape(data.device_name or 'no device')} · <code>{html.escape(self.widget.attribute)}</code>"
        )
        self._applying = True
        try:
            self._switch.value = bool(data.value)
        finally:
            self._applying = False

    def _on_change(self, event: Any) -> None:
        if getattr(self, "_applying", False) or self.data is None:
            return
        self._set(event.new)

    def _set(self, value: Any) -> None:
        data: ControlData = self.data

        def done(_: Any) -> None:
            data.value = value
            self._status.object = ""

        def refused(exc: Exception) -> None:
            if not isinstance(exc, EntityError):
                raise exc
            self._status.object = html.escape(str(exc))

        self.bg.run(
            f"set-{self.widget.id}", lambda: self.reader.set_value(data.device_id, value, now_ms()), done, refused
        )


class SliderView(SwitchView):
    def make_body(self) -> Any:
        w = self.widget
        self._device = pn.pane.HTML("", margin=(0, 8))
        self._switch = pn.widgets.FloatSlider(
            start=w.low,
            end=w.high,
            step=w.step,
            value=w.low,
            css_classes=["attribute-slider"],
            sizing_mode="stretch_width",
        )
        self._switch.param.watch(self._on_change, "value_throttled")
        return pn.Column(self._device, self._switch, sizing_mode="stretch_width")

    def draw(self, data: ControlData) -> None:
        w = self.widget
        self._device.object = (
            f"{html.escape(data.device_name or 'no device')} · <code>{html.escape(w.attribute)}</code>"
        )
        self._applying = True
        try:
            self._switch.param.update(start=w.low, end=w.high, step=w.step)
            if isinstance(data.value, (int, float)):
                self._switch.value = min(max(float(data.value), w.low), w.high)
        finally:
            self._applying = False


class RpcButtonView(WidgetView):
    """Sends the widget's RPC to the target device and shows how it ended."""

    reader: RpcReader

    def make_body(self) -> Any:
        self._button = pn.widgets.Button(name=self.widget.method, button_type="primary", css_classes=["rpc-button"])
        self._button.on_click(self._send)
        self._answer = pn.pane.HTML("", css_classes=["rpc-answer"], margin=(0, 8))
        return pn.Column(self._button, self._answer, sizing_mode="stretch_width")

    def draw(self, data: ControlData) -> None:
        self._button.name = f"{self.widget.method} → {data.device_name or 'no device'}"
        self._button.disabled = not data.device_id

    def _send(self, _: Any) -> None:
        data: ControlData = self.data
        if data is None or not data.device_id:
            return
        console = self.reader.console(data.device_id)
        self._answer.object = "sending…"

        def sent(call: Any) -> None:
            console.when_done(call, lambda: self.bg.on_document(lambda: self._ended(console, call)))

        def refused(exc: Exception) -> None:
            if not isinstance(exc, EntityError):
                raise exc
            self._answer.object = html.escape(str(exc))

        self.bg.run(f"rpc-{self.widget.id}", console.submit, sent, refused)

    def _ended(self, console: Any, call: Any) -> None:
        status, text = console.outcome(call)
        self._answer.object = f"<b>{html.escape(status)}</b> {html.escape(text[:200])}"


VIEWS: dict[str, type[WidgetView]] = {
    "timeseries_chart": ChartView,
    "anomaly_chart": ChartView,
    "latest_card": CardView,
    "gauge": GaugeView,
    "markdown_card": MarkdownView,
    "entities_table": TableView,
    "alarm_table": AlarmTableView,
    "map": MapView,
    "attribute_switch": SwitchView,
    "attribute_slider": SliderView,
    "rpc_button": RpcButtonView,
}


def widget_view(reader: WidgetReader, background: Background) -> WidgetView:
    return VIEWS[reader.widget.kind](reader, background)

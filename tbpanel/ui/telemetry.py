"""The ``/telemetry`` page: pick a device and keys, watch them live.

The plot is one Bokeh figure per unit (keys of the same unit, or of the same scale where no
unit is known, share one; every figure is named ``telemetry-plot``, the x range is shared), with
one ``ColumnDataSource`` per key (named ``series:<key>``).
A read (:meth:`TelemetryQuery.load`, on the platform's thread pool) fills them once; after
that, points arrive from the live hub through this session's :class:`DocumentSink` and only
the new rows are streamed (``cds.stream(..., rollover=ROLLOVER)``) or the open bucket patched.
Nothing polls the database: the one-second tick only re-renders ages and slides the window.
"""

from __future__ import annotations

import asyncio
import html

import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool, Range1d
from bokeh.models.annotations import Legend
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from panel.io.state import set_curdoc

from ..clock import duration_text, from_datetime, naive_utc
from ..errors import EntityError
from ..live import LiveHub
from ..views.telemetry import (
    AGGS,
    WINDOWS,
    LiveSeries,
    Snapshot,
    TelemetryQuery,
    default_keys,
    latest_rows,
    now_ms,
    plot_groups,
)
from .layout import page_template
from .live_sink import DocumentSink

ROLLOVER = 5000  # rows kept per line in the browser, however long a page stays open
PLOT_HEIGHT = 560  # the plots share this height (about the pickers' column), each at least MIN_SUBPLOT
MIN_SUBPLOT = 190
MAX_DEFAULT_KEYS = 4
PICKER_LIMIT = 50  # devices listed at once; the search narrows a fleet of any size to these
WINDOW_LABELS = {"5 min": "5m", "1 hour": "1h", "1 day": "1d", "Fixed": "fixed"}
INTERVAL_LABELS = {
    "1 s": 1_000,
    "10 s": 10_000,
    "1 min": 60_000,
    "5 min": 300_000,
    "1 h": 3_600_000,
    "1 day": 86_400_000,
}
_PICK = "— pick a device —"

_TABLE_CSS = """
table.latest { border-collapse: collapse; width: 100%; font-size: 13px; }
table.latest th, table.latest td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ea; }
table.latest th { color: #556; font-weight: 600; }
table.latest td.value { font-variant-numeric: tabular-nums; font-weight: 600; }
"""


class TelemetryView(pn.viewable.Viewer):
    """Device and key pickers, window and aggregation, a live plot and a latest-values table."""

    query: param.ClassSelector[TelemetryQuery] = param.ClassSelector(class_=TelemetryQuery)  # type: ignore[assignment]  # required, never None
    live = param.ClassSelector(
        class_=LiveHub, default=None, allow_None=True, doc="The server's fan-out hub; without it the page is static."
    )
    tick_ms = param.Integer(default=1000, bounds=(100, None), doc="How often ages are re-rendered.")

    def __init__(self, **params):
        super().__init__(**params)
        q = self.query
        self._doc = None
        self._sink: DocumentSink | None = None
        self._series: LiveSeries | None = None
        self._sources: dict[str, ColumnDataSource] = {}  # the keys plotted now
        self._cds: dict[str, ColumnDataSource] = {}  # one per key, reused across reloads
        self._x_range = Range1d(0, 1)  # shared by every subplot
        self._figures: list = []  # one per unit shown, reused across reloads
        self._panes: list[pn.pane.Bokeh] = []
        self._subplot(0)
        self._stash: list = []
        self._gen = 0
        self._reload_pending = False
        self._started = False
        self._current = None  # the chosen device's entity, once the user may read it
        self._search = pn.widgets.TextInput(
            name="Device", placeholder="search by name or label…", width=280, css_classes=["device-search"]
        )
        self._matches = pn.pane.Markdown(
            "", styles={"color": "#667", "font-size": "12px"}, margin=(0, 10), css_classes=["device-matches"]
        )
        self._device = pn.widgets.Select(
            name="", options=self._device_options(""), width=280, css_classes=["device-select"]
        )
        self._keys = pn.widgets.CheckButtonGroup(
            name="Keys",
            options=[],
            button_type="primary",
            button_style="outline",
            orientation="vertical",
            width=280,
            css_classes=["key-buttons"],
        )
        self._window = pn.widgets.RadioButtonGroup(
            name="Time window",
            options=WINDOW_LABELS,
            value=q.window,
            button_type="primary",
            button_style="outline",
            width=280,
            css_classes=["window-buttons"],
        )
        self._range = pn.widgets.DatetimeRangePicker(
            name="Range (UTC)", width=280, visible=False, css_classes=["range-picker"]
        )
        self._agg = pn.widgets.Select(
            name="Aggregation", options=list(AGGS), value=q.agg, width=135, css_classes=["agg-select"]
        )
        self._interval = pn.widgets.Select(
            name="Interval",
            options=INTERVAL_LABELS,
            width=135,
            css_classes=["interval-select"],
            value=q.interval if q.interval in INTERVAL_LABELS.values() else 60_000,
        )
        self._status = pn.pane.Alert(
            "", alert_type="warning", visible=False, sizing_mode="stretch_width", css_classes=["status"]
        )
        self._notes = pn.pane.Markdown("", styles={"color": "#667", "font-size": "12px"})
        self._plot_box = pn.Column(self._panes[0], sizing_mode="stretch_width", margin=0)
        self._latest = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[_TABLE_CSS])

        self._search.param.watch(self._on_search, "value_input")
        self._device.param.watch(lambda e: setattr(q, "device", e.new or ""), "value")
        self._keys.param.watch(lambda e: setattr(q, "keys", list(e.new)), "value")
        self._window.param.watch(self._on_window_widget, "value")
        self._range.param.watch(self._on_range_widget, "value")
        self._agg.param.watch(lambda e: setattr(q, "agg", e.new), "value")
        self._interval.param.watch(lambda e: setattr(q, "interval", int(e.new)), "value")
        q.param.watch(self._on_device, "device")
        q.param.watch(self._on_choice, ["keys", "window", "start", "end", "agg", "interval"])
        self._layout = pn.Row(
            pn.Column(
                self._search,
                self._device,
                self._matches,
                pn.pane.Markdown("**Keys**", margin=(0, 10)),
                self._keys,
                pn.pane.Markdown("**Time window**", margin=(0, 10)),
                self._window,
                self._range,
                pn.Row(self._agg, self._interval),
                width=310,
            ),
            pn.Column(self._status, self._plot_box, self._notes, sizing_mode="stretch_width"),
            pn.Column(pn.pane.Markdown("### Latest values"), self._latest, width=380),
            sizing_mode="stretch_width",
        )
        if q.device:
            self._on_device()

    # ---------------------------------------------------------------------- pickers
    def _device_options(self, text: str) -> dict[str, str]:
        """The first PICKER_LIMIT matches of the search (the registry filters and pages: a
        session never holds the whole fleet), plus the current choice."""
        found, total = self.query.find_devices(text, PICKER_LIMIT)
        opts = {_PICK: ""}
        for d in found:
            opts[f"{d.name} ({d.type})"] = d.id
        d = self._current
        if d is not None and d.id not in opts.values():
            opts[f"{d.name} ({d.type})"] = d.id  # keep the current choice visible while filtering
        if total > len(found):
            self._matches.object = f"{len(found)} of {total:,} devices shown; type to narrow"
        elif text.strip() and not total:
            self._matches.object = f"No device matches “{html.escape(text.strip())}”."
        else:
            self._matches.object = ""
        return opts

    def _on_search(self, event) -> None:
        self._device.options = self._device_options(event.new or "")

    def _on_device(self, *_) -> None:
        q = self.query
        try:
            self._current = q.device_entity()
        except EntityError:  # none chosen, not the user's, or gone
            self._current = None
        ok = self._current is not None
        keys = q.available_keys() if ok else []
        self._keys.options = keys
        known = set(keys)  # (a list here made picking many of a device's many keys quadratic)
        chosen = [k for k in q.keys if k in known] or default_keys(keys, MAX_DEFAULT_KEYS)
        q.keys = chosen
        self._keys.value = chosen
        if ok and q.device not in self._device.options.values():
            self._device.options = self._device_options(self._search.value_input or "")
        self._device.value = q.device if ok else ""
        self._request_reload()

    def _on_window_widget(self, event) -> None:
        q = self.query
        with param.parameterized.batch_call_watchers(q):  # one change, one reload
            if event.new == "fixed" and (q.start is None or q.end is None):
                now = now_ms()
                q.start, q.end = now - WINDOWS["1d"], now
            q.window = event.new

    def _on_range_widget(self, event) -> None:
        if event.new and all(event.new):
            start, end = (from_datetime(v) for v in event.new)
            if start < end:
                with param.parameterized.batch_call_watchers(self.query):
                    self.query.start, self.query.end = start, end

    def _on_choice(self, *_) -> None:
        q = self.query
        self._window.value = q.window
        self._range.visible = q.window == "fixed"
        if q.window == "fixed" and q.start is not None and q.end is not None:
            self._range.value = (naive_utc(q.start), naive_utc(q.end))
        self._agg.value = q.agg
        self._interval.disabled = q.agg == "NONE"
        self._keys.value = list(q.keys)
        self._request_reload()

    # ---------------------------------------------------------------------- session
    def __panel__(self):
        if not self._started:
            self._started = True
            doc = pn.state.curdoc
            if doc is not None and doc.session_context is not None:
                # at once, not on load: the read runs while the browser fetches the page's scripts,
                # and the browser pulls the document with the data already in it
                self._start()
            else:  # a notebook or a static export: read once, no live updates
                self._show_now()
        return self._layout

    def _start(self) -> None:
        """Runs as the session is made: subscribe, tick, first read (on the I/O pool)."""
        self._doc = pn.state.curdoc
        if self.live is not None:
            self._sink = DocumentSink(self.live, self._doc, self._on_live, tenant=self.query.user.tenant_id or "")
        pn.state.add_periodic_callback(self._tick, period=self.tick_ms)
        self._reload_pending = False
        self._request_reload()

    def _request_reload(self) -> None:
        """Many choices changing at once (a device brings new keys) cause one read."""
        if self._doc is None or self._reload_pending:
            return
        self._reload_pending = True
        self._doc.add_next_tick_callback(self._reload)

    async def _reload(self) -> None:
        self._reload_pending = False
        self._gen += 1
        gen = self._gen
        with set_curdoc(self._doc):
            q = self.query
            ok, why = q.may_read()
            self._series = None
            self._stash = []
            if not ok:
                if self._sink is not None:
                    self._sink.follow([])
                self._show_denied(why)
                return
            try:
                device_id = q.device_entity().id
            except EntityError as e:  # deleted or reassigned since may_read
                self._show_denied(str(e))
                return
            if self._sink is not None:  # subscribe before reading: nothing falls in between
                self._sink.follow([device_id])
            try:
                snap = await asyncio.get_running_loop().run_in_executor(q.platform.executor, q.load)
            except ValueError as e:
                self._show_denied(str(e), alert_type="danger")
                return
            if gen != self._gen:  # superseded by a newer choice
                return
            self._show(snap)
            stash, self._stash = self._stash, []
            if stash:
                self._on_live(stash)

    def _show_now(self) -> None:
        ok, why = self.query.may_read()
        if ok:
            self._show(self.query.load())
        else:
            self._show_denied(why)

    # ---------------------------------------------------------------------- rendering
    def _show_denied(self, why: str, alert_type: str = "warning") -> None:
        self._status.object = why
        self._status.alert_type = alert_type
        self._status.visible = True
        self._plot_box.visible = False  # (toggling a Bokeh pane's own visible breaks in Panel 1.9)
        self._clear_plot()
        self._latest.object = ""
        self._notes.object = ""

    def _subplot(self, i: int):
        """The ``i``-th figure (made once, then reused): reloads swap its renderers and data,
        never the figure, so the browser's document does not fill up with stale plots. The
        legend sits above the plot (click hides a line), never over the data; the toolbar is
        on the right, so a long title never runs into it."""
        while len(self._figures) <= i:
            fig = figure(
                x_axis_type="datetime",
                height=PLOT_HEIGHT,
                sizing_mode="stretch_width",
                title="",
                x_range=self._x_range,
                tools="pan,xwheel_zoom,box_zoom,reset,save",
                toolbar_location="right",
                name="telemetry-plot",
            )
            fig.add_tools(
                HoverTool(
                    tooltips=[("key", "$name"), ("time", "@ts{%F %T}"), ("value", "@y")],
                    formatters={"@ts": "datetime"},
                )
            )
            legend = Legend(click_policy="hide", orientation="horizontal", label_text_font_size="9pt", margin=0)
            legend.padding = 2  # type: ignore[assignment]  # bokeh types padding as Property
            fig.add_layout(legend, "above")  # above the data, and every subplot keeps the same width
            fig.min_border_left = 70  # the subplots' y axes line up
            self._figures.append(fig)
            self._panes.append(pn.pane.Bokeh(fig, sizing_mode="stretch_width", margin=(0, 5)))
        return self._figures[i]

    def _clear_plot(self) -> None:
        for fig in self._figures:
            fig.renderers = []
            fig.legend[0].items = []
        self._sources = {}

    def _show(self, snap: Snapshot) -> None:
        self._status.visible = False
        self._plot_box.visible = True
        self._series = LiveSeries(snap)
        device = self._current if self._current is not None and self._current.id == snap.device_id else None
        title = f"{device.name if device else snap.device_id} · " + (
            f"live, last {next(k for k, v in WINDOW_LABELS.items() if v == self.query.window)}"
            if snap.live
            else f"{naive_utc(snap.start):%Y-%m-%d %H:%M} – {naive_utc(snap.end):%Y-%m-%d %H:%M} UTC"
        )
        if snap.interval:
            title += f" · {snap.agg} per {duration_text(snap.interval, exact=True)}"
        self._clear_plot()
        groups = plot_groups(snap.series, snap.units) or [("", [])]
        height = max(MIN_SUBPLOT, PLOT_HEIGHT // len(groups))
        colours = {key: Category10_10[i % len(Category10_10)] for i, key in enumerate(snap.series)}
        for g, (label, keys) in enumerate(groups):
            fig = self._subplot(g)
            # the title is the same text on every subplot (scripts read any of them), shown on the first
            fig.title.text = title
            fig.title.visible = g == 0
            fig.height = height
            fig.yaxis.axis_label = label
            fig.xaxis.visible = g == len(groups) - 1  # one time axis, under the last plot
            for key in keys:
                s = snap.series[key]
                src = self._cds.get(key)
                if src is None:
                    src = self._cds[key] = ColumnDataSource(data={"ts": [], "y": []}, name=f"series:{key}")
                src.data = {"ts": s.ts, "y": s.y}
                colour = colours[key]
                fig.line("ts", "y", source=src, color=colour, line_width=1.6, legend_label=key, name=key)
                fig.scatter("ts", "y", source=src, color=colour, size=3, name=key)
                self._sources[key] = src
        panes = self._panes[: len(groups)]
        if list(self._plot_box.objects) != panes:
            self._plot_box.objects = panes
        self._x_range.update(start=snap.start, end=snap.end)
        total = sum(s.raw_points for s in snap.series.values())
        notes = [f"{total:,} points read"] + snap.notes
        if not snap.series:
            notes = ["No keys chosen."]
        self._notes.object = " · ".join(notes)
        self._render_latest()

    def _render_latest(self) -> None:
        if self._series is None:
            return
        rows = latest_rows(self._series.snap.latest)
        if not rows:
            self._latest.object = "<p>No telemetry yet.</p>"
            return
        body = "".join(
            f'<tr data-key="{html.escape(r["key"])}"><td class="key">{html.escape(r["key"])}</td>'
            f'<td class="value">{html.escape(r["value"][:80])}</td>'
            f'<td class="time">{r["time"]}</td><td class="age">{r["age"]}</td></tr>'
            for r in rows
        )
        self._latest.object = (
            f'<table class="latest" id="latest-table"><thead><tr><th>key</th>'
            f"<th>value</th><th>time (UTC)</th><th>age</th></tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )

    # ---------------------------------------------------------------------- live
    def _on_live(self, points: list) -> None:
        """New points for this session's device, on this session's document."""
        with set_curdoc(self._doc):
            if self._series is None:
                self._stash.extend(points)
                return
            changes, latest_changed = self._series.apply(points)
            for key, change in changes.items():
                src = self._sources.get(key)
                if src is None:
                    continue
                if change.replace_last is not None and len(src.data["ts"]):
                    i = len(src.data["ts"]) - 1
                    src.patch({"ts": [(i, change.replace_last[0])], "y": [(i, change.replace_last[1])]})
                if change.ts:
                    src.stream({"ts": change.ts, "y": change.y}, rollover=ROLLOVER)
            if latest_changed:
                self._render_latest()

    def _tick(self) -> None:
        if self._series is None:
            return
        self._render_latest()
        if self.query.live and self._sources:
            now = now_ms()
            self._x_range.update(start=now - WINDOWS[self.query.window], end=now)


def telemetry_page(platform, live: LiveHub | None = None) -> pn.template.BaseTemplate:
    """Build the telemetry page for the user of the current session."""
    template, user = page_template(platform, "/telemetry")
    if user is None:
        return template
    query = TelemetryQuery(platform, user)
    if pn.state.location is not None:
        pn.state.location.sync(
            query,
            {
                "device": "device",
                "window": "window",
                "start": "start",
                "end": "end",
                "agg": "agg",
                "interval": "interval",
            },
        )
    template.main.append(TelemetryView(query=query, live=live))
    template.main.append(rpc_console(platform, user, query))
    return template


def rpc_console(platform, user, query: TelemetryQuery) -> pn.Column:
    """The device's RPC console, following the page's device choice, made once the page has been
    drawn (``pn.state.onload``): the plot is what a person came for, and the console's widgets in
    the first document delayed its first paint (``benchmarks/pages.py`` at load average 8: 3.3 s → 2.4 s)."""
    from ..views.rpc import RpcConsole
    from .rpc import RpcPanel

    slot = pn.Column(sizing_mode="stretch_width", margin=0, css_classes=["rpc-slot"])

    def make() -> None:
        console = RpcConsole(platform, user, device=query.device)
        query.param.watch(lambda e: setattr(console, "device", e.new), "device")
        slot.objects = [RpcPanel(platform.executor, console=console)]

    pn.state.onload(make)  # at once without a served session (a notebook)
    return slot

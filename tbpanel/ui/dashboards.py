"""The ``/dashboards`` list and the ``/dashboard?id=`` page: a grid of widgets, live.

:class:`DashboardView` draws a :class:`~tbpanel.views.dashboards.DashboardEditor`: the state
tabs, the dashboard's time window, and the current state's widgets on a 24-column
``pn.layout.GridStack`` (Panel ships gridstack.js, so it works offline). In edit mode (tenant
administrators) widgets can be added, dragged, resized and removed, configured in a settings
drawer generated from their parameters, undone and saved. Narrower than 768 px the grid
becomes one column (gridstack's one-column mode; the stored layout is untouched).

Live: the session has one :class:`~tbpanel.ui.live_sink.DocumentSink` (one hub subscription
for every device and key its widgets show); each batch is handed to every widget view on the
session's document. The aliases are resolved (off the loop) and subscribed *before* the
widgets read, so no point falls between a read and the pushes. Alarm tables follow
``AlarmService.changed`` through ``Background.follow``.
"""

from __future__ import annotations

import copy
import html
import logging
from typing import Any

import panel as pn
import param
from panel.io.state import set_curdoc

from ..clock import DAY_MS, HOUR_MS, MINUTE_MS, from_datetime, naive_utc, now_ms
from ..dashboards.model import GRID_COLUMNS, WIDGET_KINDS, TimeWindow, WidgetModel
from ..errors import EntityError
from ..live import LiveHub
from ..store.aggregate import AGGS
from ..views.dashboard_widgets import AlarmReader, DashboardSession, reader_for
from ..views.dashboards import DashboardEditor, DashboardList, may_edit
from .background import Background
from .dashboard_widgets import ChartView, WidgetView, widget_view
from .layout import page_template
from .live_sink import DocumentSink

log = logging.getLogger("tbpanel.ui")

CELL_HEIGHT = 50  # px per grid row
EDIT_ROWS = 12  # empty rows below the widgets in edit mode
WINDOWS = {"5 min": 5 * MINUTE_MS, "1 hour": HOUR_MS, "6 hours": 6 * HOUR_MS, "1 day": DAY_MS, "7 days": 7 * DAY_MS}
HISTORY = "History (fixed range)"
ZONES = ["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "Asia/Tokyo"]


def grid_css(columns: int = GRID_COLUMNS) -> str:
    """Widths and offsets of a ``columns``-wide gridstack (its CSS ships only 1–12), and the
    one-column layout of narrow screens."""
    rules = [
        f'.grid-stack-{columns}>.grid-stack-item[gs-w="{i}"]{{width:{i * 100 / columns:.4f}%}}'
        f'.grid-stack-{columns}>.grid-stack-item[gs-x="{i}"]{{left:{i * 100 / columns:.4f}%}}'
        for i in range(1, columns + 1)
    ]
    rules.append(".grid-stack-1>.grid-stack-item{width:100%;left:0}")
    rules.append(".grid-stack-item-content{overflow:hidden}")
    return "".join(rules)


class DashboardGrid(pn.layout.GridStack):
    """Panel's GridStack, ignoring a browser's report that still names a widget the server has
    just replaced (its next report is complete again)."""

    @param.depends("state", watch=True)
    def _update_objects(self) -> None:
        known = {str(id(obj)) for obj in self}
        if all(p["id"] in known for p in self.state):
            super()._update_objects()


class DashboardView(pn.viewable.Viewer):
    """A dashboard page: toolbar, state tabs, time window, grid, settings drawer."""

    editor: Any = param.ClassSelector(class_=DashboardEditor, doc="The dashboard being shown (required).")
    live = param.ClassSelector(class_=LiveHub, default=None, allow_None=True)
    tick_ms = param.Integer(default=1000, bounds=(100, None))

    def __init__(self, **params: Any):
        super().__init__(**params)
        ed = self.editor
        self.session = DashboardSession(ed.platform, ed.user, ed.dashboard)
        self.bg = Background(ed.platform.executor)
        self._views: dict[str, WidgetView] = {}
        self._sink: DocumentSink | None = None
        self._grid_ids: dict[str, str] = {}  # id(view frame) -> widget id (the GridStack's state ids)
        self._started = False
        self._building = False
        self._rebuild_pending = False
        self._title = pn.pane.HTML("", css_classes=["dashboard-title"], margin=(5, 10))
        self._states = pn.widgets.RadioButtonGroup(
            options={}, button_type="primary", button_style="outline", css_classes=["state-tabs"]
        )
        self._states.param.watch(self._on_state_tab, "value")
        # the time window
        self._window = pn.widgets.Select(
            name="Time window", options=[*WINDOWS, HISTORY], width=170, css_classes=["tw-window"]
        )
        self._range = pn.widgets.DatetimeRangePicker(
            name="Range (UTC)", width=300, visible=False, css_classes=["tw-range"]
        )
        self._agg = pn.widgets.Select(name="Aggregation", options=list(AGGS), width=110, css_classes=["tw-agg"])
        self._interval = pn.widgets.Select(
            name="Interval",
            options={"10 s": 10_000, "1 min": MINUTE_MS, "5 min": 5 * MINUTE_MS, "1 h": HOUR_MS, "1 day": DAY_MS},
            value=MINUTE_MS,
            width=90,
            css_classes=["tw-interval"],
        )
        self._zone = pn.widgets.Select(name="Time zone", options=list(ZONES), width=150, css_classes=["tw-zone"])
        self._show_timewindow()
        for w in (self._window, self._range, self._agg, self._interval, self._zone):
            w.param.watch(self._on_timewindow, "value")
        # edit mode
        self._mode = pn.widgets.Toggle(name="Edit", button_type="warning", css_classes=["edit-toggle"], width=80)
        self._mode.param.watch(lambda e: setattr(ed, "mode", "edit" if e.new else "view"), "value")
        self._kind = pn.widgets.Select(options=list(WIDGET_KINDS), width=170, css_classes=["add-kind"])
        self._add = pn.widgets.Button(name="Add widget", button_type="primary", css_classes=["add-widget"])
        self._add.on_click(lambda _: self._add_widget(self._kind.value))
        self._undo = pn.widgets.Button(name="Undo", css_classes=["undo"], disabled=True)
        self._undo.on_click(lambda _: setattr(self, "_last_undo", ed.undo()))
        self._save = pn.widgets.Button(name="Save", button_type="success", css_classes=["save"], disabled=True)
        self._save.on_click(self._on_save)
        self._state_name = pn.widgets.TextInput(placeholder="new state name", width=150, css_classes=["state-name"])
        self._add_state = pn.widgets.Button(name="Add state", css_classes=["add-state"])
        self._add_state.on_click(self._on_add_state)
        self._configure = pn.widgets.Select(name="", options={}, width=200, css_classes=["configure-select"])
        self._configure_btn = pn.widgets.Button(name="Settings…", css_classes=["configure"])
        self._configure_btn.on_click(lambda _: self.open_settings(self._configure.value))
        self._message = pn.pane.HTML("", css_classes=["dashboard-message"], margin=(5, 10))
        self._edit_bar = pn.FlexBox(
            self._kind,
            self._add,
            self._configure,
            self._configure_btn,
            self._state_name,
            self._add_state,
            self._undo,
            self._save,
            visible=False,
            css_classes=["edit-bar"],
        )
        self._alias_choices: dict[str, dict] = {}
        self._drawer = pn.Column(width=340, visible=False, css_classes=["settings-drawer"], scroll=True, max_height=900)
        self._grid_box = pn.Column(sizing_mode="stretch_width", margin=0, css_classes=["grid-box"])
        ed.param.watch(self._on_mode, "mode")
        ed.param.watch(lambda *_: self._request_rebuild(), ["revision", "state_id"])
        ed.param.watch(self._on_dirty, "dirty")
        self.session.param.watch(self._on_selection, "selected_device")
        toolbar = pn.Row(self._title, self._states, sizing_mode="stretch_width")
        if ed.editable:
            toolbar.append(self._mode)
        self._layout = pn.Column(
            toolbar,
            pn.FlexBox(self._window, self._range, self._agg, self._interval, self._zone),  # wraps on narrow screens
            self._edit_bar,
            self._message,
            pn.Row(self._grid_box, self._drawer, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    # ---------------------------------------------------------------- the grid
    def _view(self, widget: WidgetModel) -> WidgetView:
        view = self._views.get(widget.id)
        if view is None or view.widget is not widget:
            view = self._views[widget.id] = widget_view(reader_for(self.session, widget), self.bg)
        return view

    def _request_rebuild(self) -> None:
        """Changes that come together (a widget added, its drawer opened) draw one new grid."""
        doc = self.bg.doc
        if doc is None:
            self._rebuild()
            return
        if not self._rebuild_pending:
            self._rebuild_pending = True

            def rebuild() -> None:
                with set_curdoc(doc):
                    self._rebuild()

            doc.add_next_tick_callback(rebuild)

    def _rebuild(self) -> None:
        """Draw the current state's widgets on a new grid, then read them (and follow live)."""
        self._rebuild_pending = False
        ed, d = self.editor, self.editor.dashboard
        self._title.object = f"<h2 style='margin:0'>{html.escape(d.title)}</h2>"
        self._states.options = {s.title: sid for sid, s in d.states.items()}
        self._building = True
        try:
            self._states.value = ed.state_id
        finally:
            self._building = False
        placed = d.widgets_of(ed.state_id)
        self._configure.options = {f"{w.title or w.kind} ({w.kind})": w.id for w, _ in placed}
        live = {w.id for w, _ in placed}
        self._views = {k: v for k, v in self._views.items() if k in live}
        new = [w.id for w, _ in placed if w.id not in self._views or self._views[w.id].widget is not w]
        columns = d.state(ed.state_id).columns
        # edit mode leaves empty rows below: gridstack drops a widget only where there is room
        rows = max((p.row + p.size_y for _, p in placed), default=1) + (EDIT_ROWS if ed.mode == "edit" else 0)
        grid = DashboardGrid(
            ncols=columns,
            nrows=rows,
            height=rows * CELL_HEIGHT,
            sizing_mode="stretch_width",
            allow_drag=ed.mode == "edit",
            allow_resize=ed.mode == "edit",
            stylesheets=[grid_css(columns)],
            css_classes=["dashboard-grid"],
        )  # a new grid each time: gridstack.js keeps stale items when Panel's objects change in place
        self._grid_ids = {}
        for widget, p in placed:
            self._place(grid, widget, p)
        grid.param.watch(self._on_grid, "state")
        self._show_grid(grid)
        self._reload([self._views[w] for w in new])  # the others keep what they drew

    def _show_grid(self, grid: Any) -> None:
        """Replace the grid in two steps, the old one gone before the new one is drawn: the widgets
        are the same models, and gridstack.js tearing the old grid down after the new one was
        drawn took some of the new grid's widgets with it (a widget now and then not drawn)."""
        doc = self.bg.doc
        if doc is None or not self._grid_box.objects:
            self._grid_box.objects = [grid]
            return
        self._grid_box.objects = []

        def show() -> None:
            with set_curdoc(doc):
                self._grid_box.objects = [grid]

        doc.add_next_tick_callback(show)

    def _place(self, grid: Any, widget: WidgetModel, p: Any) -> None:
        frame = self._view(widget).__panel__()
        grid[p.row : p.row + p.size_y, p.col : p.col + p.size_x] = frame
        self._grid_ids[str(id(frame))] = widget.id

    def _on_grid(self, event: Any) -> None:
        """A drag or resize ended: record it in the model (an undo step)."""
        places = {}
        for item in event.new:
            wid = self._grid_ids.get(str(item["id"]))
            if wid is not None:
                places[wid] = (item["y0"], item["x0"], item["x1"] - item["x0"], item["y1"] - item["y0"])
        if self.editor.mode == "edit" and self.editor.apply_grid(places):
            self._undo.disabled = False

    # ---------------------------------------------------------------- reads and live
    def _reload(self, views: list[WidgetView] | None = None) -> None:
        """Resolve the widgets' devices, subscribe to all of them, then let ``views`` (default:
        every widget) read; all off the loop."""
        every = list(self._views.values())
        views = every if views is None else views

        def resolve() -> tuple[set[str], set[str] | None]:
            entities: set[str] = set()
            keys: set[str] | None = set()
            for v in every:
                wanted = v.reader.live_keys()
                if wanted is not None and not wanted:
                    continue
                entities.update(d.id for d in self.session.devices(v.widget))
                keys = None if wanted is None or keys is None else keys | wanted
            return entities, keys

        def follow(interest: tuple[set[str], set[str] | None]) -> None:
            if self._sink is not None:
                self._sink.follow(*interest)
            for v in views:
                v.refresh()

        self.bg.run("resolve", resolve, follow)

    def _on_live(self, points: list) -> None:
        for view in list(self._views.values()):
            try:
                view.on_points(points)
            except Exception:
                log.exception("dashboard widget %s: live update failed", view.widget.id)

    def _tick(self) -> None:
        now = now_ms()
        for view in self._views.values():
            if isinstance(view, ChartView):
                view.slide(now)

    def _alarm_changed(self, kind: str, alarm: Any) -> bool:
        return any(isinstance(v.reader, AlarmReader) and v.reader.concerns(alarm) for v in self._views.values())

    def _refresh_alarms(self) -> None:
        for v in self._views.values():
            if isinstance(v.reader, AlarmReader):
                v.refresh()

    def _on_selection(self, *_: Any) -> None:
        followers = [v for v in self._views.values() if v.widget.follow_selection]
        if followers:
            self._reload(followers)

    # ---------------------------------------------------------------- time window
    def _show_timewindow(self) -> None:
        tw = self.editor.dashboard.timewindow or TimeWindow()
        label = next((k for k, v in WINDOWS.items() if v == tw.last_ms), None)
        self._window.value = label if tw.realtime and label else HISTORY if not tw.realtime else self._window.value
        self._range.visible = not tw.realtime
        if tw.start_ms is not None and tw.end_ms is not None:
            self._range.value = (naive_utc(tw.start_ms), naive_utc(tw.end_ms))
        self._agg.value = tw.agg
        if tw.interval_ms in self._interval.options.values():
            self._interval.value = tw.interval_ms
        if tw.timezone not in self._zone.options:
            self._zone.options = [*self._zone.options, tw.timezone]
        self._zone.value = tw.timezone

    def _on_timewindow(self, *_: Any) -> None:
        if self._building:
            return
        values: dict[str, Any] = {
            "agg": self._agg.value,
            "interval_ms": int(self._interval.value),
            "timezone": self._zone.value,
        }
        if self._window.value == HISTORY:
            values["realtime"] = False
            rng = self._range.value
            if rng and all(rng):
                values["start_ms"], values["end_ms"] = (from_datetime(v) for v in rng)  # type: ignore[arg-type]  # the picker gives datetimes
            else:
                now = now_ms()
                values["start_ms"], values["end_ms"] = now - DAY_MS, now
        else:
            values["realtime"], values["last_ms"] = True, WINDOWS[self._window.value]
        self._range.visible = not values["realtime"]
        tw = self.editor.dashboard.timewindow
        assert tw is not None
        if self.editor.mode == "edit":
            self.editor.set_timewindow(**values)  # an undo step, saved with the dashboard
        else:
            tw.param.update(**values)  # a viewer's own look: not saved
        self._reload()

    # ---------------------------------------------------------------- editing
    def _on_mode(self, event: Any) -> None:
        edit = event.new == "edit"
        self._edit_bar.visible = edit
        if not edit:
            self._drawer.visible = False
        self._request_rebuild()

    def _on_dirty(self, event: Any) -> None:
        self._save.disabled = not event.new
        self._undo.disabled = not self.editor.can_undo

    def _on_add_state(self, _: Any) -> None:
        name = self._state_name.value.strip()
        if name:
            self.editor.add_state(name)
            self._state_name.value = ""

    def _add_widget(self, kind: str) -> None:
        widget = self.editor.add_widget(kind)
        self.open_settings(widget.id)

    def open_settings(self, widget_id: str) -> None:
        """The settings drawer of one widget: a form from its parameters, on a draft; Apply
        writes the draft to the widget (one undo step), Remove deletes the widget."""
        widget = self.editor.dashboard.widgets.get(widget_id)
        if widget is None:
            return
        names = [*widget.common_names(), *widget.settings_names()]
        draft = type(widget)(**{n: copy.deepcopy(getattr(widget, n)) for n in names})
        own = widget.timewindow.param.values() if widget.timewindow is not None else {}
        tw_draft = TimeWindow(**{k: v for k, v in own.items() if k != "name"})
        aliases = {a.get("alias", k): k for k, a in self.editor.dashboard.aliases.items()}
        offered = {n: f for n, f in self._alias_choices.items() if n not in aliases}
        alias = pn.widgets.Select(
            name="Devices (entity alias)",
            options={"(none)": "", **aliases, **{n: f"new:{n}" for n in offered}},
            value=draft.alias_id,
            css_classes=["alias-select"],
        )
        form = pn.Param(
            draft,
            parameters=[n for n in names if n != "alias_id"],
            widgets={n: {"css_classes": [f"set-{n}"]} for n in names},
            show_name=False,
            css_classes=["settings-form"],
        )
        tw_form = pn.Param(
            tw_draft,
            show_name=False,
            parameters=["realtime", "last_ms", "start_ms", "end_ms", "agg", "interval_ms", "timezone"],
        )
        apply = pn.widgets.Button(name="Apply", button_type="primary", css_classes=["apply-settings"])
        remove = pn.widgets.Button(name="Remove widget", button_type="danger", css_classes=["remove-widget"])
        close = pn.widgets.Button(name="Close", css_classes=["close-settings"])

        def on_apply(_: Any) -> None:
            values = {n: getattr(draft, n) for n in names}
            chosen = alias.value or ""
            if chosen.startswith("new:"):  # a new alias, kept in the dashboard
                label = chosen[4:]
                chosen = self.editor.dashboard.add_alias(label, offered[label])
            values["alias_id"] = chosen
            values["timewindow"] = None if draft.use_dashboard_timewindow else TimeWindow(**{
                k: v for k, v in tw_draft.param.values().items() if k != "name"
            })  # fmt: skip
            self._views.pop(widget_id, None)  # a new reader for the new settings
            self.editor.update_widget(widget_id, **values)

        def on_remove(_: Any) -> None:
            self.editor.remove_widget(widget_id)
            self._drawer.visible = False

        apply.on_click(on_apply)
        remove.on_click(on_remove)
        close.on_click(lambda _: setattr(self._drawer, "visible", False))
        self._drawer.objects = [
            pn.pane.HTML(f"<b>Settings · {html.escape(widget.kind.replace('_', ' '))}</b>"),
            alias,
            form,
            pn.pane.HTML("<i>Own time window (when not the dashboard's)</i>"),
            tw_form,
            pn.Row(apply, remove, close),
        ]
        self._drawer.visible = True

    def _on_save(self, _: Any) -> None:
        def saved(stored: dict) -> None:
            self._message.object = f"saved · version {stored.get('version', '')}"

        def refused(exc: Exception) -> None:
            self._message.object = f"⚠ {html.escape(str(exc))}"

        self.bg.run("save", self.editor.save, saved, refused)

    def _on_state_tab(self, event: Any) -> None:
        if not self._building and event.new and event.new != self.editor.state_id:
            self.editor.state_id = event.new

    # ---------------------------------------------------------------- session
    def __panel__(self) -> Any:
        if not self._started:
            self._started = True
            doc = pn.state.curdoc
            if self.live is not None and doc is not None and doc.session_context is not None:
                tenant = self.editor.user.tenant_id or ""
                self._sink = DocumentSink(self.live, doc, self._on_live, tenant=tenant)
                pn.state.add_periodic_callback(self._tick, period=self.tick_ms)
                self.bg.follow(self.editor.platform.alarms.changed, self._alarm_changed, self._refresh_alarms, 30_000)
            if self.editor.editable:  # the settings drawer's "new alias" choices
                self.bg.run("aliases", self.editor.alias_choices, lambda c: setattr(self, "_alias_choices", c))
            self._rebuild()
        return self._layout


class DashboardListView(pn.viewable.Viewer):
    """The user's dashboards as links; tenant administrators can create one."""

    def __init__(self, model: DashboardList, **params: Any):
        super().__init__(**params)
        self.model = model
        self.bg = Background(model.platform.executor)
        self._table = pn.pane.HTML("", css_classes=["dashboard-list"], sizing_mode="stretch_width")
        self._name = pn.widgets.TextInput(placeholder="title of a new dashboard", width=260, css_classes=["new-title"])
        self._create = pn.widgets.Button(
            name="Create dashboard", button_type="primary", css_classes=["create-dashboard"]
        )
        self._create.on_click(self._on_create)
        self._message = pn.pane.HTML("", css_classes=["list-message"])
        self._search = pn.widgets.TextInput(placeholder="search titles…", width=260, css_classes=["search-dashboards"])
        self._search.link(model, value="text")
        model.param.watch(lambda *_: self.refresh(), "text")
        rows: list[Any] = [pn.pane.Markdown("## Dashboards"), self._search]
        if may_edit(model.user):
            rows.append(pn.Row(self._name, self._create))
        self._layout = pn.Column(*rows, self._message, self._table, sizing_mode="stretch_width")
        self.refresh()

    def refresh(self) -> None:
        self.bg.run(
            "list", self.model.rows, self._show, lambda exc: setattr(self._message, "object", html.escape(str(exc)))
        )

    def _show(self, rows: list[dict]) -> None:
        if not rows:
            self._table.object = "<p>No dashboards yet.</p>"
            return
        body = "".join(
            f'<tr data-id="{r["id"]}"><td><a href="/dashboard?id={r["id"]}">{html.escape(r["title"])}</a></td>'
            f"<td>{html.escape(r['customers'])}</td></tr>"
            for r in rows
        )
        self._table.object = f'<table class="dashboards"><tr><th>title</th><th>customers</th></tr>{body}</table>'

    def _on_create(self, _: Any) -> None:
        title = self._name.value.strip()
        if not title:
            return

        def created(dashboard_id: str) -> None:
            self._message.object = f'created: <a class="new-dashboard" href="/dashboard?id={dashboard_id}">open ›</a>'
            self.refresh()

        def refused(exc: Exception) -> None:
            self._message.object = f"⚠ {html.escape(str(exc))}"

        self.bg.run("create", lambda: self.model.create(title), created, refused)

    def __panel__(self) -> Any:
        return self._layout


def dashboards_page(platform: Any) -> pn.template.BaseTemplate:
    """``/dashboards``: the signed-in user's dashboards (a customer user: its assigned ones)."""
    template, user = page_template(platform, "/dashboards")
    if user is None:
        return template
    template.main.append(DashboardListView(DashboardList(platform, user)))
    return template


def dashboard_page(platform: Any, live: LiveHub | None = None) -> pn.template.BaseTemplate:
    """``/dashboard?id=``: one dashboard, if the user may read it (the store decides)."""
    pn.extension("gridstack", "tabulator", "echarts")  # widgets added later than the page need them loaded with it
    template, user = page_template(platform, "/dashboards")
    if user is None:
        return template
    args = pn.state.session_args if pn.state.curdoc is not None else {}
    raw = (args.get("id") or [b""])[0]
    dashboard_id = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        editor = DashboardEditor.open(platform, user, dashboard_id)
    except (EntityError, ValueError):
        template.main.append(pn.pane.Alert("No such dashboard.", alert_type="warning", css_classes=["no-dashboard"]))
        return template
    template.main.append(DashboardView(editor=editor, live=live))
    return template

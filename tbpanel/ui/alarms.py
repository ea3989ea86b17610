"""The live alarm table (``/alarms``, ``/alarms?model=<id>`` for one model's alarms).

Filters map one to one onto :class:`~tbpanel.alarms.AlarmQuery`, so the page shows exactly
what ``GET /api/alarms`` would answer the same user. Changes arrive through the alarm
service's after-commit listeners (any thread): the view only schedules one refresh on its own
document per burst, so a storm of alarm changes costs each browser one table reload.
"""
from __future__ import annotations


import pandas as pd
import panel as pn
import param
from panel.io.state import set_curdoc

from ..clock import now_ms, utc_text
from ..alarms import SEARCH_STATUSES, SEVERITIES, SEVERITY_COLOURS, AlarmQuery
from ..errors import EntityError
from .layout import page_template

WINDOWS = {"any time": None, "last hour": 3_600_000, "last day": 86_400_000, "last week": 7 * 86_400_000,
           "last 30 days": 30 * 86_400_000}
COLUMNS = ["id", "created", "device", "type", "severity", "status", "start", "end", "model", "review"]
#: per-row action buttons (Tabulator adds one column per key)
ACTIONS = {a: f'<span class="alarm-action" data-action="{a}" style="cursor:pointer;font-weight:600">{a}</span>'
           for a in ("ack", "clear", "delete")}


def _fmt(ms: int) -> str:
    return utc_text(ms or None, seconds=True)


def _severity_style(value: str) -> str:
    colour = SEVERITY_COLOURS.get(value)
    return f"background-color: {colour}; color: white; font-weight: 600" if colour else ""


class AlarmFilters(param.Parameterized):
    """What the table shows (the time window applies to the alarm's data time, startTs)."""

    status = param.Selector(default="ANY", objects=list(SEARCH_STATUSES))
    severities = param.ListSelector(default=[], objects=list(SEVERITIES))
    types = param.List(default=[], item_type=str)
    device = param.String(default="")
    window = param.Selector(default="any time", objects=list(WINDOWS))
    model = param.String(default="")


class AlarmsView(pn.viewable.Viewer):
    """Filters above a Tabulator of alarms with per-row ack / clear / delete buttons."""

    filters = param.ClassSelector(class_=AlarmFilters)
    refresh_ms = param.Integer(default=30_000, bounds=(500, None), doc="Fallback poll (live pushes do the rest).")

    def __init__(self, platform, user, **params):
        params.setdefault("filters", AlarmFilters())
        super().__init__(**params)
        self.platform, self.user = platform, user
        self.service = platform.alarms
        f = self.filters
        visible = self.service.visible_devices(user)
        devices = platform.registry.all_devices(user.tenant_id)
        self._devices = {d.name: d.id for d in devices if visible is None or d.id in visible}
        self._status = pn.widgets.Select.from_param(f.param.status, name="Status", width=130)
        self._severity = pn.widgets.MultiChoice.from_param(f.param.severities, name="Severity", width=260)
        self._types = pn.widgets.MultiChoice(name="Type", options=self.service.types(user),
                                             value=list(f.types), width=220)
        self._device = pn.widgets.Select(name="Device", options={"all devices": "", **self._devices},
                                         value=f.device if f.device in self._devices.values() else "", width=200)
        self._window = pn.widgets.Select.from_param(f.param.window, name="Time (data)", width=140)
        self._types.link(f, value="types")
        self._device.link(f, value="device")
        self._storm = pn.pane.Alert("", alert_type="warning", visible=False, name="storm-warning")
        self._message = pn.pane.Markdown("", name="alarm-message")
        self._count = pn.pane.Markdown("", name="alarm-count")
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=COLUMNS), show_index=False, disabled=True, sizing_mode="stretch_width",
            height=460, hidden_columns=["id"], name="alarm-table", pagination=None,
            buttons=ACTIONS,
            formatters={"review": {"type": "link", "label": "review ›", "target": "_self"}})
        self._table.style.map(_severity_style, subset=["severity"])
        self._table.on_click(self._on_click)
        f.param.watch(lambda *_: self.refresh(), ["status", "severities", "types", "device", "window", "model"])
        self._doc = None
        self._pending = False
        self._listener = None
        self._callback = None
        self.refresh()

    # -- data ----------------------------------------------------------------------------------
    def query(self) -> AlarmQuery:
        f = self.filters
        span = WINDOWS[f.window]
        return AlarmQuery(self.user.tenant_id, originators=[f.device] if f.device else None,
                          search_status=f.status, severities=list(f.severities), types=list(f.types),
                          model_id=f.model or None, time_property="startTs",
                          start_time=now_ms() - span if span else None,
                          sort_property="createdTime", sort_order="DESC", page_size=1000)

    def frame(self) -> pd.DataFrame:
        alarms, total = self.service.query(self.user, self.query())
        rows = []
        for a in alarms:
            pad = max((a.end_ts - a.start_ts) // 2, 3_600_000)
            review = (f"/telemetry?device={a.originator_id}&window=fixed&start={a.start_ts - pad}"
                      f"&end={max(a.end_ts, a.start_ts + 1) + pad}")
            rows.append({"id": a.id, "created": _fmt(a.created_time), "device": a.originator_name or a.originator_id,
                         "type": a.type, "severity": a.severity, "status": a.status, "start": _fmt(a.start_ts),
                         "end": _fmt(a.end_ts), "model": a.details.get("modelName", "") if a.model_id else "",
                         "review": review})
        self._count.object = f"{total} alarm{'s' if total != 1 else ''}" + (" (first 1000 shown)" if total > 1000 else "")
        return pd.DataFrame(rows, columns=COLUMNS)

    def refresh(self) -> None:
        self._table.value = self.frame()
        types = self.service.types(self.user)
        if types != self._types.options:
            self._types.options = types
        storm = self.service.last_storm
        if storm and storm.get("tenantId") == self.user.tenant_id:
            self._storm.object = (f"**Alarm storm:** a {storm['source'].lower()} of model *{storm['modelName']}* "
                                  f"raised {storm['raised']} alarms at once (limit {storm['limit']}), "
                                  f"at {_fmt(storm['at'])} UTC. Check the model's thresholds.")
            self._storm.visible = True

    # -- actions -------------------------------------------------------------------------------
    def _on_click(self, event) -> None:
        if event.column not in ACTIONS:
            return
        alarm_id = self._table.value.iloc[event.row]["id"]
        self.act(event.column, alarm_id)

    def act(self, action: str, alarm_id: str) -> None:
        """Ack, clear or delete as the signed-in user (the service checks the permission)."""
        try:
            getattr(self.service, action)(self.user, alarm_id)
            self._message.object = ""
        except EntityError as exc:
            self._message.object = f"⚠ {exc}"
        self.refresh()

    # -- live ----------------------------------------------------------------------------------
    def _start(self) -> None:
        self._doc = pn.state.curdoc

        def heard(kind, alarm) -> None:  # any thread, after the commit
            if alarm.tenant_id != self.user.tenant_id or self._pending or self._doc is None:
                return
            self._pending = True
            self._doc.add_next_tick_callback(self._on_live)   # Bokeh: thread-safe
        self._listener = heard
        self.service.changed.connect(heard)
        pn.state.on_session_destroyed(lambda ctx: self._stop())

    def _stop(self) -> None:
        if self._listener in self.service.changed:
            self.service.changed.disconnect(self._listener)
        self._doc = None

    def _on_live(self) -> None:
        self._pending = False
        with set_curdoc(self._doc):
            self.refresh()

    def __panel__(self):
        doc = pn.state.curdoc
        if self._callback is None and doc is not None and doc.session_context is not None:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=self.refresh_ms)
            pn.state.onload(self._start)
        return pn.Column(
            self._storm,
            pn.Row(self._status, self._severity, self._types, self._device, self._window),
            pn.Row(self._count, self._message),
            self._table, sizing_mode="stretch_width")


def alarms_page(platform) -> pn.template.BaseTemplate:
    """The alarm table for the user of the current session (``?model=`` narrows to one model)."""
    template, user = page_template(platform, "/alarms")
    if user is None:
        return template
    filters = AlarmFilters()
    if pn.state.location is not None:
        pn.state.location.sync(filters, {"model": "model", "status": "status", "device": "device"})
    title = "## Alarms"
    if filters.model:
        model = platform.anomaly.get_model(filters.model)
        if model is not None and model.tenant_id == user.tenant_id:
            title = f"## Alarms of model *{model.config.name}*"
    template.main.append(pn.pane.Markdown(title))
    template.main.append(AlarmsView(platform, user, filters=filters))
    return template

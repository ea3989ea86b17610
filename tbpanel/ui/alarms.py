"""The live alarm table (``/alarms``, ``/alarms?model=<id>`` for one model's alarms).

It draws :class:`~tbpanel.views.alarms.AlarmList` (filters, rows, actions). Reads and actions
run off the server loop through :class:`~tbpanel.ui.background.Background`; changes arrive
through ``AlarmService.changed`` (after the commit, any thread) by ``Background.follow``, which
schedules at most one refresh per session at a time, so a storm of alarm changes costs each
browser one table reload.
"""

from __future__ import annotations

import pandas as pd
import panel as pn
import param

from ..alarms import SEVERITY_COLOURS
from ..errors import EntityError
from ..views.alarms import ACTIONS, COLUMNS, AlarmFilters, AlarmList, AlarmRows
from .background import Background
from .layout import page_template

#: per-row action buttons: real columns (HTML cells), so each has a header — Tabulator's own
#: ``buttons`` columns have none
BUTTONS = {
    a: f'<span class="alarm-action" data-action="{a}" style="cursor:pointer;font-weight:600">{a}</span>'
    for a in ACTIONS
}
FILTER_ROW_HEIGHT = 62  # px: the filter widgets' row (label and input), kept before they are made
TITLES = {
    "created": "created (UTC)",
    "start": "start (UTC)",
    "end": "end (UTC)",
    "review": "review",
    **{a: a for a in ACTIONS},
}


def with_actions(frame: pd.DataFrame) -> pd.DataFrame:
    """The alarm rows with one button cell per action."""
    return frame.assign(**{a: [BUTTONS[a]] * len(frame) for a in ACTIONS})


def _severity_style(value: str) -> str:
    colour = SEVERITY_COLOURS.get(value)
    return f"background-color: {colour}; color: white; font-weight: 600" if colour else ""


class AlarmsView(pn.viewable.Viewer):
    """Filters above a Tabulator of alarms with per-row ack / clear / delete buttons."""

    filters: param.ClassSelector[AlarmFilters] = param.ClassSelector(class_=AlarmFilters)  # type: ignore[assignment]  # required, never None
    refresh_ms = param.Integer(default=30_000, bounds=(500, None), doc="Fallback poll (live pushes do the rest).")

    def __init__(self, platform, user, **params):
        params.setdefault("filters", AlarmFilters())
        super().__init__(**params)
        self.platform, self.user = platform, user
        self.alarms = AlarmList(platform, user, filters=self.filters)
        self._bg = Background(platform.executor)  # reads and actions off the server loop
        self._devices: dict[str, str] = {}  # the device filter's choices, name → id
        self._known_types: list[str] = list(self.filters.types)  # the type filter's, from the last read
        self._types: pn.widgets.MultiChoice | None = None  # made once the page has been drawn
        # the filters follow the table: their reads (devices, types) and five widgets cost the table's
        # first paint more than they are worth before it; the row keeps their place meanwhile
        self._filter_row = pn.Row(
            min_height=FILTER_ROW_HEIGHT, sizing_mode="stretch_width", css_classes=["alarm-filters"]
        )
        self._storm = pn.pane.Alert("", alert_type="warning", visible=False, name="storm-warning")
        self._message = pn.pane.Markdown("", name="alarm-message")
        self._count = pn.pane.Markdown("", name="alarm-count")
        self._table = pn.widgets.Tabulator(
            with_actions(pd.DataFrame(columns=COLUMNS)),
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            height=460,
            hidden_columns=["id"],
            name="alarm-table",
            pagination=None,
            titles=TITLES,
            header_align="left",
            formatters={
                "review": {"type": "link", "label": "review ›", "target": "_self"},
                **{a: {"type": "html"} for a in ACTIONS},
            },
        )
        self._table.style.map(_severity_style, subset=["severity"])
        self._table.on_click(self._on_click)
        self.filters.param.watch(
            lambda *_: self.refresh(), ["status", "severities", "types", "device", "window", "model"]
        )
        self.refresh()
        pn.state.onload(lambda: self._bg.run("filters", self.alarms.devices, self._make_filters))  # now in a notebook

    def _make_filters(self, devices: dict[str, str]) -> None:
        f = self.filters
        self._devices = devices
        self._types = pn.widgets.MultiChoice(name="Type", options=self._known_types, value=list(f.types), width=220)
        device = pn.widgets.Select(
            name="Device",
            options={"all devices": "", **devices},
            value=f.device if f.device in devices.values() else "",
            width=200,
        )
        self._types.link(f, value="types")
        device.link(f, value="device")
        self._filter_row.objects = [
            pn.widgets.Select.from_param(f.param.status, name="Status", width=130),
            pn.widgets.MultiChoice.from_param(f.param.severities, name="Severity", width=260),
            self._types,
            device,
            pn.widgets.Select.from_param(f.param.window, name="Time (data)", width=140),
        ]

    # -- data ----------------------------------------------------------------------------------
    def refresh(self) -> None:
        self._bg.run("table", self.alarms.load, self._show)

    def _show(self, rows: AlarmRows) -> None:
        self._table.value = with_actions(rows.frame)
        self._count.object = rows.count
        self._known_types = rows.types
        if self._types is not None and rows.types != self._types.options:
            self._types.options = rows.types
        if rows.storm:
            self._storm.object = rows.storm
            self._storm.visible = True

    # -- actions -------------------------------------------------------------------------------
    def _on_click(self, event) -> None:
        if event.column not in ACTIONS:
            return
        alarm_id = self._table.value.iloc[event.row]["id"]
        self.act(event.column, alarm_id)

    def act(self, action: str, alarm_id: str) -> None:
        """Ack, clear or delete as the signed-in user (the service checks the permission)."""

        def done(_) -> None:
            self._message.object = ""
            self.refresh()

        def refused(exc: Exception) -> None:
            if not isinstance(exc, EntityError):
                raise exc
            self._message.object = f"⚠ {exc}"
            self.refresh()

        self._bg.run(f"act-{alarm_id}", lambda: self.alarms.act(action, alarm_id), done, refused)

    # -- live ----------------------------------------------------------------------------------
    def __panel__(self):
        self._bg.follow(
            self.platform.alarms.changed, lambda kind, alarm: self.alarms.concerns(alarm), self.refresh, self.refresh_ms
        )
        return pn.Column(
            self._storm,
            self._filter_row,
            pn.Row(self._count, self._message),
            self._table,
            sizing_mode="stretch_width",
        )


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

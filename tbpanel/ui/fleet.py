"""The landing page: the signed-in user's fleet, points stored and last activity per device."""

from __future__ import annotations

import pandas as pd
import panel as pn
import param
from panel.io.state import set_curdoc

from ..live import LiveHub
from ..views.fleet import Fleet
from .layout import page_template
from .live_sink import DocumentSink


class FleetView(pn.viewable.Viewer):
    """Cards with fleet totals above a table of devices.

    With a live hub the table is refreshed when the user's devices store telemetry (at most
    once per ``live_min_ms``), plus every ``refresh_ms`` for what no write announces: devices
    going offline, devices added or reassigned. Without one it is polled every ``refresh_ms``.
    """

    fleet: param.ClassSelector[Fleet] = param.ClassSelector(class_=Fleet)  # type: ignore[assignment]  # required, never None
    live = param.ClassSelector(class_=LiveHub, default=None, allow_None=True)
    refresh_ms = param.Integer(
        default=None,
        allow_None=True,
        bounds=(200, None),
        doc="Periodic refresh; default 2 s without a hub, 30 s with one.",
    )
    live_min_ms = param.Integer(default=1000, bounds=(0, None))

    def __init__(self, **params):
        super().__init__(**params)
        frame = self._frame()
        self._devices = pn.indicators.Number(
            name="Devices", value=len(frame), format="{value:,}", font_size="28pt", title_size="11pt"
        )
        self._online = pn.indicators.Number(
            name="Online", value=int(frame["online"].sum()), format="{value:,}", font_size="28pt", title_size="11pt"
        )
        self._points = pn.indicators.Number(
            name="Points stored",
            value=int(frame["points"].sum()),
            format="{value:,}",
            font_size="28pt",
            title_size="11pt",
        )
        self._table = pn.widgets.Tabulator(
            frame,
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            height=420,
            hidden_columns=["id"],
            name="fleet-table",
            formatters={
                "online": {"type": "tickCross"},
                "plot": {"type": "link", "urlPrefix": "/telemetry?device=", "label": "telemetry ›"},
            },
            titles={"last_activity": "last activity (UTC)", "points": "points stored"},
        )
        self._callback = None
        self._sink: DocumentSink | None = None
        self._followed: set[str] = set()
        self._doc = None

    def _frame(self) -> pd.DataFrame:
        """The summary with times as text: Tabulator's datetime formatter needs a CDN library."""
        frame = self.fleet.summary()
        frame["last_activity"] = frame["last_activity"].dt.strftime("%Y-%m-%d %H:%M:%S").fillna("never")
        frame["plot"] = frame["id"]  # rendered as a link to the device's telemetry page
        return frame

    def refresh(self) -> None:
        frame = self._frame()
        self._devices.value = len(frame)
        self._online.value = int(frame["online"].sum())
        self._points.value = int(frame["points"].sum())
        self._table.value = frame
        if self._sink is not None and set(frame["id"]) != self._followed:
            self._follow(frame)  # devices were added, deleted or reassigned

    def _start(self) -> None:
        """Once the browser is connected: follow the fleet's devices through the hub."""
        if self.live is None:
            return
        self._doc = pn.state.curdoc
        self._sink = DocumentSink(
            self.live,
            self._doc,
            self._on_live,
            tenant=self.fleet.user.tenant_id or "",
            min_interval_ms=self.live_min_ms,
        )
        self._follow(self._table.value)

    def _follow(self, frame: pd.DataFrame) -> None:
        self._followed = set(frame["id"])
        if self._sink is not None:
            self._sink.follow(self._followed)

    def _on_live(self, points) -> None:
        with set_curdoc(self._doc):
            self.refresh()

    def __panel__(self):
        doc = pn.state.curdoc
        if self._callback is None and doc is not None:
            period = self.refresh_ms or (30_000 if self.live is not None else 2000)
            self._callback = pn.state.add_periodic_callback(self.refresh, period=period)
            if self.live is not None and doc.session_context is not None:
                pn.state.onload(self._start)
        return pn.Column(pn.Row(self._devices, self._online, self._points), self._table, sizing_mode="stretch_width")


def fleet_page(platform, live: LiveHub | None = None) -> pn.template.BaseTemplate:
    """Build the landing page for the user of the current session."""
    template, user = page_template(platform, "/")
    if user is None:
        return template
    template.main.append(pn.pane.Markdown("## Fleet"))
    template.main.append(FleetView(fleet=Fleet(platform, user), live=live))
    return template

"""The landing page: the signed-in user's fleet, points stored and last activity per device."""
from __future__ import annotations

import html

import pandas as pd
import panel as pn
import param

from ..entities import NotFound
from ..fleet import Fleet


class FleetView(pn.viewable.Viewer):
    """Cards with fleet totals above a table of devices; refreshed every few seconds."""

    fleet = param.ClassSelector(class_=Fleet)
    refresh_ms = param.Integer(default=2000, bounds=(200, None))

    def __init__(self, **params):
        super().__init__(**params)
        frame = self._frame()
        self._devices = pn.indicators.Number(name="Devices", value=len(frame), format="{value:,}",
                                             font_size="28pt", title_size="11pt")
        self._online = pn.indicators.Number(name="Online", value=int(frame["online"].sum()),
                                            format="{value:,}", font_size="28pt", title_size="11pt")
        self._points = pn.indicators.Number(name="Points stored", value=int(frame["points"].sum()),
                                            format="{value:,}", font_size="28pt", title_size="11pt")
        self._table = pn.widgets.Tabulator(
            frame, show_index=False, disabled=True, sizing_mode="stretch_width", height=420,
            hidden_columns=["id"], name="fleet-table",
            formatters={"online": {"type": "tickCross"}},
            titles={"last_activity": "last activity (UTC)", "points": "points stored"})
        self._callback = None

    def _frame(self) -> pd.DataFrame:
        """The summary with times as text: Tabulator's datetime formatter needs a CDN library."""
        frame = self.fleet.summary()
        frame["last_activity"] = frame["last_activity"].dt.strftime("%Y-%m-%d %H:%M:%S").fillna("never")
        return frame

    def refresh(self) -> None:
        frame = self._frame()
        self._devices.value = len(frame)
        self._online.value = int(frame["online"].sum())
        self._points.value = int(frame["points"].sum())
        self._table.value = frame

    def __panel__(self):
        if self._callback is None and pn.state.curdoc is not None:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=self.refresh_ms)
        return pn.Column(
            pn.Row(self._devices, self._online, self._points),
            self._table, sizing_mode="stretch_width")


def fleet_page(platform) -> pn.template.BaseTemplate:
    """Build the landing page for the user of the current session."""
    try:
        user = platform.registry.get_user(pn.state.user) if pn.state.user else None
    except NotFound:
        user = None
    template = pn.template.FastListTemplate(title="tbpanel", header_background="#0b6bcb",
                                            font="system-ui, sans-serif", font_url="")  # no CDN fonts
    if user is None:  # the auth provider redirects first; this is a second lock on the door
        template.main.append(pn.pane.Markdown("Please [sign in](/login)."))
        return template
    template.header.append(pn.pane.HTML(
        f'<span style="color:white">{html.escape(user.email)} · {user.authority.replace("_", " ").lower()} · '
        f'<a style="color:white" href="/logout">sign out</a></span>'))
    template.main.append(pn.pane.Markdown("## Fleet"))
    template.main.append(FleetView(fleet=Fleet(platform, user)))
    return template

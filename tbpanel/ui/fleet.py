"""The landing page: the signed-in user's fleet (points stored, last activity and the last day
of each device), its active alarms and, for a tenant administrator, each model's anomalies.

The table's figures are in-memory counters and draw at once; the last-day trends, the alarms
and the model counts are read through :class:`~tbpanel.ui.background.Background` and replace
their placeholders when they arrive, so the page never waits for them.
"""

from __future__ import annotations

import html
import math
import time

import numpy as np
import pandas as pd
import panel as pn
import param
from panel.io.state import set_curdoc

from ..alarms import Alarm
from ..clock import utc_text
from ..live import LiveHub
from ..views.fleet import Fleet, ModelCount, Trend
from .background import Background
from .layout import page_template
from .live_sink import DocumentSink

SEVERITY_COLOURS = {
    "CRITICAL": "#b00020",
    "MAJOR": "#d9480f",
    "MINOR": "#e8a200",
    "WARNING": "#1971c2",
    "INDETERMINATE": "#667",
}
#: what a trend cell shows until the trends arrive
TREND_WAIT = '<span class="trend-wait" style="color:#99a">loading…</span>'
_CARD = "background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:10px 14px;margin:0 0 12px"


def sparkline_svg(trend: Trend, width: int = 110, height: int = 26) -> str:
    """A tiny inline SVG polyline of a trend (gaps where the device sent nothing) and its key:
    a few hundred bytes per row, drawn by the browser without any plotting library."""
    values = trend.values
    finite = values[np.isfinite(values)]
    if not len(finite):
        return f'<span class="trend" style="color:#99a">no data in 24 h · {html.escape(trend.key)}</span>'
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo or 1.0
    step = width / max(len(values) - 1, 1)
    runs, run = [], []
    for i, v in enumerate(values.tolist()):
        if math.isfinite(v):
            run.append(f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}")
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    lines = "".join(
        f'<polyline points="{" ".join(r)}" fill="none" stroke="#0b6bcb" stroke-width="1.5"/>'
        if len(r) > 1
        else f'<circle cx="{r[0].split(",")[0]}" cy="{r[0].split(",")[1]}" r="1.5" fill="#0b6bcb"/>'
        for r in runs
    )
    title = f"{trend.key}, last 24 h: {lo:.4g} … {hi:.4g}"
    return (
        f'<span class="trend" data-key="{html.escape(trend.key)}" title="{html.escape(title)}">'
        f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'style="vertical-align:middle"><title>{html.escape(title)}</title>{lines}</svg> '
        f'<small style="color:#667">{html.escape(trend.key)}</small></span>'
    )


def alarms_html(alarms: list[Alarm], total: int) -> str:
    if not alarms:
        items = '<p class="none" style="color:#667;margin:4px 0">No active alarms.</p>'
    else:
        rows = []
        for a in alarms:
            colour = SEVERITY_COLOURS.get(a.severity, "#667")
            rows.append(
                f'<li class="alarm" style="margin:4px 0"><span style="color:#fff;background:{colour};'
                f'border-radius:3px;padding:0 5px;font-size:11px">{a.severity}</span> '
                f"{html.escape(a.type)} · {html.escape(a.originator_name)} · since {utc_text(a.start_ts or a.created_time)}"
                "</li>"
            )
        more = f"<li>… and {total - len(alarms)} more</li>" if total > len(alarms) else ""
        items = f'<ul style="padding-left:0;list-style:none;margin:4px 0">{"".join(rows)}{more}</ul>'
    return (
        f'<div id="fleet-alarms" style="{_CARD}"><b>Active alarms ({total})</b>{items}'
        '<a href="/alarms">all alarms ›</a></div>'
    )


def models_html(models: list[ModelCount]) -> str:
    if not models:
        body = '<p style="color:#667;margin:4px 0">No anomaly models yet: <a href="/models">create one ›</a></p>'
    else:
        rows = "".join(
            f'<li class="model" style="margin:4px 0"><a href="/model?id={html.escape(m.id)}">{html.escape(m.name)}</a>'
            f" · {m.anomalies} anomal{'y' if m.anomalies == 1 else 'ies'} on {m.devices} device"
            f"{'' if m.devices == 1 else 's'}, {m.active} active"
            f"{'' if m.status == 'READY' else f' · {m.status.lower()}'}</li>"
            for m in models
        )
        body = f'<ul style="padding-left:0;list-style:none;margin:4px 0">{rows}</ul>'
    return f'<div id="fleet-models" style="{_CARD}"><b>Anomaly models</b>{body}</div>'


def _waiting(what: str, element_id: str) -> str:
    """A placeholder card while ``what`` loads (the skeleton of the page)."""
    return f'<div id="{element_id}" class="loading" style="{_CARD};color:#99a">Loading {what}…</div>'


class FleetView(pn.viewable.Viewer):
    """Cards with fleet totals above a table of devices, with active alarms and model counts
    beside it.

    With a live hub the table is refreshed when the user's devices store telemetry (at most
    once per ``live_min_ms``), plus every ``refresh_ms`` for what no write announces: devices
    going offline, devices added or reassigned. Without one it is polled every ``refresh_ms``.
    The trends are re-read at most every ``trend_ms``; alarms follow ``AlarmService.changed``.
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
    trend_ms = param.Integer(default=60_000, bounds=(0, None), doc="Re-read the last-day trends at most this often.")

    def __init__(self, **params):
        super().__init__(**params)
        self._bg = Background(self.fleet.platform.executor)
        self._trends: dict[str, str] = {}  # device id -> sparkline HTML
        self._trends_read = -math.inf
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
                "trend": {"type": "html"},
                "plot": {"type": "link", "urlPrefix": "/telemetry?device=", "label": "telemetry ›"},
            },
            titles={"last_activity": "last activity (UTC)", "points": "points stored", "trend": "last 24 h"},
        )
        self._alarms = pn.pane.HTML(_waiting("active alarms", "fleet-alarms"), sizing_mode="stretch_width")
        # models are the tenant administrator's workspace: a customer user's page has no card
        self._models = (
            pn.pane.HTML(_waiting("anomaly models", "fleet-models"), sizing_mode="stretch_width")
            if self.fleet.user.authority == "TENANT_ADMIN"
            else None
        )
        self._callback = None
        self._sink: DocumentSink | None = None
        self._followed: set[str] = set()
        self._doc = None
        self._load_side()
        self._load_trends()

    def _frame(self) -> pd.DataFrame:
        """The summary with times as text: Tabulator's datetime formatter needs a CDN library."""
        frame = self.fleet.summary()
        frame["last_activity"] = frame["last_activity"].dt.strftime("%Y-%m-%d %H:%M:%S").fillna("never")
        frame.insert(len(frame.columns) - 1, "trend", [self._trends.get(d, TREND_WAIT) for d in frame["id"]])
        frame["plot"] = frame["id"]  # rendered as a link to the device's telemetry page
        return frame

    # -- the slow parts, off the server loop ---------------------------------------------------
    def _load_side(self) -> None:
        fleet = self.fleet
        self._bg.run("side", lambda: (fleet.active_alarms(), fleet.model_counts()), self._show_side)

    def _show_side(self, result) -> None:
        (alarms, total), models = result
        self._alarms.object = alarms_html(alarms, total)
        if self._models is not None:
            self._models.object = models_html(models)

    def _load_trends(self) -> None:
        self._trends_read = time.monotonic()
        self._bg.run("trends", self.fleet.trends, self._show_trends)

    def _show_trends(self, trends: dict[str, Trend]) -> None:
        self._trends = {d: sparkline_svg(t) for d, t in trends.items()}
        self._trends.update(
            {d: '<span style="color:#99a">no data</span>' for d in self._table.value["id"] if d not in trends}
        )
        frame = self._table.value.copy()
        frame["trend"] = [self._trends.get(d, TREND_WAIT) for d in frame["id"]]
        self._table.value = frame

    def refresh(self) -> None:
        frame = self._frame()
        self._devices.value = len(frame)
        self._online.value = int(frame["online"].sum())
        self._points.value = int(frame["points"].sum())
        self._table.value = frame
        if self._sink is not None and set(frame["id"]) != self._followed:
            self._follow(frame)  # devices were added, deleted or reassigned
        if time.monotonic() - self._trends_read >= self.trend_ms / 1000:
            self._load_trends()

    def _tick(self) -> None:
        """The periodic refresh: the table, the trends when due, alarms and model counts."""
        self.refresh()
        self._load_side()

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
            self._callback = pn.state.add_periodic_callback(self._tick, period=period)
            # an alarm raised or cleared shows at once (AlarmService emits after its commit)
            self._bg.follow(self.fleet.platform.alarms.changed, lambda *_: True, self._load_side, poll_ms=period)
            if self.live is not None and doc.session_context is not None:
                pn.state.onload(self._start)
        side = pn.Column(self._alarms, *([self._models] if self._models is not None else []), width=340)
        return pn.Column(
            pn.Row(self._devices, self._online, self._points),
            pn.Row(self._table, side, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


def fleet_page(platform, live: LiveHub | None = None) -> pn.template.BaseTemplate:
    """Build the landing page for the user of the current session."""
    template, user = page_template(platform, "/")
    if user is None:
        return template
    template.main.append(pn.pane.Markdown("## Fleet"))
    template.main.append(FleetView(fleet=Fleet(platform, user), live=live))
    return template
